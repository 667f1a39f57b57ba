"""Face identities on real two-person recordings: a person who leaves and comes back (also in another light), and two
people who swap sides after a cut, keep their track ids with dlib's face embedding; the colour histogram, the
fallback, is run on the same videos.

Results (see the README's corpus section): with the cut step both backends keep the ids when the person leaves and
returns and when the two swap sides; when the returning face comes back in another light (dimmer and bluer) the
histogram splits it into a new track, the embedding keeps it.
"""

import numpy as np
import pytest

from .registry_data import SWAPPED_FACES_CUT, TWO_FACES_RIGHT_GONE, swapped_faces_video, two_faces_video

pytest.importorskip("dlib", reason="the face embedding needs pip install 'emvfer-hf[identity]'")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity-videos")
    return {"leaves": two_faces_video(folder / "leaves.mp4"), "relit": two_faces_video(folder / "relit.mp4", relit=True),
            "swap": swapped_faces_video(folder / "swap.mp4")}  # fmt: skip


def _who_is_where(video, identity, swap_at=None, **options):
    """Run the tracker; ``({track_id: {person: frames}}, tracker)`` where the person is "A" (WolfgangLanger, on the
    left until a swap) or "B" (single_face, on the right until a swap)."""
    from emvfer_hf.face_tracking_mert import FaceTracker
    from emvfer_hf.video_io_mert import iter_frame_chunks

    tracker = FaceTracker(fps=24, identity=identity, **options)
    persons, offset = {}, 0
    for frames, _ in iter_frame_chunks(str(video), 40):
        for track_id, faces in tracker.update(frames).items():
            for k in np.flatnonzero(faces.found):
                on_left = faces.boxes[k][[0, 2]].mean() < 640
                swapped = swap_at is not None and offset + k >= swap_at
                person = "A" if on_left != swapped else "B"
                counts = persons.setdefault(track_id, {})
                counts[person] = counts.get(person, 0) + 1
        offset += len(frames)
    return persons, tracker


@pytest.mark.parametrize("identity", ["dlib", "histogram"])
def test_a_person_who_leaves_and_returns_keeps_the_id(videos, identity):
    persons, tracker = _who_is_where(videos["leaves"], identity)
    assert tracker.identity.name == identity
    assert tracker.num_tracks == 2 and all(len(p) == 1 for p in persons.values())  # one person per track
    assert sorted(sum(p.values()) for p in persons.values()) == [150 - len(TWO_FACES_RIGHT_GONE), 150]
    assert tracker.cuts == [TWO_FACES_RIGHT_GONE[0], TWO_FACES_RIGHT_GONE[-1] + 1]  # half the picture goes black


@pytest.mark.parametrize("identity", ["dlib", "histogram"])
def test_two_people_who_swap_sides_after_a_cut_keep_their_ids(videos, identity):
    persons, tracker = _who_is_where(videos["swap"], identity, swap_at=SWAPPED_FACES_CUT)
    assert tracker.cuts == [SWAPPED_FACES_CUT]
    assert tracker.num_tracks == 2 and all(len(p) == 1 for p in persons.values())
    assert sorted(sum(p.values()) for p in persons.values()) == [144, 144]


def test_without_the_cut_step_positions_win_and_the_ids_swap(videos):
    persons, tracker = _who_is_where(videos["swap"], "dlib", swap_at=SWAPPED_FACES_CUT, cut_threshold=None)
    assert tracker.cuts == [] and any(len(p) == 2 for p in persons.values())  # box overlap took each id across


def test_the_embedding_keeps_a_face_that_returns_in_another_light(videos):
    persons, tracker = _who_is_where(videos["relit"], "dlib")
    assert tracker.num_tracks == 2 and all(len(p) == 1 for p in persons.values())
    histogram, _ = _who_is_where(videos["relit"], "histogram")
    print(f"histogram: {len(histogram)} tracks for 2 people")  # 3: the relit face starts a new track


def test_identity_backends_and_person_clustering():
    from emvfer_hf.face_identity_mert import (DlibResNetIdentity, FaceIdentityBackend, HistogramIdentity,
                                              cluster_descriptors, default_identity_backend,
                                              identity_backend_from_name)  # fmt: skip

    assert isinstance(default_identity_backend("auto"), DlibResNetIdentity)  # the extra is installed here
    assert isinstance(default_identity_backend("histogram"), HistogramIdentity)
    assert all(isinstance(b, FaceIdentityBackend) for b in (HistogramIdentity(), DlibResNetIdentity()))
    with pytest.raises(ValueError, match="identity backend"):
        default_identity_backend("arcface")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=128) * 0.1, rng.normal(size=128) * 0.1 + 0.2
    descriptors = [a, b, a + 0.01, b - 0.01, a]
    assert cluster_descriptors(descriptors, identity_backend_from_name("dlib")).tolist() == [0, 1, 0, 1, 0]
    assert cluster_descriptors([], HistogramIdentity()).tolist() == []
