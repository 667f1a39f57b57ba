"""The in-memory form of a high-quality eye-tracker recording and its conversion to the canonical series."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..eye_movement_mert import (
    BLINK,
    FIXATION,
    NUM_EYE_MOVEMENT_CHANNELS,
    SACCADE,
    EyeMovementSeries,
)
from .events import coarse_events, detect_events

EVENT_CODES = {"fixation": FIXATION, "saccade": SACCADE, "blink": BLINK}


def _fill_nan(x: np.ndarray) -> np.ndarray:
    """Linear interpolation of the NaN entries of a 1-d array over time (edges take the nearest value)."""
    x = np.asarray(x, dtype=np.float64)
    good = np.isfinite(x)
    if good.all() or not good.any():
        return x.copy()
    idx = np.arange(len(x))
    return np.interp(idx, idx[good], x[good])


@dataclass
class EyeTrackingRecording:
    """One eye-tracker recording, sample by sample (N samples).

    Attributes:
        timestamps_ms: (N,) float64, strictly increasing, milliseconds since the first sample of the export.
        pupil_left, pupil_right: (N,) float64 pupil sizes, NaN where that eye is invalid: diameters in mm for Tobii
            exports; EyeLink's area or diameter in camera units (``metadata["pupil_units"]``). The canonical series
            z-scores pupils per recording, so only their dynamics matter.
        gaze_x, gaze_y: (N,) float64 gaze point in the units of ``resolution`` (display pixels for Pro Lab exports,
            0..1 for the Pro SDK), origin top-left, NaN where no gaze was recorded.
        valid: (N,) bool, True where the sample carries a gaze point (at least one eye valid).
        valid_left, valid_right: (N,) bool per-eye validity.
        resolution: (width, height) of the gaze plane in gaze units; gaze is mapped to [-1, 1] across it.
        events: the tracker's own events (``event`` fixation/saccade/blink, ``onset_ms``, ``offset_ms``, possibly
            more columns) when the export has them: a Pro Lab ``Eye movement type`` column, an EyeLink EDF's
            online-parser events; else None. :func:`detect_events` never looks at them.
        source: the file (or description) the recording was read from, used in error messages.
        metadata: anything else the reader found (participant, recording name, resolution origin, ...).
    """

    timestamps_ms: np.ndarray
    pupil_left: np.ndarray
    pupil_right: np.ndarray
    gaze_x: np.ndarray
    gaze_y: np.ndarray
    valid: np.ndarray
    valid_left: Optional[np.ndarray] = None
    valid_right: Optional[np.ndarray] = None
    resolution: tuple = (1920.0, 1080.0)
    events: Optional[pd.DataFrame] = None
    source: str = "<memory>"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.timestamps_ms = np.asarray(self.timestamps_ms, dtype=np.float64).reshape(-1)
        n = len(self.timestamps_ms)
        for name in ("pupil_left", "pupil_right", "gaze_x", "gaze_y"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if arr.shape != (n,):
                raise ValueError(f"{self.source}: {name} has {arr.shape[0]} samples, timestamps_ms has {n}")
            setattr(self, name, arr)
        self.valid = np.asarray(self.valid, dtype=bool).reshape(-1)
        if self.valid_left is None:
            self.valid_left = self.valid & np.isfinite(self.pupil_left)
        if self.valid_right is None:
            self.valid_right = self.valid & np.isfinite(self.pupil_right)
        self.valid_left = np.asarray(self.valid_left, dtype=bool).reshape(-1)
        self.valid_right = np.asarray(self.valid_right, dtype=bool).reshape(-1)
        self.resolution = (float(self.resolution[0]), float(self.resolution[1]))

    def __len__(self) -> int:
        return len(self.timestamps_ms)

    @property
    def sampling_rate_hz(self) -> float:
        """Nominal sampling rate from the median sample step."""
        if len(self) < 2:
            return float("nan")
        return 1000.0 / float(np.median(np.diff(self.timestamps_ms)))

    @property
    def duration_ms(self) -> float:
        return float(self.timestamps_ms[-1] - self.timestamps_ms[0]) if len(self) else 0.0

    def gaze_normalized(self, resolution: Optional[Sequence[float]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Gaze mapped to [-1, 1] across the gaze plane (-1 left/top, +1 right/bottom), NaN where missing."""
        w, h = resolution if resolution is not None else self.resolution
        return 2.0 * self.gaze_x / float(w) - 1.0, 2.0 * self.gaze_y / float(h) - 1.0

    def to_series(
        self,
        start_ms: Optional[float] = None,
        end_ms: Optional[float] = None,
        times_s: Optional[Sequence[float]] = None,
        length: Optional[int] = None,
        events: str = "auto",
        resolution: Optional[Sequence[float]] = None,
        normalize: bool = True,
    ) -> EyeMovementSeries:
        """Convert the recording (or the window ``[start_ms, end_ms)`` of it) to the canonical series.

        The window is the part of the recording that overlaps a video: ``start_ms`` is the recording time of the
        video's first frame, and the series' ``times_s`` are seconds since ``start_ms`` (so they are the video's
        own time axis). Pupils and gaze are interpolated across blinks and across missing samples; blinks stay
        VALID rows (behaviour = blink), samples lost outside a blink are invalid.

        Args:
            start_ms, end_ms: window in recording milliseconds (default: the whole recording).
            times_s: resample at these times (seconds since ``start_ms``, e.g. a video's frame times).
            length: resample to ``length`` equally spaced steps from the window start to its last sample (ignored
                if ``times_s`` is given).
            events: where the behaviour channel comes from: ``"export"`` (the export's own labels), ``"detect"``
                (:func:`~emvfer_hf.eyetracking.detect_events`) or ``"auto"`` (export labels when present). A
                detected PSO counts as part of its saccade and pursuit as gazing (behaviour 0), as the paper's
                behaviour set {blink, saccade, gaze} has it (:func:`~emvfer_hf.eyetracking.coarse_events`).
            resolution: override the gaze plane (width, height) used to map gaze to [-1, 1].
            normalize: apply :func:`~emvfer_hf.eye_movement_mert.normalize_eye_movements` over the window (the
                per-recording baseline of the pupils is the window's own).
        Returns:
            :class:`~emvfer_hf.eye_movement_mert.EyeMovementSeries` with values (M, 5) float32, valid (M,),
            times_s (M,).
        """
        if events not in ("auto", "export", "detect"):
            raise ValueError(f"events must be 'auto', 'export' or 'detect', got {events!r}")
        if events == "export" and self.events is None:
            raise ValueError(f"{self.source}: the export has no 'Eye movement type' column (use events='detect')")
        table = self.events if (events != "detect" and self.events is not None) else detect_events(self)
        # the paper's behaviour set {gaze, saccade, blink}: a PSO is part of its saccade, pursuit is gazing
        table = coarse_events(table, 1000.0 / self.sampling_rate_hz)

        t0 = float(self.timestamps_ms[0]) if start_ms is None else float(start_ms)
        t1 = float(self.timestamps_ms[-1]) + 1e-9 if end_ms is None else float(end_ms)
        if t1 <= t0:
            raise ValueError(f"{self.source}: empty window start_ms={t0} >= end_ms={t1}")
        keep = (self.timestamps_ms >= t0) & (self.timestamps_ms < t1)
        if not keep.any():
            raise ValueError(
                f"{self.source}: no sample in the window [{t0}, {t1}) ms (recording spans "
                f"{self.timestamps_ms[0]:.1f}-{self.timestamps_ms[-1]:.1f} ms)"
            )
        ts = self.timestamps_ms
        behaviour = np.full(len(self), FIXATION, dtype=np.float64)
        in_blink = np.zeros(len(self), dtype=bool)
        for name in ("saccade", "blink"):  # blinks last: they win over an overlapping saccade
            for _, ev in table[table["event"] == name].iterrows():
                sel = (ts >= ev["onset_ms"]) & (ts <= ev["offset_ms"])
                behaviour[sel] = EVENT_CODES[name]
                if name == "blink":
                    in_blink |= sel
        gx, gy = self.gaze_normalized(resolution)
        raw = np.stack(
            [_fill_nan(self.pupil_left), _fill_nan(self.pupil_right), _fill_nan(gx), _fill_nan(gy), behaviour], axis=1
        )
        # a missing eye is filled from the other one's dynamics only through interpolation of its own samples;
        # a channel with no sample at all in the recording stays NaN and makes the rows invalid
        valid = (self.valid | in_blink) & np.isfinite(raw).all(axis=1)
        raw = np.nan_to_num(raw[keep], nan=0.0)
        series = EyeMovementSeries(
            raw.astype(np.float32), valid[keep], (ts[keep] - t0) / 1000.0, normalized=False,
            metadata={"source": self.source, "start_ms": t0, "end_ms": t1, "events": events},
        )
        if normalize:
            series = series.normalize()
        if times_s is not None:
            series = series.resample_to_times(times_s)
        elif length is not None:  # equally spaced from the window start (the video's t=0) to the last sample
            series = series.resample_to_times(np.linspace(0.0, float(series.times_s[-1]), length))
        assert series.values.shape[1] == NUM_EYE_MOVEMENT_CHANNELS
        return series
