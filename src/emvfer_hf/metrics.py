"""Evaluation metrics of the benchmark protocols (docs/datasets.md §Metrics), scikit-learn underneath.

- WAR  = accuracy = Σ correct / N (DFEW, MAFW, EMER "weighted average recall").
- UAR  = mean per-class recall over the classes PRESENT in the ground truth.
- UF1  = mean per-class F1 over the classes present in the ground truth (micro-expression protocols).
- ACC  = accuracy (alias of WAR, reported under its own name by the CASME protocols).
- macro-F1 = mean per-class F1 over an explicit class list (``labels``); the Aff-Wild2 EXPR metric is macro-F1 over
  all 8 classes on the frames whose label is not ``-1`` (a class absent from both truth and prediction scores 0,
  as in scikit-learn's ``zero_division=0``).
- weighted F1 = support-weighted mean of the per-class F1 (EMER).

Protocol helpers: :func:`fold_summary` (per fold, then mean ± std: DFEW/MAFW/EMER) and :func:`loso_metrics`
(computed ONCE on the concatenated predictions of all leave-one-subject-out folds: CASME II, CAS(ME)^3).

Aff-Wild2 is scored per FRAME, not per window: :func:`windows_to_frames` maps the window predictions back to the
annotated frames they cover and :func:`affwild2_frame_metrics` gives accuracy (the paper's metric) and the
challenge's macro-F1 on them. A frame covered by several windows takes the class of the MEAN of their softmax
probabilities (a soft vote: no ties between windows, and a confident window counts more than an unsure one);
frames labelled ``-1`` are left out; annotated frames that no window covers (no face crop on disk, a window
dropped, a subset evaluated) have no prediction: they are COUNTED (``uncovered_frames``) and left out of the
metric, never silently dropped.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import f1_score, recall_score

ArrayLike = Union[Sequence[int], np.ndarray]

AFFWILD2_NUM_CLASSES = 8
AFFWILD2_HEADLINE = ("acc", "macro_f1")  # per frame: the paper's accuracy, the challenge's macro-F1
IGNORE_INDEX = -1


def _as_labels(y_true: ArrayLike, y_pred: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[0] == len(y_true) and y_true.ndim == 1 and y_pred.shape[1] > 1:
        y_pred = y_pred.argmax(axis=1)  # logits / probabilities
    y_pred = y_pred.reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape[0]} items but y_pred has {y_pred.shape[0]}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero samples")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def war(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Weighted average recall = overall accuracy."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float((y_true == y_pred).mean())


accuracy = war


def uar(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted average recall: mean per-class recall over the classes present in ``y_true``."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))


def uf1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted F1: mean per-class F1 over the classes present in ``y_true``."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, labels: Optional[Sequence[int]] = None) -> float:
    """Mean per-class F1 over ``labels`` (default: the classes in ``y_true`` ∪ ``y_pred``)."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def weighted_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Support-weighted mean of the per-class F1."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: Optional[int] = None) -> np.ndarray:
    """(num_classes, num_classes) int matrix, rows = ground truth, columns = prediction."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    n = num_classes if num_classes is not None else int(max(y_true.max(), y_pred.max())) + 1
    return _sk_confusion_matrix(y_true, y_pred, labels=list(range(n)))


def classification_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: Optional[int] = None
) -> Dict[str, float]:
    """All scalar metrics at once: ``war``, ``uar``, ``uf1``, ``acc``, ``macro_f1`` (over ``num_classes`` classes if
    given, else the observed ones) and ``weighted_f1``."""
    labels = list(range(num_classes)) if num_classes is not None else None
    return {
        "war": war(y_true, y_pred),
        "uar": uar(y_true, y_pred),
        "uf1": uf1(y_true, y_pred),
        "acc": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, labels=labels),
        "weighted_f1": weighted_f1(y_true, y_pred),
    }


def affwild2_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = AFFWILD2_NUM_CLASSES) -> float:
    """ABAW EXPR metric: macro-F1 over all ``num_classes`` classes on the frames whose label is not ``-1``."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    keep = y_true != IGNORE_INDEX
    if not keep.any():
        raise ValueError("affwild2_f1: every frame is labelled -1 (nothing to evaluate)")
    return macro_f1(y_true[keep], y_pred[keep], labels=list(range(num_classes)))


def windows_to_frames(
    annotations: Mapping[str, ArrayLike],
    videos: Sequence[str],
    frame_numbers: Sequence[Sequence[int]],
    logits: np.ndarray,
) -> Dict[str, object]:
    """Per-frame predictions of Aff-Wild2 from window predictions (the soft vote of the module docstring).

    Args:
        annotations: ``{video: labels}``, the labels of frames 1..n of each annotated video in the order of its
            annotation file (``-1`` kept), e.g. from :func:`emvfer_hf.data.affwild2_frame_labels`. Every
            annotated frame of these videos is accounted for: evaluated, ``-1`` or uncovered.
        videos: (N,) the annotated video of each window (the loader's ``subject`` column).
        frame_numbers: N lists of the 1-based frame numbers each window covers (the loader's ``frame_numbers``).
        logits: (N, C) window logits.
    Returns:
        ``labels`` (F,) and ``predictions`` (F,) of the F evaluated frames (video by video, in frame order),
        ``uncovered_frames`` (labelled, not ``-1``, but no window covers them), ``ignored_frames`` (labelled
        ``-1``) and ``videos`` (annotated videos).
    Raises:
        ValueError: a window names a video without annotation, or a frame number outside 1..n of its video.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] != len(videos) or len(frame_numbers) != len(videos):
        raise ValueError(f"windows_to_frames: {len(videos)} videos, {len(frame_numbers)} frame lists and logits of "
                         f"shape {logits.shape} do not describe the same windows")  # fmt: skip
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    windows_of: Dict[str, List[int]] = {}
    for i, video in enumerate(videos):
        if video not in annotations:
            raise ValueError(f"windows_to_frames: window {i} is of video {video!r}, which has no annotation")
        windows_of.setdefault(video, []).append(i)
    trues, preds, uncovered, ignored = [], [], 0, 0
    for video, labels in annotations.items():
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        votes = np.zeros((len(labels), logits.shape[1]))
        covered = np.zeros(len(labels), dtype=bool)
        for i in windows_of.get(video, []):
            frames = np.asarray(frame_numbers[i], dtype=np.int64).reshape(-1)
            if len(frames) and (frames.min() < 1 or frames.max() > len(labels)):
                raise ValueError(f"windows_to_frames: window {i} of {video!r} covers frames {frames.min()}.."
                                 f"{frames.max()}, but the annotation has frames 1..{len(labels)}")  # fmt: skip
            votes[frames - 1] += probabilities[i]  # frame numbers are unique within a window
            covered[frames - 1] = True
        valid = labels != IGNORE_INDEX
        ignored += int((~valid).sum())
        uncovered += int((valid & ~covered).sum())
        keep = valid & covered
        trues.append(labels[keep])
        preds.append(votes[keep].argmax(axis=1))  # the mean's argmax: the sum has the same one
    return {
        "labels": np.concatenate(trues) if trues else np.zeros(0, np.int64),
        "predictions": np.concatenate(preds) if preds else np.zeros(0, np.int64),
        "uncovered_frames": uncovered,
        "ignored_frames": ignored,
        "videos": len(annotations),
    }


def affwild2_frame_metrics(frames: Mapping[str, object], num_classes: int = AFFWILD2_NUM_CLASSES) -> Dict[str, float]:
    """Per-frame Aff-Wild2 metrics of a :func:`windows_to_frames` result: ``acc`` (accuracy, the paper's metric),
    ``macro_f1`` (the challenge's P_EXPR: macro-F1 over all ``num_classes`` classes) and the frame counts
    ``frames`` (evaluated), ``uncovered_frames`` and ``ignored_frames`` (``-1``)."""
    y_true, y_pred = frames["labels"], frames["predictions"]
    if len(y_true) == 0:
        raise ValueError(f"affwild2_frame_metrics: no frame to evaluate ({frames['uncovered_frames']} labelled "
                         f"frames have no window, {frames['ignored_frames']} are -1)")  # fmt: skip
    return {
        "acc": accuracy(y_true, y_pred),
        "macro_f1": affwild2_f1(y_true, y_pred, num_classes=num_classes),
        "frames": len(y_true),
        "uncovered_frames": int(frames["uncovered_frames"]),
        "ignored_frames": int(frames["ignored_frames"]),
    }


def pool_frames(per_fold: Sequence[Mapping[str, object]]) -> Dict[str, object]:
    """The :func:`windows_to_frames` results of several folds as one (frames concatenated, counts summed): the
    POOLED per-frame figure, reported next to the mean ± std over folds, never instead of it."""
    if not per_fold:
        raise ValueError("pool_frames: no folds given")
    return {
        "labels": np.concatenate([np.asarray(f["labels"]) for f in per_fold]),
        "predictions": np.concatenate([np.asarray(f["predictions"]) for f in per_fold]),
        **{k: sum(int(f[k]) for f in per_fold) for k in ("uncovered_frames", "ignored_frames", "videos")},
    }


def fold_summary(per_fold: Sequence[Mapping[str, float]]) -> Dict[str, Dict[str, float]]:
    """Mean and (population) std over folds of each metric: ``{"war": {"mean": .., "std": ..}, ...}``.

    Args:
        per_fold: one dict of scalar metrics per fold (e.g. from :func:`classification_metrics` on that fold's
            whole test set).
    """
    if not per_fold:
        raise ValueError("fold_summary: no folds given")
    keys = [k for k in per_fold[0] if all(k in f for f in per_fold)]
    return {
        k: {"mean": float(np.mean([f[k] for f in per_fold])), "std": float(np.std([f[k] for f in per_fold]))}
        for k in keys
    }


def loso_metrics(
    folds: Iterable[Tuple[ArrayLike, ArrayLike]], num_classes: Optional[int] = None
) -> Dict[str, float]:
    """Leave-one-subject-out metrics, computed ONCE on the concatenation of every fold's (y_true, y_pred)."""
    trues, preds = [], []
    for y_true, y_pred in folds:
        t, p = _as_labels(y_true, y_pred)
        trues.append(t)
        preds.append(p)
    if not trues:
        raise ValueError("loso_metrics: no folds given")
    return classification_metrics(np.concatenate(trues), np.concatenate(preds), num_classes=num_classes)


def format_summary(summary: Mapping[str, Mapping[str, float]], percent: bool = True) -> str:
    """``"war 65.12±1.03  uar 52.40±0.88"``-style one-line rendering of :func:`fold_summary`."""
    scale = 100.0 if percent else 1.0
    return "  ".join(f"{k} {v['mean'] * scale:.2f}±{v['std'] * scale:.2f}" for k, v in summary.items())


def make_compute_metrics(num_classes: Optional[int] = None, ignore_index: Optional[int] = IGNORE_INDEX):
    """A ``compute_metrics`` callable for ``transformers.Trainer``: takes an ``EvalPrediction`` (or a
    ``(logits, labels)`` tuple) and returns :func:`classification_metrics`, skipping ``ignore_index`` labels."""

    def compute_metrics(eval_pred) -> Dict[str, float]:
        logits, labels = (eval_pred.predictions, eval_pred.label_ids) if hasattr(eval_pred, "label_ids") else eval_pred
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        preds = np.asarray(logits)
        preds = preds.argmax(-1) if preds.ndim > 1 else preds
        labels = np.asarray(labels).reshape(-1)
        if ignore_index is not None:
            keep = labels != ignore_index
            preds, labels = preds.reshape(-1)[keep], labels[keep]
        return classification_metrics(labels, preds, num_classes=num_classes)

    return compute_metrics


def save_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    path: Union[str, os.PathLike],
    normalize: bool = True,
    title: Optional[str] = None,
) -> str:
    """Write a confusion matrix as a PNG (matplotlib, Agg backend) with class names on both axes.

    Args:
        cm: (C, C) counts, rows = ground truth.
        normalize: colour and annotate by row-normalised recall (counts are shown in brackets).
    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {len(class_names)} class names")
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, np.maximum(rows, 1)) if normalize else cm
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if title:
        ax.set_title(title)
    fontsize = 8 if n <= 8 else 6
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}\n({cm[i, j]})" if normalize else f"{cm[i, j]}"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if (shown[i, j] > 0.5 * (shown.max() or 1)) else "black")
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_metrics_json(metrics: Mapping, path: Union[str, os.PathLike]) -> str:
    """Write a metrics dict as indented JSON (numpy scalars converted)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    return path


__all__: List[str] = [
    "war", "uar", "uf1", "accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "classification_metrics",
    "affwild2_f1", "windows_to_frames", "affwild2_frame_metrics", "pool_frames", "fold_summary", "loso_metrics",
    "format_summary", "make_compute_metrics",
    "save_confusion_matrix", "save_metrics_json",
]
