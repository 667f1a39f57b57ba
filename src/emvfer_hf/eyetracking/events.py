"""Event detection for eye-tracker recordings: I-VT fixations/saccades and blinks from runs of lost pupils.

The detector never looks at the export's own ``Eye movement type`` labels.

- **Blinks**: runs of samples without a valid pupil/gaze lasting 50-500 ms (shorter runs are dropouts, longer ones
  lost tracking).
- **I-VT**: gaze is smoothed with a running median over ~20 ms, the point-to-point velocity is computed over a
  ~20 ms window (Tobii's I-VT "velocity calculator window"), and samples faster than a threshold are saccade
  samples. The threshold is 30 °/s when ``pixels_per_degree`` is known; otherwise it adapts to the recording's own
  noise (Engbert & Kliegl 2003: an ellipse at 6 median-based SDs of the x and y velocities), which needs no screen
  geometry and scales with the sampling rate's noise from 60 to 1000 Hz.
- **Post-processing** (Tobii defaults): neighbouring fixations closer than 75 ms and 0.5 ° are merged, fixations
  shorter than 60 ms are discarded, saccades must span at least two samples' worth of movement.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from ..eye_movement_mert import _robust_sd
from .recording import EVENT_COLUMNS, EyeTrackingRecording, empty_events


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of the runs of True in a bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def _smooth(x: np.ndarray, ok: np.ndarray, window: int) -> np.ndarray:
    """Running median of ``x`` over ``window`` samples, computed within each run of ``ok`` (NaN elsewhere)."""
    out = np.full(len(x), np.nan)
    for a, b in _runs(ok):
        seg = pd.Series(x[a : b + 1])
        out[a : b + 1] = seg.rolling(window, center=True, min_periods=1).median().to_numpy()
    return out


def detect_events(
    recording: EyeTrackingRecording,
    velocity_threshold_deg_s: float = 30.0,
    pixels_per_degree: Optional[float] = None,
    smoothing_ms: float = 20.0,
    velocity_window_ms: float = 20.0,
    min_fixation_ms: float = 60.0,
    merge_gap_ms: float = 75.0,
    merge_angle_deg: float = 0.5,
    blink_min_ms: float = 50.0,
    blink_max_ms: float = 500.0,
    adaptive_lambda: float = 6.0,
    merge_fraction: float = 0.005,
) -> pd.DataFrame:
    """Detect fixations, saccades and blinks in a recording (its export labels are ignored).

    Args:
        recording: an :class:`EyeTrackingRecording` (gaze in ``recording.resolution`` units).
        velocity_threshold_deg_s: I-VT threshold when ``pixels_per_degree`` is given.
        pixels_per_degree: gaze units per visual degree; None selects the adaptive threshold (no geometry needed).
        adaptive_lambda: the adaptive threshold in robust SDs of each velocity component (Engbert & Kliegl: 6).
        merge_fraction: without ``pixels_per_degree``, the fixation-merge distance as a fraction of the larger
            side of the gaze plane (0.5 % ~ 0.5 ° on a desktop display).
        smoothing_ms, velocity_window_ms: running-median and velocity windows (at least 1 / 2 samples).
        min_fixation_ms, merge_gap_ms, merge_angle_deg: fixation post-processing (Tobii I-VT defaults).
        blink_min_ms, blink_max_ms: duration range of a run of lost samples that counts as a blink.
    Returns:
        DataFrame with columns ``event`` ("fixation" | "saccade" | "blink"), ``onset_ms``, ``offset_ms`` (time of
        the first and last sample of the event), sorted by onset.
    """
    t = recording.timestamps_ms
    n = len(t)
    if n < 3:
        return empty_events()
    step = float(np.median(np.diff(t)))
    rate = 1000.0 / step
    ok = recording.valid & np.isfinite(recording.gaze_x) & np.isfinite(recording.gaze_y)
    rows: list[tuple[str, float, float]] = []

    # blinks: runs of lost samples of plausible length
    for a, b in _runs(~ok):
        dur = t[b] - t[a] + step
        if blink_min_ms <= dur <= blink_max_ms and a > 0 and b < n - 1:
            rows.append(("blink", t[a], t[b]))

    # I-VT on smoothed gaze
    win = max(1, int(round(smoothing_ms * rate / 1000.0)))
    gx, gy = _smooth(recording.gaze_x, ok, win), _smooth(recording.gaze_y, ok, win)
    k = max(1, int(round(velocity_window_ms * rate / 2000.0)))
    idx = np.arange(n)
    lo, hi = np.clip(idx - k, 0, n - 1), np.clip(idx + k, 0, n - 1)
    dt = (t[hi] - t[lo]) / 1000.0
    with np.errstate(invalid="ignore", divide="ignore"):
        vx, vy = (gx[hi] - gx[lo]) / dt, (gy[hi] - gy[lo]) / dt
    bad = ~(ok[lo] & ok[hi] & ok) | (dt <= 0)
    vx[bad] = np.nan
    vy[bad] = np.nan
    if pixels_per_degree:
        speed = np.hypot(vx, vy) / (velocity_threshold_deg_s * pixels_per_degree)
        merge_dist = merge_angle_deg * pixels_per_degree
    else:  # Engbert & Kliegl: elliptic threshold at `adaptive_lambda` robust SDs of each velocity component
        sx, sy = _robust_sd(vx), _robust_sd(vy)
        if np.isfinite(vx).sum() < 10 or sx <= 0 or sy <= 0:
            return pd.DataFrame(rows, columns=list(EVENT_COLUMNS)) if rows else empty_events()
        speed = np.hypot(vx / (adaptive_lambda * sx), vy / (adaptive_lambda * sy))
        merge_dist = merge_fraction * float(max(recording.resolution))
    fast = np.isfinite(speed) & (speed > 1.0)
    slow = np.isfinite(speed) & ~fast
    # fixations: slow runs, merged across short interruptions of similar position, then length-filtered
    fix = []
    for a, b in _runs(slow):
        cx, cy = np.nanmean(gx[a : b + 1]), np.nanmean(gy[a : b + 1])
        if fix:
            pa, pb, px, py = fix[-1]
            if t[a] - t[pb] <= merge_gap_ms and np.hypot(cx - px, cy - py) <= merge_dist and ok[pb : a + 1].all():
                fix[-1] = (pa, b, np.nanmean(gx[pa : b + 1]), np.nanmean(gy[pa : b + 1]))
                continue
        fix.append((a, b, cx, cy))
    fixations = [(a, b) for a, b, _, _ in fix if t[b] - t[a] + step >= min_fixation_ms]
    merged_slow = np.zeros(n, bool)
    for a, b in fixations:
        merged_slow[a : b + 1] = True
        rows.append(("fixation", t[a], t[b]))
    # saccades: fast runs not absorbed by a merged fixation
    for a, b in _runs(fast & ~merged_slow):
        if b - a + 1 >= 2 or rate <= 120:
            rows.append(("saccade", t[a], t[b]))
    if not rows:
        return empty_events()
    out = pd.DataFrame(rows, columns=list(EVENT_COLUMNS)).sort_values("onset_ms", kind="stable")
    return out.reset_index(drop=True)
