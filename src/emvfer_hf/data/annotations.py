"""Annotation parsers of the six benchmarks. They read label/split files only and never touch media, so they run
(and are tested) on the real annotation files without the datasets themselves.

Every parser returns a ``pandas.DataFrame`` with an integer ``label`` column (index into the protocol's class order
of :data:`emvfer_hf.data.labels.LABELS`) and a ``label_name`` column, plus the dataset's own keys. Errors name the
file and the problem (unknown label string, missing column, bad value).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

import pandas as pd

from ._utils import PathLike, require_file
from .labels import (
    CASME2_GROUPS,
    CASME3_GROUPS,
    EMER_7_TO_3,
    LABELS,
    normalize_label_string,
)

logger = logging.getLogger(__name__)

DFEW_NUM_CLASSES = 7


def _check_protocol(protocol: str, allowed, what: str) -> str:
    protocol = str(protocol).lower().replace("-", "").replace("_", "")
    if protocol not in allowed:
        raise ValueError(f"{what}: unknown protocol {protocol!r}; expected one of {list(allowed)}")
    return protocol


def _read_table(path: Path, **kwargs) -> pd.DataFrame:
    """Read a csv/tsv/txt or xls(x) table with every cell as text."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls"):
        return pd.read_excel(path, dtype=str, **kwargs)
    sep = "\t" if suffix == ".tsv" else ","
    return pd.read_csv(path, dtype=str, sep=sep, **kwargs)


def _to_int(value, path: Path, column: str, row: int, default: Optional[int] = None) -> int:
    """Cast a text cell ('46', '46.0', ' 46 ') to int; non-numeric cells (e.g. '/') give ``default`` or raise."""
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        if default is not None:
            return default
        raise ValueError(f"{path}: row {row}: column {column!r} holds {value!r}, expected an integer") from None


def _find_column(df: pd.DataFrame, candidates, path: Path, required: bool = True) -> Optional[str]:
    """The first column of ``df`` whose normalised name equals one of ``candidates`` (case/blank-insensitive)."""
    norm = {re.sub(r"[\s_]+", "", str(c)).lower(): c for c in df.columns}
    for cand in candidates:
        key = re.sub(r"[\s_]+", "", cand).lower()
        if key in norm:
            return norm[key]
    if required:
        raise ValueError(f"{path}: none of the columns {list(candidates)} found (columns: {list(df.columns)})")
    return None


def _finish(df: pd.DataFrame, names, path: Path) -> pd.DataFrame:
    if df.empty:
        raise ValueError(f"{path}: no samples (empty file, or every row excluded by the protocol)")
    df = df.reset_index(drop=True)
    df["label"] = [names.index(n) for n in df["label_name"]]
    df.attrs["class_names"] = tuple(names)
    df.attrs["source"] = str(path)
    return df


# ----------------------------------------------------------------------------------------------------------- DFEW
def read_dfew_split(csv_path: PathLike) -> pd.DataFrame:
    """Parse a DFEW split file ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv``.

    The file has the header ``video_name,label``; ids are plain integers (``1``), labels 1-based (1 Happy ... 7 Fear,
    docs/datasets.md §DFEW). A file without header is accepted too.

    Returns:
        DataFrame with ``clip_id`` (5-digit zero-padded string, the frame-folder name), ``video_name`` (int),
        ``label`` (0-based, order ``LABELS["dfew"]``) and ``label_name``.
    """
    path = require_file(csv_path, "DFEW split")
    df = pd.read_csv(path, dtype=str, header=None, sep=None, engine="python")
    if df.empty:
        raise ValueError(f"{path}: empty split file")
    if str(df.iloc[0, 0]).strip().lower() in ("video_name", "videoname", "video", "name"):
        header = [str(c).strip().lower() for c in df.iloc[0]]
        df = df.iloc[1:].copy()
        df.columns = header
        vid_col, lab_col = "video_name" if "video_name" in header else header[0], "label" if "label" in header else header[1]
    else:
        vid_col, lab_col = 0, 1
    names = LABELS["dfew"]
    rows = []
    for i, (vid, lab) in enumerate(zip(df[vid_col], df[lab_col]), start=2):
        vid_i = _to_int(Path(str(vid)).stem, path, "video_name", i)
        lab_i = _to_int(lab, path, "label", i)
        if not 1 <= lab_i <= DFEW_NUM_CLASSES:
            raise ValueError(f"{path}: row {i}: label {lab_i} outside 1..{DFEW_NUM_CLASSES}")
        rows.append({"clip_id": f"{vid_i:05d}", "video_name": vid_i, "label_name": names[lab_i - 1]})
    return _finish(pd.DataFrame(rows), names, path)


# ----------------------------------------------------------------------------------------------------------- MAFW
def read_mafw_split(txt_path: PathLike) -> pd.DataFrame:
    """Parse a MAFW split file ``Train & Test Set/single/no_caption/set_<k>/{train,test}.txt``.

    Lines are ``<clip>.mp4 <label>`` (space-separated); ``with_caption`` files (tab-separated, extra caption fields,
    gb18030 encoding) are read too, only the first two fields are used. Compound labels (``anger_disgust``) are
    rejected: this parser serves the single-label protocol.

    Returns:
        DataFrame with ``clip_id`` (``"00025"``), ``filename`` (``"00025.mp4"``), ``label`` (order ``LABELS["mafw"]``)
        and ``label_name``.
    """
    path = require_file(txt_path, "MAFW split")
    raw = path.read_bytes()
    for enc in ("utf-8", "gb18030", "cp1252"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    names = LABELS["mafw"]
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            raise ValueError(f"{path}: line {i}: expected '<clip>.mp4 <label>', got {line!r}")
        filename = parts[0].strip()
        label = normalize_label_string(parts[1], names, source=f"{path}: line {i}")
        rows.append({"clip_id": Path(filename).stem, "filename": filename, "label_name": label})
    return _finish(pd.DataFrame(rows), names, path)


# ------------------------------------------------------------------------------------------------------- Aff-Wild2
AFFWILD2_HEADER_7 = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


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
        v = _to_int(ln, path, "label", i)
        if not -1 <= v < num_classes:
            raise ValueError(f"{path}: line {i}: label {v} outside -1..{num_classes - 1}")
        labels.append(v)
    df = pd.DataFrame({"frame": range(1, len(labels) + 1), "label": labels})
    df.attrs.update(num_classes=num_classes, class_names=LABELS["affwild2"][:num_classes], source=str(path))
    return df


def _micro_rows(df: pd.DataFrame, path: Path, cols: dict, groups: dict, subject_fn) -> list:
    """Rows of a micro-expression sheet (CASME II coding sheet, CAS(ME)^3 label sheet).

    ``cols`` maps ``subject, filename, onset, apex, offset, emotion`` and the optional ``action_units``,
    ``objective_class`` to the sheet's column names (None = absent). Emotions are lower-cased and grouped by
    ``groups`` (None = excluded by the protocol); a non-numeric apex (``/``) becomes -1, an offset of 0 or a
    non-numeric one -1 (unknown); an apex outside [onset, offset] is kept as annotated.
    """
    rows, outside = [], 0
    for i, rec in enumerate(df.to_dict("records"), start=2):
        if pd.isna(rec[cols["subject"]]) and pd.isna(rec[cols["emotion"]]):
            continue
        emotion = str(rec[cols["emotion"]]).strip().lower()
        if emotion not in groups:
            raise ValueError(f"{path}: row {i}: unknown emotion {rec[cols['emotion']]!r}; "
                             f"expected one of {sorted(groups)}")
        if groups[emotion] is None:
            continue
        onset = _to_int(rec[cols["onset"]], path, cols["onset"], i)
        apex = _to_int(rec[cols["apex"]], path, cols["apex"], i, default=-1)
        offset = _to_int(rec[cols["offset"]], path, cols["offset"], i, default=0) or -1
        outside += offset > 0 and apex >= 0 and not onset <= apex <= offset
        row = {"subject": subject_fn(rec[cols["subject"]], path, i), "filename": str(rec[cols["filename"]]).strip(),
               "onset": onset, "apex": apex, "offset": offset}
        for key in ("action_units", "objective_class"):
            if key in cols:
                c = cols[key]
                row[key] = "" if c is None or pd.isna(rec[c]) else str(rec[c]).strip()
        rows.append({**row, "emotion": emotion, "label_name": groups[emotion]})
    if outside:
        logger.info("%s: %d samples have their apex outside [onset, offset] (kept as annotated)", path, outside)
    return rows


# ------------------------------------------------------------------------------------------------------- CASME II
def _casme2_subject(value, path: Path, row: int) -> str:
    s = str(value).strip()
    if s.lower().startswith("sub"):
        s = s[3:]
    return f"sub{_to_int(s, path, 'Subject', row):02d}"


def read_casme2_labels(path: PathLike, protocol: str = "3class") -> pd.DataFrame:
    """Parse CASME II annotations: the coding sheet ``CASME2-coding-20140508.xlsx`` (or a csv copy) or a MEGC2019
    3-class sample list (columns ``subject, filename, label3[, label3_name]``, e.g. HTNet's list).

    Coding sheet (docs/datasets.md §CASME II): columns ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
    Action Units, Estimated Emotion`` (blank-header columns are dropped; a copy without header row is accepted). A
    non-numeric apex (``/``) becomes ``-1`` (unknown; estimate it from the frames).

    Protocols (leave-one-subject-out): ``"3class"`` negative = {disgust, repression}, positive = {happiness},
    surprise; fear/sadness/others excluded (145 samples, 24 subjects on the official data). ``"5class"``
    happiness, disgust, repression, surprise, others (fear and sadness dropped).

    Returns:
        DataFrame with ``subject`` (``"sub01"``), ``filename``, ``onset``, ``apex``, ``offset`` (``-1`` = unknown),
        ``emotion`` (raw, lower case; empty for the MEGC list), ``label`` and ``label_name``.
    """
    protocol = _check_protocol(protocol, ("3class", "5class"), "read_casme2_labels")
    path = require_file(path, "CASME II annotation")
    df = _read_table(path)
    cols = [str(c).strip() for c in df.columns]
    if "label3" in [c.lower() for c in cols]:  # MEGC2019 list
        return _read_casme2_megc_list(df, path, protocol)
    if not any(c.lower() == "subject" for c in cols):  # coding sheet without header row
        df = _read_table(path, header=None)
        df = df.dropna(axis=1, how="all")
        if df.shape[1] < 7:
            raise ValueError(f"{path}: expected the 7 data columns of the CASME II coding sheet, got {df.shape[1]}")
        df.columns = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                      "Estimated Emotion"] + [f"extra{i}" for i in range(df.shape[1] - 7)]
    df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
    cols = {
        "subject": _find_column(df, ["Subject"], path), "filename": _find_column(df, ["Filename"], path),
        **{k: _find_column(df, [n], path) for k, n in (("onset", "OnsetFrame"), ("apex", "ApexFrame"),
                                                         ("offset", "OffsetFrame"))},
        "emotion": _find_column(df, ["Estimated Emotion", "Emotion"], path),
        "action_units": _find_column(df, ["Action Units", "AU"], path, required=False),
    }
    rows = _micro_rows(df, path, cols, CASME2_GROUPS[protocol], _casme2_subject)
    names = LABELS[f"casme2_{protocol}"]
    return _finish(pd.DataFrame(rows), names, path)


def _read_casme2_megc_list(df: pd.DataFrame, path: Path, protocol: str) -> pd.DataFrame:
    if protocol != "3class":
        raise ValueError(f"{path}: a MEGC2019 3-class list cannot give protocol {protocol!r}; use the coding sheet")
    names = LABELS["casme2_3class"]
    c_sub, c_file = _find_column(df, ["subject"], path), _find_column(df, ["filename"], path)
    c_lab = _find_column(df, ["label3"], path)
    c_name = _find_column(df, ["label3_name"], path, required=False)
    rows = []
    for i, (sub, fn, lab) in enumerate(zip(df[c_sub], df[c_file], df[c_lab]), start=2):
        idx = _to_int(lab, path, "label3", i)
        if not 0 <= idx < len(names):
            raise ValueError(f"{path}: row {i}: label3 {idx} outside 0..{len(names) - 1}")
        if c_name is not None and str(df[c_name].iloc[i - 2]).strip().lower() != names[idx]:
            raise ValueError(f"{path}: row {i}: label3 {idx} does not match label3_name {df[c_name].iloc[i - 2]!r}")
        rows.append({"subject": _casme2_subject(sub, path, i), "filename": str(fn).strip(), "onset": -1, "apex": -1,
                     "offset": -1, "action_units": "", "emotion": "", "label_name": names[idx]})
    return _finish(pd.DataFrame(rows), names, path)


# ------------------------------------------------------------------------------------------------------ CAS(ME)^3
def read_casme3_labels(xlsx_path: PathLike, protocol: str = "3class") -> pd.DataFrame:
    """Parse the CAS(ME)^3 Part A micro-expression sheet ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``.

    The data is in sheet ``label`` (falls back to the first sheet with an ``emotion`` column, e.g. ``Sheet1`` of v1),
    every cell stored as text. Emotions are lower-cased (``Others`` → ``others``); apexes outside [onset, offset]
    are kept as they are; an offset of ``0`` (unknown) becomes ``-1``.

    Protocols (leave-one-subject-out): ``"3class"`` negative = {disgust, fear, anger, sad}, positive = {happy},
    surprise, others dropped (699 samples, 88 subjects); ``"4class"`` adds others (860); ``"7class"`` all emotions
    in the order ``LABELS["casme3_7class"]``.

    Returns:
        DataFrame with ``subject`` (as in the sheet, e.g. ``spNO.1``), ``filename`` (``a``..``m``, case kept),
        ``onset``, ``apex``, ``offset``, ``action_units``, ``objective_class``, ``emotion``, ``label``, ``label_name``.
    """
    protocol = _check_protocol(protocol, ("3class", "4class", "7class"), "read_casme3_labels")
    path = require_file(xlsx_path, "CAS(ME)^3 label sheet")
    if path.suffix.lower() in (".xlsx", ".xls", ".xlsm"):
        sheets = pd.read_excel(path, sheet_name=None, dtype=str)
        order = (["label"] if "label" in sheets else []) + [s for s in sheets if s != "label"]
        df = next((sheets[s] for s in order if any(str(c).strip().lower() == "emotion" for c in sheets[s].columns)),
                  None)
        if df is None:
            raise ValueError(f"{path}: no sheet with an 'emotion' column (sheets: {list(sheets)})")
    else:
        df = _read_table(path)
    cols = {
        "subject": _find_column(df, ["Subject"], path), "filename": _find_column(df, ["Filename"], path),
        **{k: _find_column(df, [k, k + "Frame"], path) for k in ("onset", "apex", "offset")},
        "emotion": _find_column(df, ["emotion"], path),
        "action_units": _find_column(df, ["AU", "Action Units"], path, required=False),
        "objective_class": _find_column(df, ["Objective class"], path, required=False),
    }
    rows = _micro_rows(df, path, cols, CASME3_GROUPS[protocol], lambda v, *_: str(v).strip())
    names = LABELS[f"casme3_{protocol}"]
    return _finish(pd.DataFrame(rows), names, path)


# ----------------------------------------------------------------------------------------------------------- EMER
EMER_ID_COLUMNS = ("ID", "sample", "sample_id", "video", "name", "clip")
EMER_TARGET_COLUMNS = {"er": ("ER", "Emotion", "ER_emotion", "label"), "fer": ("FER", "FER_emotion", "FER label")}


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
    protocol = _check_protocol(protocol, ("7class", "3class"), "read_emer_labels")
    key = str(target).lower()
    if key not in EMER_TARGET_COLUMNS:
        raise ValueError(f"read_emer_labels: unknown target {target!r}; expected 'ER' or 'FER'")
    path = require_file(path, "EMER label sheet")
    df = _read_table(path)
    c_id = _find_column(df, EMER_ID_COLUMNS, path)
    c_lab = _find_column(df, EMER_TARGET_COLUMNS[key], path)
    extras = {n: _find_column(df, [n], path, required=False) for n in ("valence", "arousal", "intensity")}
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
    return _finish(pd.DataFrame(rows), names, path)


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
