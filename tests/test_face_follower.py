"""The one face-following loop (faces_mert.FaceFollower) on a scripted backend: which frame detects, locates, follows.

Each frame is a 1x1 picture whose two channels say whether the detector finds the face there (channel 0) and whether
the backend can follow it there (channel 1); the backend records every call, so the tests read the schedule.
"""

import numpy as np

from emvfer_hf.faces_mert import Face, FaceFollower, FaceLandmarkBackend, FaceTrack


class Scripted(FaceLandmarkBackend):
    def __init__(self):
        self.calls = []

    def find(self, frames):
        self.calls += [("detect", int(f[0, 0, 2])) for f in frames]
        hit = np.array([f[0, 0, 0] == 1 for f in frames])
        n = len(frames)
        boxes = np.where(hit[:, None], np.array([[0, 0, 10, 10]], np.float32), np.nan)
        return FaceTrack(boxes, np.where(hit[:, None, None], np.zeros((n, 5, 2)), np.nan), np.where(hit, 0.99, np.nan))

    def locate(self, frame, box, landmarks=None, prob=float("nan")):
        self.calls.append(("locate", int(frame[0, 0, 2])))
        return Face(box, landmarks, prob)

    def follow(self, frame, face):
        self.calls.append(("follow", int(frame[0, 0, 2])))
        return Face(face.box + 1, face.landmarks, 0.5) if frame[0, 0, 1] == 1 else None


def frames(detected, followable):
    return [np.array([[[d, f, k]]], np.uint8) for k, (d, f) in enumerate(zip(detected, followable))]


def run(detected, followable, **options):
    backend = Scripted()
    track = FaceFollower(backend, find=backend.find, **options).track_one(frames(detected, followable))
    return track, backend.calls


def test_one_face_is_detected_on_key_frames_and_followed_between():
    track, calls = run([1] * 6, [1] * 6, detect_every=3)
    assert track.found.all() and len(track) == 6
    assert [c for c in calls if c[0] != "follow"] == [("detect", 0), ("detect", 3), ("locate", 0), ("locate", 3)]
    assert [k for what, k in calls if what == "follow"] == [1, 2, 4, 5]
    assert track.boxes[2, 0] == 2 and track.boxes[3, 0] == 0  # followed twice, then the key frame's detection
    assert np.isclose(track.probs, [0.99, 0.5, 0.5, 0.99, 0.5, 0.5]).all()


def test_a_lost_face_waits_for_the_next_key_frame_without_retries():
    track, calls = run([1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1, 1], detect_every=4)
    assert track.found.tolist() == [True, False, False, False, True, True, True]
    assert ("follow", 2) not in calls  # lost at 1: nothing to follow until the key frame 4


def test_retry_every_frame_detects_again_at_once():
    """MTCNN's single-face detection (retry_every=1): every frame without a face asks the detector."""
    track, calls = run([1, 0, 0, 1, 1, 1, 1], [1, 0, 0, 0, 1, 1, 1], detect_every=10, retry_every=1)
    assert track.found.tolist() == [True, False, False, True, True, True, True]
    assert [k for what, k in calls if what == "detect"] == [0, 1, 2, 3]


def test_retry_every_k_frames_after_the_first_miss():
    """The face mesh's (retry_every=3): at once when the face breaks off, then every 3 frames."""
    _, calls = run([1, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], detect_every=100, retry_every=3)
    assert [k for what, k in calls if what == "detect"] == [0, 1, 4, 7]


def test_keep_missed_follows_through_a_key_frame_where_the_detector_misses():
    kept, _ = run([1, 1, 0, 1], [1, 1, 1, 1], detect_every=2, keep_missed=True)
    dropped, _ = run([1, 1, 0, 1], [1, 1, 1, 1], detect_every=2)
    assert kept.found.tolist() == [True, True, True, True]
    assert dropped.found.tolist() == [True, True, False, False]  # lost at the key frame 2, no retry at 3


def test_no_face_anywhere_gives_an_empty_track_of_the_clip_length():
    track, _ = run([0] * 5, [0] * 5, detect_every=2, retry_every=1)
    assert len(track) == 5 and not track.found.any()
