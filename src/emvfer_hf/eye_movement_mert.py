"""The canonical eye-movement series of EM-VFER and its visual extraction from video frames.

Both sources of eye movements — a high-quality eye tracker (``emvfer_hf.eyetracking``, pre-training) and the
visual extractor that reads pupils from ordinary video frames (fine-tuning, inference) — produce the SAME canonical
series, so that the prior Ē of the instruction weight W(E', Ē) (paper eqs. [8]-[11]) is comparable across them.

Canonical format (ARCHITECTURE §4): an array of shape (L, 5), float32, one row per time step, plus a boolean
validity mask and the time stamps of the rows.

| ch | name        | tracker source                    | visual source                                     |
|----|-------------|-----------------------------------|---------------------------------------------------|
| 0  | pupil_left  | pupil diameter, mm                | dark-blob diameter / inter-ocular distance        |
| 1  | pupil_right | pupil diameter, mm                | same, other eye                                   |
| 2  | gaze_x      | gaze point, [-1, 1] across display| pupil-centre offset inside the eye box, [-1, 1]   |
| 3  | gaze_y      | same, vertical                    | same, vertical                                    |
| 4  | behaviour   | fixation 0 / saccade 1 / blink 2  | from blob-size drops and centre velocity          |

After :func:`normalize_eye_movements` (the ONE normalisation used by both sources) the units are:
pupils — z-scores relative to the recording's own baseline (dimensionless); gaze — [-1, 1];
behaviour — code / 2, i.e. fixation 0.0, saccade 0.5, blink 1.0.

This module is flat (only single-dot sibling imports, heavy optional dependencies imported lazily) so that it can be
shipped as remote code next to a checkpoint.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from .faces_mert import (  # noqa: F401  (detect_faces and the backends are re-exported for existing callers)
    _FACE_TEMPLATE,
    FaceLandmarkBackend,
    FaceTrack,
    MTCNNBackend,
    _similarity_transform,
    detect_faces,
)
from .video_io_mert import decode_video, iter_frame_chunks

EYE_MOVEMENT_CHANNELS = ("pupil_left", "pupil_right", "gaze_x", "gaze_y", "behaviour")
NUM_EYE_MOVEMENT_CHANNELS = len(EYE_MOVEMENT_CHANNELS)
PUPIL_CHANNELS = (0, 1)
GAZE_CHANNELS = (2, 3)
BEHAVIOUR_CHANNEL = 4

# Behaviour codes before normalisation (the normalised channel holds code / 2).
FIXATION, SACCADE, BLINK = 0, 1, 2
BEHAVIOUR_NAMES = {FIXATION: "fixation", SACCADE: "saccade", BLINK: "blink"}


def _interpolate_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill the rows where ``valid`` is False by linear interpolation over time (edge rows take the nearest value).

    Args:
        values: (N, C) array.
        valid: (N,) bool array.
    Returns:
        (N, C) float array; all zeros when no row is valid.
    """
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    if valid.all():
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
# Visual extraction: faces and landmarks (MTCNN), the paper's pupil chain, behaviour classification
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
) -> PupilMeasurement:
    """The paper's per-eye chain on an aligned grey eye patch (H, W) uint8.

    bilateral filter → erosion (a 3x3 minimum filter: removes glints and thin bright gaps, dark areas grow
    slightly) → Otsu threshold computed only over the eye region (the ellipse inscribed in the patch) → dark mask,
    opened with a small disc so that thin lashes and lid lines detach from the round iris → connected components → the blob that contains the darkest point of the (smoothed) eye region, NOT the largest
    blob (which is often lashes or eyelid shadow) → darkness-weighted centroid and equivalent diameter.
    """
    import cv2

    h, w = eye_gray.shape[:2]
    img = cv2.bilateralFilter(np.ascontiguousarray(eye_gray), *bilateral)
    if erosion > 1:
        img = cv2.erode(img, np.ones((erosion, erosion), np.uint8))
    yy, xx = np.mgrid[0:h, 0:w]
    region = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2 <= 1.0
    vals = img[region]
    if vals.size < 4 or int(vals.max()) - int(vals.min()) < 8:
        return PupilMeasurement()  # flat patch: closed eye or nothing to see
    thr, _ = cv2.threshold(vals.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = ((img <= thr) & region).astype(np.uint8)
    smooth = cv2.GaussianBlur(img, (0, 0), max(1.0, w / 24.0)).astype(np.float32)
    inner = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2 <= 0.75  # no border hits
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

    Per frame: face + 5 landmarks (``backend``) → similarity alignment of the landmarks to a 5-point face template
    (removes head translation, roll and scale) → for each eye an aligned patch of ``eye_patch`` pixels covering
    ``eye_box`` inter-ocular distances around the template's eye position → :func:`measure_pupil`. Then:

    - pupils (ch 0, 1): dark-blob diameter / inter-ocular distance; ch 0 is the subject's LEFT eye, i.e. the
      image-right eye of a non-mirrored camera (as the tracker's "left").
    - gaze (ch 2, 3): mean over the found eyes of the pupil-centre offset inside the aligned eye box, [-1, 1],
      +x image-right, +y image-down. Because the box is placed by the whole 5-point face frame, head motion is
      removed; because it is expressed in the box, the scale of the face is too.
    - behaviour (ch 4): blink where the blob area of both found eyes drops below ``blink_ratio`` x the clip's
      median (or no blob at all with a face present); saccade where the gaze velocity exceeds an adaptive
      threshold (``saccade_lambda`` median-based SDs, at least ``min_saccade_speed`` box half-widths per second);
      else fixation.
    - blinks are valid rows whose pupil/gaze values are interpolated across; frames without a face are
      interpolated and invalid.

    Args:
        backend: a :class:`FaceLandmarkBackend` (default :class:`MTCNNBackend`, built on first use).
        eye_box: (width, height) of an eye box in inter-ocular distances.
        eye_patch: (width, height) in pixels of the aligned eye patch.
        blink_ratio, saccade_lambda, min_saccade_speed: behaviour classification parameters.
        normalize: apply :func:`normalize_eye_movements` (default) or return raw values.
    """

    def __init__(
        self,
        backend: Optional[FaceLandmarkBackend] = None,
        eye_box: tuple = (0.6, 0.36),
        eye_patch: tuple = (48, 29),
        blink_ratio: float = 0.35,
        saccade_lambda: float = 6.0,
        min_saccade_speed: float = 2.0,
        normalize: bool = True,
    ):
        self._backend = backend
        self.eye_box = tuple(float(v) for v in eye_box)
        self.eye_patch = tuple(int(v) for v in eye_patch)
        self.blink_ratio = float(blink_ratio)
        self.saccade_lambda = float(saccade_lambda)
        self.min_saccade_speed = float(min_saccade_speed)
        self.normalize = normalize

    @property
    def backend(self) -> FaceLandmarkBackend:
        if self._backend is None:
            self._backend = MTCNNBackend()
        return self._backend

    def detect_faces(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        """Run the backend once over the clip (reusable for face crops: pass it back as ``faces=``)."""
        return FaceTrack(*self.backend.detect(list(frames)))

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
        blink = face & np.all(np.nan_to_num(ratio, nan=0.0) < self.blink_ratio, axis=1)
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
        filled = values.copy()
        idx = np.arange(n)
        for c in range(4):
            good = np.isfinite(values[:, c])
            filled[:, c] = np.interp(idx, idx[good], values[good, c]) if good.any() else 0.0
        # saccades from the gaze velocity (box half-widths per second)
        behaviour = np.full(n, FIXATION, np.float64)
        if n > 2:
            dt = np.gradient(times_s)
            vx, vy = np.gradient(filled[:, 2]) / dt, np.gradient(filled[:, 3]) / dt
            seen = np.isfinite(values[:, 2]) & valid
            sx, sy = _robust_sd(vx[seen]), _robust_sd(vy[seen])
            tx = max(self.saccade_lambda * sx, self.min_saccade_speed)
            ty = max(self.saccade_lambda * sy, self.min_saccade_speed)
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
            faces = FaceTrack(faces[0], faces[1], faces[2] if len(faces) > 2 else None)
        if len(faces) != len(frames):
            raise ValueError(f"{source}: faces has {len(faces)} rows for {len(frames)} frames")
        found = faces.found
        if not found.any():
            if not allow_no_face:
                raise ValueError(
                    f"{source}: no face found in any of its {len(frames)} frames (pass allow_no_face=True for an "
                    "all-invalid series)"
                )
            values = np.zeros((len(frames), NUM_EYE_MOVEMENT_CHANNELS), np.float32)
            return EyeMovementSeries(values, np.zeros(len(frames), bool), times, True,
                                     {"source": source, "fps": fps, "faces": faces})
        raw = self.measure(frames, faces)
        values, valid = self.classify(raw, found, times)
        series = EyeMovementSeries(values.astype(np.float32), valid, times, normalized=False,
                                   metadata={"source": source, "fps": fps, "faces": faces})
        return series.normalize() if self.normalize else series


def _load_frames(frames_or_video, fps: Optional[float]) -> tuple[list, float, str]:
    if isinstance(frames_or_video, (str, os.PathLike)):
        decoded = decode_video(frames_or_video)
        frames = [decoded.frames[i] for i in sorted(decoded.frames)]
        return frames, float(fps or decoded.fps), str(frames_or_video)
    frames = frames_or_video
    if hasattr(frames, "numpy") and not isinstance(frames, np.ndarray):
        frames = frames.numpy()
    return list(frames), float(fps or 25.0), "<frames>"


def extract_eye_movements(
    frames_or_video,
    fps: Optional[float] = None,
    backend: Optional[FaceLandmarkBackend] = None,
    faces=None,
    allow_no_face: bool = False,
    extractor: Optional[VisualEyeMovementExtractor] = None,
    chunk_frames: int = 512,
    **extractor_kwargs,
) -> EyeMovementSeries:
    """Read the canonical eye-movement series from a facial video (one row per input frame).

    Args:
        frames_or_video: RGB frames (T, H, W, 3) uint8 (array or list) or a video file path (decoded with PyAV).
        fps: frame rate; default the video stream's rate, or 25 for frames.
        backend: face/landmark backend (default :class:`MTCNNBackend`).
        faces: precomputed detections for these frames — a :class:`FaceTrack` or ``(boxes (T,4), landmarks
            (T,5,2)[, probs (T,)])`` — to reuse one detection pass (see :func:`detect_faces`).
        allow_no_face: return an all-invalid series instead of raising when no frame has a face.
        extractor: a configured :class:`VisualEyeMovementExtractor` (else one is built from ``backend`` and
            ``extractor_kwargs``).
        chunk_frames: a video file is decoded and read ``chunk_frames`` frames at a time (memory stays bounded for
            long videos); the normalisation still runs once over the whole video.
    Returns:
        :class:`EyeMovementSeries` with ``values`` (T, 5) float32 normalised, ``valid`` (T,) bool (False where no
        face), ``times_s`` (T,) = frame index / fps; ``metadata["faces"]`` holds the :class:`FaceTrack`.
    Raises:
        ValueError: naming the input when it cannot be decoded, is empty, or has no face in any frame (unless
            ``allow_no_face``).
    """
    extractor = extractor or VisualEyeMovementExtractor(backend=backend, **extractor_kwargs)
    if isinstance(frames_or_video, (str, os.PathLike)) and faces is None:
        return _extract_in_chunks(str(frames_or_video), fps, extractor, allow_no_face, chunk_frames)
    frames, fps, source = _load_frames(frames_or_video, fps)
    return extractor(frames, fps=fps, faces=faces, allow_no_face=allow_no_face, source=source)


def _extract_in_chunks(path: str, fps, extractor, allow_no_face: bool, chunk_frames: int) -> EyeMovementSeries:
    """A video file, chunk by chunk (`chunk_frames` decoded frames at a time, so memory stays bounded): raw values
    per chunk, joined on the video's time line, then the ONE normalisation over the whole video."""
    import copy

    raw_extractor = copy.copy(extractor)
    raw_extractor.normalize = False
    parts, start, rate = [], 0, None
    for frames, stream_fps in iter_frame_chunks(path, chunk_frames):
        rate = float(fps or stream_fps)
        part = raw_extractor(frames, fps=rate, allow_no_face=True, source=path)
        parts.append((part, start / rate))
        start += len(frames)
    if not any(part.valid.any() for part, _ in parts) and not allow_no_face:
        raise ValueError(
            f"{path}: no face found in any of its {start} frames (pass allow_no_face=True for an all-invalid series)"
        )
    faces = [part.metadata.get("faces") for part, _ in parts]
    series = EyeMovementSeries(
        np.concatenate([part.values for part, _ in parts]),
        np.concatenate([part.valid for part, _ in parts]),
        np.concatenate([part.times_s + offset for part, offset in parts]),
        normalized=not any(part.valid.any() for part, _ in parts),  # an all-invalid series is already zeros
        metadata={"source": path, "fps": rate, "faces": FaceTrack(
            np.concatenate([f.boxes for f in faces]), np.concatenate([f.landmarks for f in faces]),
            np.concatenate([f.probs for f in faces]),
        ) if all(f is not None for f in faces) else None},
    )  # fmt: skip
    return series.normalize() if extractor.normalize else series
