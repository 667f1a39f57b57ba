"""Event detection for eye-tracker recordings: fixations, saccades, post-saccadic oscillations (PSOs), smooth
pursuit and blinks, the way the field detects them.

The detector never looks at the export's own labels. It is a velocity-based detector after Nyström & Holmqvist
(2010, *Behavior Research Methods* 42, 188–204) with the data-driven threshold of Engbert & Kliegl (2003, *Vision
Research* 43, 1035–1045), the physiological floor of the I-VT detectors that ship with trackers (Tobii I-VT, the
EyeLink online parser), and the inter-saccadic pursuit test of REMoDNaV (Dar, Wagner & Hanke 2021, *Behavior
Research Methods* 53, 399–414). Every time parameter is in milliseconds and every velocity in °/s, so the same
defaults hold from 60 to 1000 Hz.

1. **Velocity**, two scales: gaze is differentiated with a Savitzky–Golay filter (order 2) inside each run of
   valid samples and converted to °/s with ``pixels_per_degree`` (argument, else
   ``recording.metadata["pixels_per_degree"]``, else the gaze plane is assumed to span ``gaze_plane_deg`` = 40°
   horizontally: a desktop display at about 65 cm). Saccades are *found* on the 20 ms derivative
   (``velocity_window_ms``, Nyström & Holmqvist's filter), whose low noise keeps fixations whole; their
   *boundaries* and PSOs are placed on a 10 ms one (``boundary_window_ms``). A PSO is a damped oscillation of
   about 20–40 ms period (Hooge, Nyström, Cornelissen & Holmqvist 2015, *Vision Research* 112, 6–15): the 20 ms
   window averages it away and smears each saccade by 10 ms on either side, half a period resolves the dip between
   the saccade and its PSO where human coders put the saccade's end (at least 3 samples at low rates).
2. **Saccade peaks**: samples whose 20 ms velocity is above BOTH the recording's noise ellipse
   (``adaptive_lambda`` = 6 median-based SDs of the x and y velocities, Engbert & Kliegl) and the floor
   ``velocity_threshold_deg_s`` (20 °/s; EyeLink's psychophysical parser uses 22, Tobii's I-VT 30). The adaptive
   part keeps noisy trackers from splitting fixations; the floor keeps clean 1000 Hz recordings from reporting
   fixational drift and microsaccades, which trackers do not count.
3. **Onset** (Nyström & Holmqvist): from each peak, walk back on the 10 ms velocity while it stays above the onset
   level (``onset_fraction`` = 0.5 of both thresholds, computed on the 10 ms velocity: 3 SDs, as Nyström &
   Holmqvist's onset threshold against their peak's 6, and 10 °/s): the onset is the last sample above it.
   Nyström & Holmqvist walk on to the velocity minimum; the 10 ms filter already spreads the movement half a
   window earlier, so that would start saccades about 5 ms before the coders do.
   **Offset**: walk forward from the peak to the first local minimum of the 10 ms velocity below the peak level:
   the eye has stopped (or reversed: a PSO follows). Saccades shorter than ``min_saccade_ms`` (10 ms) are
   dropped. A movement above the onset level that lasts longer than ``max_saccade_ms`` (150 ms, beyond the main
   sequence of any saccade on a display) plus ``max_pso_ms`` is not one saccade: when its saccade part is short
   enough, that part is kept with at most ``max_pso_ms`` of PSO (the rest goes on as below: a second saccade, or
   pursuit); else it is no saccade at all (fast pursuit, lost tracking) and goes on to step 7.
4. **PSO** (Nyström & Holmqvist's glissade): when within ``max_pso_ms`` (40 ms; Nyström & Holmqvist, REMoDNaV)
   after the offset the 10 ms velocity rises again above the onset level, the samples from the offset up to where
   it settles below that level (then on to the local velocity minimum) are a ``pso`` event. When it does not rise
   again but stays above the onset level, the saccade's slow tail goes on: the offset moves on to where the
   velocity falls below the onset level.
5. **Blinks**: runs of lost samples (no gaze / no pupil), joined across valid gaps up to ``blink_gap_ms``, that
   last ``blink_min_ms``-``blink_max_ms`` (50-500 ms; shorter runs are dropouts, longer ones lost tracking). A
   saccade that runs into lost data is the eyelid sweeping the pupil image before/after the blink (EyeLink reports
   these as a saccade enclosing the blink): it is absorbed into the blink, or dropped next to a dropout.
6. **Fixations**: the valid stretches between saccades, PSOs and blinks; neighbours closer than ``merge_gap_ms``
   (75 ms) and ``merge_angle_deg`` (0.25°) are merged (the saccade and PSO between them are dropped).
7. **Smooth pursuit** (REMoDNaV's inter-saccadic test): inside each such stretch, gaze is low-passed
   (``pursuit_lowpass_hz`` = 4 Hz, Butterworth order 2, forward and backward; pursuit follows targets below a few
   Hz, tremor and tracker noise lie above) and differentiated; runs of at least ``min_pursuit_ms`` (100 ms) whose
   speed exceeds ``pursuit_velocity_deg_s`` (5 °/s) are ``pursuit``. REMoDNaV's 2 °/s is within the reach of
   fixational drift plus slow tracker drift (up to about 1–2 °/s on a chin-rest EyeLink); pursuit of the targets
   used in experiments runs at 5–30 °/s, and slower pursuit cannot be told from drift by velocity alone. What is
   left of a stretch is fixation; fixations shorter than ``min_fixation_ms`` (40 ms) are discarded.

In the canonical series (:meth:`EyeTrackingRecording.to_series`) a PSO counts as part of its saccade and pursuit
as gazing (behaviour 0): the paper's behaviour set is {blink, saccade, gaze}.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from ..eye_movement_mert import robust_sd, runs

EVENT_COLUMNS = ("event", "onset_ms", "offset_ms")
EVENT_NAMES = ("fixation", "saccade", "pso", "pursuit", "blink")


def empty_events() -> pd.DataFrame:
    """An empty event table with the columns ``event``, ``onset_ms``, ``offset_ms``."""
    return pd.DataFrame({"event": pd.Series(dtype=str), "onset_ms": pd.Series(dtype=float),
                         "offset_ms": pd.Series(dtype=float)})


def _window(ms: float, step_ms: float) -> int:
    """An odd filter length of about ``ms`` milliseconds, at least 3 samples."""
    return max(3, int(round(ms / step_ms)) | 1)


def savgol_velocity(x: np.ndarray, ok: np.ndarray, window: int, rate_hz: float) -> np.ndarray:
    """First derivative (units/s) of ``x`` by a Savitzky–Golay filter of order 2 over ``window`` (odd) samples,
    computed inside each run of ``ok``; NaN where the window leaves the run.

    For a symmetric window the order-2 and order-1 derivative kernels coincide: ``c_k = k / sum(k²)``.
    """
    half = window // 2
    k = np.arange(-half, half + 1, dtype=np.float64)
    kernel = (k / np.sum(k**2))[::-1] * rate_hz
    v = np.full(len(x), np.nan)
    for a, b in runs(ok):
        if b - a + 1 >= window:
            v[a + half : b + 1 - half] = np.convolve(x[a : b + 1], kernel, mode="valid")
    return v


def threshold_level(vx: np.ndarray, vy: np.ndarray, lam: float, floor_deg_s: float) -> np.ndarray:
    """Per-sample velocity in units of a two-part threshold: > 1 where the velocity (°/s components ``vx``,
    ``vy``) lies outside BOTH the noise ellipse of ``lam`` median-based SDs per component (Engbert & Kliegl 2003)
    and the circle of ``floor_deg_s``. NaN where the velocity is undefined.

    A noise-free component (synthetic data) has SD 0: then the floor alone decides.
    """
    tiny = np.finfo(np.float64).tiny
    sx, sy = max(robust_sd(vx), tiny), max(robust_sd(vy), tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        ellipse = np.hypot(vx / (lam * sx), vy / (lam * sy))
    return np.minimum(ellipse, np.hypot(vx, vy) / float(floor_deg_s))


def _walk_to_minimum(speed: np.ndarray, fin: np.ndarray, i: int, direction: int, stop: int) -> int:
    """From index ``i``, step in ``direction`` (±1) while the next sample is defined, not past ``stop`` and slower:
    the local minimum of ``speed``."""
    while i + direction != stop + direction and fin[i + direction] and speed[i + direction] < speed[i]:
        i += direction
    return i


def saccade_boundaries(
    speed: np.ndarray, high: np.ndarray, low: np.ndarray, peak: int, lower: int, upper: int
) -> tuple[int, int]:
    """Onset and offset of the saccade whose peak is ``peak`` (Nyström & Holmqvist 2010), on the boundary
    velocity ``speed`` (°/s, NaN where undefined).

    Args:
        high: per-sample level of the peak threshold (> 1 above it); low: of the onset threshold.
        lower, upper: the indices the saccade may not go beyond (the previous saccade's end, the recording's end).
    Returns:
        ``(onset, offset)``: the onset is the earliest sample of the run above the onset threshold that holds the
        peak; the offset is the first local minimum after the peak below the peak threshold.
    """
    fin = np.isfinite(speed)
    on = peak
    while on - 1 >= lower and fin[on - 1] and low[on - 1] > 1.0:
        on -= 1
    off = peak
    while off + 1 <= upper and fin[off + 1] and (high[off] > 1.0 or speed[off + 1] < speed[off]):
        off += 1
    return on, off


def post_saccadic_oscillation(
    speed: np.ndarray, low: np.ndarray, offset: int, upper: int, max_samples: int
) -> tuple[int, int]:
    """The PSO after a saccade that ends at ``offset`` (Nyström & Holmqvist's glissade), on the boundary velocity.

    Returns ``(end, saccade_offset)``: ``end`` is the PSO's last sample (``end == saccade_offset`` when there is
    none). The PSO is present when within ``max_samples`` after the offset (and before lost data) the velocity
    rises again, above the onset threshold (``low`` > 1) and above its value at the offset. It ends at the local
    velocity minimum after the last sample above the threshold: within the window when the velocity settles there,
    else where it falls below the threshold (not beyond ``upper``), so that a noisy recording's oscillation does not
    restart as a new saccade. When the velocity does not rise again but stays above the threshold, the saccade's
    slow tail goes on: the offset moves to that local minimum and there is no PSO.
    """
    fin = np.isfinite(speed)
    last = min(upper, offset + max_samples)
    if last <= offset:
        return offset, offset
    lost = np.flatnonzero(~fin[offset + 1 : last + 1])
    if len(lost):
        last = offset + int(lost[0])
    if last <= offset:
        return offset, offset
    seg = slice(offset + 1, last + 1)
    above = low[seg] > 1.0
    if not above.any():  # settled at once
        return offset, offset
    final = offset + 1 + int(np.flatnonzero(above)[-1])
    if final < last:  # settles within the window
        end = _walk_to_minimum(speed, fin, final, 1, last)
        if np.any(above & (speed[seg] > speed[offset])):  # rose again from the local minimum: a PSO
            return end, offset
        return end, end
    end = final
    while end + 1 <= upper and fin[end + 1] and low[end + 1] > 1.0:
        end += 1
    end = _walk_to_minimum(speed, fin, end, 1, upper)
    if np.any(above & (speed[seg] > speed[offset])):
        return end, offset
    return end, end


def smooth_pursuit(
    gx_deg: np.ndarray, gy_deg: np.ndarray, a: int, b: int, rate_hz: float, velocity_deg_s: float,
    lowpass_hz: float, min_samples: int, min_gap: int = 1,
) -> list[tuple[int, int]]:
    """Runs of smooth pursuit inside the inter-saccadic stretch ``[a, b]`` of valid samples (REMoDNaV's test).

    Gaze (degrees) is low-passed with a Butterworth filter of order 2 at ``lowpass_hz``, forward and backward (no
    phase shift), and differentiated (central differences); runs whose speed exceeds ``velocity_deg_s``, joined
    across pauses shorter than ``min_gap`` samples (too short for a fixation), are pursuit when they last at least
    ``min_samples``. Stretches shorter than ``min_samples`` have none.
    """
    from scipy.signal import butter, filtfilt

    n = b - a + 1
    if n < max(min_samples, 9) or lowpass_hz >= rate_hz / 2:
        return []
    bb, aa = butter(2, lowpass_hz / (rate_hz / 2))
    pad = min(n - 1, int(round(rate_hz / lowpass_hz)))
    x = filtfilt(bb, aa, gx_deg[a : b + 1], padtype="odd", padlen=pad)
    y = filtfilt(bb, aa, gy_deg[a : b + 1], padtype="odd", padlen=pad)
    speed = np.hypot(np.gradient(x), np.gradient(y)) * rate_hz
    pursuits: list[list[int]] = []
    for s, e in runs(speed > velocity_deg_s):
        if pursuits and s - pursuits[-1][1] - 1 < min_gap:  # too short a pause to be a fixation: one pursuit
            pursuits[-1][1] = e
        else:
            pursuits.append([s, e])
    return [(a + s, a + e) for s, e in pursuits if e - s + 1 >= min_samples]


def detect_events(
    recording,
    velocity_threshold_deg_s: float = 20.0,
    pixels_per_degree: Optional[float] = None,
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
    max_saccade_ms: float = 150.0,
    blink_gap_ms: float = 20.0,
    gaze_plane_deg: float = 40.0,
    boundary_window_ms: float = 10.0,
    max_pso_ms: float = 40.0,
    pursuit_velocity_deg_s: Optional[float] = 5.0,
    pursuit_lowpass_hz: float = 4.0,
    min_pursuit_ms: float = 100.0,
) -> pd.DataFrame:
    """Detect fixations, saccades, PSOs, smooth pursuit and blinks in a recording (its export/tracker labels are
    ignored).

    See the module docstring for the algorithm. All durations are in milliseconds, velocities in °/s.

    Args:
        recording: an :class:`~emvfer_hf.eyetracking.EyeTrackingRecording` (or anything with its
            ``timestamps_ms``, ``gaze_x``, ``gaze_y``, ``valid``, ``resolution`` and ``metadata``), gaze in
            ``recording.resolution`` units.
        velocity_threshold_deg_s: the velocity floor of a saccade peak (°/s); the peak must also exceed the
            recording's adaptive noise threshold.
        pixels_per_degree: gaze units per visual degree; default ``recording.metadata["pixels_per_degree"]``, else
            ``max(recording.resolution) / gaze_plane_deg``.
        velocity_window_ms: Savitzky–Golay window of the velocity that finds saccades.
        min_fixation_ms, merge_gap_ms, merge_angle_deg: fixation post-processing.
        blink_min_ms, blink_max_ms: duration range of a run of lost samples that counts as a blink.
        adaptive_lambda: the adaptive threshold in median-based SDs of each velocity component (Engbert & Kliegl: 6).
        merge_fraction: if given, the fixation-merge distance as a fraction of the larger side of the gaze plane
            (instead of ``merge_angle_deg``).
        onset_fraction: saccade onset level and PSO level as a fraction of the peak thresholds (Nyström &
            Holmqvist's onset threshold of 3 SDs against the peak's 6).
        min_saccade_ms: shortest saccade kept.
        max_saccade_ms: longest saccade: a movement above the onset level that lasts longer than this plus
            ``max_pso_ms`` is not a saccade (the main sequence, duration ≈ 21 ms + 2.2 ms/° × amplitude (Carpenter
            1988), gives about 130 ms for a 50° saccade); its samples go to the pursuit/fixation stage.
        blink_gap_ms: lost-sample runs separated by at most this many ms of valid samples form one blink.
        gaze_plane_deg: assumed horizontal extent of the gaze plane in degrees when no geometry is known.
        boundary_window_ms: Savitzky–Golay window of the velocity that places saccade onsets/offsets and PSOs.
        max_pso_ms: longest PSO, counted from the saccade's offset.
        pursuit_velocity_deg_s: low-passed speed above which an inter-saccadic stretch is pursuit; ``None``
            disables pursuit (everything between saccades is fixation).
        pursuit_lowpass_hz, min_pursuit_ms: the pursuit low-pass cut-off and shortest pursuit kept.
    Returns:
        DataFrame with columns ``event`` ("fixation" | "saccade" | "pso" | "pursuit" | "blink"), ``onset_ms``,
        ``offset_ms`` (time of the first and last sample of the event), sorted by onset.
    """
    t = np.asarray(recording.timestamps_ms, dtype=np.float64)
    n = len(t)
    if n < 3:
        return empty_events()
    steps = np.diff(t)
    steps = steps[steps > 0]
    if not len(steps):
        raise ValueError("detect_events: the recording's timestamps never increase (no sampling rate)")
    step = float(np.median(steps))
    rate = 1000.0 / step
    gx, gy = np.asarray(recording.gaze_x, np.float64), np.asarray(recording.gaze_y, np.float64)
    ok = np.asarray(recording.valid, bool) & np.isfinite(gx) & np.isfinite(gy)
    ppd = pixels_per_degree or recording.metadata.get("pixels_per_degree") or (
        max(recording.resolution) / float(gaze_plane_deg))
    window = _window(velocity_window_ms, step)
    half = window // 2

    # blinks: runs of lost samples, joined across short valid gaps, of plausible length
    joined: list[list[int]] = []
    for a, b in runs(~ok):
        if joined and t[a] - t[joined[-1][1]] <= blink_gap_ms + step:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    blinks = [bl for bl in joined if blink_min_ms <= t[bl[1]] - t[bl[0]] + step <= blink_max_ms
              and bl[0] > 0 and bl[1] < n - 1]

    # velocities (°/s): the 20 ms one finds saccade peaks, the 10 ms one places boundaries and PSOs
    vx = savgol_velocity(gx, ok, window, rate) / ppd
    vy = savgol_velocity(gy, ok, window, rate) / ppd
    fin = np.isfinite(vx) & np.isfinite(vy)
    b_window = _window(boundary_window_ms, step)
    bx = savgol_velocity(gx, ok, b_window, rate) / ppd
    by = savgol_velocity(gy, ok, b_window, rate) / ppd
    bspeed = np.hypot(bx, by)
    rows: list[tuple[str, float, float]] = []
    saccades: list[tuple[int, int]] = []
    psos: dict[tuple[int, int], tuple[int, int]] = {}
    if fin.sum() >= 10:
        level = threshold_level(vx, vy, adaptive_lambda, velocity_threshold_deg_s)
        high = np.nan_to_num(threshold_level(bx, by, adaptive_lambda, velocity_threshold_deg_s))
        low = np.nan_to_num(threshold_level(bx, by, adaptive_lambda * onset_fraction,
                                            velocity_threshold_deg_s * onset_fraction))
        peaks = runs(fin & (level > 1.0))
        max_pso = max(1, int(round(max_pso_ms / step)))
        for k, (a, b) in enumerate(peaks):
            lower = saccades[-1][1] + 1 if saccades else 0
            seg = bspeed[a : b + 1]
            if not np.isfinite(seg).any():
                continue
            peak = a + int(np.nanargmax(seg))
            if peak < lower:  # inside the previous saccade or its PSO (a strong PSO)
                continue
            upper = peaks[k + 1][0] - 1 if k + 1 < len(peaks) else n - 1
            on, off = saccade_boundaries(bspeed, high, low, peak, lower, max(upper, peak))
            # a strong PSO is a peak run of its own: the PSO window is not cut at the next run
            end, off = post_saccadic_oscillation(bspeed, low, off, n - 1, max_pso)
            if t[end] - t[on] + step > max_saccade_ms + max_pso_ms and t[off] - t[on] + step <= max_saccade_ms:
                end = off + max_pso  # a movement that does not settle is not all PSO: the window's worth
            saccades.append((on, end))  # the saccade and its PSO, split below
            if end > off:
                psos[(on, end)] = (off + 1, end)

    # saccades that run into lost data (up to where velocity is undefined) are lid artefacts of a blink
    reach = half + 1 + int(round(blink_gap_ms / step))
    kept = []
    for a, b in saccades:
        if (~ok[max(0, a - reach) : a]).any() or (~ok[b + 1 : b + 1 + reach]).any():
            for bl in blinks:
                if bl[0] - reach - 1 <= b and a <= bl[1] + reach + 1:
                    bl[0], bl[1] = min(bl[0], a), max(bl[1], b)
            continue
        sac_end = psos[(a, b)][0] - 1 if (a, b) in psos else b
        if t[b] - t[a] + step > max_saccade_ms + max_pso_ms:  # no saccade lasts so long: pursuit or noise
            continue
        if t[sac_end] - t[a] + step >= min_saccade_ms:
            kept.append((a, b))
    saccades = kept

    # fixations: valid stretches between saccades (with their PSOs) and blinks, merged when close in time and space
    busy = ~ok
    for a, b in saccades + [tuple(bl) for bl in blinks]:
        busy[a : b + 1] = True
    merge_dist = merge_angle_deg * ppd if merge_fraction is None else merge_fraction * float(max(recording.resolution))
    stretches: list[tuple[int, int]] = []
    dropped = set()
    for a, b in runs(~busy):
        if stretches and merge_dist > 0:
            pa, pb = stretches[-1]
            if t[a] - t[pb] <= merge_gap_ms and ok[pb : a + 1].all():
                dist = np.hypot(np.median(gx[pa : pb + 1]) - np.median(gx[a : b + 1]),
                                np.median(gy[pa : pb + 1]) - np.median(gy[a : b + 1]))
                if dist <= merge_dist:
                    stretches[-1] = (pa, b)
                    dropped.update(s for s in saccades if pb < s[0] and s[1] < a)
                    continue
        stretches.append((a, b))

    # smooth pursuit inside the stretches; the rest is fixation
    min_pursuit = max(1, int(round(min_pursuit_ms / step)))
    for a, b in stretches:
        pieces = [(a, b, "fixation")]
        if pursuit_velocity_deg_s is not None and ok[a : b + 1].all():
            pursuits = smooth_pursuit(gx / ppd, gy / ppd, a, b, rate, pursuit_velocity_deg_s, pursuit_lowpass_hz,
                                      min_pursuit, max(1, int(round(min_fixation_ms / step))))
            if pursuits:
                pieces, cursor = [], a
                for s, e in pursuits:
                    if s > cursor:
                        pieces.append((cursor, s - 1, "fixation"))
                    pieces.append((s, e, "pursuit"))
                    cursor = e + 1
                if cursor <= b:
                    pieces.append((cursor, b, "fixation"))
        for s, e, name in pieces:
            if name == "pursuit" or t[e] - t[s] + step >= min_fixation_ms:
                rows.append((name, t[s], t[e]))
    for a, b in saccades:
        if (a, b) in dropped:
            continue
        if (a, b) in psos:
            p0, p1 = psos[(a, b)]
            rows += [("saccade", t[a], t[p0 - 1]), ("pso", t[p0], t[p1])]
        else:
            rows.append(("saccade", t[a], t[b]))
    rows += [("blink", t[a], t[b]) for a, b in blinks]
    if not rows:
        return empty_events()
    out = pd.DataFrame(rows, columns=list(EVENT_COLUMNS)).sort_values("onset_ms", kind="stable")
    return out.reset_index(drop=True)


def coarse_events(events: pd.DataFrame, step_ms: float) -> pd.DataFrame:
    """An event table in the vocabulary of the trackers' own parsers and of the paper's behaviour set: fixation,
    saccade, blink.

    Each PSO joins the saccade it follows (the EyeLink and Tobii parsers end a saccade when the eye has settled);
    pursuit and the fixations it touches form one fixation (the parsers have no pursuit: the paper's "gaze"). They
    touch when the next starts at most one sample (``step_ms``, with 50 % slack for jitter) after the previous ends.
    """
    if len(events) == 0:
        return events[list(EVENT_COLUMNS)].copy()
    rename = {"pso": "saccade", "pursuit": "fixation"}
    rows: list[list] = []
    for name, on, off in zip(events["event"], events["onset_ms"], events["offset_ms"]):
        coarse = rename.get(name, name)
        prev = rows[-1] if rows else None
        joins = prev is not None and (
            (name == "pso" and prev[0] == "saccade")  # a PSO always follows its saccade's last sample
            or (coarse == prev[0] == "fixation" and "pursuit" in (name, prev[3]) and on - prev[2] <= step_ms * 1.5))
        if joins:
            prev[2] = max(prev[2], off)
            prev[3] = name
        else:
            rows.append([coarse, on, off, name])
    out = pd.DataFrame([r[:3] for r in rows], columns=list(EVENT_COLUMNS))
    return out

