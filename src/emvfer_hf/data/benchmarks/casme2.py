"""CASME II (Yan et al., PLoS ONE 2014): spontaneous micro-expressions filmed at 200 fps, 26 subjects, evaluated
leave-one-subject-out with 3 classes (MEGC2019) or 5 (docs/datasets.md §CASME II).

Layout::

    CASME2/CASME2-coding-20140508.xlsx                   the coding sheet (onset, apex, offset, emotion)
    CASME2/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg  frames (or Cropped/, CASME2-RAW/)

The coding sheet (or a MEGC2019 list) is read by :func:`read_casme2_labels`, the layout by :func:`load_casme2`,
and :class:`CASME2Benchmark` writes the same layout for the sample data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import datasets
import pandas as pd

from .._media import write_jpgs
from .._utils import PathLike, find_child, find_file_glob, find_path, require_dir, require_file
from ..labels import CASME2_GROUPS, LABELS
from ..sample_data import SampleWriter, class_plan, clip_rng, render_clip
from .base import Benchmark, register
from .common import check_protocol, find_column, finish_labels, read_table, to_int
from .micro import micro_dataset, micro_rows, sample_onsets

CASME2_FRAME_VARIANTS = ("CASME2_RAW_selected", "Cropped", "CASME2-RAW", "CASME2_RAW")
CASME2_PROTOCOLS = ("3class", "5class")
#: The columns of the coding sheet, in its order (a copy without header row is read with these)
CODING_SHEET_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                        "Estimated Emotion")


# ------------------------------------------------------------------------------------------------------ readers
def _subject(value, path: Path, row: int) -> str:
    s = str(value).strip()
    if s.lower().startswith("sub"):
        s = s[3:]
    return f"sub{to_int(s, path, 'Subject', row):02d}"


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
    protocol = check_protocol(protocol, CASME2_PROTOCOLS, "read_casme2_labels")
    path = require_file(path, "CASME II annotation")
    df = read_table(path)
    cols = [str(c).strip() for c in df.columns]
    if "label3" in [c.lower() for c in cols]:  # MEGC2019 list
        return _read_megc_list(df, path, protocol)
    if not any(c.lower() == "subject" for c in cols):  # coding sheet without header row
        df = read_table(path, header=None)
        df = df.dropna(axis=1, how="all")
        if df.shape[1] < 7:
            raise ValueError(f"{path}: expected the 7 data columns of the CASME II coding sheet, got {df.shape[1]}")
        df.columns = list(CODING_SHEET_COLUMNS) + [f"extra{i}" for i in range(df.shape[1] - 7)]
    df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
    cols = {
        "subject": find_column(df, ["Subject"], path), "filename": find_column(df, ["Filename"], path),
        **{k: find_column(df, [n], path) for k, n in (("onset", "OnsetFrame"), ("apex", "ApexFrame"),
                                                        ("offset", "OffsetFrame"))},
        "emotion": find_column(df, ["Estimated Emotion", "Emotion"], path),
        "action_units": find_column(df, ["Action Units", "AU"], path, required=False),
    }
    rows = micro_rows(df, path, cols, CASME2_GROUPS[protocol], _subject)
    names = LABELS[f"casme2_{protocol}"]
    return finish_labels(pd.DataFrame(rows), names, path)


def _read_megc_list(df: pd.DataFrame, path: Path, protocol: str) -> pd.DataFrame:
    if protocol != "3class":
        raise ValueError(f"{path}: a MEGC2019 3-class list cannot give protocol {protocol!r}; use the coding sheet")
    names = LABELS["casme2_3class"]
    c_sub, c_file = find_column(df, ["subject"], path), find_column(df, ["filename"], path)
    c_lab = find_column(df, ["label3"], path)
    c_name = find_column(df, ["label3_name"], path, required=False)
    rows = []
    for i, (sub, fn, lab) in enumerate(zip(df[c_sub], df[c_file], df[c_lab]), start=2):
        idx = to_int(lab, path, "label3", i)
        if not 0 <= idx < len(names):
            raise ValueError(f"{path}: row {i}: label3 {idx} outside 0..{len(names) - 1}")
        if c_name is not None and str(df[c_name].iloc[i - 2]).strip().lower() != names[idx]:
            raise ValueError(f"{path}: row {i}: label3 {idx} does not match label3_name {df[c_name].iloc[i - 2]!r}")
        rows.append({"subject": _subject(sub, path, i), "filename": str(fn).strip(), "onset": -1, "apex": -1,
                     "offset": -1, "action_units": "", "emotion": "", "label_name": names[idx]})
    return finish_labels(pd.DataFrame(rows), names, path)


# ------------------------------------------------------------------------------------------------------- loader
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

    return micro_dataset(df, resolve, annotation, missing, test_subject, f"CASME II {protocol} ({annotation})")


# -------------------------------------------------------------------------------------------------- benchmark
#: The sample clips' frame rate: CASME II films at 200 fps, the sample renders its micro-expressions at 30 fps
#: (the rate of CAS(ME)^3 Part A) to keep the sample small
SAMPLE_FPS = 30.0


class CASME2Benchmark(Benchmark):
    """CASME II: 3 (or 5) classes, leave one subject out, scored on the concatenated predictions (UF1, UAR)."""

    name, title, folder = "casme2", "CASME II", "CASME2"
    label_sets = {"3class": "casme2_3class", "5class": "casme2_5class"}
    evaluation = "loso"
    sample_stream = 4
    loader = staticmethod(load_casme2)

    def write_sample(self, root: Path, writer: SampleWriter, clips_per_class, num_frames, size, noise, seed) -> None:
        """The CASME II layout: frame folders per subject and episode, the coding sheet (a ``/`` apex as in the
        release, one fear and one sadness clip that both protocols exclude, subject 4 absent)."""
        emotions = ["happiness", "disgust", "repression", "surprise", "others"]
        cpc = clips_per_class
        plan = class_plan(emotions, cpc) + [(cpc, "fear"), (cpc, "sadness")]  # excluded by both protocols
        subjects = [1, 2, 3, 5]  # sub04 absent, as sub10/sub18 in the 3-class list
        rows = []
        for i, (k, emo) in enumerate(plan):
            rng = clip_rng(seed, self.sample_stream, i)
            onset, apex, offset, apex_pos = sample_onsets(rng, num_frames)
            clip = render_clip(emo, rng, num_frames, size, noise, fps=SAMPLE_FPS, kind="micro", apex=apex_pos)
            sub = subjects[i % len(subjects)]
            ep = f"EP{i + 1:02d}_{k + 1:02d}" + ("f" if i % 3 == 0 else "")
            write_jpgs(root / "CASME2_RAW_selected" / f"sub{sub:02d}" / ep, clip.frames,
                       [f"img{onset + n}.jpg" for n in range(num_frames)])
            rows.append([sub, ep, None, onset, "/" if i == 2 else apex, offset, None,
                         ["12", "4+7", "R12", "L10", "1+2"][i % 5], emo])
            writer.add(f"sub{sub:02d}/{ep}", emo, clip, onset=onset, apex=apex, offset=offset)
        cols = list(CODING_SHEET_COLUMNS[:2]) + [""] + list(CODING_SHEET_COLUMNS[2:5]) + [" "] + \
            list(CODING_SHEET_COLUMNS[5:])
        pd.DataFrame(rows, columns=cols).to_excel(root / "CASME2-coding-20140508.xlsx", index=False)


CASME2 = register(CASME2Benchmark())
