"""The canonical series (normalisation, resampling, prior) and the visual extractor on a real face video."""

from pathlib import Path

import numpy as np
import pytest

from emvfer_hf.video_io_mert import decode_video

from emvfer_hf import eye_extraction_mert, eye_movement_mert
from emvfer_hf.eye_movement_mert import (  # the extraction's names, as the README names them: moved, still importable
    EyeMovementSeries,
    VisualEyeMovementExtractor,
    extract_eye_movements,
    eye_movement_prior,
    measure_pupil,
)
from emvfer_hf.eyetracking import read_tobii_tsv
from emvfer_hf.face_backends_mert import MTCNNBackend, detect_faces
from emvfer_hf.faces_mert import FaceLandmarkBackend, FaceTrack

from .conftest import carphone_video_path

NEON_TSV = Path(__file__).parent / "fixtures" / "eye_tracking" / "neon_demo_prolab.tsv"


@pytest.fixture(scope="module")
def backend():
    return MTCNNBackend()


@pytest.fixture(scope="module")
def carphone(backend):
    path = str(carphone_video_path())
    decoded = decode_video(path)
    frames, fps = np.stack([decoded.frames[i] for i in sorted(decoded.frames)]), decoded.fps
    faces = FaceTrack(*backend.detect(list(frames)))
    return path, frames, fps, faces


# ------------------------------------------------------------------------------------------- canonical series
@pytest.mark.parametrize("module", [eye_movement_mert, eye_extraction_mert])
def test_flat_module_imports_no_heavy_deps(module):
    src = Path(module.__file__).read_text(encoding="utf-8")
    top = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert all(not ln.startswith("from ..") for ln in top)
    assert not any(mod in ln for ln in top for mod in ("cv2", "facenet_pytorch", "av", "torch"))


def test_normalisation_and_resampling():
    rng = np.random.default_rng(0)
    n = 300
    raw = np.stack([3 + 0.2 * rng.normal(size=n), 3.1 + 0.2 * rng.normal(size=n), rng.uniform(-0.5, 0.5, n),
                    rng.uniform(-0.5, 0.5, n), rng.integers(0, 3, n)], axis=1)
    valid = np.ones(n, bool)
    valid[50:60] = False
    raw[50:60, :4] = np.nan
    s = EyeMovementSeries(raw, valid, np.arange(n) / 100.0, normalized=False).normalize()
    assert s.values.dtype == np.float32 and np.isfinite(s.values).all()
    np.testing.assert_allclose(s.values[valid, :2].mean(0), 0, atol=1e-5)
    assert set(np.unique(s.values[:, 4])) <= {0.0, 0.5, 1.0}
    r = s.resample(256)
    assert r.values.shape == (256, 5) and r.valid.shape == (256,)
    assert not r.valid[int(55 / 300 * 256)]
    frame_times = np.arange(0, 3.0, 1 / 25)
    v = s.resample_to_times(frame_times)
    assert v.values.shape == (75, 5)
    np.testing.assert_allclose(v.values[0], s.values[0], atol=1e-6)


def test_both_sources_comparable_scales(carphone, backend):
    """The tracker recording and the visual series land in the same normalised ranges."""
    path, frames, fps, faces = carphone
    visual = extract_eye_movements(frames, fps=fps, faces=faces).resample(256)
    tracker = read_tobii_tsv(NEON_TSV, resolution=(1600, 1200)).to_series(length=256)
    for s in (visual, tracker):
        v = s.values[s.valid]
        assert np.abs(v[:, :2].mean(0)).max() < 0.5 and (0.5 < v[:, :2].std(0)).all() and (v[:, :2].std(0) < 1.5).all()
        assert np.abs(v[:, 2:4]).max() <= 1.0 and v[:, 2:4].std(0).max() < 0.6
        assert set(np.unique(v[:, 4])) <= {0.0, 0.5, 1.0} and (v[:, 4] == 0).mean() > 0.5
    mean, cov = eye_movement_prior([visual, tracker], length=256)
    assert mean.shape == (256, 5) and cov.shape == (5, 5) and np.isfinite(cov).all()


# ------------------------------------------------------------------------------------------- pupil chain
def _synthetic_eye(dx, dy, w=48, h=29):
    """A white eye region (ellipse) on skin, dark lashes along the top, a dark iris/pupil disc at (dx, dy)."""
    import cv2

    img = np.full((h, w), 170, np.uint8)  # skin
    cv2.ellipse(img, (w // 2, h // 2), (w // 2 - 2, h // 2 - 3), 0, 0, 360, 235, -1)  # sclera
    cx, cy = int(round(w / 2 + dx * w / 2)), int(round(h / 2 + dy * h / 2))
    cv2.circle(img, (cx, cy), 6, 70, -1)  # iris
    cv2.circle(img, (cx, cy), 3, 20, -1)  # pupil
    cv2.ellipse(img, (w // 2, h // 2), (w // 2 - 1, h // 2 - 2), 0, 200, 340, 35, 2)  # lashes on the upper lid
    return img


@pytest.mark.parametrize("dx,dy", [(-0.45, 0.0), (0.45, 0.0), (0.0, 0.25), (0.3, -0.15)])
def test_pupil_chain_points_the_right_way(dx, dy):
    m = measure_pupil(_synthetic_eye(dx, dy))
    assert m.found
    assert np.sign(m.x) == np.sign(dx) if dx else abs(m.x) < 0.15
    assert np.sign(m.y) == np.sign(dy) if dy else abs(m.y) < 0.2
    assert abs(m.x - dx) < 0.2 and abs(m.y - dy) < 0.3
    assert 0.15 < m.diameter < 0.45  # iris 13 px in a 48 px patch


def test_pupil_chain_ignores_lashes_and_closed_eye():
    import cv2

    img = _synthetic_eye(0.4, 0.1)
    cv2.line(img, (4, 5), (44, 5), 5, 1)  # a long lash line darker than the pupil, merged with the upper-lid lashes
    m = measure_pupil(img)
    assert m.found and m.x > 0.2 and m.y > -0.2
    closed = np.full((29, 48), 170, np.uint8)
    assert not measure_pupil(closed).found


# ------------------------------------------------------------------------------------------- real face video
def test_carphone_faces_and_series(carphone):
    path, frames, fps, faces = carphone
    assert frames.shape == (120, 144, 176, 3) and fps == pytest.approx(29.97, rel=1e-3)
    assert faces.found.mean() >= 0.95
    boxes = faces.boxes[faces.found]
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    lm = faces.landmarks[faces.found]
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all()  # image-left eye left of the image-right eye
    assert (lm[:, :2, 1].mean(1) < lm[:, 3:, 1].mean(1)).all()  # eyes above the mouth
    raw = VisualEyeMovementExtractor(backend=None, normalize=False)(frames, fps=fps, faces=faces)
    assert raw.values.shape == (120, 5) and np.isfinite(raw.values).all()
    assert raw.valid.mean() >= 0.95
    pupils = raw.values[raw.valid, :2]
    assert (0.05 < pupils).all() and (pupils < 0.8).all()  # dark-blob diameter / inter-ocular distance
    assert np.abs(np.median(raw.values[:, 2:4], axis=0)).max() < 0.5  # looking roughly at the camera
    assert (raw.values[:, 4] == 0).mean() > 0.6  # mostly fixations
    s = extract_eye_movements(path, faces=faces)  # from the file, reusing the detection pass
    assert s.values.shape == (120, 5) and s.values.dtype == np.float32 and s.normalized
    np.testing.assert_allclose(s.times_s[1], 1 / fps)
    assert np.isfinite(s.values).all() and s.metadata["faces"] is faces


def test_frames_without_face_are_invalid(carphone, backend):
    path, frames, fps, faces = carphone
    clip = frames[:30].copy()
    clip[[5, 6, 7, 20]] = 0  # blank frames in between
    s = extract_eye_movements(clip, fps=fps, backend=backend)
    assert s.values.shape == (30, 5) and np.isfinite(s.values).all()
    assert not s.valid[[5, 6, 7, 20]].any()
    assert s.valid.sum() >= 24


def test_no_face_at_all(backend, tmp_path):
    blank = np.full((6, 96, 128, 3), 127, np.uint8)
    with pytest.raises(ValueError, match="no face found"):
        extract_eye_movements(blank, backend=backend)
    s = extract_eye_movements(blank, backend=backend, allow_no_face=True)
    assert s.values.shape == (6, 5) and not s.valid.any() and np.isfinite(s.values).all()


def test_bad_video_inputs(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ValueError, match="broken.mp4"):
        extract_eye_movements(str(bad))
    with pytest.raises(FileNotFoundError, match="nothere.mp4"):
        extract_eye_movements(str(tmp_path / "nothere.mp4"))
    with pytest.raises(ValueError, match="no frames"):
        extract_eye_movements(np.zeros((0, 32, 32, 3), np.uint8))


class _FixedBackend(FaceLandmarkBackend):
    """A stand-in backend: proves the extractor only needs the small interface."""

    def __init__(self, faces):
        self.faces = faces
        self.calls = 0

    def detect(self, frames):
        self.calls += 1
        n = len(frames)
        return self.faces.boxes[:n], self.faces.landmarks[:n], self.faces.probs[:n]


def test_backend_is_replaceable_and_faces_reusable(carphone):
    path, frames, fps, faces = carphone
    fixed = _FixedBackend(faces)
    track = detect_faces(frames[:20], backend=fixed)
    assert isinstance(track, FaceTrack) and len(track) == 20 and fixed.calls == 1
    s = extract_eye_movements(frames[:20], fps=fps, faces=(track.boxes, track.landmarks))
    assert s.values.shape == (20, 5) and s.valid.all()
    with pytest.raises(ValueError, match="faces has 20 rows for 10 frames"):
        extract_eye_movements(frames[:10], faces=track)


def test_recovered_gaze_follows_the_rendered_gaze(tmp_path):
    """Sample clips are drawn from known eye series: across clips, the gaze (and pupil size, blink rate) read from the
    pixels must follow the series the renderer was given."""
    from emvfer_hf.data import load_sample_eye_series, make_sample_dataset

    root = make_sample_dataset("emer", tmp_path / "EMER", clips_per_class=2, num_frames=24, resolution=160, noise=0.0)
    extractor = VisualEyeMovementExtractor(normalize=False)  # raw values keep each clip's level
    recovered, rendered = [], []
    for video in sorted((root / "face video").glob("*.mp4")):
        series = extract_eye_movements(str(video), extractor=extractor)
        truth = load_sample_eye_series(root, video.stem)[0].resample_to_times(series.times_s)
        if series.valid.mean() < 0.5:  # MTCNN misses some rendered faces (wide-open "surprise" mouths)
            continue
        recovered.append(series.values[series.valid].mean(axis=0))
        rendered.append(truth.values[series.valid].mean(axis=0))
    recovered, rendered = np.array(recovered), np.array(rendered)
    assert len(recovered) >= 10
    corr = [np.corrcoef(recovered[:, c], rendered[:, c])[0, 1] for c in range(5)]
    # Gaze x and the behaviour (blinks from the eyelid aperture) follow closely. The rendered faces are flat
    # cartoons: the face mesh reads them as pitching with the vertical gaze and their round iris fills the eye, so
    # gaze y and the pupil size are not recovered there (README, "Eye movements"); the real-face tests in
    # test_faces_real.py check those channels on real videos.
    assert corr[2] > 0.8, corr
    assert corr[4] > 0.8, corr
    mtcnn = VisualEyeMovementExtractor(backend=MTCNNBackend(), normalize=False)  # the 5-point fallback
    video = sorted((root / "face video").glob("*.mp4"))[0]
    fallback = extract_eye_movements(str(video), extractor=mtcnn)
    assert fallback.valid.mean() > 0.5 and np.isfinite(fallback.values).all()


def test_video_files_are_read_in_chunks(carphone):
    """A long video is decoded and read a chunk at a time; the series matches the one-pass reading."""
    path = carphone[0]
    whole = extract_eye_movements(path, chunk_frames=1000)
    chunked = extract_eye_movements(path, chunk_frames=50)  # 3 chunks of the 120 frames
    assert len(chunked) == len(whole) == 120
    np.testing.assert_allclose(chunked.times_s, whole.times_s, atol=1e-9)
    assert chunked.valid.all() and len(chunked.metadata["faces"]) == 120
    for channel in (2, 3):  # gaze: the same measurements; only the blink/saccade thresholds are per chunk
        assert np.corrcoef(chunked.values[:, channel], whole.values[:, channel])[0, 1] > 0.9


# ------------------------------------------------------------------------------------------- shared pieces
def test_behaviour_encoding_round_trips():
    codes = np.array([0, 1, 2, 1, 0])
    np.testing.assert_array_equal(eye_movement_mert.encode_behaviour(codes), [0.0, 0.5, 1.0, 0.5, 0.0])
    np.testing.assert_array_equal(eye_movement_mert.decode_behaviour(eye_movement_mert.encode_behaviour(codes)), codes)
    raw = np.zeros((5, 5))
    raw[:, 4] = codes
    series = EyeMovementSeries(raw, np.ones(5, bool), np.arange(5) / 10, normalized=False)
    np.testing.assert_array_equal(series.behaviour_codes(), codes)  # raw: read as codes
    np.testing.assert_array_equal(series.normalize().behaviour_codes(), codes)  # normalised: decoded


def test_runs_and_robust_sd():
    assert eye_movement_mert.runs(np.array([1, 1, 0, 0, 1, 0, 1], bool)) == [(0, 1), (4, 4), (6, 6)]
    assert eye_movement_mert.runs(np.zeros(3, bool)) == []
    assert eye_movement_mert.label_runs(["a", "a", "b", "a"]) == [("a", 0, 1), ("b", 2, 2), ("a", 3, 3)]
    assert eye_movement_mert.label_runs([]) == []
    x = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, np.nan])  # NaN left out
    assert eye_movement_mert.robust_sd(x) == pytest.approx(1.0) and eye_movement_mert.robust_sd(np.array([])) == 0.0
    assert eye_movement_mert.robust_sd(np.append(x, [1e6, -1e6])) == pytest.approx(1.0)  # outliers do not inflate it


def test_raw_measurements_slice_join_and_fill():
    m = eye_extraction_mert.EyeMeasurements(pupil=np.arange(8.0).reshape(4, 2), gaze=np.zeros((4, 2, 2)),
                                            eye_aspect_ratio=np.ones((4, 2)))  # fmt: skip
    assert m.dense and len(m) == 4 and m.blob_area is None
    parts = [m.select(np.arange(2)), m.missing(3), m.select(np.array([False, False, True, True]))]
    joined = eye_extraction_mert.EyeMeasurements.concatenate(parts)
    assert len(joined) == 7 and joined.blob_area is None and np.isnan(joined.pupil[2:5]).all()
    np.testing.assert_array_equal(joined.pupil[5:], m.pupil[2:])


def test_one_behaviour_classifier_for_both_strategies():
    times = np.arange(60) / 30.0
    gaze = np.zeros((60, 2))
    gaze[30:, 0] = 10.0  # a 10-unit jump between frames 29 and 30
    gaze += np.random.default_rng(0).normal(0, 0.01, gaze.shape)
    seen, blink = np.ones(60, bool), np.zeros(60, bool)
    blink[50:53] = True
    for classifier in (eye_extraction_mert.BehaviourClassifier(6.0, 40.0),
                       eye_extraction_mert.BehaviourClassifier(6.0, 2.0, isotropic=False)):  # fmt: skip
        codes = classifier.classify(gaze, seen & ~blink, blink, times)
        assert set(np.flatnonzero(codes == eye_movement_mert.SACCADE)) == {29, 30}
        assert (codes[50:53] == eye_movement_mert.BLINK).all() and (codes[:29] == eye_movement_mert.FIXATION).all()
    extractor = VisualEyeMovementExtractor(backend=MTCNNBackend())
    assert extractor.dense.classifier.isotropic and not extractor.five_point.classifier.isotropic


def test_extractor_settings_are_fixed_at_construction():
    """The strategies hold the settings: setting one afterwards is refused with an error, never silently ignored."""
    extractor = eye_extraction_mert.VisualEyeMovementExtractor(blink_ratio=0.7, saccade_lambda=5.0)
    with pytest.raises(AttributeError, match="blink_ratio is fixed"):
        extractor.blink_ratio = 0.5
    assert extractor.dense.classifier.saccade_lambda == 5.0 if hasattr(extractor.dense, "classifier") else True
    extractor.normalize = False  # not a strategy setting: still settable
    assert extractor.normalize is False
