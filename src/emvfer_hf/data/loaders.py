"""Loaders of the six benchmarks in their released on-disk layouts (docs/datasets.md), returning
``datasets.DatasetDict``.

Every loader is a thin layer over a public annotation parser (:mod:`emvfer_hf.data.annotations`) that resolves media
paths tolerantly (both folder spellings, case-insensitive folder names, natural frame order) and applies the
official protocol:

| loader | splits | protocol |
|---|---|---|
| :func:`load_dfew`     | ``train``/``test`` of ``fold`` 1..5 | 5-fold CV from ``EmoLabel_DataSplit`` |
| :func:`load_mafw`     | ``train``/``test`` of ``fold`` 1..5 | 5-fold CV, ``single/no_caption`` |
| :func:`load_emer`     | ``train``/``test`` of ``fold`` 1..5 | 5-fold CV from ``emer_set.txt`` (or ``face/set<k>``) |
| :func:`load_affwild2` | ``train`` or ``validation``         | EXPR track; ``-1`` frames excluded from window labels |
| :func:`load_casme2`   | ``all`` (or ``train``/``test`` of ``test_subject``) | LOSO, 3- or 5-class |
| :func:`load_casme3`   | ``all`` (or ``train``/``test`` of ``test_subject``) | LOSO, 3-, 4- or 7-class |

Columns: ``clip_id``, ``video`` (a video file or a frame folder), ``label`` (``ClassLabel`` in the order of
:data:`~emvfer_hf.data.labels.LABELS`), ``subject`` where the dataset has one, ``eye_tracking`` (EMER),
``onset``/``apex``/``offset`` (micro-expressions, absolute frame numbers as in the file names) and
``frame_numbers``/``frame_labels`` (Aff-Wild2).

Clips named by an annotation but missing on disk raise ``FileNotFoundError`` (with their count and the annotation
file); pass ``missing="skip"`` to continue without them.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import datasets
import pandas as pd

from ._utils import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    PathLike,
    check_nonempty,
    find_child,
    find_file_glob,
    find_path,
    frame_number,
    handle_missing,
    list_frames,
    require_dir,
)
from .annotations import (
    _check_protocol,
    read_affwild2_labels,
    read_casme2_labels,
    read_casme3_labels,
    read_dfew_split,
    read_emer_labels,
    read_emer_split,
    read_mafw_split,
)
from .labels import LABELS

logger = logging.getLogger(__name__)

NUM_FOLDS = 5
DFEW_FRAME_VARIANTS = ("clip_224x224", "clip_224x224_16f", "clip_224x224_avi", "original")
CASME2_FRAME_VARIANTS = ("CASME2_RAW_selected", "Cropped", "CASME2-RAW", "CASME2_RAW")


# ------------------------------------------------------------------------------------------------------ helpers
def _check_fold(fold: int, what: str, num_folds: int = NUM_FOLDS) -> int:
    if not isinstance(fold, int) or not 1 <= fold <= num_folds:
        raise ValueError(f"{what}: fold must be an integer in 1..{num_folds}, got {fold!r}")
    return fold


def _has_media(path: Optional[Path]) -> bool:
    if path is None or not path.exists():
        return False
    if path.is_dir():
        return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())
    return path.stat().st_size > 0


def _media_in(folder: Optional[Path], clip_id: str) -> Optional[Path]:
    """``folder/<clip_id>`` as a frame folder or ``folder/<clip_id>.<video ext>``, case-insensitively."""
    if folder is None:
        return None
    return find_child(folder, clip_id, *(clip_id + ext for ext in VIDEO_EXTENSIONS))


def _base_features(names: Sequence[str], subject: bool = False, **extra) -> datasets.Features:
    feats = {"clip_id": datasets.Value("string"), "video": datasets.Value("string")}
    if subject:
        feats["subject"] = datasets.Value("string")
    feats.update(extra)
    feats["label"] = datasets.ClassLabel(names=list(names))
    return datasets.Features(feats)


def _to_dataset(rows: List[dict], features: datasets.Features, what: str) -> datasets.Dataset:
    check_nonempty(len(rows), what)
    cols = {k: [r[k] for r in rows] for k in features}
    return datasets.Dataset.from_dict(cols, features=features)


def _resolve_rows(
    df: pd.DataFrame, resolve, source: PathLike, missing: str, extra_cols: Sequence[str] = ()
) -> List[dict]:
    """Attach ``video`` to each annotation row via ``resolve(row) -> Path | None``; apply the missing policy."""
    rows, absent = [], []
    for rec in df.to_dict("records"):
        media = resolve(rec)
        if not _has_media(media):
            absent.append(str(rec["clip_id"]))
            continue
        rec["video"] = str(media)
        rows.append(rec)
    handle_missing(absent, len(df), source, missing)
    return rows


def _fold_dict(rows_by_split: Dict[str, List[dict]], features, what: str) -> datasets.DatasetDict:
    return datasets.DatasetDict({k: _to_dataset(v, features, f"{what} [{k}]") for k, v in rows_by_split.items()})


# ---------------------------------------------------------------------------------------------------------- DFEW
def _dfew_split_file(root: Path, part: str, fold: int) -> Path:
    split_root = find_child(root, "EmoLabel_DataSplit", kind="dir")
    if split_root is None:
        raise FileNotFoundError(f"DFEW: {root / 'EmoLabel_DataSplit'} does not exist")
    folder = find_child(split_root, f"{part}(single-labeled)", f"{part}(single_labeled)", kind="dir")
    if folder is None:
        raise FileNotFoundError(f"DFEW: neither '{part}(single-labeled)' nor '{part}(single_labeled)' in {split_root}")
    path = find_child(folder, f"set_{fold}.csv", f"set{fold}.csv", kind="file")
    if path is None:
        raise FileNotFoundError(f"DFEW: split file {folder / f'set_{fold}.csv'} does not exist")
    return path


def load_dfew(
    root: PathLike, fold: int = 1, frames: str = "clip_224x224", missing: str = "raise"
) -> datasets.DatasetDict:
    """DFEW, 5-fold cross-validation (``train``/``test`` of ``fold``; the peers use no validation set).

    Args:
        root: the ``DFEW`` folder (with ``Clip/`` and ``EmoLabel_DataSplit/``).
        fold: 1..5.
        frames: which media under ``Clip/``: ``"clip_224x224"`` (face-aligned frame folders, default),
            ``"clip_224x224_16f"`` (TIM 16 frames), ``"clip_224x224_avi"`` or ``"original"`` (``<id>.mp4``).
        missing: ``"raise"`` or ``"skip"`` for clips of the split file absent on disk.
    """
    root = require_dir(root, "DFEW root")
    _check_fold(fold, "load_dfew")
    if frames not in DFEW_FRAME_VARIANTS:
        raise ValueError(f"load_dfew: frames must be one of {DFEW_FRAME_VARIANTS}, got {frames!r}")
    media_root = find_path(root, ["Clip", frames], kind="dir")
    if media_root is None:
        raise FileNotFoundError(f"DFEW: media folder {root / 'Clip' / frames} does not exist")

    def resolve(rec):
        return _media_in(media_root, rec["clip_id"]) or _media_in(media_root, str(rec["video_name"]))

    features = _base_features(LABELS["dfew"])
    out = {}
    for split in ("train", "test"):
        path = _dfew_split_file(root, split, fold)
        out[split] = _resolve_rows(read_dfew_split(path), resolve, path, missing)
    return _fold_dict(out, features, f"DFEW fold {fold}")


# ---------------------------------------------------------------------------------------------------------- MAFW
def load_mafw(root: PathLike, fold: int = 1, missing: str = "raise") -> datasets.DatasetDict:
    """MAFW single-label 11-class protocol, 5-fold (``Train & Test Set/single/no_caption/set_<k>``).

    Media: ``data/clips/<id>.mp4``, else the frame folder ``data/frames/<id>/``.
    """
    root = require_dir(root, "MAFW root")
    _check_fold(fold, "load_mafw")
    set_dir = find_path(root, ["Train & Test Set", "single", "no_caption", f"set_{fold}"], kind="dir")
    if set_dir is None:
        raise FileNotFoundError(f"MAFW: split folder {root / 'Train & Test Set/single/no_caption' / f'set_{fold}'} "
                                "does not exist")
    clips, frames = find_path(root, ["data", "clips"], kind="dir"), find_path(root, ["data", "frames"], kind="dir")

    def resolve(rec):
        return _media_in(clips, rec["clip_id"]) or _media_in(frames, rec["clip_id"])

    features = _base_features(LABELS["mafw"])
    out = {}
    for split in ("train", "test"):
        path = find_child(set_dir, f"{split}.txt", kind="file")
        if path is None:
            raise FileNotFoundError(f"MAFW: split file {set_dir / f'{split}.txt'} does not exist")
        out[split] = _resolve_rows(read_mafw_split(path), resolve, path, missing)
    return _fold_dict(out, features, f"MAFW fold {fold}")


# ---------------------------------------------------------------------------------------------------------- EMER
EMER_LABEL_FILES = ("EMER_label.xlsx", "EMER_label.xls", "EMER_label.csv", "new_label.xlsx", "new_label.csv")
EMER_FACE_DIRS = ("face video", "face_video", "face_light_align image", "face")
EMER_EYE_DIRS = ("eye_movement data", "eye_movement_data", "eye")
EMER_EYE_EXTENSIONS = (".tsv", ".xlsx", ".csv", ".txt")


def _emer_media_index(root: Path, dirs: Sequence[str], extensions: Sequence[str], frames_ok: bool) -> Dict[str, Path]:
    """Map sample id → media path over the known EMER folders (also their ``set<k>/`` sub-folders)."""
    index: Dict[str, Path] = {}
    for name in dirs:
        base = find_child(root, name, kind="dir")
        if base is None:
            continue
        stack = [base]
        while stack:
            folder = stack.pop()
            for child in sorted(folder.iterdir()):
                if child.is_file() and child.suffix.lower() in extensions:
                    index.setdefault(child.stem, child)
                elif child.is_dir():
                    if re.fullmatch(r"set_?\d+", child.name.lower()):
                        stack.append(child)
                    elif frames_ok:
                        index.setdefault(child.name, child)
    return index


def load_emer(
    root: PathLike, fold: int = 1, protocol: str = "7class", target: str = "ER", missing: str = "raise"
) -> datasets.DatasetDict:
    """EMER (face video + Tobii eye tracking), 5-fold (``train``/``test`` of ``fold``).

    Layout (the release's folders, docs/datasets.md §EMER; exact files [U], hence tolerant)::

        EMER/EMER_label.xlsx (or new_label.xlsx)   labels, see read_emer_labels
        EMER/emer_set.txt                          "<ID> <fold>" per line (else folds from face/set<k>/<ID>/)
        EMER/face video/<ID>.mp4                   (or face_light_align image/<ID>/, face/set<k>/<ID>/ frames)
        EMER/eye_movement data/<ID>.tsv            Tobii Pro Lab export (or eye/<ID>.xlsx as in EMERT)

    Args:
        protocol: ``"7class"`` or ``"3class"``; target: ``"ER"`` (genuine emotion) or ``"FER"`` (expression).
    Columns: ``clip_id``, ``video``, ``subject`` (participant), ``eye_tracking`` (path, ``""`` if absent),
    ``valence``, ``arousal``, ``label``.
    """
    root = require_dir(root, "EMER root")
    _check_fold(fold, "load_emer")
    label_path = find_child(root, *EMER_LABEL_FILES, kind="file")
    if label_path is None:
        raise FileNotFoundError(f"EMER: no label sheet ({', '.join(EMER_LABEL_FILES)}) in {root}")
    labels = read_emer_labels(label_path, protocol=protocol, target=target)
    split_path = find_child(root, "emer_set.txt", "emer_set.csv", kind="file")
    if split_path is not None:
        folds = dict(zip(*read_emer_split(split_path)[["clip_id", "fold"]].T.values))
    else:  # EMERT layout: membership of face/set<k>/<ID>/
        split_path = root / "face"
        folds = {}
        for set_dir in sorted(split_path.glob("set*")) if split_path.is_dir() else []:
            m = re.fullmatch(r"set_?(\d+)", set_dir.name.lower())
            if m:
                folds.update({c.name: int(m.group(1)) for c in set_dir.iterdir() if c.is_dir()})
        if not folds:
            raise FileNotFoundError(f"EMER: neither {root / 'emer_set.txt'} nor face/set<k>/ folders in {root}")
    videos = _emer_media_index(root, EMER_FACE_DIRS, VIDEO_EXTENSIONS, frames_ok=True)
    eyes = _emer_media_index(root, EMER_EYE_DIRS, EMER_EYE_EXTENSIONS, frames_ok=False)
    no_fold = [c for c in labels["clip_id"] if c not in folds]
    if no_fold:
        logger.warning("%s: %d labelled samples have no fold in %s (ignored)", label_path, len(no_fold), split_path)
    labels = labels[labels["clip_id"].isin(folds)].copy()
    labels["fold"] = [int(folds[c]) for c in labels["clip_id"]]
    rows = _resolve_rows(labels, lambda rec: videos.get(rec["clip_id"]), label_path, missing)
    no_eye = 0
    for r in rows:
        eye = eyes.get(r["clip_id"])
        no_eye += eye is None
        r["eye_tracking"] = "" if eye is None else str(eye)
    if no_eye:
        logger.warning("EMER %s: %d samples have no eye-tracking recording", root, no_eye)
    features = _base_features(
        LABELS[f"emer_{_check_protocol(protocol, ('7class', '3class'), 'load_emer')}"], subject=True,
        eye_tracking=datasets.Value("string"), valence=datasets.Value("float32"), arousal=datasets.Value("float32"),
    )
    out = {"train": [r for r in rows if r["fold"] != fold], "test": [r for r in rows if r["fold"] == fold]}
    return _fold_dict(out, features, f"EMER fold {fold} ({split_path})")


# ----------------------------------------------------------------------------------------------------- Aff-Wild2
AFFWILD2_ANNOTATION_GLOBS = (
    "*ABAW*Annotations/EXPR_*",
    "*ABAW*annotations/EXPR_*",
    "annotations/EXPR_*",
    "Annotations/EXPR_*",
    "EXPR_*",
)
AFFWILD2_SPLITS = {"train": "Train_Set", "validation": "Validation_Set", "val": "Validation_Set"}


def _affwild2_annotation_dir(root: Path, annotation_dir: Optional[PathLike]) -> Path:
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


def _affwild2_split_files(root: Path, split: str, annotation_dir: Optional[PathLike], caller: str) -> List[Path]:
    """The annotation files (one per annotated video) of an Aff-Wild2 split."""
    if split not in AFFWILD2_SPLITS:
        raise ValueError(f"{caller}: split must be one of {sorted(AFFWILD2_SPLITS)}, got {split!r}")
    ann_dir = _affwild2_annotation_dir(root, annotation_dir)
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
    files = _affwild2_split_files(root, split, annotation_dir, "affwild2_frame_labels")
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
    files = _affwild2_split_files(root, split, annotation_dir, "load_affwild2")
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
        folder = _media_in(crops, name)
        if not _has_media(folder):
            absent.append(name)
            continue
        have = {frame_number(p) for p in list_frames(folder)}
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
    features = _base_features(
        LABELS["affwild2"][:num_classes], subject=True, raw_video=datasets.Value("string"),
        frame_numbers=datasets.Sequence(datasets.Value("int32")),
        frame_labels=datasets.Sequence(datasets.Value("int8")),
    )
    return datasets.DatasetDict({split: _to_dataset(rows, features, f"Aff-Wild2 {split_dir}")})


# ------------------------------------------------------------------------------------------------- CASME II / III
def _micro_features(names, **extra) -> datasets.Features:
    return _base_features(
        names, subject=True, onset=datasets.Value("int32"), apex=datasets.Value("int32"),
        offset=datasets.Value("int32"), emotion=datasets.Value("string"), **extra,
    )


def _fill_frame_range(rows: List[dict]) -> None:
    """Unknown (-1) onset/offset → first/last frame number on disk; unknown apex → the middle frame."""
    for r in rows:
        if r["onset"] < 0 or r["offset"] <= 0 or r["apex"] < 0:
            path = Path(r["video"])
            nums = [frame_number(p) for p in list_frames(path)] if path.is_dir() else []
            if nums:
                r["onset"] = r["onset"] if r["onset"] >= 0 else min(nums)
                r["offset"] = r["offset"] if r["offset"] > 0 else max(nums)
        if r["apex"] < 0 and r["offset"] > 0:
            r["apex"] = (r["onset"] + r["offset"]) // 2


def _micro_dataset(df, resolve, annotation, missing: str, test_subject: Optional[str], what: str):
    """Resolve the media of a micro-expression sheet, fill unknown frame ranges, split for LOSO."""
    rows = _resolve_rows(df, resolve, annotation, missing)
    _fill_frame_range(rows)
    return _loso_dict(rows, _micro_features(df.attrs["class_names"]), test_subject, what)


def _loso_dict(rows: List[dict], features, test_subject: Optional[str], what: str) -> datasets.DatasetDict:
    if test_subject is None:
        return datasets.DatasetDict({"all": _to_dataset(rows, features, what)})
    key = str(test_subject).lower()
    test = [r for r in rows if r["subject"].lower() == key]
    if not test:
        raise ValueError(f"{what}: test_subject {test_subject!r} has no sample "
                         f"(subjects: {sorted({r['subject'] for r in rows})[:10]}...)")
    train = [r for r in rows if r["subject"].lower() != key]
    return _fold_dict({"train": train, "test": test}, features, what)


def load_casme2(
    root: PathLike,
    protocol: str = "3class",
    frames: str = "CASME2_RAW_selected",
    annotation: Optional[PathLike] = None,
    test_subject: Optional[str] = None,
    missing: str = "raise",
) -> datasets.DatasetDict:
    """CASME II (200 fps) micro-expressions, leave-one-subject-out (use :func:`loso_splits` on ``["all"]``).

    Args:
        protocol: ``"3class"`` (MEGC2019: negative/positive/surprise, 145 samples) or ``"5class"``.
        frames: ``"CASME2_RAW_selected"`` (default; falls back to ``Cropped``, ``CASME2-RAW``) —
            ``<frames>/sub01/EP02_01f/img46.jpg``; subject folders are matched case-insensitively.
        annotation: the coding sheet (default: ``CASME2-coding-*.xlsx`` under ``root``) or a MEGC2019 list.
        test_subject: return ``train``/``test`` for this one LOSO fold instead of ``all``.
    """
    root = require_dir(root, "CASME II root")
    if annotation is None:
        annotation = find_file_glob(root, ["CASME2-coding*.xls*", "*coding*.xls*", "*coding*.csv", "**/CASME2-coding*"],
                                    "CASME II coding sheet")
    df = read_casme2_labels(annotation, protocol=protocol)
    df["clip_id"] = df["subject"] + "/" + df["filename"]
    variants = [frames] + [v for v in CASME2_FRAME_VARIANTS if v != frames]
    media_roots = [p for p in (find_child(root, v, kind="dir") for v in variants) if p is not None]
    if not media_roots:
        raise FileNotFoundError(f"CASME II: none of the frame folders {variants} exists in {root}")

    def resolve(rec):
        for base in media_roots:
            hit = find_path(base, [rec["subject"], rec["filename"]], kind="dir")
            if hit is not None:
                return hit
        return None

    return _micro_dataset(df, resolve, annotation, missing, test_subject, f"CASME II {protocol} ({annotation})")


def load_casme3(
    root: PathLike,
    protocol: str = "3class",
    annotation: Optional[PathLike] = None,
    test_subject: Optional[str] = None,
    missing: str = "raise",
) -> datasets.DatasetDict:
    """CAS(ME)^3 Part A micro-expressions (30 fps), leave-one-subject-out.

    Media: ``Part_A_ME_clip/frame/<Subject>_<Filename>_<Onset>/<frame>.jpg`` (folder names matched
    case-insensitively: ``spNo.1`` on disk vs ``spNO.1`` in the sheet), else the full sequences
    ``part_A/data/part_A_split/part_A/<Subject>/<Filename>/color/``.

    Args:
        protocol: ``"3class"`` (699 samples), ``"4class"`` (860) or ``"7class"``.
        annotation: the label sheet (default: ``*ME_label_JpgIndex*.xls*`` anywhere under ``root``).
    """
    root = require_dir(root, "CAS(ME)^3 root")
    if annotation is None:
        annotation = find_file_glob(root, ["*ME_label_JpgIndex*.xls*", "**/*ME_label_JpgIndex*.xls*"],
                                    "CAS(ME)^3 label sheet")
    df = read_casme3_labels(annotation, protocol=protocol)
    df["clip_id"] = df["subject"] + "_" + df["filename"] + "_" + df["onset"].astype(str)
    clip_root = find_path(root, ["Part_A_ME_clip", "frame"], kind="dir")
    clip_index = {p.name.lower(): p for p in clip_root.iterdir()} if clip_root is not None else {}
    seq_root = find_path(root, ["part_A", "data", "part_A_split", "part_A"], kind="dir")
    if clip_root is None and seq_root is None:
        raise FileNotFoundError(f"CAS(ME)^3: neither Part_A_ME_clip/frame nor part_A/data/part_A_split/part_A in {root}")

    def resolve(rec):
        hit = clip_index.get(rec["clip_id"].lower())
        if hit is None and seq_root is not None:
            hit = find_path(seq_root, [rec["subject"], rec["filename"], "color"], kind="dir")
        return hit

    return _micro_dataset(df, resolve, annotation, missing, test_subject, f"CAS(ME)^3 {protocol} ({annotation})")


# ------------------------------------------------------------------------------------------------------ protocols
def loso_splits(
    dataset: Union[datasets.Dataset, datasets.DatasetDict], subject_column: str = "subject"
) -> Iterator[Tuple[str, datasets.DatasetDict]]:
    """Leave-one-subject-out: yield ``(subject, DatasetDict(train=..., test=...))`` for every subject, in natural
    order (``sub2`` before ``sub10``). A ``DatasetDict`` must hold a single split (e.g. ``["all"]``)."""
    if isinstance(dataset, datasets.DatasetDict):
        if len(dataset) != 1:
            raise ValueError(f"loso_splits: pass one split, got a DatasetDict with {list(dataset)}")
        dataset = next(iter(dataset.values()))
    if subject_column not in dataset.column_names:
        raise ValueError(f"loso_splits: the dataset has no {subject_column!r} column ({dataset.column_names})")
    subjects = dataset[subject_column]
    check_nonempty(len(subjects), "loso_splits")

    def key(s):
        nums = re.findall(r"\d+", s)
        return (re.sub(r"\d+", "", s).lower(), int(nums[-1]) if nums else -1, s)

    for subject in sorted(set(subjects), key=key):
        test_idx = [i for i, s in enumerate(subjects) if s == subject]
        train_idx = [i for i, s in enumerate(subjects) if s != subject]
        yield subject, datasets.DatasetDict({"train": dataset.select(train_idx), "test": dataset.select(test_idx)})


LOADERS = {
    "emer": load_emer, "dfew": load_dfew, "mafw": load_mafw, "affwild2": load_affwild2,
    "casme2": load_casme2, "casme3": load_casme3,
}


def load_benchmark(name: str, root: PathLike, **kwargs) -> datasets.DatasetDict:
    """Dispatch to ``load_<name>`` (``emer``, ``dfew``, ``mafw``, ``affwild2``, ``casme2``, ``casme3``)."""
    key = name.lower().replace("-", "").replace("_", "").replace("(", "").replace(")", "").replace("^", "")
    if key not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(LOADERS)}")
    return LOADERS[key](root, **kwargs)
