"""The canonical eye-movement series of EM-VFER and its visual extraction from video frames.

Both sources of eye movements — a high-quality eye tracker (``emvfer_hf.eyetracking``, pre-training) and the
visual extractor that reads pupils from ordinary video frames (fine-tuning, inference) — produce the SAME canonical
series, so that the prior Ē of the instruction weight W(E', Ē) (paper eqs. [8]-[11]) is comparable across them.

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
behaviour — code / 2, i.e. fixation 0.0, saccade 0.5, blink 1.0.

This module is flat (only single-dot sibling imports; heavy dependencies — cv2, scipy, LiteRT — imported inside the
functions that need them) so that it can be
shipped as remote code next to a checkpoint.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from .face_backends_mert import default_face_backend
from .faces_mert import FACE_TEMPLATE as _FACE_TEMPLATE, FaceLandmarkBackend, FaceTrack, run_face_backend
from .faces_mert import similarity_transform as _similarity_transform
from .video_io_mert import check_frame_size, iter_timed_chunks, load_frames

EYE_MOVEMENT_CHANNELS = ("pupil_left", "pupil_right", "gaze_x", "gaze_y", "behaviour")
NUM_EYE_MOVEMENT_CHANNELS = len(EYE_MOVEMENT_CHANNELS)
PUPIL_CHANNELS = (0, 1)
GAZE_CHANNELS = (2, 3)
BEHAVIOUR_CHANNEL = 4

# Behaviour codes before normalisation (the normalised channel holds code / 2).
FIXATION, SACCADE, BLINK = 0, 1, 2
BEHAVIOUR_NAMES = {FIXATION: "fixation", SACCADE: "saccade", BLINK: "blink"}


def _interpolate_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
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
    out = _interpolate_invalid(values, valid)
    for c in PUPIL_CHANNELS:
        ref = out[valid, c] if valid.any() else out[:, c]
        mean = float(ref.mean()) if len(ref) else 0.0
        std = float(ref.std()) if len(ref) > 1 else 0.0
        out[:, c] = (out[:, c] - mean) / std if std > 1e-8 else out[:, c] - mean
    out[:, list(GAZE_CHANNELS)] = np.clip(out[:, list(GAZE_CHANNELS)], -1.0, 1.0)
    out[:, BEHAVIOUR_CHANNEL] = np.clip(np.round(out[:, BEHAVIOUR_CHANNEL]), 0, 2) / 2.0
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
        filled = _interpolate_invalid(self.values, self.valid)
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

    def resample(self, length: int = 256) -> "EyeMovementSeries":
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
    cov = cov + 1e-3 * np.eye(NUM_EYE_MOVEMENT_CHANNELS)
    return mean.astype(np.float32), cov.astype(np.float32)


# =====================================================================================================================
# Visual extraction: the paper's pupil chain, the eye channels from landmarks (faces_mert), behaviour classification
# =====================================================================================================================
# Heavy dependencies (cv2, torch, facenet_pytorch, av) are imported inside the functions that need them, so that
# this file stays importable (and shippable as remote code) without them.

# ------------------------------------------------------------------------------------------------ the pupil chain
@dataclass
class PupilMeasurement:
    """What the pupil chain finds in one eye patch: centre ``(x, y)`` in [-1, 1] of the patch (+x right, +y
    down), ``diameter`` in patch widths, ``area`` in pixels (0 when no dark blob), ``found``."""

    x: float = float("nan")
    y: float = float("nan")
    diameter: float = float("nan")
    area: float = 0.0
    found: bool = False


def measure_pupil(
    eye_gray: np.ndarray,
    bilateral: tuple = (5, 30.0, 5.0),
    erosion: int = 3,
    region: Optional[np.ndarray] = None,
) -> PupilMeasurement:
    """The paper's per-eye chain on an aligned grey eye patch (H, W) uint8.

    ``region`` (H, W) bool is the eye's visible area where landmarks give it (the polygon of the eyelids); without
    it the eye region is the ellipse inscribed in the patch.

    bilateral filter → erosion (a 3x3 minimum filter: removes glints and thin bright gaps, dark areas grow
    slightly) → Otsu threshold computed only over the eye region (``region``, else the ellipse inscribed in the patch) → dark mask,
    opened with a small disc so that thin lashes and lid lines detach from the round iris → connected components → the blob that contains the darkest point of the (smoothed) eye region, NOT the largest
    blob (which is often lashes or eyelid shadow) → darkness-weighted centroid and equivalent diameter.
    """
    import cv2

    h, w = eye_gray.shape[:2]
    img = cv2.bilateralFilter(np.ascontiguousarray(eye_gray), *bilateral)
    if erosion > 1:
        img = cv2.erode(img, np.ones((erosion, erosion), np.uint8))
    yy, xx = np.mgrid[0:h, 0:w]
    ellipse = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    if region is None:
        region, inner = ellipse <= 1.0, ellipse <= 0.75  # inner: no hits on the border
    else:
        region = np.asarray(region, dtype=bool)
        inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        inner = inner if inner.any() else region
    vals = img[region]
    if vals.size < 4 or int(vals.max()) - int(vals.min()) < 8:
        return PupilMeasurement()  # flat patch: closed eye or nothing to see
    thr, _ = cv2.threshold(vals.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = ((img <= thr) & region).astype(np.uint8)
    smooth = cv2.GaussianBlur(img, (0, 0), max(1.0, w / 24.0)).astype(np.float32)
    smooth[~inner] = np.inf
    dy, dx = np.unravel_index(int(np.argmin(smooth)), smooth.shape)
    n, labels = cv2.connectedComponents(dark, connectivity=8)
    label = labels[dy, dx]
    if label == 0:  # the darkest smoothed point fell between blobs: take the blob nearest to it
        if n <= 1:
            return PupilMeasurement()
        ys, xs = np.nonzero(labels)
        j = int(np.argmin((ys - dy) ** 2 + (xs - dx) ** 2))
        label = labels[ys[j], xs[j]]
    blob = (labels == label).astype(np.uint8)
    # the round iris/pupil is where the blob is thickest near the darkest point: its inscribed circle (distance
    # transform maximum within w/6 of that point) gives centre and radius; lashes or lid shadow merged into the
    # blob lie outside 1.3 radii and are cut off
    dist = cv2.distanceTransform(blob, cv2.DIST_L2, 3)
    near = ((xx - dx) ** 2 + (yy - dy) ** 2) <= (w / 6.0) ** 2
    dist_near = np.where(near, dist, 0)
    cy0, cx0 = np.unravel_index(int(np.argmax(dist_near)), dist.shape)
    radius = float(dist_near[cy0, cx0])
    if radius <= 0:
        return PupilMeasurement()
    blob = (blob > 0) & (((xx - cx0) ** 2 + (yy - cy0) ** 2) <= (1.3 * radius + 1.0) ** 2)
    weight = (float(thr) + 1.0 - img.astype(np.float32)) * blob
    total = float(weight.sum())
    if total <= 0:
        return PupilMeasurement()
    cx, cy = float((weight * xx).sum() / total), float((weight * yy).sum() / total)
    area = float(blob.sum())
    return PupilMeasurement(
        x=float(np.clip(2.0 * (cx + 0.5) / w - 1.0, -1, 1)),
        y=float(np.clip(2.0 * (cy + 0.5) / h - 1.0, -1, 1)),
        diameter=2.0 * np.sqrt(area / np.pi) / w,
        area=area,
        found=True,
    )


def _robust_sd(x: np.ndarray) -> float:
    """Median-based SD of the finite entries, sqrt(median(x²) - median(x)²) (Engbert & Kliegl)."""
    x = x[np.isfinite(x)]
    return float(np.sqrt(max(np.median(x**2) - np.median(x) ** 2, 0.0))) if len(x) else 0.0


class VisualEyeMovementExtractor:
    """Reads the canonical eye-movement series from the frames of a facial video.

    With a dense backend (:class:`~.faces_mert.FaceMeshBackend`, the default) the eye landmarks drive every channel:

    - **eye crops**: per eye, a patch aligned to the line through its two corners, ``eye_crop`` corner distances
      wide, and the eyelid polygon as the eye region of the paper's pupil chain (:func:`measure_pupil`: bilateral
      filter → erosion → Otsu binarisation → the dark blob).
    - **pupils** (ch 0, 1): blob diameter / the eye's corner distance (relative to the eye size, so face scale and
      distance to the camera cancel); ch 0 is the subject's LEFT eye (image-right for a non-mirrored camera), as
      the tracker's "left".
    - **gaze** (ch 2, 3): the iris centre (the iris model's, else the blob's) relative to the eye corners, as an
      eye-in-head angle (``asin(offset / eyeball_ratio)``), plus the head's yaw / pitch from the 3-D mesh: the gaze
      direction relative to the camera, ±``gaze_range_deg`` ↦ ±1, in the subject's frame like a tracker's screen
      point: +x towards the subject's right (image-left for a camera facing them; see ``mirrored``), +y down.
      Head roll is removed by measuring along the eye line.
    - **blinks** (ch 4 = blink): the eye aspect ratio (EAR: mean lid distance / corner distance, both eyes) against
      its own running open-eye level (the ``blink_baseline_s`` rolling 75th percentile: a per-video, adaptive
      threshold that follows head pitch and expression); a blink starts below ``blink_ratio`` x that level, extends
      while below ``blink_release`` x it, and lasts at least ``min_blink_ms``.
    - **saccades** (ch 4 = saccade): the gaze velocity (deg/s) above an adaptive threshold (``saccade_lambda``
      median-based SDs, Engbert & Kliegl) and at least ``min_saccade_speed`` deg/s; else fixation.
    - blink rows are valid, with pupils and gaze interpolated across; frames without a face or eyes are interpolated
      and invalid.

    With a 5-point backend (:class:`~.faces_mert.MTCNNBackend`, the fallback) the eye patches are placed by a
    similarity alignment of the 5 landmarks to a face template, blinks come from blob-size drops (``blob_blink_ratio``
    x the clip's median area) and gaze is the pupil offset inside the aligned box.

    Args:
        backend: a :class:`~.faces_mert.FaceLandmarkBackend` (default: :func:`~.faces_mert.default_face_backend`).
        eye_crop: (width, height) of a landmark eye crop in corner distances.
        eye_patch: (width, height) in pixels of an eye patch.
        blink_ratio, blink_release, blink_baseline_s, min_blink_ms: blink detection from the EAR.
        eyeball_ratio: the eyeball radius over half the corner distance (eye-in-head angle from the iris offset).
        iris_rest: where the iris centre sits for a straight look, in half corner distances from the corners'
            midpoint (above the corner line: the median over the annotated real videos of ``tests/fixtures/faces``).
        gaze_range_deg: the gaze angle mapped to ±1 (25°: about the half-width of a desktop screen, the tracker's ±1).
        mirrored: the video is mirrored (a selfie view); default False, a camera facing the subject.
        saccade_lambda, min_saccade_speed: saccade detection (deg/s; box half-widths/s on the 5-point path).
        eye_box, blob_blink_ratio: the 5-point path's eye box (inter-ocular distances) and blink ratio.
        normalize: apply :func:`normalize_eye_movements` (default) or return raw values.
    """

    def __init__(
        self,
        backend: Optional[FaceLandmarkBackend] = None,
        eye_crop: tuple = (1.3, 0.75),
        eye_patch: tuple = (48, 28),
        blink_ratio: float = 0.78,
        blink_release: float = 0.88,
        blink_baseline_s: float = 2.0,
        min_blink_ms: float = 50.0,
        eyeball_ratio: float = 0.8,
        iris_rest: tuple = (0.0, -0.17),
        gaze_source: str = "iris",
        gaze_range_deg: float = 25.0,
        mirrored: bool = False,
        saccade_lambda: float = 6.0,
        min_saccade_speed: float = 40.0,
        eye_box: tuple = (0.6, 0.36),
        blob_blink_ratio: float = 0.35,
        normalize: bool = True,
    ):
        self._backend = backend
        self.eye_crop = tuple(float(v) for v in eye_crop)
        self.eye_patch = tuple(int(v) for v in eye_patch)
        self.blink_ratio = float(blink_ratio)
        self.blink_release = float(blink_release)
        self.blink_baseline_s = float(blink_baseline_s)
        self.min_blink_ms = float(min_blink_ms)
        self.eyeball_ratio = float(eyeball_ratio)
        self.iris_rest = np.asarray(iris_rest, dtype=np.float64)
        if gaze_source not in ("iris", "pupil"):
            raise ValueError(f"gaze_source must be 'iris' or 'pupil', got {gaze_source!r}")
        self.gaze_source = gaze_source
        self.gaze_range_deg = float(gaze_range_deg)
        self.mirrored = bool(mirrored)
        self.saccade_lambda = float(saccade_lambda)
        self.min_saccade_speed = float(min_saccade_speed)
        self.eye_box = tuple(float(v) for v in eye_box)
        self.blob_blink_ratio = float(blob_blink_ratio)
        self.normalize = normalize

    @property
    def backend(self) -> FaceLandmarkBackend:
        if self._backend is None:
            self._backend = default_face_backend()
        return self._backend

    def detect_faces(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        """Run the backend once over the clip (reusable for face crops: pass it back as ``faces=``)."""
        return run_face_backend(self.backend, frames)

    # -- the landmark path ---------------------------------------------------------------------------------------
    def _eye_frame(self, eye: np.ndarray, subject_left: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """(mid point, unit axis image-left → image-right corner, corner distance) of one eye's points (9, 2)."""
        outer, inner = eye[0].astype(np.float64), eye[1].astype(np.float64)
        left, right = (inner, outer) if subject_left else (outer, inner)
        d = float(np.linalg.norm(right - left))
        return (left + right) / 2.0, (right - left) / max(d, 1e-6), d

    def measure_landmarks(self, frames: Sequence[np.ndarray], faces: FaceTrack) -> dict:
        """Per-frame raw measurements from dense eye landmarks, per eye (subject left, right):

        ``ear`` (N, 2) eye aspect ratio; ``pupil`` (N, 2) blob diameter / corner distance; ``offset`` (N, 2, 2) the
        iris centre's offset from the corner midpoint along / across the eye line in half corner distances; NaN
        where there is no face, no eye or no blob.
        """
        import cv2

        n = len(frames)
        ear = np.full((n, 2), np.nan)
        pupil = np.full((n, 2), np.nan)
        offset = np.full((n, 2, 2), np.nan)
        pw, ph = self.eye_patch
        cw, ch = self.eye_crop
        order = (0, 2, 3, 4, 1, 7, 6, 5)  # outer corner, upper lid, inner corner, lower lid: the eyelid polygon
        found = faces.found & np.isfinite(faces.eyes[..., :8, :]).all(axis=(1, 2, 3))
        for i in np.flatnonzero(found):
            gray = cv2.cvtColor(np.ascontiguousarray(frames[i]), cv2.COLOR_RGB2GRAY)
            for e in range(2):
                eye = faces.eyes[i, e].astype(np.float64)
                mid, axis, d = self._eye_frame(eye, subject_left=(e == 0))
                if d < 4.0:
                    continue
                normal = np.array([-axis[1], axis[0]])
                lids = np.linalg.norm(eye[2:5] - eye[5:8], axis=1)
                ear[i, e] = float(lids.mean() / d)
                # frame → patch: rows of the rotation are the eye axis and its normal, scaled to the crop
                sx, sy = pw / (cw * d), ph / (ch * d)
                rot = np.stack([axis * sx, normal * sy])
                m = np.concatenate([rot, (np.array([pw / 2.0, ph / 2.0]) - rot @ mid)[:, None]], axis=1)
                patch = cv2.warpAffine(gray, m, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                polygon = np.round((eye[list(order)] @ rot.T) + m[:, 2]).astype(np.int32)
                region = np.zeros((ph, pw), np.uint8)
                cv2.fillPoly(region, [polygon], 1)
                region = cv2.dilate(region, np.ones((3, 3), np.uint8)).astype(bool)
                if region.sum() < 12:
                    continue  # a closed eye: no region to measure
                found_pupil = measure_pupil(patch, region=region)
                if found_pupil.found:
                    pupil[i, e] = found_pupil.diameter * cw  # patch widths → corner distances
                iris = eye[8]
                if self.gaze_source == "iris" and np.isfinite(iris).all():
                    rel = iris - mid
                    offset[i, e] = (rel @ axis / (d / 2.0), rel @ normal / (d / 2.0))
                elif found_pupil.found:
                    offset[i, e] = (found_pupil.x * cw, found_pupil.y * ch)  # patch [-1, 1] → half corner distances
        return {"ear": ear, "pupil": pupil, "offset": offset}

    def detect_blinks(self, ear: np.ndarray, valid: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """(N,) bool blink frames from the eye aspect ratio (N,) (NaN where unknown) and the face mask (N,)."""
        from scipy.ndimage import percentile_filter

        n = len(ear)
        blink = np.zeros(n, bool)
        good = valid & np.isfinite(ear)
        if good.sum() < 3:
            return blink
        idx = np.arange(n)
        filled = np.interp(idx, idx[good], ear[good])
        dt = float(np.median(np.diff(times_s))) if n > 1 else 0.04
        dt = dt if dt > 0 else 0.04
        window = max(3, int(round(self.blink_baseline_s / dt)) | 1)
        baseline = percentile_filter(filled, 75, size=min(window, 2 * n + 1), mode="nearest")
        baseline = np.maximum(baseline, 1e-6)
        ratio = np.where(good, ear / baseline, np.nan)
        closed = np.nan_to_num(ratio, nan=1.0) < self.blink_ratio
        release = np.nan_to_num(ratio, nan=1.0) < self.blink_release
        min_frames = max(1, int(np.ceil(self.min_blink_ms / 1000.0 / dt - 1e-9)))
        i = 0
        while i < n:
            if not closed[i]:
                i += 1
                continue
            start = end = i
            while start > 0 and release[start - 1]:
                start -= 1
            while end + 1 < n and release[end + 1]:
                end += 1
            if end - start + 1 >= min_frames:
                blink[start : end + 1] = True
            i = end + 1
        return blink & valid

    def classify_landmarks(self, raw: dict, faces: FaceTrack, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw landmark measurements (:meth:`measure_landmarks`) → raw canonical values (N, 5) and the mask (N,)."""
        n = len(times_s)
        valid = faces.found & np.isfinite(raw["ear"]).any(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames where neither eye was measured
            ear = np.nanmean(raw["ear"], axis=1)
            offset = np.nanmean(raw["offset"], axis=1)  # (N, 2): both eyes move together
        blink = self.detect_blinks(ear, valid, times_s)
        angles = np.degrees(np.arcsin(np.clip((offset - self.iris_rest) / self.eyeball_ratio, -1.0, 1.0)))
        if faces.head_pose is not None:
            angles = angles + np.nan_to_num(faces.head_pose[:, :2].astype(np.float64))
        values = np.full((n, NUM_EYE_MOVEMENT_CHANNELS), np.nan)
        values[:, 0], values[:, 1] = raw["pupil"][:, 0], raw["pupil"][:, 1]
        values[:, 2:4] = angles / self.gaze_range_deg
        values[blink, :4] = np.nan  # a closed eye has no pupil and no gaze: interpolated across
        values[~valid, :4] = np.nan
        filled = _interpolate_invalid(values, np.ones(n, bool))  # blinks, lost eyes: interpolated across
        behaviour = np.full(n, FIXATION, np.float64)
        seen = valid & ~blink & np.isfinite(values[:, 2])
        if n > 2 and seen.sum() > 2:
            dt = np.gradient(times_s)
            deg = filled[:, 2:4] * self.gaze_range_deg
            vx, vy = np.gradient(deg[:, 0]) / dt, np.gradient(deg[:, 1]) / dt
            speed = np.hypot(vx, vy)
            sx, sy = _robust_sd(vx[seen]), _robust_sd(vy[seen])
            threshold = max(self.saccade_lambda * float(np.hypot(sx, sy)), self.min_saccade_speed)
            behaviour[seen & (speed > threshold)] = SACCADE
        behaviour[blink] = BLINK
        filled[:, BEHAVIOUR_CHANNEL] = behaviour
        filled[:, 2:4] = np.clip(filled[:, 2:4], -1.0, 1.0)
        return filled, valid

    def to_subject_frame(self, values: np.ndarray) -> np.ndarray:
        """Image-frame raw values (N, 5) → the subject's frame, as an eye tracker reports them: ch 0 the subject's
        left eye, +gaze x towards the subject's RIGHT (the right of a screen they face). For a camera facing the
        subject (``mirrored=False``) that is image-LEFT; a mirrored (selfie-view) video flips both."""
        values = np.array(values, dtype=np.float64, copy=True)
        if self.mirrored:
            values[:, [0, 1]] = values[:, [1, 0]]
        else:
            values[:, 2] = -values[:, 2]
        return values

    # -- the 5-point path ----------------------------------------------------------------------------------------
    def _eye_patches(self, frame_gray: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
        """The two aligned grey eye patches, subject's left eye (image-right, template index 1) first."""
        import cv2

        to_face = _similarity_transform(landmarks.astype(np.float64), _FACE_TEMPLATE)
        pw, ph = self.eye_patch
        bw, bh = self.eye_box
        patches = []
        for k in (1, 0):
            ex, ey = _FACE_TEMPLATE[k]
            # face coords -> patch pixels: translate the box corner to 0 and scale the box to the patch
            scale = np.array([[pw / bw, 0.0], [0.0, ph / bh]])
            a = scale @ to_face[:, :2]
            b = scale @ (to_face[:, 2] - np.array([ex - bw / 2, ey - bh / 2]))
            m = np.concatenate([a, b[:, None]], axis=1)
            patches.append(cv2.warpAffine(frame_gray, m, (pw, ph), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE))
        return patches

    def measure(self, frames: Sequence[np.ndarray], faces: FaceTrack) -> np.ndarray:
        """Per-frame raw measurements (N, 2, 4): per eye (subject left, right) ``x, y, diameter, area``; NaN (and
        area 0) where there is no face or no blob."""
        import cv2

        out = np.full((len(frames), 2, 4), np.nan, np.float64)
        found = faces.found
        for i, frame in enumerate(frames):
            if not found[i]:
                continue
            gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
            for e, patch in enumerate(self._eye_patches(gray, faces.landmarks[i])):
                m = measure_pupil(patch)
                out[i, e] = (m.x, m.y, m.diameter * self.eye_box[0], m.area)  # diameter / inter-ocular distance
        return out

    def classify(self, raw: np.ndarray, face: np.ndarray, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Turn raw per-eye measurements (N, 2, 4) into raw canonical values (N, 5) and the validity mask (N,)."""
        n = len(raw)
        area = np.nan_to_num(raw[..., 3], nan=0.0)
        area[~face] = np.nan
        ref = np.nanmedian(np.where(area > 0, area, np.nan), axis=0) if (area > 0).any() else np.array([1.0, 1.0])
        ref = np.where(np.isfinite(ref), ref, np.nanmax(ref) if np.isfinite(ref).any() else 1.0)
        with np.errstate(invalid="ignore"):
            ratio = area / ref[None, :]
        blink = face & np.all(np.nan_to_num(ratio, nan=0.0) < self.blob_blink_ratio, axis=1)
        open_eye = face[:, None] & ~blink[:, None] & np.isfinite(raw[..., 0])
        values = np.full((n, NUM_EYE_MOVEMENT_CHANNELS), np.nan)
        values[:, 0] = np.where(open_eye[:, 0], raw[:, 0, 2], np.nan)
        values[:, 1] = np.where(open_eye[:, 1], raw[:, 1, 2], np.nan)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames where neither eye was found
            values[:, 2] = np.nanmean(np.where(open_eye, raw[..., 0], np.nan), axis=1)
            values[:, 3] = np.nanmean(np.where(open_eye, raw[..., 1], np.nan), axis=1)
        valid = face.copy()
        # fill blinks and frames without a usable eye by interpolation over time
        filled = _interpolate_invalid(values, np.ones(n, bool))  # blinks, lost eyes: interpolated across
        # saccades from the gaze velocity (box half-widths per second)
        behaviour = np.full(n, FIXATION, np.float64)
        if n > 2:
            dt = np.gradient(times_s)
            vx, vy = np.gradient(filled[:, 2]) / dt, np.gradient(filled[:, 3]) / dt
            seen = np.isfinite(values[:, 2]) & valid
            sx, sy = _robust_sd(vx[seen]), _robust_sd(vy[seen])
            tx = max(self.saccade_lambda * sx, 2.0)  # at least 2 box half-widths per second
            ty = max(self.saccade_lambda * sy, 2.0)
            behaviour[seen & (np.hypot(vx / tx, vy / ty) > 1.0)] = SACCADE
        behaviour[blink] = BLINK
        filled[:, BEHAVIOUR_CHANNEL] = behaviour
        return filled, valid

    def __call__(self, frames, fps: Optional[float] = None, faces=None, allow_no_face: bool = False,
                 source: str = "<frames>") -> EyeMovementSeries:
        """Extract the series from RGB frames (T, H, W, 3) uint8; see :func:`extract_eye_movements`."""
        frames = list(frames)
        if not frames:
            raise ValueError(f"{source}: no frames to extract eye movements from")
        for f in frames[:1]:
            if np.asarray(f).ndim != 3 or np.asarray(f).shape[2] != 3:
                raise ValueError(f"{source}: frames must be RGB arrays (H, W, 3), got shape {np.asarray(f).shape}")
        frames = [np.asarray(f, dtype=np.uint8) for f in frames]
        fps = float(fps) if fps else 25.0
        times = np.arange(len(frames), dtype=np.float64) / fps
        if faces is None:
            faces = self.detect_faces(frames)
        elif not isinstance(faces, FaceTrack):
            faces = FaceTrack(*faces)
        if len(faces) != len(frames):
            raise ValueError(f"{source}: faces has {len(faces)} rows for {len(frames)} frames")
        if not faces.found.any() and not allow_no_face:
            raise ValueError(
                f"{source}: no face found in any of its {len(frames)} frames (pass allow_no_face=True for an "
                "all-invalid series)"
            )
        return self.series_from(self.measure_clip(frames, faces), faces, times, source, fps)

    def measure_clip(self, frames: Sequence[np.ndarray], faces: FaceTrack):
        """The raw per-frame measurements of a clip (:meth:`measure_landmarks` with dense landmarks, else
        :meth:`measure`). Chunks of a long video are measured one by one and joined with :func:`join_measurements`
        before the one classification of the whole video."""
        return self.measure_landmarks(frames, faces) if faces.has_eye_landmarks else self.measure(frames, faces)

    def series_from(self, raw, faces: FaceTrack, times_s: np.ndarray, source: str = "<frames>",
                    fps: float = 25.0) -> EyeMovementSeries:
        """Raw measurements of a whole clip or video → its series (blinks, saccades and their adaptive
        thresholds computed over all of it), normalised when ``self.normalize``."""
        times_s = np.asarray(times_s, dtype=np.float64)
        metadata = {"source": source, "fps": fps, "faces": faces}
        if not faces.found.any():
            values = np.zeros((len(times_s), NUM_EYE_MOVEMENT_CHANNELS), np.float32)
            return EyeMovementSeries(values, np.zeros(len(times_s), bool), times_s, True, metadata)
        if isinstance(raw, dict):
            values, valid = self.classify_landmarks(raw, faces, times_s)
        else:
            values, valid = self.classify(raw, faces.found, times_s)
        values = self.to_subject_frame(values)
        series = EyeMovementSeries(values.astype(np.float32), valid, times_s, normalized=False, metadata=metadata)
        return series.normalize() if self.normalize else series


def join_measurements(parts: Sequence):
    """Join the raw measurements of consecutive chunks (dicts of per-frame arrays, or arrays)."""
    if isinstance(parts[0], dict):
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return np.concatenate(parts)


def extract_eye_movements(
    frames_or_video,
    fps: Optional[float] = None,
    backend: Optional[FaceLandmarkBackend] = None,
    faces=None,
    allow_no_face: bool = False,
    extractor: Optional[VisualEyeMovementExtractor] = None,
    chunk_frames: int = 256,
    **extractor_kwargs,
) -> EyeMovementSeries:
    """Read the canonical eye-movement series from a facial video (one row per input frame).

    Args:
        frames_or_video: RGB frames (T, H, W, 3) uint8 (array or list) or a video file path (decoded with PyAV).
        fps: frame rate; default the video stream's rate, or 25 for frames.
        backend: face/landmark backend (default :func:`~.faces_mert.default_face_backend`: the face mesh).
        faces: precomputed detections for these frames — a :class:`FaceTrack` or ``(boxes (T,4), landmarks
            (T,5,2)[, probs (T,)])`` — to reuse one detection pass (see :func:`detect_faces`).
        allow_no_face: return an all-invalid series instead of raising when no frame has a face.
        extractor: a configured :class:`VisualEyeMovementExtractor` (else one is built from ``backend`` and
            ``extractor_kwargs``).
        chunk_frames: a video file is decoded and read ``chunk_frames`` frames at a time (memory stays bounded for
            long videos); the normalisation still runs once over the whole video.
    Returns:
        :class:`EyeMovementSeries` with ``values`` (T, 5) float32 normalised, ``valid`` (T,) bool (False where no
        face), ``times_s`` (T,) the frames' presentation times (a video file's from its stream; frame index / fps for
        frames, frame folders, or when ``fps`` is given); ``metadata["faces"]`` holds the :class:`FaceTrack`.
    Raises:
        ValueError: naming the input when it cannot be decoded, is empty, or has no face in any frame (unless
            ``allow_no_face``).
    """
    extractor = extractor or VisualEyeMovementExtractor(backend=backend, **extractor_kwargs)
    if isinstance(frames_or_video, (str, os.PathLike)) and faces is None:
        return _extract_in_chunks(str(frames_or_video), fps, extractor, allow_no_face, chunk_frames)
    frames, fps, source = load_frames(frames_or_video, fps)
    return extractor(frames, fps=fps, faces=faces, allow_no_face=allow_no_face, source=source)


def _extract_in_chunks(path: str, fps, extractor, allow_no_face: bool, chunk_frames: int) -> EyeMovementSeries:
    """A video file or frame folder, chunk by chunk (`chunk_frames` decoded frames at a time, so memory stays
    bounded): faces and raw measurements per chunk, joined on the video's time line (the frames' presentation times
    from the stream; `index / fps` when `fps` is given), then ONE classification (blink baseline, saccade
    threshold) and ONE normalisation over the whole video."""
    backend = extractor.backend  # built once, reused for every chunk
    raws, tracks, times, start, rate = [], [], [], 0, None
    for frames, stream_times, stream_fps in iter_timed_chunks(path, chunk_frames):
        if not start:
            check_frame_size(frames[0], path)
        rate = float(fps or stream_fps)
        faces = run_face_backend(backend, frames)
        tracks.append(faces)
        raws.append(extractor.measure_clip(frames, faces))  # NaN rows where no face: cheap
        times.append((start + np.arange(len(frames))) / rate if fps else stream_times)
        start += len(frames)
    faces = FaceTrack.concatenate(tracks)
    if not faces.found.any() and not allow_no_face:
        raise ValueError(
            f"{path}: no face found in any of its {start} frames (pass allow_no_face=True for an all-invalid series)"
        )
    return extractor.series_from(join_measurements(raws), faces, np.concatenate(times), path, rate)
