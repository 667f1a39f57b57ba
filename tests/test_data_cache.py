"""The preprocessing cache, with a stub compute function."""

import os
import time

import numpy as np
import pytest

from emvfer_hf.data import (
    load_emer,
    make_sample_dataset,
    media_fingerprint,
    preprocess_dataset,
)
from emvfer_hf.data.cache import PreprocessingCache


def stub_compute(video_path):
    """Module-level (picklable for num_proc=2); writes a marker so the test can count calls."""
    with open(os.environ["STUB_LOG"], "a") as f:
        f.write(video_path + "\n")
    n = 4
    return {"frame_indices": np.arange(n), "face_boxes": np.tile([1.0, 2.0, 3.0, 4.0], (n, 1)),
            "eye_movements": np.full((n, 5), len(video_path) % 7, np.float32), "eye_valid": np.ones(n, bool),
            "eye_times_s": np.arange(n) / 15.0}


@pytest.fixture()
def emer(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "calls.txt"))
    root = make_sample_dataset("emer", tmp_path / "emer", clips_per_class=1, num_frames=6, resolution=64)
    return load_emer(root, fold=1)["train"]


def _calls(tmp_path):
    p = tmp_path / "calls.txt"
    return p.read_text().splitlines() if p.exists() else []


def test_map_caches_and_recomputes_changed_files(emer, tmp_path):
    out = preprocess_dataset(emer, stub_compute, tmp_path / "cache", num_proc=2)
    assert len(_calls(tmp_path)) == len(emer)
    row = out[0]
    assert np.array(row["face_boxes"]).shape == (4, 4) and np.array(row["eye_movements"]).shape == (4, 5)
    assert row["clip_id"] == emer[0]["clip_id"] and len(row["preprocess_key"]) == 40
    preprocess_dataset(emer, stub_compute, tmp_path / "cache")
    assert len(_calls(tmp_path)) == len(emer)  # all read back
    video = emer[0]["video"]
    time.sleep(0.01)
    os.utime(video, None)  # touched: new mtime → recomputed
    preprocess_dataset(emer, stub_compute, tmp_path / "cache")
    assert _calls(tmp_path)[len(emer):] == [video]
    preprocess_dataset(emer.select([1]), stub_compute, tmp_path / "cache", version="2")
    assert len(_calls(tmp_path)) == len(emer) + 2  # a new version recomputes


def test_fingerprint_of_frame_folders_and_errors(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image"):
        media_fingerprint(folder)
    (folder / "1.jpg").write_bytes(b"a")
    k1 = media_fingerprint(folder)
    (folder / "2.jpg").write_bytes(b"b")
    assert media_fingerprint(folder) != k1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        media_fingerprint(tmp_path / "none.mp4")
    cache = PreprocessingCache(tmp_path / "c", lambda p: {"frame_indices": [0]})
    with pytest.raises(KeyError, match="face_boxes"):
        cache(str(folder))
