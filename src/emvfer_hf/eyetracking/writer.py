"""Writer for Tobii Pro Lab "Data export" TSV files in the newer, unit-suffixed header style.

Used by the sample-data generator to write EMER-style recordings; :func:`~emvfer_hf.eyetracking.read_tobii_tsv`
reads them back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..eye_movement_mert import BEHAVIOUR_NAMES, label_runs

_LABELS = {"fixation": "Fixation", "saccade": "Saccade", "blink": "EyesNotFound",
           "eyesnotfound": "EyesNotFound", "unclassified": "Unclassified"}

TSV_COLUMNS = (
    "Recording timestamp [ms]",
    "Eyetracker timestamp [μs]",
    "Sensor",
    "Participant name",
    "Recording name",
    "Recording resolution width",
    "Recording resolution height",
    "Gaze point X [DACS px]",
    "Gaze point Y [DACS px]",
    "Pupil diameter left [mm]",
    "Pupil diameter right [mm]",
    "Validity left",
    "Validity right",
    "Eye movement type",
    "Eye movement event duration [ms]",
    "Eye movement type index",
)


def _label(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer, float, np.floating)):
        return _LABELS[BEHAVIOUR_NAMES[int(value)]]
    key = str(value).strip().lower()
    if key not in _LABELS:
        raise ValueError(f"unknown eye movement type {value!r}; expected one of {sorted(_LABELS)} or 0/1/2")
    return _LABELS[key]


def _fmt(x: np.ndarray, decimals: int, decimal: str, mask: Optional[np.ndarray] = None) -> list[str]:
    out = [("" if not np.isfinite(v) else f"{v:.{decimals}f}") for v in x]
    if mask is not None:
        out = [s if m else "" for s, m in zip(out, mask)]
    return [s.replace(".", decimal) for s in out] if decimal != "." else out


def write_tobii_tsv(
    path: Union[str, os.PathLike],
    timestamps_ms: Sequence[float],
    gaze_x_px: Sequence[float],
    gaze_y_px: Sequence[float],
    pupil_left_mm: Sequence[float],
    pupil_right_mm: Sequence[float],
    valid_left: Optional[Sequence[bool]] = None,
    valid_right: Optional[Sequence[bool]] = None,
    eye_movement_type: Optional[Sequence] = None,
    participant: str = "P01",
    resolution: tuple = (1920, 1080),
    recording_name: str = "Recording1",
    decimal: str = ".",
) -> Path:
    """Write one recording as a Tobii Pro Lab TSV export (newer, unit-suffixed headers, one row per sample).

    Args:
        path: output file (parent folders are created).
        timestamps_ms: (N,) sample times in ms since the recording start (increasing).
        gaze_x_px, gaze_y_px: (N,) gaze point in display pixels (DACS px), origin top-left; NaN = no gaze.
        pupil_left_mm, pupil_right_mm: (N,) pupil diameters in mm; NaN = not measured.
        valid_left, valid_right: (N,) per-eye validity (default: finite pupil). An invalid eye gets an empty pupil
            cell and ``Invalid``; a sample with both eyes invalid gets empty gaze cells, as Pro Lab writes it.
        eye_movement_type: optional (N,) labels, either strings (``fixation``/``saccade``/``blink``, Pro Lab's
            ``Fixation``/``Saccade``/``EyesNotFound``/``Unclassified``) or the canonical codes 0/1/2 (fixation /
            saccade / blink). Blinks are written as ``EyesNotFound``. The event duration and per-type index columns
            are derived from the runs of labels.
        participant, recording_name: metadata columns.
        resolution: (width, height) of the display in pixels, written to ``Recording resolution width/height``.
        decimal: decimal separator ("." or "," as in some locales).
    Returns:
        The path written.
    """
    t = np.asarray(timestamps_ms, dtype=np.float64).reshape(-1)
    n = len(t)
    arrays = {name: np.asarray(a, dtype=np.float64).reshape(-1) for name, a in (
        ("gaze_x_px", gaze_x_px), ("gaze_y_px", gaze_y_px), ("pupil_left_mm", pupil_left_mm),
        ("pupil_right_mm", pupil_right_mm))}
    for name, a in arrays.items():
        if a.shape != (n,):
            raise ValueError(f"write_tobii_tsv({path}): {name} has {a.shape[0]} samples, timestamps_ms has {n}")
    if n > 1 and np.any(np.diff(t) <= 0):
        raise ValueError(f"write_tobii_tsv({path}): timestamps_ms must be strictly increasing")
    vl = np.isfinite(arrays["pupil_left_mm"]) if valid_left is None else np.asarray(valid_left, bool).reshape(-1)
    vr = np.isfinite(arrays["pupil_right_mm"]) if valid_right is None else np.asarray(valid_right, bool).reshape(-1)
    any_eye = vl | vr
    cols: dict[str, list] = {
        TSV_COLUMNS[0]: _fmt(t, 3, decimal),
        TSV_COLUMNS[1]: [str(int(round(v * 1000.0))) for v in t],
        TSV_COLUMNS[2]: ["Eye Tracker"] * n,
        TSV_COLUMNS[3]: [participant] * n,
        TSV_COLUMNS[4]: [recording_name] * n,
        TSV_COLUMNS[5]: [str(int(resolution[0]))] * n,
        TSV_COLUMNS[6]: [str(int(resolution[1]))] * n,
        TSV_COLUMNS[7]: _fmt(arrays["gaze_x_px"], 1, decimal, any_eye),
        TSV_COLUMNS[8]: _fmt(arrays["gaze_y_px"], 1, decimal, any_eye),
        TSV_COLUMNS[9]: _fmt(arrays["pupil_left_mm"], 3, decimal, vl),
        TSV_COLUMNS[10]: _fmt(arrays["pupil_right_mm"], 3, decimal, vr),
        TSV_COLUMNS[11]: ["Valid" if v else "Invalid" for v in vl],
        TSV_COLUMNS[12]: ["Valid" if v else "Invalid" for v in vr],
    }
    labels = [""] * n if eye_movement_type is None else [_label(v) for v in eye_movement_type]
    if len(labels) != n:
        raise ValueError(f"write_tobii_tsv({path}): eye_movement_type has {len(labels)} entries, expected {n}")
    durations, indices = [""] * n, [""] * n
    if eye_movement_type is not None:
        counters: dict[str, int] = {}
        step = float(np.median(np.diff(t))) if n > 1 else 0.0
        for label, a, b in label_runs(labels):
            if label:
                counters[label] = counters.get(label, 0) + 1
                dur = str(int(round(t[b] - t[a] + step)))
                for i in range(a, b + 1):
                    durations[i], indices[i] = dur, str(counters[label])
    cols[TSV_COLUMNS[13]] = labels
    cols[TSV_COLUMNS[14]] = durations
    cols[TSV_COLUMNS[15]] = indices
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cols, columns=list(TSV_COLUMNS)).to_csv(path, sep="\t", index=False, encoding="utf-8")
    return path
