"""Training hygiene (issue 20, item 7): the validation split carved from a training fold (by subject / video, else
stratified by label) is what early stopping and the best model read; the test fold is scored once, at the end,
with the restored best model."""

import argparse
from collections import Counter

import datasets
import numpy as np
import pytest
import torch

from emvfer_hf.training.arguments import add_training_arguments, validation_fraction
from emvfer_hf.training.data import split_validation, validation_groups
from emvfer_hf.training.loop import BEST_MODEL_DIR, train

from .test_training_flags import TinyClips, make_args, tiny_model


def clips(subjects, labels, **extra):
    names = ["a", "b", "c", "d", "e"][: max(labels) + 1]
    features = {"clip_id": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    columns = {"clip_id": [f"c{i:03d}" for i in range(len(labels))], "label": list(labels)}
    if subjects is not None:
        features["subject"], columns["subject"] = datasets.Value("string"), list(subjects)
    for key, values in extra.items():
        features[key], columns[key] = datasets.Sequence(datasets.Value("int32")), values
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


# ----------------------------------------------------------------------------------------------------------------------
# The split
def test_split_by_subject_is_disjoint_stratified_and_deterministic():
    # 20 participants who each show every class twice (as EMER's participants see every stimulus)
    subjects = [f"P{s}" for s in range(20) for _ in range(5) for _ in range(2)]
    labels = [c for _ in range(20) for c in range(5) for _ in range(2)]
    data = clips(subjects, labels)
    train_set, validation, info = split_validation(data, 0.1, seed=3)
    assert info["grouped_by"] == "subject" and len(info["groups"]) == 2
    assert not set(train_set["subject"]) & set(validation["subject"])  # no participant on both sides
    assert sorted(list(train_set["clip_id"]) + list(validation["clip_id"])) == list(data["clip_id"])
    assert info["clips"] == list(validation["clip_id"]) and info["num_validation"] == 20
    assert Counter(list(validation["label"])) == {c: 4 for c in range(5)}  # 10 % of every class
    # the same rows, fraction and seed give the same split whatever the global RNGs (every process agrees)
    np.random.seed(1), torch.manual_seed(1)
    again = split_validation(data, 0.1, seed=3)[2]
    assert again == info
    assert any(split_validation(data, 0.1, seed=s)[2]["groups"] != info["groups"] for s in range(4, 8))


def test_split_without_subjects_is_stratified_by_label():
    labels = [c for c in range(4) for _ in range(10 * (c + 1))]  # 10, 20, 30, 40 clips
    train_set, validation, info = split_validation(clips(None, labels), 0.1, seed=0)
    assert info["grouped_by"].startswith("none") and info["groups"] is None
    assert Counter(list(validation["label"])) == {0: 1, 1: 2, 2: 3, 3: 4}
    assert Counter(list(train_set["label"])) == {0: 9, 1: 18, 2: 27, 3: 36}


def test_affwild2_windows_are_grouped_by_video():
    videos = ["v1_left", "v1_right", "v2", "v3", "v4", "v5"]
    subjects = [v for v in videos for _ in range(4)]
    labels = [i % 2 for i in range(len(subjects))]
    data = clips(subjects, labels, frame_numbers=[[i] for i in range(len(subjects))])
    groups, kind = validation_groups(data)
    assert kind == "video" and groups[:8] == ["v1"] * 8  # the two persons of one recording stay together
    for seed in range(6):
        train_set, validation, info = split_validation(data, 0.3, seed=seed)
        base = {s.split("_")[0] for s in list(validation["subject"])}
        assert not base & {s.split("_")[0] for s in list(train_set["subject"])} and info["grouped_by"] == "video"


def test_split_errors_name_the_flag():
    # each participant holds all the clips of one class: any validation participant takes a class from training
    with pytest.raises(ValueError, match="--validation_fraction 0.1: every subject holds all the training clips"):
        split_validation(clips(["A"] * 4 + ["B"] * 4, [0] * 4 + [1] * 4), 0.1, seed=0)
    with pytest.raises(ValueError, match="--validation_fraction 0.5: the training fold has a single subject"):
        split_validation(clips(["A"] * 4, [0, 1, 0, 1]), 0.5, seed=0)
    with pytest.raises(ValueError, match=r"--validation_fraction must be in \[0, 1\)"):
        split_validation(clips(None, [0, 1]), 1.0, seed=0)
    with pytest.raises(ValueError, match="every clip holds all the training clips of some class .classes held by "
                       "one clip: a, b"):  # fmt: skip
        split_validation(clips(None, [0, 1]), 0.5, seed=0, label_names=["a", "b"])
    # a class with a single training clip keeps it: the split takes other classes' clips, or none of it
    train_set, validation, _ = split_validation(clips(None, [0, 1, 1, 1]), 0.25, seed=0)
    assert 0 in list(train_set["label"]) and list(validation["label"]) == [1]
    unsplit, none, info = split_validation(clips(None, [0, 1]), 0.0, seed=0)
    assert none is None and len(unsplit) == 2 and info["clips"] == []


def test_validation_fraction_default_and_checks(tmp_path):
    parser = add_training_arguments(argparse.ArgumentParser())
    assert validation_fraction(parser.parse_args([])) == 0.0  # short runs keep every training clip
    assert validation_fraction(parser.parse_args(["--early_stopping_patience", "2"])) == 0.1
    assert validation_fraction(parser.parse_args(["--metric_for_best_model", "uar"])) == 0.1
    assert validation_fraction(parser.parse_args(["--validation_fraction", "0.25"])) == 0.25
    with pytest.raises(ValueError, match="--early_stopping_patience selects on a validation split"):
        validation_fraction(parser.parse_args(["--early_stopping_patience", "2", "--validation_fraction", "0"]))
    help_text = next(action.help for action in parser._actions if action.dest == "weight_decay")
    assert "get none" in help_text and "BERT and ViT" in help_text  # the weight-decay exemption, stated
    with pytest.raises(ValueError, match="--validation_fraction must be in"):
        validation_fraction(parser.parse_args(["--validation_fraction", "-0.1"]))
    with pytest.raises(ValueError, match="--early_stopping_patience needs a validation split"):
        train(make_args(tmp_path, "--early_stopping_patience", "1"), tiny_model(), TinyClips(),
              compute_metrics=lambda p: {"war": 0.0}, test_dataset=TinyClips(6, 2))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# The loop
def test_early_stopping_and_best_model_read_validation_and_test_is_scored_once(tmp_path):
    """Validation (4 clips) peaks at epoch 1 and then falls; the test fold (6 clips) would rise forever. Selection on
    validation stops at epoch 3 with patience 2 and restores epoch 1's weights; the test fold is scored once, with
    them."""
    model = tiny_model()
    validation_curve, calls, snapshots = [0.2, 0.9, 0.5, 0.4, 0.3, 0.1], [], []

    def metrics(predictions):
        if len(predictions["labels"]) == 6:  # the test fold
            calls.append("test")
            return {"war": 1.0}
        calls.append("validation")
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return {"war": validation_curve[len(snapshots) - 1]}

    args = make_args(tmp_path, "--num_train_epochs", "6", "--early_stopping_patience", "2",
                     "--metric_for_best_model", "war")  # fmt: skip
    _, trained, history = train(args, model, TinyClips(), TinyClips(4, 1), metrics, test_dataset=TinyClips(6, 2))
    assert calls == ["validation"] * 4 + ["test"]  # never on test before the end, then exactly once
    assert history["stopped_early_at_epoch"] == 3 and history["best_epoch"] == 1
    assert history["best_metric"] == {"war": 0.9} and history["test_metrics"] == {"war": 1.0}
    assert len(history["predictions"]["labels"]) == 6 and len(history["validation_predictions"]["labels"]) == 4
    final = dict(trained.named_parameters())
    assert all(torch.equal(final[n], p) for n, p in snapshots[1].items())  # the best epoch's weights
    assert not all(torch.equal(final[n], p) for n, p in snapshots[3].items())
    assert not (tmp_path / BEST_MODEL_DIR).exists()  # the temporary best state is removed


def test_without_validation_the_test_fold_is_scored_once_at_the_end(tmp_path):
    calls = []

    def metrics(predictions):
        calls.append(len(predictions["labels"]))
        return {"war": 0.5}

    args = make_args(tmp_path, "--num_train_epochs", "3")
    _, _, history = train(args, tiny_model(), TinyClips(), None, metrics, test_dataset=TinyClips(6, 2))
    assert calls == [6] and history["eval"] == [] and "best_epoch" not in history
    assert len(history["train_loss"]) == 6 and history["test_metrics"] == {"war": 0.5}


def test_resume_keeps_the_best_epoch_so_far(tmp_path, monkeypatch):
    """A run killed after epoch 2 (best: epoch 0) and resumed: patience counts from the best epoch before the
    resume, so it stops where an uninterrupted run stops, and the best state saved before the kill is restored."""
    import emvfer_hf.training.loop as loop

    curve = iter([0.9, 0.5, 0.4, 0.3, 0.2])
    flags = ("--num_train_epochs", "5", "--early_stopping_patience", "3", "--checkpointing_steps", "epoch")
    monkeypatch.setattr(loop.shutil, "rmtree", lambda *a, **k: None)  # a killed run leaves its best state behind
    _, first, history = train(make_args(tmp_path, *flags, "--max_train_steps", "6"), tiny_model(), TinyClips(),
                              TinyClips(4, 1), lambda p: {"war": next(curve)})  # fmt: skip
    assert history["best_epoch"] == 0 and "stopped_early_at_epoch" not in history
    best_weights = {n: p.detach().clone() for n, p in first.named_parameters()}
    args = make_args(tmp_path, *flags, "--resume_from_checkpoint", str(tmp_path / "epoch_2"))
    _, resumed, history = train(args, tiny_model(), TinyClips(), TinyClips(4, 1), lambda p: {"war": next(curve)})
    assert history["stopped_early_at_epoch"] == 3 and history["best_epoch"] == 0  # epochs 1, 2, 3 without gain
    assert all(torch.equal(p, best_weights[n]) for n, p in resumed.named_parameters())
