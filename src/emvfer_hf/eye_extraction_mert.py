"""Visual extraction of the canonical eye-movement series (``eye_movement_mert``) from the frames of a facial video.

Layers, bottom up:

- :func:`measure_pupil` — the paper's per-eye chain on an aligned grey eye patch (bilateral filter → erosion → Otsu
  binarisation → the dark blob).
- :class:`EyeMeasurements` — the typed raw measurements of a clip, one row per frame and eye, before classification;
  chunks of a long video are measured one by one, sliced and joined (:meth:`EyeMeasurements.select`,
  :meth:`EyeMeasurements.concatenate`) and classified once.
- Two extraction strategies turn frames and their :class:`~.faces_mert.FaceTrack` into measurements and those into the
  continuous channels and blinks: :class:`DenseLandmarkStrategy` (the face mesh's eye landmarks: eyelids, corners,
  iris; the default) and :class:`FivePointStrategy` (MTCNN's 5 points: eye boxes placed by a face template; the
  fallback). Both hand their gaze to ONE :class:`BehaviourClassifier` (saccades from the gaze velocity against an
  adaptive threshold, blinks on top).
- :class:`VisualEyeMovementExtractor` picks the strategy from the faces, turns the channels into the subject's frame
  and normalises; :func:`extract_eye_movements` reads a video (in chunks) or frames.

This module is flat (only single-dot sibling imports; heavy dependencies — cv2, scipy — imported inside the functions
that need them) so that it can be shipped as remote code next to a checkpoint.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields
from typing import Optional, Sequence

import numpy as np

from .eye_movement_mert import (
    BEHAVIOUR_CHANNEL,
    BLINK,
    FIXATION,
    NUM_EYE_MOVEMENT_CHANNELS,
    SACCADE,
    EyeMovementSeries,
    interpolate_invalid,
    robust_sd,
)
from .face_backends_mert import default_face_backend
from .faces_mert import FACE_TEMPLATE, FaceLandmarkBackend, FaceTrack, run_face_backend, similarity_transform
from .video_io_mert import DEFAULT_FPS, check_frame_size, iter_timed_chunks, load_frames

# ------------------------------------------------------------------------------------------------ the pupil chain
#: bilateral filter of the pupil chain: neighbourhood diameter (px), σ of colour (grey levels), σ of space (px)
#: (Tomasi & Manduchi 1998, ICCV; our values for eye patches about 48 px wide: edge-preserving, lashes smoothed)
PUPIL_BILATERAL = (5, 30.0, 5.0)
#: side (px) of the square erosion (minimum filter) after it: removes glints and thin bright gaps (our choice)
PUPIL_EROSION = 3
#: a patch whose eye region spans fewer grey levels than this is flat: a closed eye or nothing to see (our choice)
MIN_EYE_CONTRAST = 8
#: without an eyelid polygon, the darkest point is searched inside this fraction of the inscribed ellipse (our
#: choice: keeps it off the patch border)
INNER_ELLIPSE = 0.75
#: σ of the blur that finds the darkest point, in patch widths (our choice: about the pupil's radius)
DARKEST_POINT_BLUR = 1.0 / 24.0
#: the iris centre is searched within this many patch widths of the darkest point (our choice)
IRIS_SEARCH_RADIUS = 1.0 / 6.0
#: blob parts beyond this many inscribed radii (+1 px) from the iris centre are lashes or lid shadow (our choice)
BLOB_CUT_RADII = 1.3


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
    bilateral: tuple = PUPIL_BILATERAL,
    erosion: int = PUPIL_EROSION,
    region: Optional[np.ndarray] = None,
) -> PupilMeasurement:
    """The paper's per-eye chain on an aligned grey eye patch (H, W) uint8.

    ``region`` (H, W) bool is the eye's visible area where landmarks give it (the polygon of the eyelids); without
    it the eye region is the ellipse inscribed in the patch.

    bilateral filter → erosion (a 3x3 minimum filter: removes glints and thin bright gaps, dark areas grow
    slightly) → Otsu threshold (Otsu 1979, IEEE Trans. SMC 9, 62–66) computed only over the eye region (``region``,
    else the ellipse inscribed in the patch) → dark mask → connected components → the blob that contains the darkest
    point of the (smoothed) eye region, NOT the largest blob (which is often lashes or eyelid shadow) → its inscribed
    circle near that point (lashes and lid lines merged into the blob are cut off) → darkness-weighted centroid and
    equivalent diameter.
    """
    import cv2

    h, w = eye_gray.shape[:2]
    img = cv2.bilateralFilter(np.ascontiguousarray(eye_gray), *bilateral)
    if erosion > 1:
        img = cv2.erode(img, np.ones((erosion, erosion), np.uint8))
    yy, xx = np.mgrid[0:h, 0:w]
    ellipse = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    if region is None:
        region, inner = ellipse <= 1.0, ellipse <= INNER_ELLIPSE  # inner: no hits on the border
    else:
        region = np.asarray(region, dtype=bool)
        inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        inner = inner if inner.any() else region
    vals = img[region]
    if vals.size < 4 or int(vals.max()) - int(vals.min()) < MIN_EYE_CONTRAST:
        return PupilMeasurement()  # flat patch: closed eye or nothing to see
    thr, _ = cv2.threshold(vals.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = ((img <= thr) & region).astype(np.uint8)
    smooth = cv2.GaussianBlur(img, (0, 0), max(1.0, w * DARKEST_POINT_BLUR)).astype(np.float32)
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
    # transform maximum within IRIS_SEARCH_RADIUS of that point) gives centre and radius; lashes or lid shadow merged
    # into the blob lie outside BLOB_CUT_RADII radii and are cut off
    dist = cv2.distanceTransform(blob, cv2.DIST_L2, 3)
    near = ((xx - dx) ** 2 + (yy - dy) ** 2) <= (w * IRIS_SEARCH_RADIUS) ** 2
    dist_near = np.where(near, dist, 0)
    cy0, cx0 = np.unravel_index(int(np.argmax(dist_near)), dist.shape)
    radius = float(dist_near[cy0, cx0])
    if radius <= 0:
        return PupilMeasurement()
    blob = (blob > 0) & (((xx - cx0) ** 2 + (yy - cy0) ** 2) <= (BLOB_CUT_RADII * radius + 1.0) ** 2)
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


# ------------------------------------------------------------------------------------------------ raw measurements
@dataclass
class EyeMeasurements:
    """The raw per-frame measurements of a clip, before classification: one row per frame, per eye the subject's
    left eye first; NaN where there is no face, no eye or no blob.

    Attributes:
        pupil: (N, 2) the pupil (dark blob) diameter, in the eye's corner distances (dense landmarks) or in
            inter-ocular distances (5 points).
        gaze: (N, 2, 2) per eye, the (x, y) offset of the eye's centre: the iris centre's offset from the corners'
            midpoint along / across the eye line in half corner distances (dense landmarks), or the blob's centre in
            [-1, 1] of the aligned eye box (5 points).
        eye_aspect_ratio: (N, 2) mean lid distance / corner distance; dense landmarks only (else None).
        blob_area: (N, 2) the blob's area in patch pixels (0 where no blob); 5 points only (else None).
    """

    pupil: np.ndarray
    gaze: np.ndarray
    eye_aspect_ratio: Optional[np.ndarray] = None
    blob_area: Optional[np.ndarray] = None

    def _arrays(self) -> dict:
        """The measured arrays by field name (the absent optional ones left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def dense(self) -> bool:
        """Measured from dense eye landmarks (eyelids, corners, iris), not from 5 points."""
        return self.eye_aspect_ratio is not None

    def __len__(self) -> int:
        return len(self.pupil)

    def select(self, rows) -> "EyeMeasurements":
        """The frames ``rows`` (an index array or a boolean mask)."""
        return EyeMeasurements(**{name: value[rows] for name, value in self._arrays().items()})

    def missing(self, n: int) -> "EyeMeasurements":
        """``n`` frames without a face (all NaN), with the same fields as this one."""
        arrays = self._arrays()
        return EyeMeasurements(**{name: np.full((n, *value.shape[1:]), np.nan) for name, value in arrays.items()})

    @classmethod
    def concatenate(cls, parts: Sequence["EyeMeasurements"]) -> "EyeMeasurements":
        """Join the measurements of consecutive chunks (of one kind) along time."""
        names = parts[0]._arrays()
        return cls(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in names})


# ------------------------------------------------------------------------------------------------ behaviour
#: the 5-point path's saccade floor, in box half-widths (heights) per second: at least 2 (our choice; its gaze is in
#: eye-box units, not degrees, so the dense path's °/s floor does not apply)
FIVE_POINT_MIN_SACCADE_SPEED = 2.0


@dataclass
class BehaviourClassifier:
    """The one behaviour classifier of the visual strategies: saccades from the gaze velocity, blinks on top.

    The velocity is the time derivative (central differences) of the gaze (interpolated across unseen frames) in the
    strategy's unit. A frame where the eye is seen is a saccade when its velocity is above an adaptive threshold:
    ``saccade_lambda`` median-based SDs of the seen frames' velocities (Engbert & Kliegl 2003, *Vision Research* 43,
    1035–1045: λ = 6) and at least ``min_saccade_speed``. With ``isotropic`` (both gaze axes in one unit, degrees)
    the threshold is one radius, λ·|(σx, σy)|; else (axes in different units) one threshold per axis, and the
    velocity is outside the ellipse they span. Too few seen frames (< 3) for a noise estimate: no saccade. Blink
    frames (from the strategy) are blinks whatever the velocity; the rest is fixation.
    """

    saccade_lambda: float = 6.0
    min_saccade_speed: float = 40.0
    isotropic: bool = True

    def saccades(self, gaze: np.ndarray, seen: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """(N,) bool saccade frames from the gaze (N, 2) at ``times_s`` (N,); only ``seen`` (N,) frames qualify."""
        n = len(gaze)
        moving = np.zeros(n, bool)
        if n <= 2 or seen.sum() <= 2:
            return moving
        dt = np.gradient(times_s)
        vx, vy = np.gradient(gaze[:, 0]) / dt, np.gradient(gaze[:, 1]) / dt
        sx, sy = robust_sd(vx[seen]), robust_sd(vy[seen])
        if self.isotropic:
            threshold = max(self.saccade_lambda * float(np.hypot(sx, sy)), self.min_saccade_speed)
            moving = np.hypot(vx, vy) > threshold
        else:
            tx = max(self.saccade_lambda * sx, self.min_saccade_speed)
            ty = max(self.saccade_lambda * sy, self.min_saccade_speed)
            moving = np.hypot(vx / tx, vy / ty) > 1.0
        return seen & moving

    def classify(self, gaze: np.ndarray, seen: np.ndarray, blink: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """(N,) behaviour codes (fixation 0, saccade 1, blink 2) as float64."""
        behaviour = np.full(len(gaze), FIXATION, np.float64)
        behaviour[self.saccades(gaze, seen, times_s)] = SACCADE
        behaviour[blink] = BLINK
        return behaviour


# ------------------------------------------------------------------------------------------------ strategies
class EyeExtractionStrategy:
    """How one kind of face landmarks becomes eye measurements and canonical values.

    A strategy measures (:meth:`measure`: frames + faces → :class:`EyeMeasurements`) and reads the measurements
    (:meth:`channels`: the continuous channels, the valid frames and the blinks). :meth:`values` then fills unseen
    frames by interpolation and classifies the behaviour with the shared :class:`BehaviourClassifier`, on the gaze
    scaled by :attr:`gaze_unit` (the classifier's velocity unit per gaze unit).
    """

    classifier: BehaviourClassifier
    gaze_unit: float = 1.0

    def measure(self, frames: Sequence[np.ndarray], faces: FaceTrack) -> EyeMeasurements:
        raise NotImplementedError

    def channels(self, raw: EyeMeasurements, faces: FaceTrack, times_s: np.ndarray):
        """``(values (N, 4), valid (N,), blink (N,))``: pupils and gaze (image frame, NaN where unseen)."""
        raise NotImplementedError

    def values(self, raw: EyeMeasurements, faces: FaceTrack, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw measurements → raw canonical values (N, 5) in the image frame and the validity mask (N,).

        Blink rows are valid, with pupils and gaze interpolated across; frames without a face or an eye are
        interpolated and invalid."""
        n = len(times_s)
        continuous, valid, blink = self.channels(raw, faces, times_s)
        values = np.full((n, NUM_EYE_MOVEMENT_CHANNELS), np.nan)
        values[:, :4] = continuous
        values[blink | ~valid, :4] = np.nan  # a closed eye has no pupil and no gaze: interpolated across
        filled = interpolate_invalid(values, np.ones(n, bool))  # blinks, lost eyes: interpolated across
        seen = valid & ~blink & np.isfinite(values[:, 2])
        filled[:, BEHAVIOUR_CHANNEL] = self.classifier.classify(filled[:, 2:4] * self.gaze_unit, seen, blink, times_s)
        filled[:, 2:4] = np.clip(filled[:, 2:4], -1.0, 1.0)
        return filled, valid


#: the eyelid polygon through a dense eye's points (`faces_mert.EYE_POINT_NAMES`): outer corner, upper lid (outer to
#: inner), inner corner, lower lid (inner to outer)
EYELID_POLYGON = (0, 2, 3, 4, 1, 7, 6, 5)
#: eyes narrower than this (px between the corners) are not measured: no pupil to see (our choice)
MIN_EYE_WIDTH_PX = 4.0
#: an eyelid polygon of fewer patch pixels than this is a closed eye: nothing to measure (our choice)
MIN_EYE_REGION_PIXELS = 12
#: the running percentile of the eye aspect ratio taken as the open-eye level: blinks cover a small part of the time
#: (about 17 blinks/min of 100-400 ms at rest: Bentivoglio et al. 1997, *Movement Disorders* 12, 1028–1034), so the
#: 75th percentile of a 2 s window is an open eye (our choice)
BLINK_BASELINE_PERCENTILE = 75


class DenseLandmarkStrategy(EyeExtractionStrategy):
    """Eye channels from dense eye landmarks (:class:`~.face_backends_mert.FaceMeshBackend`): eye crops aligned to the
    corners with the eyelid polygon as the pupil chain's region, the eye aspect ratio for blinks, the iris against
    the corners plus the head pose for gaze (degrees, ±``gaze_range_deg`` ↦ ±1). See
    :class:`VisualEyeMovementExtractor` for the parameters."""

    def __init__(self, eye_crop, eye_patch, blink_ratio, blink_release, blink_baseline_s, min_blink_ms,
                 eyeball_ratio, iris_rest, gaze_source, gaze_range_deg, classifier: BehaviourClassifier):  # fmt: skip
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
        self.gaze_unit = self.gaze_range_deg  # the classifier works in degrees
        self.classifier = classifier

    @staticmethod
    def eye_frame(eye: np.ndarray, subject_left: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """(mid point, unit axis image-left → image-right corner, corner distance) of one eye's points (9, 2)."""
        outer, inner = eye[0].astype(np.float64), eye[1].astype(np.float64)
        left, right = (inner, outer) if subject_left else (outer, inner)
        d = float(np.linalg.norm(right - left))
        return (left + right) / 2.0, (right - left) / max(d, 1e-6), d

    def measure(self, frames: Sequence[np.ndarray], faces: FaceTrack) -> EyeMeasurements:
        """Per eye (subject left, right): the eye aspect ratio, the blob diameter / corner distance, and the iris
        centre's offset from the corner midpoint along / across the eye line in half corner distances."""
        import cv2

        n = len(frames)
        ear = np.full((n, 2), np.nan)
        pupil = np.full((n, 2), np.nan)
        offset = np.full((n, 2, 2), np.nan)
        pw, ph = self.eye_patch
        cw, ch = self.eye_crop
        found = faces.found & np.isfinite(faces.eyes[..., :8, :]).all(axis=(1, 2, 3))
        for i in np.flatnonzero(found):
            gray = cv2.cvtColor(np.ascontiguousarray(frames[i]), cv2.COLOR_RGB2GRAY)
            for e in range(2):
                eye = faces.eyes[i, e].astype(np.float64)
                mid, axis, d = self.eye_frame(eye, subject_left=(e == 0))
                if d < MIN_EYE_WIDTH_PX:
                    continue
                normal = np.array([-axis[1], axis[0]])
                lids = np.linalg.norm(eye[2:5] - eye[5:8], axis=1)
                ear[i, e] = float(lids.mean() / d)
                # frame → patch: rows of the rotation are the eye axis and its normal, scaled to the crop
                sx, sy = pw / (cw * d), ph / (ch * d)
                rot = np.stack([axis * sx, normal * sy])
                m = np.concatenate([rot, (np.array([pw / 2.0, ph / 2.0]) - rot @ mid)[:, None]], axis=1)
                patch = cv2.warpAffine(gray, m, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                polygon = np.round((eye[list(EYELID_POLYGON)] @ rot.T) + m[:, 2]).astype(np.int32)
                region = np.zeros((ph, pw), np.uint8)
                cv2.fillPoly(region, [polygon], 1)
                region = cv2.dilate(region, np.ones((3, 3), np.uint8)).astype(bool)
                if region.sum() < MIN_EYE_REGION_PIXELS:
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
        return EyeMeasurements(pupil=pupil, gaze=offset, eye_aspect_ratio=ear)

    def detect_blinks(self, ear: np.ndarray, valid: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """(N,) bool blink frames from the eye aspect ratio (N,) (NaN where unknown) and the face mask (N,).

        The EAR (Soukupová & Čech 2016, *Computer Vision Winter Workshop*) against its own running open-eye level
        (the ``blink_baseline_s`` rolling :data:`BLINK_BASELINE_PERCENTILE` percentile): a blink starts below
        ``blink_ratio`` x that level, extends while below ``blink_release`` x it, and lasts at least
        ``min_blink_ms``."""
        from scipy.ndimage import percentile_filter

        n = len(ear)
        blink = np.zeros(n, bool)
        good = valid & np.isfinite(ear)
        if good.sum() < 3:
            return blink
        idx = np.arange(n)
        filled = np.interp(idx, idx[good], ear[good])
        dt = float(np.median(np.diff(times_s))) if n > 1 else 1.0 / DEFAULT_FPS
        dt = dt if dt > 0 else 1.0 / DEFAULT_FPS
        window = max(3, int(round(self.blink_baseline_s / dt)) | 1)
        baseline = percentile_filter(filled, BLINK_BASELINE_PERCENTILE, size=min(window, 2 * n + 1), mode="nearest")
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

    def channels(self, raw: EyeMeasurements, faces: FaceTrack, times_s: np.ndarray):
        """Pupils, gaze (eye-in-head angle from the iris offset plus the head's yaw / pitch, ±``gaze_range_deg`` ↦
        ±1) and the EAR's blinks; valid where a face and an eye were measured."""
        n = len(times_s)
        valid = faces.found & np.isfinite(raw.eye_aspect_ratio).any(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames where neither eye was measured
            ear = np.nanmean(raw.eye_aspect_ratio, axis=1)
            offset = np.nanmean(raw.gaze, axis=1)  # (N, 2): both eyes move together
        blink = self.detect_blinks(ear, valid, times_s)
        angles = np.degrees(np.arcsin(np.clip((offset - self.iris_rest) / self.eyeball_ratio, -1.0, 1.0)))
        if faces.head_pose is not None:
            angles = angles + np.nan_to_num(faces.head_pose[:, :2].astype(np.float64))
        values = np.full((n, 4), np.nan)
        values[:, 0], values[:, 1] = raw.pupil[:, 0], raw.pupil[:, 1]
        values[:, 2:4] = angles / self.gaze_range_deg
        return values, valid, blink


class FivePointStrategy(EyeExtractionStrategy):
    """Eye channels from 5 landmarks (:class:`~.face_backends_mert.MTCNNBackend`): eye patches placed by a similarity
    alignment of the landmarks to :data:`FACE_TEMPLATE`, blinks from blob-size drops (``blob_blink_ratio`` x the
    clip's median area), gaze the pupil offset inside the aligned box (box half-sizes; one saccade threshold per
    axis). See :class:`VisualEyeMovementExtractor` for the parameters."""

    def __init__(self, eye_patch, eye_box, blob_blink_ratio, classifier: BehaviourClassifier):
        self.eye_patch = tuple(int(v) for v in eye_patch)
        self.eye_box = tuple(float(v) for v in eye_box)
        self.blob_blink_ratio = float(blob_blink_ratio)
        self.classifier = classifier

    def eye_patches(self, frame_gray: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
        """The two aligned grey eye patches, subject's left eye (image-right, template index 1) first."""
        import cv2

        to_face = similarity_transform(landmarks.astype(np.float64), FACE_TEMPLATE)
        pw, ph = self.eye_patch
        bw, bh = self.eye_box
        patches = []
        for k in (1, 0):
            ex, ey = FACE_TEMPLATE[k]
            # face coords -> patch pixels: translate the box corner to 0 and scale the box to the patch
            scale = np.array([[pw / bw, 0.0], [0.0, ph / bh]])
            a = scale @ to_face[:, :2]
            b = scale @ (to_face[:, 2] - np.array([ex - bw / 2, ey - bh / 2]))
            m = np.concatenate([a, b[:, None]], axis=1)
            patches.append(cv2.warpAffine(frame_gray, m, (pw, ph), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE))
        return patches

    def measure(self, frames: Sequence[np.ndarray], faces: FaceTrack) -> EyeMeasurements:
        """Per eye (subject left, right): the blob centre in the box, its diameter / inter-ocular distance, its
        area."""
        import cv2

        n = len(frames)
        pupil, area = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
        centre = np.full((n, 2, 2), np.nan)
        found = faces.found
        for i, frame in enumerate(frames):
            if not found[i]:
                continue
            gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
            for e, patch in enumerate(self.eye_patches(gray, faces.landmarks[i])):
                m = measure_pupil(patch)
                centre[i, e] = (m.x, m.y)
                pupil[i, e] = m.diameter * self.eye_box[0]  # diameter / inter-ocular distance
                area[i, e] = m.area
        return EyeMeasurements(pupil=pupil, gaze=centre, blob_area=area)

    def channels(self, raw: EyeMeasurements, faces: FaceTrack, times_s: np.ndarray):
        """Pupils and gaze of the open eyes; a blink where both blobs shrink below ``blob_blink_ratio`` x their
        clip's median area; valid where there is a face."""
        n = len(times_s)
        face = faces.found
        area = np.nan_to_num(raw.blob_area, nan=0.0)
        area[~face] = np.nan
        ref = np.nanmedian(np.where(area > 0, area, np.nan), axis=0) if (area > 0).any() else np.array([1.0, 1.0])
        ref = np.where(np.isfinite(ref), ref, np.nanmax(ref) if np.isfinite(ref).any() else 1.0)
        with np.errstate(invalid="ignore"):
            ratio = area / ref[None, :]
        blink = face & np.all(np.nan_to_num(ratio, nan=0.0) < self.blob_blink_ratio, axis=1)
        open_eye = face[:, None] & ~blink[:, None] & np.isfinite(raw.gaze[..., 0])
        values = np.full((n, 4), np.nan)
        values[:, 0] = np.where(open_eye[:, 0], raw.pupil[:, 0], np.nan)
        values[:, 1] = np.where(open_eye[:, 1], raw.pupil[:, 1], np.nan)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames where neither eye was found
            values[:, 2] = np.nanmean(np.where(open_eye, raw.gaze[..., 0], np.nan), axis=1)
            values[:, 3] = np.nanmean(np.where(open_eye, raw.gaze[..., 1], np.nan), axis=1)
        return values, face.copy(), blink


# ------------------------------------------------------------------------------------------------ the extractor
def require_a_face(faces: FaceTrack, source, allow_no_face: bool = False) -> None:
    """A ValueError naming ``source`` when no frame of ``faces`` has a face (unless ``allow_no_face``)."""
    if not faces.found.any() and not allow_no_face:
        raise ValueError(f"{source}: no face found in any of its {len(faces)} frames (pass allow_no_face=True for an "
                         "all-invalid series)")  # fmt: skip


class VisualEyeMovementExtractor:
    """Reads the canonical eye-movement series from the frames of a facial video.

    With a dense backend (:class:`~.face_backends_mert.FaceMeshBackend`, the default) the eye landmarks drive every channel
    (:class:`DenseLandmarkStrategy`):

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
      median-based SDs, Engbert & Kliegl) and at least ``min_saccade_speed`` deg/s; else fixation
      (:class:`BehaviourClassifier`).
    - blink rows are valid, with pupils and gaze interpolated across; frames without a face or eyes are interpolated
      and invalid.

    With a 5-point backend (:class:`~.face_backends_mert.MTCNNBackend`, the fallback; :class:`FivePointStrategy`) the eye
    patches are placed by a similarity alignment of the 5 landmarks to a face template, blinks come from blob-size
    drops (``blob_blink_ratio`` x the clip's median area) and gaze is the pupil offset inside the aligned box; its
    saccades use the same classifier with one threshold per box axis and a floor of
    :data:`FIVE_POINT_MIN_SACCADE_SPEED` box half-sizes per second.

    Args:
        backend: a :class:`~.faces_mert.FaceLandmarkBackend` (default: :func:`~.face_backends_mert.default_face_backend`).
        eye_crop: (width, height) of a landmark eye crop in corner distances.
        eye_patch: (width, height) in pixels of an eye patch.
        blink_ratio, blink_release, blink_baseline_s, min_blink_ms: blink detection from the EAR (the ratios are our
            choice, checked against the hand-annotated blinks of ``tests/fixtures/faces``; 50 ms: the shortest blink,
            the lower end of the 50-500 ms range that trackers' parsers count as a blink, as in ``eyetracking.events``).
        eyeball_ratio: the eyeball radius over half the corner distance (eye-in-head angle from the iris offset; an
            adult eyeball is about 24 mm across and the eye opening about 30 mm wide: 12 / 15 = 0.8).
        iris_rest: where the iris centre sits for a straight look, in half corner distances from the corners'
            midpoint (above the corner line: the median over the annotated real videos of ``tests/fixtures/faces``).
        gaze_source: "iris" (the iris model's centre) or "pupil" (the pupil chain's blob) for the gaze.
        gaze_range_deg: the gaze angle mapped to ±1 (25°: about the half-width of a desktop screen, the tracker's ±1).
        mirrored: the video is mirrored (a selfie view); default False, a camera facing the subject.
        saccade_lambda, min_saccade_speed: saccade detection on the dense path (λ median-based SDs: 6, Engbert &
            Kliegl 2003; the floor in deg/s: 40, our choice, twice the tracker's 20 deg/s floor of
            ``eyetracking.events`` because the visual gaze is noisier).
        eye_box, blob_blink_ratio: the 5-point path's eye box (inter-ocular distances) and blink ratio.
        normalize: apply :func:`~.eye_movement_mert.normalize_eye_movements` (default) or return raw values.

    The measuring settings are handed to the two strategies (``dense``, ``five_point``) when the extractor is built;
    to change one, build another extractor (setting it afterwards is refused with an error, never ignored).
    """

    #: the settings the strategies hold (fixed at construction)
    STRATEGY_SETTINGS = ("eye_crop", "eye_patch", "blink_ratio", "blink_release", "blink_baseline_s", "min_blink_ms",
                         "eyeball_ratio", "iris_rest", "gaze_source", "gaze_range_deg", "saccade_lambda",
                         "min_saccade_speed", "eye_box", "blob_blink_ratio")  # fmt: skip

    def __setattr__(self, name, value):
        if name in self.STRATEGY_SETTINGS:
            raise AttributeError(f"{name} is fixed when the extractor is built: use VisualEyeMovementExtractor({name}="
                                 f"{value!r}, ...)")  # fmt: skip
        super().__setattr__(name, value)

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
        self.dense = DenseLandmarkStrategy(
            eye_crop, eye_patch, blink_ratio, blink_release, blink_baseline_s, min_blink_ms, eyeball_ratio, iris_rest,
            gaze_source, gaze_range_deg, BehaviourClassifier(float(saccade_lambda), float(min_saccade_speed)),
        )  # fmt: skip
        self.five_point = FivePointStrategy(
            eye_patch, eye_box, blob_blink_ratio,
            BehaviourClassifier(float(saccade_lambda), FIVE_POINT_MIN_SACCADE_SPEED, isotropic=False),
        )
        self.mirrored = bool(mirrored)
        self.normalize = normalize

    @property
    def backend(self) -> FaceLandmarkBackend:
        if self._backend is None:
            self._backend = default_face_backend()
        return self._backend

    def detect_faces(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        """Run the backend once over the clip (reusable for face crops: pass it back as ``faces=``)."""
        return run_face_backend(self.backend, frames)

    def strategy_for(self, faces_or_measurements) -> EyeExtractionStrategy:
        """The strategy for a :class:`FaceTrack` (dense when it has eye landmarks) or for its measurements."""
        if isinstance(faces_or_measurements, EyeMeasurements):
            return self.dense if faces_or_measurements.dense else self.five_point
        return self.dense if faces_or_measurements.has_eye_landmarks else self.five_point

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
        fps = float(fps) if fps else DEFAULT_FPS
        times = np.arange(len(frames), dtype=np.float64) / fps
        if faces is None:
            faces = self.detect_faces(frames)
        elif not isinstance(faces, FaceTrack):
            faces = FaceTrack(*faces)
        if len(faces) != len(frames):
            raise ValueError(f"{source}: faces has {len(faces)} rows for {len(frames)} frames")
        require_a_face(faces, source, allow_no_face)
        return self.series_from(self.measure_clip(frames, faces), faces, times, source, fps)

    def measure_clip(self, frames: Sequence[np.ndarray], faces: FaceTrack) -> EyeMeasurements:
        """The raw per-frame measurements of a clip, by the strategy its faces call for. Chunks of a long video are
        measured one by one and joined with :meth:`EyeMeasurements.concatenate` before the one classification of the
        whole video."""
        return self.strategy_for(faces).measure(frames, faces)

    def series_from(self, raw: EyeMeasurements, faces: FaceTrack, times_s: np.ndarray, source: str = "<frames>",
                    fps: float = DEFAULT_FPS) -> EyeMovementSeries:
        """Raw measurements of a whole clip or video → its series (blinks, saccades and their adaptive
        thresholds computed over all of it), normalised when ``self.normalize``."""
        times_s = np.asarray(times_s, dtype=np.float64)
        metadata = {"source": source, "fps": fps, "faces": faces}
        if not faces.found.any():
            values = np.zeros((len(times_s), NUM_EYE_MOVEMENT_CHANNELS), np.float32)
            return EyeMovementSeries(values, np.zeros(len(times_s), bool), times_s, True, metadata)
        values, valid = self.strategy_for(raw).values(raw, faces, times_s)
        values = self.to_subject_frame(values)
        series = EyeMovementSeries(values.astype(np.float32), valid, times_s, normalized=False, metadata=metadata)
        return series.normalize() if self.normalize else series


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
        backend: face/landmark backend (default :func:`~.face_backends_mert.default_face_backend`: the face mesh).
        faces: precomputed detections for these frames — a :class:`FaceTrack` or ``(boxes (T,4), landmarks
            (T,5,2)[, probs (T,)])`` — to reuse one detection pass (see :func:`~.face_backends_mert.detect_faces`).
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
    require_a_face(faces, path, allow_no_face)
    return extractor.series_from(EyeMeasurements.concatenate(raws), faces, np.concatenate(times), path, rate)
