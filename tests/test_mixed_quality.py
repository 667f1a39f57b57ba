"""The mixed-quality study (examples/mixed_quality_study.py, docs/study/mixed_quality_design.md): the good/bad tags,
the eye signal of each tag, the W of the override arms at training and at test, the CI and the rule, and a `--quick`
smoke run end to end."""

import json
from collections import Counter

import datasets
import numpy as np
import pytest

from emvfer_hf.data import make_sample_dataset
from emvfer_hf.data.labels import LABELS
from emvfer_hf.data.sample_data import (
    BLINK,
    MANIFEST,
    TRACKER_NOISE_STD,
    load_sample_eye_series,
    tracker_quality_series,
)  # fmt: skip
from emvfer_hf.study import mixed_quality as mq

from .test_training import load_example


def _fake_manifest(root, train=8, test=16, identities=5):
    """A DFEW-like manifest of the design's sizes: identities cycle through the clips as in the gap world."""
    clips, i = [], 0
    for split, per_class in (("train", train), ("test", test)):
        for k in range(per_class):
            for name in LABELS["dfew"]:
                clips.append({"clip_id": f"{i:05d}", "label_name": name, "split": split,
                              "identity": f"B{i % identities + 1:02d}"})  # fmt: skip
                i += 1
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps({"dataset": "dfew", "clips": clips}))
    return clips


def test_tags_half_good_in_every_class_and_split_and_independent_of_the_label(tmp_path):
    clips = _fake_manifest(tmp_path)
    tags = mq.quality_tags(tmp_path)
    assert set(tags) == {c["clip_id"] for c in clips} and set(tags.values()) == {"good", "bad"}
    for split, per_class in (("train", 8), ("test", 16)):
        for name in LABELS["dfew"]:
            group = [c for c in clips if c["split"] == split and c["label_name"] == name]
            counts = Counter(tags[c["clip_id"]] for c in group)
            assert counts == {"good": per_class // 2, "bad": per_class // 2}, (split, name)
            # ordered by identity then clip id, the tags alternate: clips of one identity alternate too
            order = sorted(group, key=lambda c: (c["identity"], c["clip_id"]))
            seq = [tags[c["clip_id"]] for c in order]
            assert all(a != b for a, b in zip(seq, seq[1:]))
    # the same tags every time (world seed 0), and the coin flips differ between some (class, split)
    assert mq.quality_tags(tmp_path) == tags
    starts = set()
    for name in LABELS["dfew"]:
        for split in ("train", "test"):
            group = sorted((c for c in clips if (c["label_name"], c["split"]) == (name, split)),
                           key=lambda c: (c["identity"], c["clip_id"]))  # fmt: skip
            starts.add(tags[group[0]["clip_id"]])
    assert starts == {"good", "bad"}  # a coin flip per (class, split), not one start for all
    # independent of the label: P(good | class) = 1/2 for every class
    for name in LABELS["dfew"]:
        assert np.mean([tags[c["clip_id"]] == "good" for c in clips if c["label_name"] == name]) == 0.5


def test_odd_counts_cannot_be_tagged_half_and_half(tmp_path):
    _fake_manifest(tmp_path, train=3, test=2)
    with pytest.raises(ValueError, match="even"):
        mq.quality_tags(tmp_path)


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mq") / "DFEW"
    make_sample_dataset("dfew", root, world="gap", clips_per_class=2, test_clips_per_class=2, num_frames=8,
                        resolution=48, seed=0)  # fmt: skip
    return root


def test_good_clips_get_the_tracker_quality_series_and_bad_ones_the_visual_reading(sample_root):
    manifest = json.loads((sample_root / MANIFEST).read_text())
    tags = mq.quality_tags(sample_root)
    good = next(c["clip_id"] for c in manifest["clips"] if tags[c["clip_id"]] == "good")
    bad = next(c["clip_id"] for c in manifest["clips"] if tags[c["clip_id"]] == "bad")
    visual = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    rows = {"clip_id": [good, bad], "label": [0, 0], "video": ["-", "-"],
            "eye_movements": [visual.ravel().tolist()] * 2, "eye_valid": [[True] * 16] * 2,
            "eye_times_s": [(np.arange(16) / 15).tolist()] * 2}  # fmt: skip
    data = mq.MixedQualityClips(datasets.Dataset.from_dict(rows), None, sample_root, tags)
    assert data.tags == ["good", "bad"] and data.is_bad.tolist() == [False, True]
    truth, _ = load_sample_eye_series(sample_root, good)
    series = data.eye_series(data.dataset[0])
    assert series.values.shape == truth.values.shape and np.allclose(series.times_s, truth.times_s)  # 120 Hz
    noise = series.values - truth.values
    assert not series.normalized and 0 < np.abs(noise[:, :4]).max() and np.all(noise[:, 4] == 0)
    assert np.std(noise[:, 0]) == pytest.approx(TRACKER_NOISE_STD[0], rel=0.3)
    assert np.std(noise[:, 2]) == pytest.approx(TRACKER_NOISE_STD[2], rel=0.3)
    assert np.array_equal(series.valid, truth.values[:, 4] != BLINK)  # the tracker loses the pupil in a blink
    assert np.array_equal(data.eye_series(data.dataset[0]).values, mq.good_eye_series(sample_root, good).values)
    assert np.array_equal(mq.good_eye_series(sample_root, good).values, series.values)  # the same for every seed
    bad_series = data.eye_series(data.dataset[1])
    assert np.array_equal(bad_series.values, visual)  # the clip's own (cached) visual reading


def test_tracker_quality_series_is_the_emer_recipe():
    from emvfer_hf.eye_movement_mert import EyeMovementSeries

    values = np.zeros((1000, 5), np.float32)
    values[:10, 4] = BLINK
    series = tracker_quality_series(EyeMovementSeries(values, np.ones(1000, bool), np.arange(1000) / 120.0,
                                                      normalized=False), np.random.default_rng(1))  # fmt: skip
    assert np.allclose(series.values[:, :4].std(0), TRACKER_NOISE_STD[:4], atol=0.005)
    assert np.array_equal(series.values[:, 4], values[:, 4])  # behaviour codes are not noised
    assert (~series.valid).sum() == 10


def test_override_weights_oracle_and_shuffled():
    tags_train, tags_test = ["good", "bad", "bad", "good"], ["bad", "good"]
    w_train, w_test = np.array([0.9, 0.2, 0.3, 0.8]), np.array([0.1, 0.7])
    assert mq.arm_weights("w_default", 0, tags_train, tags_test, w_train, w_test) == (None, None)
    oracle_train, oracle_test = mq.arm_weights("w_oracle", 3, tags_train, tags_test, w_train, w_test)
    assert oracle_train.tolist() == [1.0, mq.ORACLE_BAD_W, mq.ORACLE_BAD_W, 1.0]
    assert oracle_test.tolist() == [mq.ORACLE_BAD_W, 1.0]
    shuffled = mq.arm_weights("w_shuffled", 0, tags_train, tags_test, w_train, w_test)
    assert sorted(shuffled[0]) == sorted(w_train) and sorted(shuffled[1]) == sorted(w_test)  # within each split
    again = mq.arm_weights("w_shuffled", 0, tags_train, tags_test, w_train, w_test)
    assert all(np.array_equal(a, b) for a, b in zip(shuffled, again))  # fixed per seed
    others = [mq.arm_weights("w_shuffled", s, tags_train, tags_test, w_train, w_test)[0] for s in range(1, 6)]
    assert any(not np.array_equal(o, shuffled[0]) for o in others)


def test_paired_ci_and_rule_on_hand_made_numbers():
    ci = mq.paired_ci([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
    half = 4.302653 / np.sqrt(3)
    assert ci["n"] == 3 and ci["df"] == 2 and ci["mean"] == pytest.approx(2.0)
    assert ci["lo"] == pytest.approx(2 - half, abs=1e-4) and ci["hi"] == pytest.approx(2 + half, abs=1e-4)
    assert mq.rule(ci) == "inconclusive"
    assert mq.rule(mq.paired_ci([5.0, 6.0, 7.0])) == "holds"
    assert mq.rule(mq.paired_ci([-5.0, -6.0, -7.0])) == "fails"
    ten = mq.paired_ci(np.arange(10.0))  # t(0.975, 9) = 2.2622
    assert ten["hi"] - ten["mean"] == pytest.approx(2.262157 * np.std(np.arange(10.0), ddof=1) / np.sqrt(10), abs=1e-4)
    assert mq.rule(mq.paired_ci([4.0])) == "inconclusive" and mq.paired_ci([4.0])["lo"] is None  # one seed: no CI
    assert mq.rule({"lo": 0.0, "hi": 3.0}) == "inconclusive"  # a bound at exactly 0 does not decide


def test_quick_study_end_to_end(tmp_path, monkeypatch):
    """`--quick`: every arm runs, the report and JSON are written, and the override arms' W reaches the model as
    given, at training and at test."""
    from emvfer_hf.modeling_mert import MERTForVideoClassification

    seen = []
    forward = MERTForVideoClassification.forward

    def recording_forward(self, *args, instruction_weights=None, **kwargs):
        seen.append((self.training, None if instruction_weights is None else instruction_weights.tolist()))
        return forward(self, *args, instruction_weights=instruction_weights, **kwargs)

    monkeypatch.setattr(MERTForVideoClassification, "forward", recording_forward)
    out = tmp_path / "out"
    load_example("mixed_quality_study").main(["--quick", "--output_dir", str(out), "--cache_dir",
                                              str(tmp_path / "cache")])  # fmt: skip
    saved = json.loads((out / "mixed_quality.json").read_text())
    text = (out / "mixed_quality.md").read_text()
    assert "Manipulation checks" in text and "Primary endpoint" in text and "mixed_quality_design.md" in text
    assert text.index("Manipulation checks") < text.index("Primary endpoint")
    records = saved["per_seed"]["0"]["records"]
    assert set(records) == set(mq.ARMS) and saved["info"]["num_test"] == 14 and saved["info"]["num_test_bad"] == 7
    for arm in mq.OVERRIDE_ARMS:
        record = records[arm]
        assert np.allclose(record["test_weights"], record["test_weights_given"])  # the model used the given W
        assert len(record["train_weights_given"]) == 14
    oracle = records["w_oracle"]
    assert set(np.round(oracle["train_weights_given"], 4)) == {1.0, mq.ORACLE_BAD_W}
    # every W handed to the model while training was one of the arms' given W (checks pass no W: None)
    given = {round(w, 4) for arm in mq.OVERRIDE_ARMS for w in records[arm]["train_weights_given"]}
    trained = {round(w, 4) for training, ws in seen if training and ws for w in ws}
    assert trained and trained <= given and mq.ORACLE_BAD_W in trained
    assert all(r["metrics"]["war"] is not None for r in records.values())
    assert set(saved["analysis"]["arms"]["w_default"]) >= {"delta_war", "delta_war_bad", "delta_uar"}
