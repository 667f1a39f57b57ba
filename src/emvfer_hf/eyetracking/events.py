"""Event detection for eye-tracker recordings: fixations, saccades and blinks the way the field detects them.

The detector never looks at the export's own labels. It is a velocity-based detector after Nyström & Holmqvist
(2010) with the data-driven threshold of Engbert & Kliegl (2003), plus the physiological floor of the I-VT
detectors that ship with trackers (Tobii I-VT, the EyeLink online parser); every time parameter is in
milliseconds, so the same defaults hold from 60 to 1000 Hz.

1. **Velocity**: gaze is differentiated with a Savitzky–Golay filter (order 2, ``velocity_window_ms`` = 20 ms, at
   least 3 samples) inside each run of valid samples, and converted to °/s with ``pixels_per_degree`` (argument,
   else ``recording.metadata["pixels_per_degree"]``, else the gaze plane is assumed to span
   ``gaze_plane_deg`` = 40° horizontally: a desktop display at about 65 cm; the adaptive part does not depend on it).
2. **Saccade peaks**: samples above BOTH the recording's noise ellipse (``adaptive_lambda`` = 6 median-based SDs
   of the x and y velocities, Engbert & Kliegl) and the floor ``velocity_threshold_deg_s`` (20 °/s; EyeLink's
   psychophysical parser uses 22, Tobii's I-VT 30). The adaptive part keeps noisy trackers (a head-mounted scene
   camera, a 500 Hz remote recording with a poorly tracked eye) from splitting fixations; the floor keeps clean
   1000 Hz recordings from reporting fixational drift and microsaccades, which trackers do not count.
3. **Onset/offset** (Nyström & Holmqvist): from each peak run, walk back and forward while the velocity stays
   above ``onset_fraction`` (0.5) of both thresholds, then on to the local velocity minimum. Saccades shorter than
   ``min_saccade_ms`` (10 ms) are dropped.
4. **Blinks**: runs of lost samples (no gaze / no pupil), joined across valid gaps up to ``blink_gap_ms``, that
   last ``blink_min_ms``-``blink_max_ms`` (50-500 ms; shorter runs are dropouts, longer ones lost tracking). A
   saccade that runs into lost data is the eyelid sweeping the pupil image before/after the blink (EyeLink reports
   these as a saccade enclosing the blink): it is absorbed into the blink, or dropped next to a dropout.
5. **Fixations**: the valid stretches between saccades and blinks; neighbours closer than ``merge_gap_ms``
   (75 ms) and ``merge_angle_deg`` (0.25°) are merged (the saccade between them is dropped), then fixations
   shorter than ``min_fixation_ms`` (40 ms) are discarded.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

EVENT_COLUMNS = ("event", "onset_ms", "offset_ms")


def empty_events() -> pd.DataFrame:
    """An empty event table with the columns ``event``, ``onset_ms``, ``offset_ms``."""
    return pd.DataFrame({"event": pd.Series(dtype=str), "onset_ms": pd.Series(dtype=float),
                         "offset_ms": pd.Series(dtype=float)})


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of the runs of True in a bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def _median_sd(x: np.ndarray) -> float:
    """Median-based SD of the finite entries, sqrt(median(x²) - median(x)²) (Engbert & Kliegl 2003)."""
    x = x[np.isfinite(x)]
    return float(np.sqrt(max(np.median(x**2) - np.median(x) ** 2, 0.0))) if len(x) else 0.0


def savgol_velocity(x: np.ndarray, ok: np.ndarray, window: int, rate_hz: float) -> np.ndarray:
    """First derivative (units/s) of ``x`` by a Savitzky–Golay filter of order 2 over ``window`` (odd) samples,
    computed inside each run of ``ok``; NaN where the window leaves the run.

    For a symmetric window the order-2 and order-1 derivative kernels coincide: ``c_k = k / sum(k²)``.
    """
    half = window // 2
    k = np.arange(-half, half + 1, dtype=np.float64)
    kernel = (k / np.sum(k**2))[::-1] * rate_hz
    v = np.full(len(x), np.nan)
    for a, b in _runs(ok):
        if b - a + 1 >= window:
            v[a + half : b + 1 - half] = np.convolve(x[a : b + 1], kernel, mode="valid")
    return v


def detect_events(
    recording,
    velocity_threshold_deg_s: float = 20.0,
    pixels_per_degree: Optional[float] = None,
    smoothing_ms: Optional[float] = None,
    velocity_window_ms: float = 20.0,
    min_fixation_ms: float = 40.0,
    merge_gap_ms: float = 75.0,
    merge_angle_deg: float = 0.25,
    blink_min_ms: float = 50.0,
    blink_max_ms: float = 500.0,
    adaptive_lambda: float = 6.0,
    merge_fraction: Optional[float] = None,
    onset_fraction: float = 0.5,
    min_saccade_ms: float = 10.0,
    blink_gap_ms: float = 20.0,
    gaze_plane_deg: float = 40.0,
) -> pd.DataFrame:
    """Detect fixations, saccades and blinks in a recording (its export/tracker labels are ignored).

    See the module docstring for the algorithm. All durations are in milliseconds.

    Args:
        recording: an :class:`EyeTrackingRecording` (gaze in ``recording.resolution`` units).
        velocity_threshold_deg_s: the velocity floor of a saccade peak (°/s); the peak must also exceed the
            recording's adaptive noise threshold.
        pixels_per_degree: gaze units per visual degree; default ``recording.metadata["pixels_per_degree"]``, else
            ``max(recording.resolution) / gaze_plane_deg``.
        smoothing_ms: deprecated alias of ``velocity_window_ms`` (the old running-median window); used if given.
        velocity_window_ms: Savitzky–Golay window (at least 3 samples, rounded to an odd count).
        min_fixation_ms, merge_gap_ms, merge_angle_deg: fixation post-processing.
        blink_min_ms, blink_max_ms: duration range of a run of lost samples that counts as a blink.
        adaptive_lambda: the adaptive threshold in median-based SDs of each velocity component (Engbert & Kliegl: 6).
        merge_fraction: if given, the fixation-merge distance as a fraction of the larger side of the gaze plane
            (instead of ``merge_angle_deg``).
        onset_fraction: saccade onset/offset level as a fraction of the peak thresholds (Nyström & Holmqvist's
            onset threshold of 3 SDs against the peak's 6).
        min_saccade_ms: shortest saccade kept.
        blink_gap_ms: lost-sample runs separated by at most this many ms of valid samples form one blink.
        gaze_plane_deg: assumed horizontal extent of the gaze plane in degrees when no geometry is known.
    Returns:
        DataFrame with columns ``event`` ("fixation" | "saccade" | "blink"), ``onset_ms``, ``offset_ms`` (time of
        the first and last sample of the event), sorted by onset.
    """
    t = recording.timestamps_ms
    n = len(t)
    if n < 3:
        return empty_events()
    steps = np.diff(t)
    steps = steps[steps > 0]
    if not len(steps):
        raise ValueError("detect_events: the recording's timestamps never increase (no sampling rate)")
    step = float(np.median(steps))
    rate = 1000.0 / step
    ok = recording.valid & np.isfinite(recording.gaze_x) & np.isfinite(recording.gaze_y)
    gx, gy = recording.gaze_x, recording.gaze_y
    ppd = pixels_per_degree or recording.metadata.get("pixels_per_degree") or (
        max(recording.resolution) / float(gaze_plane_deg))
    window_ms = velocity_window_ms if smoothing_ms is None else smoothing_ms
    window = max(3, int(round(window_ms / step)) | 1)
    half = window // 2

    # blinks: runs of lost samples, joined across short valid gaps, of plausible length
    joined: list[list[int]] = []
    for a, b in _runs(~ok):
        if joined and t[a] - t[joined[-1][1]] <= blink_gap_ms + step:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    blinks = [bl for bl in joined if blink_min_ms <= t[bl[1]] - t[bl[0]] + step <= blink_max_ms
              and bl[0] > 0 and bl[1] < n - 1]

    # velocity (°/s) and the two thresholds: Engbert-Kliegl noise ellipse and the physiological floor
    vx = savgol_velocity(gx, ok, window, rate) / ppd
    vy = savgol_velocity(gy, ok, window, rate) / ppd
    speed = np.hypot(vx, vy)
    fin = np.isfinite(speed)
    sx, sy = _median_sd(vx), _median_sd(vy)
    rows: list[tuple[str, float, float]] = []
    saccades: list[tuple[int, int]] = []
    if fin.sum() >= 10:
        # a noise-free component (synthetic data) has SD 0: then the floor alone decides
        tiny = np.finfo(np.float64).tiny
        with np.errstate(over="ignore", invalid="ignore"):
            ellipse = np.hypot(vx / (adaptive_lambda * max(sx, tiny)), vy / (adaptive_lambda * max(sy, tiny)))
        level = np.minimum(ellipse, speed / float(velocity_threshold_deg_s))  # > 1: above both thresholds
        for a, b in _runs(fin & (level > 1.0)):
            on, off = a, b
            while on > 0 and fin[on - 1] and (level[on - 1] > onset_fraction or speed[on - 1] < speed[on]):
                on -= 1
            while off < n - 1 and fin[off + 1] and (level[off + 1] > onset_fraction or speed[off + 1] < speed[off]):
                off += 1
            if saccades and on <= saccades[-1][1] + 1:
                saccades[-1] = (saccades[-1][0], max(off, saccades[-1][1]))
            else:
                saccades.append((on, off))

    # saccades that run into lost data (up to where velocity is undefined) are lid artefacts of a blink
    reach = half + 1 + int(round(blink_gap_ms / step))
    kept = []
    for a, b in saccades:
        if (~ok[max(0, a - reach) : a]).any() or (~ok[b + 1 : b + 1 + reach]).any():
            for bl in blinks:
                if bl[0] - reach - 1 <= b and a <= bl[1] + reach + 1:
                    bl[0], bl[1] = min(bl[0], a), max(bl[1], b)
            continue
        if t[b] - t[a] + step >= min_saccade_ms:
            kept.append((a, b))
    saccades = kept

    # fixations: valid stretches between saccades and blinks, merged when close in time and space, length-filtered
    busy = ~ok
    for a, b in saccades + [tuple(bl) for bl in blinks]:
        busy[a : b + 1] = True
    merge_dist = merge_angle_deg * ppd if merge_fraction is None else merge_fraction * float(max(recording.resolution))
    fixations: list[tuple[int, int]] = []
    dropped = set()
    for a, b in _runs(~busy):
        if fixations and merge_dist > 0:
            pa, pb = fixations[-1]
            if t[a] - t[pb] <= merge_gap_ms and ok[pb : a + 1].all():
                dist = np.hypot(np.median(gx[pa : pb + 1]) - np.median(gx[a : b + 1]),
                                np.median(gy[pa : pb + 1]) - np.median(gy[a : b + 1]))
                if dist <= merge_dist:
                    fixations[-1] = (pa, b)
                    dropped.update(s for s in saccades if pb < s[0] and s[1] < a)
                    continue
        fixations.append((a, b))
    rows += [("fixation", t[a], t[b]) for a, b in fixations if t[b] - t[a] + step >= min_fixation_ms]
    rows += [("saccade", t[a], t[b]) for a, b in saccades if (a, b) not in dropped]
    rows += [("blink", t[a], t[b]) for a, b in blinks]
    if not rows:
        return empty_events()
    out = pd.DataFrame(rows, columns=list(EVENT_COLUMNS)).sort_values("onset_ms", kind="stable")
    return out.reset_index(drop=True)
