"""Aff-Wild2 scored as the paper and the challenge score it: per frame, from window predictions.

The annotations are the hand-written real-format files of tests/fixtures/affwild2_expr (README there); the face
crops are written here, with frame 9 of `video1` missing. Every expected value below is worked out by hand.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from emvfer_hf import metrics as M
from emvfer_hf.data._media import write_jpgs
from emvfer_hf.data import affwild2_frame_labels, load_affwild2

FIXTURE = Path(__file__).parent / "fixtures" / "affwild2_expr"
NUM_FRAMES = {"video1": 10, "10-60-1280x720_right": 6, "video2": 4}
NO_CROP = {"video1": {9}}  # no face detected: the annotation has the frame, cropped_aligned has no image


def probabilities(**mass) -> np.ndarray:
    """An 8-class probability vector: the given classes (``c0=0.7``), the rest shared evenly by the others."""
    p = np.zeros(8)
    for key, value in mass.items():
        p[int(key[1:])] = value
    rest = [c for c in range(8) if p[c] == 0]
    p[rest] = (1.0 - p.sum()) / len(rest)
    return p


# Windows of 4 frames, stride 2 (clip_id: <video>@<first frame>) and the probabilities the "model" gives them.
WINDOW_PROBABILITIES = {
    "video1@00001": probabilities(c0=0.7),  # frames 1-4
    "video1@00003": probabilities(c4=0.5, c0=0.3),  # frames 3-6
    "video1@00005": probabilities(c4=0.9),  # frames 5-8
    "video1@00007": probabilities(c6=0.6, c4=0.3),  # frames 7, 8, 10 (no crop of 9)
    "10-60-1280x720_right@00001": probabilities(c1=0.8),  # frames 1-4
    "10-60-1280x720_right@00003": probabilities(c3=0.5),  # frames 3-6
}


@pytest.fixture()
def affwild2_root(tmp_path):
    root = tmp_path / "Aff-Wild2"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("README.md"))
    for video, n in NUM_FRAMES.items():
        kept = [i for i in range(1, n + 1) if i not in NO_CROP.get(video, set())]
        crop = np.full((8, 8, 3), 128, np.uint8)
        write_jpgs(root / "cropped_aligned" / video, [crop] * len(kept), [f"{i:05d}.jpg" for i in kept])
    return root


def window_logits(windows) -> np.ndarray:
    return np.log(np.stack([WINDOW_PROBABILITIES[c] for c in windows["clip_id"]]))


def test_windows_cover_the_annotated_frames(affwild2_root):
    windows = load_affwild2(affwild2_root, "validation", window=4, stride=2)["validation"]
    assert sorted(windows["clip_id"]) == sorted(WINDOW_PROBABILITIES)
    by_id = dict(zip(windows["clip_id"], windows["frame_numbers"]))
    assert by_id["video1@00007"] == [7, 8, 10]
    assert dict(zip(windows["clip_id"], windows["label"]))["video1@00003"] == 4  # majority of 0, 4, 4 (-1 left out)
    labels = affwild2_frame_labels(affwild2_root, "validation")
    assert labels == {"10-60-1280x720_right": [1, 1, -1, -1, 2, 2], "video1": [0, 0, 0, 4, 4, -1, 4, 4, 6, 6]}


def test_per_frame_accuracy_and_macro_f1_by_hand(affwild2_root):
    windows = load_affwild2(affwild2_root, "validation", window=4, stride=2)["validation"]
    frames = M.windows_to_frames(
        affwild2_frame_labels(affwild2_root, "validation"), windows["subject"], windows["frame_numbers"],
        window_logits(windows),
    )  # fmt: skip
    # video 10-60 right: frames 1, 2 → anger (right), 3, 4 are -1, 5, 6 → fear (truth: disgust)
    # video1: 1-3 → neutral (3: 0.7 + 0.3 for neutral against 0.04 + 0.5 for happiness), 4 → neutral (truth
    # happiness), 5 → happiness, 6 is -1, 7 and 8 → happiness: one window says happiness, one surprise, and the
    # mean of the probabilities decides (0.9 + 0.3 against 0.014 + 0.6), 9 has no window, 10 → surprise
    np.testing.assert_array_equal(frames["labels"], [1, 1, 2, 2, 0, 0, 0, 4, 4, 4, 4, 6])
    np.testing.assert_array_equal(frames["predictions"], [1, 1, 3, 3, 0, 0, 0, 0, 4, 4, 4, 6])
    result = M.affwild2_frame_metrics(frames)
    assert (result["frames"], result["ignored_frames"], result["uncovered_frames"]) == (12, 3, 1)
    assert result["acc"] == pytest.approx(9 / 12)
    # F1 per class: neutral 2·3/(4+3), anger 1, disgust 0, fear 0, happiness 2·3/(3+4), sadness 0, surprise 1,
    # other 0: the mean over all 8 classes
    assert result["macro_f1"] == pytest.approx((6 / 7 + 1 + 6 / 7 + 1) / 8)
    assert M.war(windows["label"], window_logits(windows)) == pytest.approx(4 / 6)  # per window: another number


# A second checkpoint ("fold 2") on the same validation windows.
SECOND_FOLD_PROBABILITIES = {
    "video1@00001": probabilities(c0=0.6),
    "video1@00003": probabilities(c4=0.9),
    "video1@00005": probabilities(c4=0.9),
    "video1@00007": probabilities(c6=0.8),
    "10-60-1280x720_right@00001": probabilities(c1=0.9),
    "10-60-1280x720_right@00003": probabilities(c2=0.9),
}


def test_folds_mean_and_std_headline_and_pooled(affwild2_root):
    windows = load_affwild2(affwild2_root, "validation", window=4, stride=2)["validation"]
    annotations = affwild2_frame_labels(affwild2_root, "validation")
    first = M.windows_to_frames(annotations, windows["subject"], windows["frame_numbers"], window_logits(windows))
    logits = np.log(np.stack([SECOND_FOLD_PROBABILITIES[c] for c in windows["clip_id"]]))
    second = M.windows_to_frames(annotations, windows["subject"], windows["frame_numbers"], logits)
    # fold 2 is wrong on frame 3 of video1 only (0.6 + 0.014 neutral against 0.057 + 0.9 happiness)
    np.testing.assert_array_equal(second["predictions"], [1, 1, 2, 2, 0, 0, 4, 4, 4, 4, 4, 6])
    per_fold = [M.affwild2_frame_metrics(f) for f in (first, second)]
    assert per_fold[1]["acc"] == pytest.approx(11 / 12)
    assert per_fold[1]["macro_f1"] == pytest.approx((4 / 5 + 1 + 1 + 8 / 9 + 1) / 8)
    summary = M.fold_summary([{k: m[k] for k in M.AFFWILD2_HEADLINE} for m in per_fold])
    assert summary["acc"]["mean"] == pytest.approx(10 / 12) and summary["acc"]["std"] == pytest.approx(1 / 12)
    assert summary["macro_f1"]["mean"] == pytest.approx((13 / 28 + 211 / 360) / 2)
    pooled = M.affwild2_frame_metrics(M.pool_frames([first, second]))
    assert (pooled["frames"], pooled["ignored_frames"], pooled["uncovered_frames"]) == (24, 6, 2)
    # pooled per class: neutral 2·5/(6+6), anger 1, disgust 2·2/(2+4), fear 0, happiness 2·7/(8+8), surprise 1
    assert pooled["macro_f1"] == pytest.approx((5 / 6 + 1 + 2 / 3 + 7 / 8 + 1) / 8)  # 35/64, not the mean


def test_errors_name_the_problem(affwild2_root):
    labels = {"video1": [0, 0, -1]}
    with pytest.raises(ValueError, match="'video9', which has no annotation"):
        M.windows_to_frames(labels, ["video9"], [[1]], np.zeros((1, 8)))
    with pytest.raises(ValueError, match="frames 1..3"):
        M.windows_to_frames(labels, ["video1"], [[2, 3, 4]], np.zeros((1, 8)))
    with pytest.raises(ValueError, match="2 labelled frames have no window, 1 are -1"):
        M.affwild2_frame_metrics(M.windows_to_frames(labels, [], [], np.zeros((0, 8))))
    with pytest.raises(ValueError, match="split must be one of"):
        affwild2_frame_labels(affwild2_root, "test")


# ------------------------------------------------------------------------------------------------------------------
# Each window is processed from its own frames (training, evaluation and the preprocessing cache)
def shade(frame: int) -> int:
    """The grey level of frame ``frame``'s crop in `numbered_root`: every frame tells which one it is."""
    return 20 * frame


@pytest.fixture()
def numbered_root(affwild2_root):
    for video, n in NUM_FRAMES.items():
        kept = [i for i in range(1, n + 1) if i not in NO_CROP.get(video, set())]
        crops = [np.full((8, 8, 3), shade(i), np.uint8) for i in kept]
        write_jpgs(affwild2_root / "cropped_aligned" / video, crops, [f"{i:05d}.jpg" for i in kept])
    return affwild2_root


@pytest.fixture()
def plain_processor():
    """Pixel values are the frames themselves: no face crop, resize, rescale or normalisation."""
    from emvfer_hf import MERTVideoProcessor

    return MERTVideoProcessor(num_frames=4, size={"height": 8, "width": 8}, do_face_crop=False, do_rescale=False,
                              do_normalize=False, eye_sequence_length=8)  # fmt: skip


def frame_shades(pixel_values) -> list:
    """The grey level of each frame of (T, 3, H, W) pixel values, rounded (jpg noise)."""
    return [round(float(v)) for v in np.asarray(pixel_values).reshape(len(pixel_values), -1).mean(axis=1)]


def test_each_window_is_processed_from_its_own_frames(numbered_root, plain_processor):
    from emvfer_hf.training.data import ClipDataset

    windows = load_affwild2(numbered_root, "validation", window=4, stride=2)["validation"]
    items = ClipDataset(windows, plain_processor, eye_source="none")
    got = {clip: frame_shades(items[i]["pixel_values"]) for i, clip in enumerate(windows["clip_id"])}
    assert got["video1@00001"] == [shade(f) for f in (1, 2, 3, 4)]
    assert got["video1@00003"] == [shade(f) for f in (3, 4, 5, 6)]
    assert got["video1@00007"] == [shade(f) for f in (7, 8, 10, 10)]  # no crop of 9; 3 frames for T = 4
    assert got["10-60-1280x720_right@00003"] == [shade(f) for f in (3, 4, 5, 6)]
    train = ClipDataset(windows, plain_processor, eye_source="none", train=True)  # random frame per segment
    for i, numbers in enumerate(windows["frame_numbers"]):
        assert set(frame_shades(train[i]["pixel_values"])) <= {shade(f) for f in numbers}
    whole = load_affwild2(numbered_root, "validation", window=None)["validation"]  # the folder itself, as before
    video1 = whole["clip_id"].index("video1@00001")
    folder = plain_processor(whole[video1]["video"], do_extract_eye_movements=False)["pixel_values"][0]
    np.testing.assert_array_equal(ClipDataset(whole, plain_processor, eye_source="none")[video1]["pixel_values"], folder)



def test_windows_have_their_own_cache_entries(numbered_root, plain_processor, tmp_path):
    from emvfer_hf.data import media_fingerprint, preprocess_dataset
    from emvfer_hf.data.cache import make_compute_fn

    compute, seen = make_compute_fn(plain_processor, extract_eyes=False), []

    def recording(video, **kwargs):
        seen.append(video)
        return compute(video, **kwargs)

    windows = load_affwild2(numbered_root, "validation", window=4, stride=2)["validation"]
    cache = tmp_path / "cache"
    keys = preprocess_dataset(windows, recording, cache)["preprocess_key"]
    assert len(set(keys)) == len(windows) == len(seen)  # one entry per window, computed once each
    folder = numbered_root / "cropped_aligned" / "video1"
    given = dict(zip(windows["clip_id"], seen))
    assert given["video1@00007"] == tuple(str(folder / f"{f:05d}.jpg") for f in (7, 8, 10))  # the window's files
    assert preprocess_dataset(windows, recording, cache)["preprocess_key"] == keys and len(seen) == len(windows)
    write_jpgs(folder, [np.full((8, 8, 3), 7, np.uint8)], ["00010.jpg"])  # a frame only the last window has
    again = preprocess_dataset(windows, recording, cache)["preprocess_key"]
    assert seen[len(windows):] == [given["video1@00007"]]
    assert [a == b for a, b in zip(again, keys)] == [c != "video1@00007" for c in windows["clip_id"]]
    whole = load_affwild2(numbered_root, "validation", window=None)["validation"]  # a whole video: its folder's key
    out = preprocess_dataset(whole, recording, cache)
    assert dict(zip(out["clip_id"], out["preprocess_key"]))["video1@00001"] == media_fingerprint(folder, "1")
    assert seen[-len(whole):] == whole["video"]  # the folders, as every other dataset's clips


def test_sample_data_windows_differ_in_pixels_and_cache(tmp_path, tiny_processor):
    """The generated Aff-Wild2 sample data (face crops and source videos): the two 16-frame windows of a 32-frame
    video show different expressions, and so different pixel values and cached faces / eye series."""
    from emvfer_hf.data import make_sample_dataset, preprocess_dataset
    from emvfer_hf.data._utils import frame_number
    from emvfer_hf.data.cache import clip_source, compute_fn_version, make_compute_fn
    from emvfer_hf.data.sample_data import VIDEO_FPS
    from emvfer_hf.training.data import ClipDataset

    root = make_sample_dataset("affwild2", tmp_path / "Aff-Wild2", clips_per_class=1, num_frames=8, seed=0)
    windows = load_affwild2(root, "train")["train"]
    first = windows["subject"].index(windows["subject"][0])
    second = first + 1
    assert windows["subject"][second] == windows["subject"][first] and windows["raw_video"][first]
    media, fps = clip_source(windows[first])
    assert [frame_number(f) for f in media] == windows["frame_numbers"][first]  # (some crops are missing)
    assert fps == pytest.approx(VIDEO_FPS)  # the source mp4's rate
    cached = preprocess_dataset(windows.select([first, second]), make_compute_fn(tiny_processor),
                                tmp_path / "cache", version=compute_fn_version(tiny_processor))  # fmt: skip
    assert cached["preprocess_key"][0] != cached["preprocess_key"][1]
    assert not np.array_equal(cached["eye_movements"][0], cached["eye_movements"][1])
    items = ClipDataset(cached, tiny_processor, eye_source="visual")
    assert not torch.equal(items[0]["pixel_values"], items[1]["pixel_values"])
    assert items[0]["eye_movement_mask"].any()
