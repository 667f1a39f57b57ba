"""The canonical eye-movement series of EM-VFER: its format, its one normalisation, the behaviour encoding, the
prior Ē, and the small helpers every eye-movement module shares.

Both sources of eye movements — a high-quality eye tracker (``emvfer_hf.eyetracking``, pre-training) and the
visual extractor that reads pupils from ordinary video frames (``eye_extraction_mert``; fine-tuning, inference) —
produce the SAME canonical series, so that the prior Ē of the instruction weight W(E', Ē) (paper eqs. [8]-[11]) is
comparable across them.

Canonical format (docs/design.md §Eye-movement format): an array of shape (L, 5), float32, one row per time step, plus
a boolean validity mask and the time stamps of the rows.

| ch | name        | tracker source                    | visual source (dense landmarks; 5-point fallback in brackets) |
|----|-------------|-----------------------------------|----------------------------------------------------------------|
| 0  | pupil_left  | pupil diameter, mm (or EDF units) | dark-blob diameter / the eye's corner distance [/ inter-ocular] |
| 1  | pupil_right | pupil diameter, mm                | same, other eye                                                |
| 2  | gaze_x      | gaze point, [-1, 1] across display| gaze direction (iris vs corners + head pose), ±25° ↦ ±1, +x the subject's right [pupil offset in the eye box] |
| 3  | gaze_y      | same, vertical                    | same, vertical (+y down)                                       |
| 4  | behaviour   | fixation 0 / saccade 1 / blink 2  | blinks from the eye aspect ratio, saccades from gaze velocity [blob-size drops] |

After :func:`normalize_eye_movements` (the ONE normalisation used by both sources) the units are:
pupils — z-scores relative to the recording's own baseline (dimensionless); gaze — [-1, 1];
behaviour — code / 2, i.e. fixation 0.0, saccade 0.5, blink 1.0 (:func:`encode_behaviour`; read back with
:func:`decode_behaviour` or :meth:`EyeMovementSeries.behaviour_codes`).

The visual extraction (:class:`VisualEyeMovementExtractor`, :func:`extract_eye_movements`, :func:`measure_pupil`)
lives in ``eye_extraction_mert``; those names are still importable from here (loaded on first use, so that this
module imports no sibling at load time and the extraction module can import this one).

This module is flat (only single-dot sibling imports; numpy only at module level) so that it can be shipped as remote
code next to a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

EYE_MOVEMENT_CHANNELS = ("pupil_left", "pupil_right", "gaze_x", "gaze_y", "behaviour")
NUM_EYE_MOVEMENT_CHANNELS = len(EYE_MOVEMENT_CHANNELS)
PUPIL_CHANNELS = (0, 1)
GAZE_CHANNELS = (2, 3)
BEHAVIOUR_CHANNEL = 4

# Behaviour codes before normalisation: the paper's behaviour set {gaze, saccade, blink}, coded as the project's
# design fixes it (docs/design.md §Eye-movement format: fixation 0, saccade 1, blink 2, divided by 2 into [0, 1]).
# The normalised channel holds code / BLINK (:func:`encode_behaviour`, :func:`decode_behaviour`).
FIXATION, SACCADE, BLINK = 0, 1, 2
BEHAVIOUR_NAMES = {FIXATION: "fixation", SACCADE: "saccade", BLINK: "blink"}

#: the paper's number of eye steps L (the paper configuration: N_e = 257 eye tokens = 256 steps + CLS; the
#: `MERTConfig` default)
PAPER_EYE_SEQUENCE_LENGTH = 256
#: a pupil channel whose SD over the valid rows is below this is only centred, not scaled (our numerical floor: far
#: below any real variation in mm or in pixel ratios, above float rounding)
PUPIL_SD_FLOOR = 1e-8
#: the ridge added to the prior's pooled covariance so that it inverts (our choice; the multivariate-normal prior of
#: the paper's Table IX needs Σ⁻¹ and a constant channel would make Σ singular)
PRIOR_COVARIANCE_RIDGE = 1e-3


def encode_behaviour(codes) -> np.ndarray:
    """Behaviour codes (fixation 0, saccade 1, blink 2; other values are rounded and clipped to them) → the values of
    the normalised behaviour channel, code / 2: 0.0, 0.5, 1.0 (float64)."""
    return np.clip(np.round(np.asarray(codes, dtype=np.float64)), FIXATION, BLINK) / BLINK


def decode_behaviour(values) -> np.ndarray:
    """The normalised behaviour channel (0.0, 0.5, 1.0) → the integer codes fixation 0, saccade 1, blink 2 (the
    inverse of :func:`encode_behaviour`)."""
    return np.round(np.asarray(values) * BLINK).astype(int)


def runs(mask) -> list[tuple[int, int]]:
    """The runs of True in a bool array, as inclusive ``(first, last)`` index pairs."""
    edges = np.diff(np.concatenate([[False], np.asarray(mask, bool), [False]]).astype(np.int8))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def label_runs(labels) -> list[tuple[object, int, int]]:
    """The runs of equal consecutive entries of a label array, as ``(label, first, last)`` (inclusive indices)."""
    labels = np.asarray(labels, dtype=object)
    if len(labels) == 0:
        return []
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    firsts = np.concatenate([[0], change])
    lasts = np.concatenate([change, [len(labels)]]) - 1
    return [(labels[a], int(a), int(b)) for a, b in zip(firsts, lasts)]


def robust_sd(x: np.ndarray) -> float:
    """Median-based SD of the finite entries, sqrt(median(x²) - median(x)²) (Engbert & Kliegl 2003, *Vision Research*
    43, 1035–1045, eq. 2): the noise level of a velocity that saccades do not inflate. 0 for no finite entry."""
    x = np.asarray(x)
    x = x[np.isfinite(x)]
    return float(np.sqrt(max(np.median(x**2) - np.median(x) ** 2, 0.0))) if len(x) else 0.0


def interpolate_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill the rows where ``valid`` is False, and NaN entries, by linear interpolation over time per channel (edge
    rows take the nearest value; a channel with no usable entry becomes 0).

    Args:
        values: (N, C) array.
        valid: (N,) bool array.
    Returns:
        (N, C) float array; all zeros when no row is valid.
    """
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    if valid.all() and np.isfinite(values).all():
        return out
    if not valid.any():
        return np.zeros_like(out)
    idx = np.arange(len(values))
    for c in range(values.shape[1]):
        good = valid & np.isfinite(values[:, c])
        if not good.any():
            out[:, c] = 0.0
            continue
        out[:, c] = np.interp(idx, idx[good], values[good, c])
    return out


def normalize_eye_movements(values: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """The ONE normalisation of the canonical channels, used by the tracker and the visual source alike.

    - pupils (ch 0, 1): z-scored against the recording's own valid rows (dimensionless; the absolute scales of
      millimetres and of pixel ratios differ, their dynamics are what both sources share). A channel with no
      variance is only centred.
    - gaze (ch 2, 3): expected in [-1, 1] already (each source maps its own plane); clipped to [-1, 1].
    - behaviour (ch 4): codes fixation 0 / saccade 1 / blink 2, divided by 2 into [0, 1].

    Invalid rows are filled by interpolation from their valid neighbours before normalisation.

    Args:
        values: (N, 5) raw canonical values (pupils in any unit, gaze in [-1, 1], behaviour codes 0/1/2).
        valid: (N,) bool mask; default all rows valid.
    Returns:
        (N, 5) float32 array of normalised values, finite everywhere.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != NUM_EYE_MOVEMENT_CHANNELS:
        raise ValueError(f"eye-movement values must have shape (N, {NUM_EYE_MOVEMENT_CHANNELS}), got {values.shape}")
    valid = np.ones(len(values), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (len(values),):
        raise ValueError(f"valid mask must have shape ({len(values)},), got {valid.shape}")
    valid = valid & np.isfinite(values).all(axis=1)
    out = interpolate_invalid(values, valid)
    for c in PUPIL_CHANNELS:
        ref = out[valid, c] if valid.any() else out[:, c]
        mean = float(ref.mean()) if len(ref) else 0.0
        std = float(ref.std()) if len(ref) > 1 else 0.0
        out[:, c] = (out[:, c] - mean) / std if std > PUPIL_SD_FLOOR else out[:, c] - mean
    out[:, list(GAZE_CHANNELS)] = np.clip(out[:, list(GAZE_CHANNELS)], -1.0, 1.0)
    out[:, BEHAVIOUR_CHANNEL] = encode_behaviour(out[:, BEHAVIOUR_CHANNEL])
    return out.astype(np.float32)


@dataclass
class EyeMovementSeries:
    """A canonical eye-movement series: ``values`` (N, 5) float32, ``valid`` (N,) bool, ``times_s`` (N,) seconds.

    ``normalized`` says whether :func:`normalize_eye_movements` has been applied (readers and the extractor return
    normalised series; the model consumes normalised values only).
    """

    values: np.ndarray
    valid: np.ndarray
    times_s: np.ndarray
    normalized: bool = True
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.float32)
        n = len(self.values)
        if self.values.ndim != 2 or self.values.shape[1] != NUM_EYE_MOVEMENT_CHANNELS:
            raise ValueError(
                f"EyeMovementSeries.values must have shape (N, {NUM_EYE_MOVEMENT_CHANNELS}), got {self.values.shape}"
            )
        self.valid = np.asarray(self.valid, dtype=bool).reshape(-1)
        self.times_s = np.asarray(self.times_s, dtype=np.float64).reshape(-1)
        if self.valid.shape != (n,) or self.times_s.shape != (n,):
            raise ValueError(
                f"EyeMovementSeries: values has {n} rows but valid has {self.valid.shape[0]} and times_s "
                f"{self.times_s.shape[0]}"
            )
        if n > 1 and np.any(np.diff(self.times_s) < 0):
            raise ValueError("EyeMovementSeries.times_s must be non-decreasing")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1] - self.times_s[0]) if len(self) else 0.0

    def normalize(self) -> "EyeMovementSeries":
        """Apply :func:`normalize_eye_movements` (a no-op on an already normalised series)."""
        if self.normalized:
            return self
        return EyeMovementSeries(
            normalize_eye_movements(self.values, self.valid), self.valid, self.times_s, True, dict(self.metadata)
        )

    def behaviour_codes(self) -> np.ndarray:
        """The behaviour channel as integer codes (:data:`FIXATION` 0, :data:`SACCADE` 1, :data:`BLINK` 2), decoded
        from code / 2 when the series is normalised, read (rounded, clipped) as codes when it is raw."""
        channel = self.values[:, BEHAVIOUR_CHANNEL]
        if self.normalized:
            return decode_behaviour(channel)
        return np.clip(np.round(channel), FIXATION, BLINK).astype(int)

    @property
    def sampling_rate_hz(self) -> float:
        """The series' own rate: `metadata["fps"]` (or `"rate_hz"`) when known, else 1 / the median step (0 for
        fewer than two rows)."""
        for key in ("rate_hz", "fps"):
            rate = self.metadata.get(key)
            if rate:
                return float(rate)
        if len(self) < 2:
            return 0.0
        step = float(np.median(np.diff(self.times_s)))
        return 1.0 / step if step > 0 else 0.0

    def quality_features(self):
        """The quality features (F,) of W(E', Ē) (`eye_prior_mert.FEATURE_NAMES`), from the normalised series at its
        own samples, brought near `eye_prior_mert.QUALITY_FEATURE_RATE_HZ` by block averaging — never from the
        L-step resampling, whose interpolation smooths what the features measure. A torch tensor."""
        from .eye_prior_mert import series_quality_features

        series = self.normalize()
        return series_quality_features(series.values, series.valid, self.sampling_rate_hz)

    def resample_to_times(self, times_s: Sequence[float]) -> "EyeMovementSeries":
        """Resample at arbitrary time stamps (e.g. a video's frame times).

        Continuous channels are linearly interpolated over the valid rows; the behaviour channel and the mask take
        the nearest row (a target time outside the series' span, or nearest to an invalid row, is invalid).
        """
        times_s = np.asarray(times_s, dtype=np.float64).reshape(-1)
        m = len(times_s)
        if len(self) == 0:
            return EyeMovementSeries(np.zeros((m, 5), np.float32), np.zeros(m, bool), times_s, self.normalized)
        filled = interpolate_invalid(self.values, self.valid)
        out = np.empty((m, NUM_EYE_MOVEMENT_CHANNELS), dtype=np.float64)
        for c in range(NUM_EYE_MOVEMENT_CHANNELS):
            if c != BEHAVIOUR_CHANNEL:
                out[:, c] = np.interp(times_s, self.times_s, filled[:, c])
        # nearest row for categorical data and the mask
        pos = np.clip(np.searchsorted(self.times_s, times_s), 0, len(self) - 1)
        prev = np.clip(pos - 1, 0, len(self) - 1)
        nearest = np.where(np.abs(self.times_s[prev] - times_s) <= np.abs(self.times_s[pos] - times_s), prev, pos)
        out[:, BEHAVIOUR_CHANNEL] = filled[nearest, BEHAVIOUR_CHANNEL]
        step = np.median(np.diff(self.times_s)) if len(self) > 1 else 0.0
        inside = (times_s >= self.times_s[0] - step) & (times_s <= self.times_s[-1] + step)
        valid = self.valid[nearest] & inside
        return EyeMovementSeries(out.astype(np.float32), valid, times_s, self.normalized, dict(self.metadata))

    def resample(self, length: int = PAPER_EYE_SEQUENCE_LENGTH) -> "EyeMovementSeries":
        """Resample to ``length`` equally spaced steps over the series' own time span."""
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if len(self) == 0:
            return self.resample_to_times(np.zeros(length))
        return self.resample_to_times(np.linspace(self.times_s[0], self.times_s[-1], length))

    def window(self, start_s: float, end_s: float) -> "EyeMovementSeries":
        """The rows with ``start_s <= times_s < end_s``."""
        keep = (self.times_s >= start_s) & (self.times_s < end_s)
        return EyeMovementSeries(
            self.values[keep], self.valid[keep], self.times_s[keep], self.normalized, dict(self.metadata)
        )


def stack_eye_movement_series(series: Iterable[EyeMovementSeries], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample each series to ``length`` steps and stack: values (N, length, 5) float32, mask (N, length) bool."""
    values, masks = [], []
    for s in series:
        s = s.normalize().resample(length) if len(s) != length else s.normalize()
        values.append(s.values)
        masks.append(s.valid)
    if not values:
        raise ValueError("no eye-movement series given")
    return np.stack(values).astype(np.float32), np.stack(masks).astype(bool)


def eye_movement_prior(
    series: Union[Iterable[EyeMovementSeries], np.ndarray],
    mask: Optional[np.ndarray] = None,
    length: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The prior statistics Ē of high-quality eye movements (paper eqs. [9]-[11], Table IX).

    Args:
        series: an iterable of :class:`EyeMovementSeries` (resampled to ``length`` steps) or an array (N, L, 5) of
            normalised canonical values.
        mask: (N, L) validity mask for an array input (default: all valid).
        length: number of steps for iterables of series (required for them).
    Returns:
        ``(mean, covariance)``: the per-step mean series Ē of shape (L, 5) over the valid rows of all series (a step
        with no valid row takes the overall channel mean) and the pooled (5, 5) covariance of the residuals
        E - Ē over all valid rows (used by the multivariate-normal prior), with a small ridge so that it inverts.
    """
    if isinstance(series, np.ndarray) or hasattr(series, "numpy"):
        values = np.asarray(series, dtype=np.float64)
        if values.ndim != 3 or values.shape[-1] != NUM_EYE_MOVEMENT_CHANNELS:
            raise ValueError(f"expected eye-movement values of shape (N, L, 5), got {values.shape}")
        mask = np.ones(values.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    else:
        if length is None:
            raise ValueError("eye_movement_prior needs `length` to resample a collection of series")
        values, mask = stack_eye_movement_series(series, length)
        values = values.astype(np.float64)
    if mask.shape != values.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match values shape {values.shape[:2]}")
    if not mask.any():
        raise ValueError("cannot compute an eye-movement prior: no valid step in any series")
    w = mask[..., None].astype(np.float64)
    overall = (values * w).sum(axis=(0, 1)) / w.sum(axis=(0, 1))
    counts = w.sum(axis=0)  # (L, 1)
    mean = np.where(counts > 0, (values * w).sum(axis=0) / np.maximum(counts, 1), overall[None, :])
    resid = (values - mean[None]) [mask]
    if len(resid) > 1:
        cov = np.cov(resid, rowvar=False)
    else:
        cov = np.zeros((NUM_EYE_MOVEMENT_CHANNELS, NUM_EYE_MOVEMENT_CHANNELS))
    cov = cov + PRIOR_COVARIANCE_RIDGE * np.eye(NUM_EYE_MOVEMENT_CHANNELS)
    return mean.astype(np.float32), cov.astype(np.float32)


#: names that moved to ``eye_extraction_mert`` and stay importable from here (the README names them here)
_MOVED_TO_EXTRACTION = ("VisualEyeMovementExtractor", "extract_eye_movements", "measure_pupil", "PupilMeasurement")


def __getattr__(name: str):
    """The visual extraction's public names, from ``eye_extraction_mert``, imported on first use: that module imports
    this one, so a module-level re-export here would be an import circle (PEP 562)."""
    if name in _MOVED_TO_EXTRACTION:
        from .eye_extraction_mert import (
            PupilMeasurement,
            VisualEyeMovementExtractor,
            extract_eye_movements,
            measure_pupil,
        )

        moved = (VisualEyeMovementExtractor, extract_eye_movements, measure_pupil, PupilMeasurement)
        return dict(zip(_MOVED_TO_EXTRACTION, moved))[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
