"""EMER (the EM-VFER paper's own data set): face videos with Tobii eye-tracking recordings, 7 (or 3) classes,
5-fold cross-validation; the only benchmark with eye-tracker recordings, hence the data of stage-1 pre-training
(docs/datasets.md §EMER).

Layout (the release's folders; exact files [U], hence tolerant)::

    EMER/EMER_label.xlsx (or new_label.xlsx)   labels, see read_emer_labels
    EMER/emer_set.txt                          "<ID> <fold>" per line (else folds from face/set<k>/<ID>/)
    EMER/face video/<ID>.mp4                   (or face_light_align image/<ID>/, face/set<k>/<ID>/ frames)
    EMER/eye_movement data/<ID>.tsv            Tobii Pro Lab export (or eye/<ID>.xlsx as in EMERT)

The label sheet and the split file are read by :func:`read_emer_labels` and :func:`read_emer_split`, the layout by
:func:`load_emer`, and :class:`EMERBenchmark` writes the same layout for the sample data (the Tobii TSVs with
:func:`emvfer_hf.eyetracking.write_tobii_tsv`, the writer beside its reader).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, Optional, Sequence

import datasets
import numpy as np
import pandas as pd

from ...eye_movement_mert import BLINK
from ...eyetracking import write_tobii_tsv
from .._media import write_mp4
from .._utils import VIDEO_EXTENSIONS, PathLike, find_child, require_dir, require_file
from ..labels import EMER_7_TO_3, LABELS, normalize_label_string
from ..sample_data import (
    DISPLAY_RESOLUTION,
    TRACKER_NOISE_STD,
    Domain,
    SampleWriter,
    class_plan,
    clip_rng,
    fold_of,
    identity_name,
    render_clip,
)
from .base import Benchmark, register
from .common import (
    base_features,
    check_fold,
    check_protocol,
    find_column,
    finish_labels,
    fold_dict,
    read_table,
    resolve_rows,
)

logger = logging.getLogger(__name__)

EMER_ID_COLUMNS = ("ID", "sample", "sample_id", "video", "name", "clip")
EMER_TARGET_COLUMNS = {"er": ("ER", "Emotion", "ER_emotion", "label"), "fer": ("FER", "FER_emotion", "FER label")}
EMER_LABEL_FILES = ("EMER_label.xlsx", "EMER_label.xls", "EMER_label.csv", "new_label.xlsx", "new_label.csv")
EMER_FACE_DIRS = ("face video", "face_video", "face_light_align image", "face")
EMER_EYE_DIRS = ("eye_movement data", "eye_movement_data", "eye")
EMER_EYE_EXTENSIONS = (".tsv", ".xlsx", ".csv", ".txt")
EMER_PROTOCOLS = ("7class", "3class")


# ------------------------------------------------------------------------------------------------------ readers
def read_emer_labels(path: PathLike, protocol: str = "7class", target: str = "ER") -> pd.DataFrame:
    """Parse an EMER label sheet (``EMER_label.xlsx`` of the release, or EMERT's ``new_label.xlsx``).

    The exact columns are not published (docs/datasets.md §EMER, [U]) so the parser is column-driven: an id column
    (``ID``), a label column for ``target`` (``"ER"``: ``ER``/``Emotion``; ``"FER"``: ``FER``), and optional numeric
    ``Valence``, ``Arousal``, ``Intensity``. Label cells may be names (``happiness``, ``happy`` ...) or, for the
    3-class protocol, ``positive``/``negative``/``neutral``; a 7-class name is grouped to 3 classes by valence.
    Sample ids look like ``2_sport_anger``; the participant (``subject``) is the part before the first ``_``.

    Returns:
        DataFrame with ``clip_id``, ``subject``, ``label``, ``label_name``, ``valence``, ``arousal``, ``intensity``
        (NaN where absent).
    """
    protocol = check_protocol(protocol, EMER_PROTOCOLS, "read_emer_labels")
    key = str(target).lower()
    if key not in EMER_TARGET_COLUMNS:
        raise ValueError(f"read_emer_labels: unknown target {target!r}; expected 'ER' or 'FER'")
    path = require_file(path, "EMER label sheet")
    df = read_table(path)
    c_id = find_column(df, EMER_ID_COLUMNS, path)
    c_lab = find_column(df, EMER_TARGET_COLUMNS[key], path)
    extras = {n: find_column(df, [n], path, required=False) for n in ("valence", "arousal", "intensity")}
    names = LABELS[f"emer_{protocol}"]
    rows = []
    for i, rec in enumerate(df.to_dict("records"), start=2):
        if pd.isna(rec[c_id]):
            continue
        raw = str(rec[c_lab]).strip().lower()
        if protocol == "3class" and raw not in names:
            raw = EMER_7_TO_3.get(normalize_label_string(raw, LABELS["emer_7class"], f"{path}: row {i}"), raw)
        label = normalize_label_string(raw, names, source=f"{path}: row {i}")
        clip_id = str(rec[c_id]).strip()
        row = {"clip_id": clip_id, "subject": clip_id.split("_")[0], "label_name": label}
        for n, c in extras.items():
            row[n] = float(rec[c]) if c is not None and not pd.isna(rec[c]) else float("nan")
        rows.append(row)
    return finish_labels(pd.DataFrame(rows), names, path)


def read_emer_split(path: PathLike) -> pd.DataFrame:
    """Parse the EMER split definition ``emer_set.txt``: one sample per line, ``<ID><sep><fold>`` with any of
    tab/comma/space as separator and the fold written ``3``, ``set3`` or ``set_3`` ([U]: the release does not
    document the format). A header line is skipped.

    Returns:
        DataFrame with ``clip_id`` and ``fold`` (1-based int).
    """
    path = require_file(path, "EMER split file")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = [p for p in re.split(r"[\t,; ]+", line.strip()) if p]
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{path}: line {i}: expected '<ID> <fold>', got {line!r}")
        m = re.fullmatch(r"(?:set|fold)?_?(\d+)", parts[-1].lower())
        if m is None:
            if i == 1:
                continue  # header
            raise ValueError(f"{path}: line {i}: fold {parts[-1]!r} is not a number or 'set<k>'")
        rows.append({"clip_id": parts[0], "fold": int(m.group(1))})
    if not rows:
        raise ValueError(f"{path}: no samples in split file")
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------- loader
def _media_index(root: Path, dirs: Sequence[str], extensions: Sequence[str], frames_ok: bool) -> Dict[str, Path]:
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

    Layout: see the module's docstring (docs/datasets.md §EMER).

    Args:
        protocol: ``"7class"`` or ``"3class"``; target: ``"ER"`` (genuine emotion) or ``"FER"`` (expression).
    Columns: ``clip_id``, ``video``, ``subject`` (participant), ``eye_tracking`` (path, ``""`` if absent),
    ``valence``, ``arousal``, ``label``.
    """
    root = require_dir(root, "EMER root")
    check_fold(fold, "load_emer")
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
    videos = _media_index(root, EMER_FACE_DIRS, VIDEO_EXTENSIONS, frames_ok=True)
    eyes = _media_index(root, EMER_EYE_DIRS, EMER_EYE_EXTENSIONS, frames_ok=False)
    no_fold = [c for c in labels["clip_id"] if c not in folds]
    if no_fold:
        logger.warning("%s: %d labelled samples have no fold in %s (ignored)", label_path, len(no_fold), split_path)
    labels = labels[labels["clip_id"].isin(folds)].copy()
    labels["fold"] = [int(folds[c]) for c in labels["clip_id"]]
    rows = resolve_rows(labels, lambda rec: videos.get(rec["clip_id"]), label_path, missing)
    no_eye = 0
    for r in rows:
        eye = eyes.get(r["clip_id"])
        no_eye += eye is None
        r["eye_tracking"] = "" if eye is None else str(eye)
    if no_eye:
        logger.warning("EMER %s: %d samples have no eye-tracking recording", root, no_eye)
    features = base_features(
        LABELS[f"emer_{check_protocol(protocol, EMER_PROTOCOLS, 'load_emer')}"], subject=True,
        eye_tracking=datasets.Value("string"), valence=datasets.Value("float32"), arousal=datasets.Value("float32"),
    )
    out = {"train": [r for r in rows if r["fold"] != fold], "test": [r for r in rows if r["fold"] == fold]}
    return fold_dict(out, features, f"EMER fold {fold} ({split_path})")


# -------------------------------------------------------------------------------------------------- benchmark
#: Sample data: the short class names of the sample ids (``2_sport_anger``) and each class's valence and arousal
SAMPLE_ID_NAMES = {"happiness": "happy", "sadness": "sad", "anger": "anger", "fear": "fear", "surprise": "surprise",
                   "disgust": "disgust", "neutral": "neutral"}
SAMPLE_VALENCE = {"happiness": 0.7, "surprise": 0.3, "neutral": 0.0, "sadness": -0.6, "fear": -0.6, "disgust": -0.5,
                  "anger": -0.7}
SAMPLE_AROUSAL = {"happiness": 0.5, "surprise": 0.8, "neutral": -0.2, "sadness": -0.3, "fear": 0.7, "disgust": 0.3,
                  "anger": 0.7}


class EMERBenchmark(Benchmark):
    """EMER: 7 (or 3) classes, 5 folds, eye-tracker recordings (stage-1 pre-training), scored per clip."""

    name, title, folder = "emer", "EMER", "EMER"
    label_sets = {"7class": "emer_7class", "3class": "emer_3class"}
    evaluation = "folds"
    eye_tracking = True
    sample_stream = 0
    loader = staticmethod(load_emer)

    def write_sample(self, root: Path, writer: SampleWriter, clips_per_class, num_frames, size, noise, seed,
                     domain: Optional[Domain] = None) -> None:
        """The EMER layout: face videos, the eye tracker's Tobii TSVs (the ground-truth series plus the tracker's
        noise, blinks invalid), the label sheet and ``emer_set.txt``; a participant shows every class."""
        names = LABELS["emer_7class"]
        rows, split_lines = [], []
        for i, (k, name) in enumerate(class_plan(names, clips_per_class)):
            rng = clip_rng(seed, self.sample_stream, i)
            clip_id = f"{k + 1}_{'film' if k % 2 == 0 else 'sport'}_{SAMPLE_ID_NAMES[name]}"
            person = k % domain.identities if domain else k  # a participant shows every class
            clip = render_clip(name, rng, num_frames, size, noise, domain=domain, identity=person)
            write_mp4(root / "face video" / f"{clip_id}.mp4", clip.frames)
            s = clip.series
            blink = s.values[:, 4] == BLINK
            noisy = s.values + rng.normal(0, 1, s.values.shape) * np.array(TRACKER_NOISE_STD)
            write_tobii_tsv(
                root / "eye_movement data" / f"{clip_id}.tsv", s.times_s * 1000.0,
                (noisy[:, 2] + 1) / 2 * DISPLAY_RESOLUTION[0], (noisy[:, 3] + 1) / 2 * DISPLAY_RESOLUTION[1],
                noisy[:, 0], noisy[:, 1], ~blink, ~blink, eye_movement_type=s.values[:, 4].astype(int),
                participant=f"P{person + 1:02d}", resolution=DISPLAY_RESOLUTION,
            )
            fold = fold_of(k, names.index(name))
            rows.append({"ID": clip_id, "Participant": person + 1, "ER": name, "FER": name,
                         "Valence": SAMPLE_VALENCE[name], "Arousal": SAMPLE_AROUSAL[name],
                         "Intensity": round(float(rng.uniform(1, 3)), 1)})
            split_lines.append(f"{clip_id}\tset{fold}")
            writer.add(clip_id, name, clip, fold=fold,
                       **({"identity": identity_name(domain, person)} if domain else {}))
        pd.DataFrame(rows).to_excel(root / "EMER_label.xlsx", index=False)
        (root / "emer_set.txt").write_text("\n".join(split_lines) + "\n", encoding="utf-8")


EMER = register(EMERBenchmark())
