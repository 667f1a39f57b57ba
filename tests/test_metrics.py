"""Metrics of the benchmark protocols."""

import numpy as np
import pytest

from emvfer_hf import metrics as M


def test_war_uar_uf1_by_hand():
    y = [0, 0, 0, 1, 2, 2]
    p = [0, 0, 1, 1, 2, 0]
    assert M.war(y, p) == pytest.approx(4 / 6)
    assert M.uar(y, p) == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    f1 = [2 * (2 / 3) * (2 / 3) / (4 / 3), 2 * 0.5 * 1 / 1.5, 2 * 1 * 0.5 / 1.5]
    assert M.uf1(y, p) == pytest.approx(np.mean(f1))
    assert M.accuracy(y, p) == M.war(y, p)


def test_uar_only_over_present_classes():
    # class 3 predicted but absent from the ground truth must not enter UAR/UF1
    y, p = [0, 0, 1, 1], [0, 3, 1, 1]
    assert M.uar(y, p) == pytest.approx((0.5 + 1) / 2)
    assert M.macro_f1(y, p, labels=[0, 1, 2, 3]) < M.uf1(y, p)


def test_logits_accepted_and_confusion():
    logits = np.array([[2.0, 0.1], [0.1, 3.0], [1.0, 0.0]])
    assert M.war([0, 1, 1], logits) == pytest.approx(2 / 3)
    cm = M.confusion_matrix([0, 1, 1], [0, 1, 0], num_classes=3)
    assert cm.shape == (3, 3) and cm[1, 0] == 1 and cm.sum() == 3


def test_fold_summary_and_loso():
    folds = [M.classification_metrics([0, 1], [0, 1]), M.classification_metrics([0, 1], [0, 0])]
    s = M.fold_summary(folds)
    assert s["war"]["mean"] == pytest.approx(0.75) and s["war"]["std"] == pytest.approx(0.25)
    assert "war 75.00±25.00" in M.format_summary(s)
    # LOSO concatenates: per-subject UF1 averaging would differ
    loso = M.loso_metrics([([0], [0]), ([1], [0]), ([1], [1])])
    assert loso["uf1"] == pytest.approx(M.uf1([0, 1, 1], [0, 0, 1]))


def test_affwild2_excludes_minus_one():
    y = [0, -1, 1, 7, -1]
    p = [0, 5, 1, 7, 3]
    assert M.affwild2_f1(y, p) == pytest.approx(3 / 8)  # 3 perfect classes out of 8
    with pytest.raises(ValueError, match="-1"):
        M.affwild2_f1([-1], [0])


def test_compute_metrics_for_trainer():
    fn = M.make_compute_metrics(num_classes=3)
    out = fn((np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, -1])))
    assert out["war"] == 1.0 and out["macro_f1"] == 1.0


def test_errors():
    with pytest.raises(ValueError, match="3 items"):
        M.war([0, 1, 2], [0])
    with pytest.raises(ValueError, match="no folds"):
        M.fold_summary([])


def test_confusion_png(tmp_path):
    cm = M.confusion_matrix([0, 1, 2, 2], [0, 1, 2, 1])
    out = M.save_confusion_matrix(cm, ["neg", "pos", "sur"], tmp_path / "cm.png", title="t")
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(ValueError, match="class names"):
        M.save_confusion_matrix(cm, ["a"], tmp_path / "x.png")
