"""Aff-Wild2, the EXPR track of the ABAW challenges (Kollias & Zafeiriou): in-the-wild videos annotated frame by
frame with 8 classes (7 in ABAW2); trained on ``Train_Set``, evaluated on ``Validation_Set`` (the test labels are
withheld) and scored per frame (docs/datasets.md §Aff-Wild2).

Layout::

    Aff-Wild2/cropped_aligned/<video>/<%05d>.jpg              face crops (frames without a face are missing)
    Aff-Wild2/6th ABAW Annotations/EXPR_Recognition_Challenge/{Train_Set,Validation_Set}/<video>.txt
    Aff-Wild2/batch1/<video>.mp4                              the source videos (``_left``/``_right`` share one)

The annotation files are read by :func:`read_affwild2_labels`, the layout by :func:`load_affwild2` (windows of
frames) and :func:`affwild2_frame_labels` (the per-frame truth), and :class:`AffWild2Benchmark` writes the same
layout for the sample data and turns window predictions into frame predictions.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import datasets
import numpy as np
import pandas as pd

from ...eye_movement_mert import EyeMovementSeries
from ...metrics import AFFWILD2_HEADLINE, affwild2_frame_metrics, windows_to_frames
from ...video_io_mert import list_frame_files
from .._media import write_jpgs, write_mp4
from .._utils import (
    VIDEO_EXTENSIONS,
    PathLike,
    check_nonempty,
    find_child,
    frame_number,
    handle_missing,
    require_dir,
    require_file,
)
from ..labels import LABELS
from ..sample_data import VIDEO_FPS, RenderedClip, SampleWriter, class_plan, clip_rng, render_clip
from .base import Benchmark, register
from .common import base_features, has_media, media_in, to_dataset, to_int

#: The first 7 names of the annotation header (ABAW2's files end there, later ones add "Other")
AFFWILD2_HEADER_7 = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
AFFWILD2_ANNOTATION_GLOBS = (
    "*ABAW*Annotations/EXPR_*",
    "*ABAW*annotations/EXPR_*",
    "annotations/EXPR_*",
    "Annotations/EXPR_*",
    "EXPR_*",
)
AFFWILD2_SPLITS = {"train": "Train_Set", "validation": "Validation_Set", "val": "Validation_Set"}


# ------------------------------------------------------------------------------------------------------- reader
def read_affwild2_labels(txt_path: PathLike) -> pd.DataFrame:
    """Parse an Aff-Wild2 EXPR annotation file (one per video; line 0 the header, then one integer per frame).

    Line *i* (1-based, after the header) is the label of frame *i*, image ``f"{i:05d}.jpg"``; ``-1`` marks an
    invalid frame and is KEPT here (loaders and metrics exclude it). 8-class files (with ``Other``) and the 7-class
    ABAW2 files are both accepted; ``df.attrs["num_classes"]`` tells which.

    Returns:
        DataFrame with ``frame`` (1-based int) and ``label`` (int in -1..7).
    """
    path = require_file(txt_path, "Aff-Wild2 annotation")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: empty annotation file")
    header = [h.strip().lower() for h in lines[0].split(",")]
    if header[:7] != list(AFFWILD2_HEADER_7):
        raise ValueError(f"{path}: unexpected header {lines[0]!r}; expected 'Neutral,Anger,...,Surprise[,Other]'")
    num_classes = len(header)
    labels = []
    for i, ln in enumerate(lines[1:], start=2):
        v = to_int(ln, path, "label", i)
        if not -1 <= v < num_classes:
            raise ValueError(f"{path}: line {i}: label {v} outside -1..{num_classes - 1}")
        labels.append(v)
    df = pd.DataFrame({"frame": range(1, len(labels) + 1), "label": labels})
    df.attrs.update(num_classes=num_classes, class_names=LABELS["affwild2"][:num_classes], source=str(path))
    return df


def annotation_header(num_classes: int = 8) -> str:
    """The header line of an annotation file of ``num_classes`` (``Neutral,Anger,...,Other``)."""
    return ",".join(name.capitalize() for name in LABELS["affwild2"][:num_classes])


# ------------------------------------------------------------------------------------------------------- loader
def _annotation_dir(root: Path, annotation_dir: Optional[PathLike]) -> Path:
    if annotation_dir is not None:
        path = Path(annotation_dir)
        path = path if path.is_absolute() else root / path
        return require_dir(path, "Aff-Wild2 annotation folder")
    for pattern in AFFWILD2_ANNOTATION_GLOBS:
        hits = sorted(p for p in root.glob(pattern) if p.is_dir() and (p / "Train_Set").is_dir())
        if hits:
            return hits[-1]  # the newest ABAW edition sorts last ("6th" > "5th")
    raise FileNotFoundError(f"Aff-Wild2: no EXPR annotation folder (e.g. '6th ABAW Annotations/"
                            f"EXPR_Recognition_Challenge') under {root}; pass annotation_dir=")


def _split_files(root: Path, split: str, annotation_dir: Optional[PathLike], caller: str) -> List[Path]:
    """The annotation files (one per annotated video) of an Aff-Wild2 split."""
    if split not in AFFWILD2_SPLITS:
        raise ValueError(f"{caller}: split must be one of {sorted(AFFWILD2_SPLITS)}, got {split!r}")
    ann_dir = _annotation_dir(root, annotation_dir)
    split_dir = find_child(ann_dir, AFFWILD2_SPLITS[split], kind="dir")
    if split_dir is None:
        raise FileNotFoundError(f"Aff-Wild2: {ann_dir / AFFWILD2_SPLITS[split]} does not exist")
    files = sorted(split_dir.glob("*.txt"))
    check_nonempty(len(files), f"Aff-Wild2 {split_dir}")
    return files


def affwild2_frame_labels(
    root: PathLike, split: str = "validation", annotation_dir: Optional[PathLike] = None
) -> Dict[str, List[int]]:
    """``{video: labels of frames 1..n}`` (``-1`` kept) of every annotated video of an Aff-Wild2 split: the ground
    truth of the per-frame metric (:func:`emvfer_hf.metrics.windows_to_frames`), including the frames that no
    window of :func:`load_affwild2` covers. ``video`` is the annotation file's name (``_left``/``_right`` kept), the
    ``subject`` column of :func:`load_affwild2`."""
    root = require_dir(root, "Aff-Wild2 root")
    files = _split_files(root, split, annotation_dir, "affwild2_frame_labels")
    return {path.stem: read_affwild2_labels(path)["label"].tolist() for path in files}


def _majority(labels: Sequence[int]) -> int:
    counts = Counter(labels)
    best = max(counts.values())
    return min(k for k, v in counts.items() if v == best)


def load_affwild2(
    root: PathLike,
    split: str = "train",
    annotation_dir: Optional[PathLike] = None,
    window: Optional[int] = 16,
    stride: Optional[int] = None,
    missing: str = "raise",
) -> datasets.DatasetDict:
    """Aff-Wild2, EXPR track: one annotation file per video (per person for ``_left``/``_right``).

    Frames come from ``cropped_aligned/<video>/<%05d>.jpg`` (frames may be missing: they are left out of the
    windows). Each video is cut into windows of ``window`` consecutive frame numbers (``stride`` defaults to
    ``window``; ``window=None`` keeps whole videos); a window's ``label`` is the majority of its valid frame labels
    (``-1`` excluded) and windows without any valid labelled frame are dropped. ``frame_numbers`` and
    ``frame_labels`` (``-1`` kept) map window predictions back to the frames for the per-frame metric
    (:func:`emvfer_hf.metrics.windows_to_frames` with :func:`affwild2_frame_labels`). The column is not called
    ``frame_indices``: the preprocessing cache adds that one (the 0-based frames the processor sampled). Training,
    evaluation and the cache process each window from its own frames only, at ``raw_video``'s frame rate
    (:func:`emvfer_hf.data.cache.clip_source`).

    Args:
        split: ``"train"`` or ``"validation"`` (test labels are withheld by the challenge).
        annotation_dir: the folder holding ``Train_Set/`` and ``Validation_Set/`` (absolute or relative to
            ``root``); default: searched under ``root`` (6th/5th/3rd ABAW names, ABAW2 ``annotations/EXPR_Set``).
    Columns: ``clip_id`` (``<video>@<first frame>``), ``video`` (frame folder), ``raw_video`` (the source video
    file, ``""`` if not found), ``subject`` (the annotated video, incl. ``_left``/``_right``), ``frame_numbers``
    (1-based, as in the image names), ``frame_labels``, ``label``.
    """
    root = require_dir(root, "Aff-Wild2 root")
    if window is not None and window < 1:
        raise ValueError(f"load_affwild2: window must be >= 1 or None, got {window}")
    files = _split_files(root, split, annotation_dir, "load_affwild2")
    split_dir = files[0].parent
    crops = find_child(root, "cropped_aligned", kind="dir") or find_child(root, "cropped", kind="dir")
    raw_index = {p.stem: p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()}
    rows, absent, num_classes = [], [], None
    for path in files:
        df = read_affwild2_labels(path)
        if num_classes is not None and df.attrs["num_classes"] != num_classes:
            raise ValueError(f"{path}: {df.attrs['num_classes']} classes, other files of {split_dir} have {num_classes}")
        num_classes = df.attrs["num_classes"]
        name = path.stem
        folder = media_in(crops, name)
        if not has_media(folder):
            absent.append(name)
            continue
        have = {frame_number(p) for p in list_frame_files(folder)}
        labels = dict(zip(df["frame"], df["label"]))
        n = len(df)
        size = n if window is None else window
        step = size if (window is None or stride is None) else stride
        base = re.sub(r"_(left|right)$", "", name)
        raw = raw_index.get(base)
        for start in range(1, n + 1, step):
            idx = [f for f in range(start, min(start + size, n + 1)) if f in have]
            lab = [int(labels[f]) for f in idx]
            valid = [v for v in lab if v >= 0]
            if not valid:
                continue
            rows.append({"clip_id": f"{name}@{start:05d}", "video": str(folder), "raw_video": "" if raw is None else
                         str(raw), "subject": name, "frame_numbers": idx, "frame_labels": lab,
                         "label": _majority(valid)})
            if start + size > n:
                break
    handle_missing(absent, len(files), split_dir, missing)
    features = base_features(
        LABELS["affwild2"][:num_classes], subject=True, raw_video=datasets.Value("string"),
        frame_numbers=datasets.Sequence(datasets.Value("int32")),
        frame_labels=datasets.Sequence(datasets.Value("int8")),
    )
    return datasets.DatasetDict({split: to_dataset(rows, features, f"Aff-Wild2 {split_dir}")})


# -------------------------------------------------------------------------------------------------- benchmark
#: Sample data: the names of the annotated videos (as in the release: ``_right`` persons, several resolutions)
SAMPLE_VIDEO_NAMES = ("1-30-1280x720", "video10_1", "10-60-1280x720_right", "118-30-640x480", "video49",
                      "135-24-1920x1080", "video2", "21-24-1920x1080", "video73", "45-30-1270x720")
#: Sample data: class segments per annotated video
SAMPLE_SEGMENTS_PER_VIDEO = 4


class AffWild2Benchmark(Benchmark):
    """Aff-Wild2: 8 classes, train → validation, windows of frames, scored per frame (accuracy, macro-F1)."""

    name, title, folder = "affwild2", "Aff-Wild2", "Aff-Wild2"
    label_sets = {"": "affwild2"}
    evaluation = "split"
    headline_metrics = AFFWILD2_HEADLINE
    table_metrics = AFFWILD2_HEADLINE
    frame_scored = True
    sample_stream = 3
    loader = staticmethod(load_affwild2)

    def load_splits(self, root, fold: int = 1, protocol: Optional[str] = None, test_subject: Optional[str] = None):
        """``(train, validation)``: the challenge's training split and its validation split (the test labels are
        withheld); ``fold``, ``protocol`` and ``test_subject`` do not apply."""
        train = load_affwild2(root, split="train")
        test = load_affwild2(root, split="validation")
        return next(iter(train.values())), next(iter(test.values()))

    def frame_truth(self, root) -> Dict[str, List[int]]:
        """The frame labels of the validation split (:func:`affwild2_frame_labels`)."""
        return affwild2_frame_labels(root, "validation")

    def frame_metrics(self, frames: dict, num_classes: int) -> dict:
        """Accuracy (the paper's metric) and the challenge's macro-F1 over the labelled frames
        (:func:`~emvfer_hf.metrics.affwild2_frame_metrics`)."""
        return affwild2_frame_metrics(frames, num_classes=num_classes)

    def frame_predictions(self, dataset, predictions: dict, truth: dict) -> dict:
        """Per-frame predictions (:func:`emvfer_hf.metrics.windows_to_frames`) of the windows of ``dataset`` (a
        :func:`load_affwild2` split) predicted in ``predictions``; ``truth`` are the split's frame labels."""
        rows = predictions["indices"].tolist()
        videos, numbers = dataset["subject"], dataset["frame_numbers"]
        return windows_to_frames(truth, [videos[i] for i in rows], [numbers[i] for i in rows], predictions["logits"])

    def write_sample(self, root: Path, writer: SampleWriter, clips_per_class, num_frames, size, noise, seed) -> None:
        """The Aff-Wild2 layout: raw videos of several class segments, their face crops (some frames without a
        face), the annotation files (a few ``-1`` frames at a transition) and the test list; half as many segments
        per class in the validation split."""
        names = LABELS["affwild2"]
        ann_root = root / "6th ABAW Annotations" / "EXPR_Recognition_Challenge"
        header = annotation_header(len(names))
        per_video = SAMPLE_SEGMENTS_PER_VIDEO
        video_names = iter(list(SAMPLE_VIDEO_NAMES) + [f"video{200 + j}" for j in range(1000)])
        idx = 0
        for split, per_class in (("Train_Set", clips_per_class), ("Validation_Set", max(1, clips_per_class // 2))):
            plan = [n for _, n in class_plan(names, per_class)]
            order = np.random.default_rng([seed, 7, len(split)]).permutation(len(plan))
            plan = [plan[j] for j in order]
            for v in range(0, len(plan), per_video):
                name = next(video_names)
                frames, crops, labels, series_vals = [], [], [], []
                for j, cls in enumerate(plan[v:v + per_video]):
                    idx += 1
                    rng = clip_rng(seed, self.sample_stream, idx)
                    clip = render_clip(cls, rng, num_frames, size, noise, face_scale=0.6)
                    crop = render_clip(cls, clip_rng(seed, self.sample_stream, idx), num_frames, (112, 112), noise)
                    frames += clip.frames
                    crops += crop.frames
                    lab = [names.index(cls)] * num_frames
                    if j == 1:
                        lab[:3] = [-1] * 3  # unannotated frames at a transition
                    labels += lab
                    series_vals.append(clip)
                base = name.replace("_right", "").replace("_left", "")
                write_mp4(root / "batch1" / f"{base}.mp4", frames)
                keep = [n for n in range(len(crops)) if n % 17 != 5]  # some frames have no detected face
                write_jpgs(root / "cropped_aligned" / name, [crops[n] for n in keep],
                           [f"{n + 1:05d}.jpg" for n in keep])
                (ann_root / split).mkdir(parents=True, exist_ok=True)
                (ann_root / split / f"{name}.txt").write_text(header + "\n" + "\n".join(map(str, labels)) + "\n")
                writer.add(name, plan[v], _joined(series_vals, num_frames), split=split,
                           segments=plan[v:v + per_video])
        test_list = root / "Expression_Recognition_Challenge_test_set_release.txt"
        test_list.write_text("video_test_1\n", encoding="utf-8")


def _joined(clips: List[RenderedClip], num_frames: int) -> RenderedClip:
    """The ground truth of an annotated sample video: its segments' series back to back."""
    offset, parts = 0.0, []
    for c in clips:
        parts.append((c.series.times_s + offset, c.series.values, c.frame_times_s + offset, c.frame_values))
        offset += num_frames / VIDEO_FPS
    series = EyeMovementSeries(np.concatenate([p[1] for p in parts]), np.ones(sum(len(p[1]) for p in parts), bool),
                               np.concatenate([p[0] for p in parts]), normalized=False)
    return RenderedClip([], series, np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]))


AFFWILD2 = register(AffWild2Benchmark())
