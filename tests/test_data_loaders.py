"""Loaders on the sample data of every layout, protocols, tolerance and bad-input errors."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from emvfer_hf.data import (
    LABELS,
    load_affwild2,
    load_benchmark,
    load_casme2,
    load_casme3,
    load_dfew,
    load_emer,
    load_mafw,
    loso_splits,
    make_sample_dataset,
)

OPTS = dict(clips_per_class=2, num_frames=8, resolution=96, noise=0.05, seed=3)


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    for name in ("emer", "dfew", "mafw", "affwild2", "casme2", "casme3"):
        make_sample_dataset(name, root / name, **OPTS)
    return root


def _copy(sample_root, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(sample_root / name, dst)
    return dst


def test_emer_folds(sample_root):
    seen = set()
    for fold in range(1, 6):
        dd = load_emer(sample_root / "emer", fold=fold)
        assert set(dd) == {"train", "test"}
        assert len(dd["train"]) + len(dd["test"]) == 14
        assert not set(dd["train"]["clip_id"]) & set(dd["test"]["clip_id"])
        seen |= set(dd["test"]["clip_id"])
        row = dd["test"][0]
        assert Path(row["video"]).is_file() and row["eye_tracking"].endswith(".tsv")
        assert dd["test"].features["label"].names == list(LABELS["emer_7class"])
    assert len(seen) == 14  # every clip is tested exactly once over the 5 folds
    dd3 = load_emer(sample_root / "emer", fold=1, protocol="3class")
    assert dd3["train"].features["label"].names == ["positive", "negative", "neutral"]


def test_dfew_and_mafw(sample_root, tmp_path):
    dd = load_dfew(sample_root / "dfew", fold=2)
    assert len(dd["train"]) + len(dd["test"]) == 14
    assert all(len(c) == 5 for c in dd["test"]["clip_id"])
    assert len(list(Path(load_dfew(sample_root / "dfew", 2, frames="clip_224x224_16f")["test"][0]["video"]).iterdir())) == 16
    mafw = load_benchmark("MAFW", sample_root / "mafw", fold=5)
    assert len(mafw["train"]) + len(mafw["test"]) == 22
    assert mafw["test"].features["label"].names == list(LABELS["mafw"])
    # the README's underscore spelling of the split folder works too
    root = _copy(sample_root, "dfew", tmp_path)
    (root / "EmoLabel_DataSplit" / "test(single-labeled)").rename(root / "EmoLabel_DataSplit" / "test(single_labeled)")
    assert len(load_dfew(root, fold=2)["test"]) == len(dd["test"])


def test_missing_clips_reported_and_skipped(sample_root, tmp_path):
    root = _copy(sample_root, "dfew", tmp_path)
    split = pd.read_csv(root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv")
    shutil.rmtree(root / "Clip" / "clip_224x224" / f"{split.video_name[0]:05d}")
    with pytest.raises(FileNotFoundError, match=r"set_1\.csv: 1 of \d+ clips .* missing.*missing='skip'"):
        load_dfew(root, fold=1)
    dd = load_dfew(root, fold=1, missing="skip")
    assert len(dd["test"]) == len(split) - 1


def test_bad_inputs(sample_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="DFEW root.*does not exist"):
        load_dfew(tmp_path / "nowhere", fold=1)
    with pytest.raises(ValueError, match="fold must be an integer in 1..5"):
        load_emer(sample_root / "emer", fold=6)
    root = _copy(sample_root, "mafw", tmp_path)
    p = root / "Train & Test Set" / "single" / "no_caption" / "set_1" / "test.txt"
    p.write_text(p.read_text() + "00019.mp4 joy\n")
    with pytest.raises(ValueError, match=r"test\.txt: line \d+: unknown label 'joy'"):
        load_mafw(root, fold=1)
    p.write_text("")
    with pytest.raises(ValueError, match="test.txt"):
        load_mafw(root, fold=1)


def test_affwild2_windows(sample_root):
    dd = load_affwild2(sample_root / "affwild2", "train", window=4)
    ds = dd["train"]
    assert ds.features["label"].names == list(LABELS["affwild2"])
    for row in ds:
        assert row["label"] != -1 and row["label"] in row["frame_labels"]
        assert all(Path(row["video"], f"{i:05d}.jpg").is_file() for i in row["frame_numbers"])
    assert any(-1 in r for r in ds["frame_labels"])  # -1 frames are kept for the per-frame metric...
    assert {s for s in ds["subject"] if s.endswith("_right")}  # per-person annotation of a two-person video
    assert all(r.endswith(".mp4") for r in ds["raw_video"])
    whole = load_affwild2(sample_root / "affwild2", "validation", window=None)["validation"]
    assert len(whole) == len(list((sample_root / "affwild2").glob("*ABAW*/EXPR_*/Validation_Set/*.txt")))


def test_casme2_protocols_and_loso(sample_root):
    dd3 = load_casme2(sample_root / "casme2", protocol="3class")["all"]
    assert len(dd3) == 2 * 4  # happiness, surprise, disgust+repression
    assert dd3.features["label"].names == ["negative", "positive", "surprise"]
    dd5 = load_casme2(sample_root / "casme2", protocol="5class")["all"]
    assert len(dd5) == 10 and "fear" not in dd5["emotion"]
    for row in dd5:
        assert row["onset"] <= row["apex"] <= row["offset"]  # '/' apex estimated
    folds = list(loso_splits(dd5))
    assert [s for s, _ in folds] == sorted(set(dd5["subject"]))
    assert sum(len(f["test"]) for _, f in folds) == len(dd5)
    one = load_casme2(sample_root / "casme2", protocol="5class", test_subject="SUB01")
    assert set(one["test"]["subject"]) == {"sub01"} and "sub01" not in one["train"]["subject"]


def test_casme3_case_insensitive_folders(sample_root):
    ds = load_casme3(sample_root / "casme3", protocol="4class")["all"]
    assert len(ds) == 14
    assert any("spNo.2" in v for v in ds["video"])  # folder case differs from the sheet's spNO.2
    assert "J" in {c.split("_")[1] for c in ds["clip_id"]}
    ds3 = load_casme3(sample_root / "casme3", protocol="3class")["all"]
    assert len(ds3) == 12  # others dropped
    subjects = [s for s, _ in loso_splits(ds3)]
    assert subjects == ["spNO.1", "spNO.2", "spNO.10", "spNO.149"]  # natural order
    with pytest.raises(ValueError, match="test_subject"):
        load_casme3(sample_root / "casme3", test_subject="spNO.999")
