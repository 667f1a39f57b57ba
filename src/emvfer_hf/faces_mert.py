"""Faces for EM-VFER: detection, landmarks and the face box of a clip.

A :class:`FaceLandmarkBackend` turns RGB frames into a :class:`FaceTrack`: per frame the face box, five landmarks
(eye centres, nose tip, mouth corners) and a confidence. Used by the video processor (face crops) and the visual
eye-movement extractor (eye regions).

Flat module (single-dot sibling imports only, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .video_io_mert import decode_video

FACE_BOX_MODES = ("union", "smooth")

#: 5-point face template (ArcFace 112x112 layout) in units of the inter-ocular distance, centred between the eyes:
#: image-left eye, image-right eye, nose tip, image-left and image-right mouth corners (MTCNN's landmark order).
_FACE_TEMPLATE = (
    np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
        dtype=np.float64,
    )
    - np.array([55.9132, 51.5989])
) / 35.2372


def _similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` (K, 2) onto ``dst`` (K, 2).

    Returns the (2, 3) matrix ``M`` with ``dst ≈ src @ M[:, :2].T + M[:, 2]`` (Umeyama without reflection).
    """
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - m[:, :2] @ src_mean
    return m


@dataclass
class FaceTrack:
    """Per-frame face detections of a clip of N frames (NaN rows where no face was found).

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in frame pixels.
        landmarks: (N, 5, 2) float32 ``(x, y)`` of MTCNN's 5 points: image-left eye, image-right eye, nose,
            image-left mouth corner, image-right mouth corner.
        probs: (N,) float32 detection confidence (NaN / 0 where no face).
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    probs: np.ndarray

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 5, 2)
        n = len(self.boxes)
        self.probs = (
            np.where(np.isfinite(self.boxes).all(1), 1.0, np.nan).astype(np.float32)
            if self.probs is None
            else np.asarray(self.probs, dtype=np.float32).reshape(-1)
        )
        if len(self.landmarks) != n or len(self.probs) != n:
            raise ValueError(
                f"FaceTrack: boxes has {n} rows, landmarks {len(self.landmarks)}, probs {len(self.probs)}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: frames with a face and finite landmarks."""
        return np.isfinite(self.boxes).all(1) & np.isfinite(self.landmarks).all(axis=(1, 2))


class FaceLandmarkBackend:
    """Interface of a face + 5-landmark detector used by the visual extractor and the video processor.

    Subclasses implement :meth:`detect`. A landmark model with more points can replace MTCNN by returning the
    5-point subset (eye centres, nose tip, mouth corners).
    """

    def detect(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detect the most probable face in each frame.

        Args:
            frames: N RGB uint8 frames (H, W, 3), all of the same clip.
        Returns:
            ``(boxes, landmarks, probs)``: (N, 4) float ``x1, y1, x2, y2``, (N, 5, 2) float, (N,) float; NaN rows
            where a frame has no face.
        """
        raise NotImplementedError

    def __call__(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        return FaceTrack(*self.detect(frames))


class MTCNNBackend(FaceLandmarkBackend):
    """facenet-pytorch's MTCNN (weights ship in its wheel; no download), made fast for video.

    - The full three-stage detector runs on frames downscaled so that their longer side is ``detect_size`` pixels,
      in batches, on key frames only (every ``detect_every`` frames, and whenever tracking is lost).
    - In between, the face is tracked with MTCNN's last stage alone (O-Net): the previous frame's box, squared, is
      cropped from the full-resolution frame at 48x48 and O-Net returns the refined box, the 5 landmarks and a
      confidence. Below ``track_threshold`` the frame is re-detected from scratch.

    Args:
        detect_size: longer side (px) of the frames given to the full detector; smaller frames are not upscaled.
        detect_every: key-frame period (1 = full detector on every frame).
        min_face_size: smallest face (px, at the detection scale) the full detector looks for.
        thresholds: MTCNN's P/R/O-Net thresholds.
        track_threshold: O-Net confidence needed to keep tracking.
        batch_size: frames per batch of the full detector.
        device: torch device.
    """

    def __init__(
        self,
        detect_size: int = 320,
        detect_every: int = 10,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        track_threshold: float = 0.8,
        batch_size: int = 16,
        device: str = "cpu",
    ):
        from facenet_pytorch import MTCNN

        self.detect_size = int(detect_size)
        self.detect_every = max(1, int(detect_every))
        self.track_threshold = float(track_threshold)
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.mtcnn = MTCNN(
            keep_all=False, select_largest=False, min_face_size=min_face_size, thresholds=list(thresholds),
            device=device,
        )
        self.mtcnn.eval()

    # -- the full detector on downscaled frames
    def _detect_full(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        n = len(frames)
        boxes = np.full((n, 4), np.nan, np.float32)
        lms = np.full((n, 5, 2), np.nan, np.float32)
        probs = np.full(n, np.nan, np.float32)
        if n == 0:
            return boxes, lms, probs
        h, w = frames[0].shape[:2]
        scale = min(1.0, self.detect_size / float(max(h, w)))
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        for start in range(0, n, self.batch_size):
            chunk = frames[start : start + self.batch_size]
            if scale < 1.0:
                chunk = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in chunk]
            b, p, lm = self.mtcnn.detect(np.stack(chunk), landmarks=True)
            for i in range(len(chunk)):
                if b[i] is None or p[i] is None or len(b[i]) == 0:
                    continue
                k = int(np.nanargmax(np.asarray(p[i], dtype=np.float64)))  # the most probable face
                boxes[start + i] = np.asarray(b[i][k]) / scale
                lms[start + i] = np.asarray(lm[i][k]) / scale
                probs[start + i] = p[i][k]
        return boxes, lms, probs

    # -- O-Net refinement of a previous box
    def _track(self, frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        import cv2
        import torch

        h, w = frame.shape[:2]
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        side = max(box[2] - box[0], box[3] - box[1])
        x1, y1 = int(round(cx - side / 2)), int(round(cy - side / 2))
        s = max(2, int(round(side)))
        pad = max(0, -x1, -y1, x1 + s - w, y1 + s - h)
        src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT) if pad else frame
        crop = src[y1 + pad : y1 + pad + s, x1 + pad : x1 + pad + s]
        crop = cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA)
        x = (torch.from_numpy(crop).permute(2, 0, 1).float().unsqueeze(0).contiguous() - 127.5) * 0.0078125
        with torch.inference_mode():
            reg, pts, prob = self.mtcnn.onet(x.to(self.device))
        reg, pts, prob = reg[0].cpu().numpy(), pts[0].cpu().numpy(), float(prob[0, 1])
        bw = bh = float(s)  # facenet's convention: width = x2 - x1 + 1 on the integer square box
        lm = np.stack([bw * pts[:5] + x1 - 1, bh * pts[5:] + y1 - 1], axis=1)
        new_box = np.array([x1 + reg[0] * bw, y1 + reg[1] * bh, x1 + s - 1 + reg[2] * bw, y1 + s - 1 + reg[3] * bh])
        return new_box.astype(np.float32), lm.astype(np.float32), prob

    def detect(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames = [np.ascontiguousarray(f) for f in frames]
        n = len(frames)
        key = np.arange(n) % self.detect_every == 0
        boxes, lms, probs = self._detect_full([frames[i] for i in np.flatnonzero(key)])
        out_b = np.full((n, 4), np.nan, np.float32)
        out_l = np.full((n, 5, 2), np.nan, np.float32)
        out_p = np.full(n, np.nan, np.float32)
        out_b[key], out_l[key], out_p[key] = boxes, lms, probs
        for i in range(n):
            if key[i]:
                continue
            prev = out_b[i - 1]
            if np.isfinite(prev).all():
                b, lm, p = self._track(frames[i], prev)
                if p >= self.track_threshold and np.isfinite(b).all():
                    out_b[i], out_l[i], out_p[i] = b, lm, p
                    continue
            b, lm, p = self._detect_full([frames[i]])  # lost: detect from scratch
            out_b[i], out_l[i], out_p[i] = b[0], lm[0], p[0]
        return out_b, out_l, out_p


def square_box(box: np.ndarray, margin: float) -> np.ndarray:
    """(x0, y0, x1, y1) → a square around its centre with side `max(w, h) * (1 + margin)`."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


def clip_face_boxes(boxes: np.ndarray, margin: float, mode: str = "union") -> np.ndarray:
    """One square face box per frame from per-frame detections (rows of NaN where no face was found).

    `mode="union"`: the union of every detected box, the same square for all frames (steady crops, as in the
    datasets' aligned clips); `mode="smooth"`: per-frame boxes, missing ones interpolated, smoothed over 5 frames.
    Returns (T, 4) float32 or `None` when no frame has a face.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    found = np.isfinite(boxes).all(axis=1)
    if not found.any():
        return None
    if mode == "union":
        good = boxes[found]
        union = np.array([good[:, 0].min(), good[:, 1].min(), good[:, 2].max(), good[:, 3].max()])
        return np.repeat(square_box(union, margin)[None], len(boxes), axis=0)
    if mode != "smooth":
        raise ValueError(f"face_box_mode must be one of {FACE_BOX_MODES}, got {mode!r}")
    t = np.arange(len(boxes))
    filled = np.stack([np.interp(t, t[found], boxes[found, c]) for c in range(4)], axis=1)
    kernel = np.ones(5) / 5
    padded = np.pad(filled, ((2, 2), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(4)], axis=1)
    return np.stack([square_box(b, margin) for b in smooth]).astype(np.float32)


def detect_faces(frames_or_video, backend: Optional[FaceLandmarkBackend] = None) -> FaceTrack:
    """Faces and 5 landmarks of every frame (one detection pass, reusable by the video processor for face crops
    and by :func:`extract_eye_movements` through ``faces=``)."""
    if isinstance(frames_or_video, (str, os.PathLike)):
        decoded = decode_video(frames_or_video)
        frames = [decoded.frames[i] for i in sorted(decoded.frames)]
    else:
        frames = list(frames_or_video.numpy() if hasattr(frames_or_video, "numpy") else frames_or_video)
    return FaceTrack(*(backend or MTCNNBackend()).detect(frames))
