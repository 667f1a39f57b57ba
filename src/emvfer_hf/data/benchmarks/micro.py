"""What the two micro-expression benchmarks (CASME II, CAS(ME)^3) share: the rows of their coding sheets (onset,
apex, offset, emotion grouped by the protocol), their columns, unknown frame ranges filled from the frames on disk,
leave-one-subject-out splits, and the onset/apex/offset of a sample clip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Tuple

import datasets
import numpy as np
import pandas as pd

from ...video_io_mert import list_frame_files
from .._utils import frame_number
from .common import base_features, loso_dict, resolve_rows, to_int

logger = logging.getLogger(__name__)


def micro_rows(df: pd.DataFrame, path: Path, cols: dict, groups: dict, subject_fn) -> list:
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
        onset = to_int(rec[cols["onset"]], path, cols["onset"], i)
        apex = to_int(rec[cols["apex"]], path, cols["apex"], i, default=-1)
        offset = to_int(rec[cols["offset"]], path, cols["offset"], i, default=0) or -1
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


def micro_features(names, **extra) -> datasets.Features:
    """The columns of a micro-expression loader: ``subject``, ``onset``/``apex``/``offset``, ``emotion``."""
    return base_features(
        names, subject=True, onset=datasets.Value("int32"), apex=datasets.Value("int32"),
        offset=datasets.Value("int32"), emotion=datasets.Value("string"), **extra,
    )


def fill_frame_range(rows: List[dict]) -> None:
    """Unknown (-1) onset/offset → first/last frame number on disk; unknown apex → the middle frame."""
    for r in rows:
        if r["onset"] < 0 or r["offset"] <= 0 or r["apex"] < 0:
            path = Path(r["video"])
            nums = [frame_number(p) for p in list_frame_files(path)] if path.is_dir() else []
            if nums:
                r["onset"] = r["onset"] if r["onset"] >= 0 else min(nums)
                r["offset"] = r["offset"] if r["offset"] > 0 else max(nums)
        if r["apex"] < 0 and r["offset"] > 0:
            r["apex"] = (r["onset"] + r["offset"]) // 2


def micro_dataset(df, resolve, annotation, missing: str, test_subject: Optional[str], what: str):
    """Resolve the media of a micro-expression sheet, fill unknown frame ranges, split for LOSO."""
    rows = resolve_rows(df, resolve, annotation, missing)
    fill_frame_range(rows)
    return loso_dict(rows, micro_features(df.attrs["class_names"]), test_subject, what)


def sample_onsets(rng: np.random.Generator, num_frames: int, start_range=(20, 400)) -> Tuple[int, int, int, int]:
    """``(onset, apex, offset, apex position)`` of a sample micro-expression clip of ``num_frames``: an onset frame
    number drawn from ``start_range``, the apex in the middle third."""
    onset = int(rng.integers(*start_range))
    apex_pos = int(rng.integers(num_frames // 3, max(num_frames // 3 + 1, 2 * num_frames // 3)))
    return onset, onset + apex_pos, onset + num_frames - 1, apex_pos
