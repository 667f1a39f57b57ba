"""Faces for EM-VFER: detection, landmarks and the face box of a clip.

A :class:`FaceLandmarkBackend` turns RGB frames into a :class:`FaceTrack`: per frame the face box, five landmarks
(eye centres, nose tip, mouth corners) and a confidence; a dense backend (:class:`FaceMeshBackend`, the default)
also gives eye landmarks (corners, eyelids, iris centre) and the head pose. Used by the video processor (face crops) and the visual
eye-movement extractor (eye regions).

Flat module (single-dot sibling imports only, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

import copy
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .face_identity_mert import FaceIdentityBackend, default_identity_backend
from .face_identity_mert import appearance_distance, face_appearance  # noqa: F401  (their home before the identity module)
from .video_io_mert import load_frames

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


#: The eye points of :attr:`FaceTrack.eyes`, per eye: the two corners, three points on each lid (outer to inner) and
#: the iris centre (NaN where the backend has no iris model). The eye aspect ratio uses the lid pairs.
EYE_POINT_NAMES = (
    "outer_corner", "inner_corner", "upper_outer", "upper_mid", "upper_inner", "lower_outer", "lower_mid",
    "lower_inner", "iris_centre",
)  # fmt: skip
NUM_EYE_POINTS = len(EYE_POINT_NAMES)


@dataclass
class FaceTrack:
    """Per-frame face detections of ONE face over a clip of N frames (NaN rows where no face was found).

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in frame pixels.
        landmarks: (N, 5, 2) float32 ``(x, y)`` of the 5 points: image-left eye, image-right eye, nose,
            image-left mouth corner, image-right mouth corner (MTCNN's order; dense backends give the same subset).
        probs: (N,) float32 detection confidence (NaN where no face).
        eyes: (N, 2, 9, 2) float32 or None: dense eye landmarks, the subject's LEFT eye first (image-right for a
            non-mirrored camera), points as in :data:`EYE_POINT_NAMES`. None for 5-point backends.
        head_pose: (N, 3) float32 or None: head ``yaw, pitch, roll`` in degrees (+yaw: the face turns towards
            image-right, +pitch: it tilts down, +roll: clockwise in the image). None where the backend has no 3-D
            landmarks.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    probs: Optional[np.ndarray] = None
    eyes: Optional[np.ndarray] = None
    head_pose: Optional[np.ndarray] = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 5, 2)
        n = len(self.boxes)
        self.probs = (
            np.where(np.isfinite(self.boxes).all(1), 1.0, np.nan).astype(np.float32)
            if self.probs is None
            else np.asarray(self.probs, dtype=np.float32).reshape(-1)
        )
        if self.eyes is not None:
            self.eyes = np.asarray(self.eyes, dtype=np.float32).reshape(-1, 2, NUM_EYE_POINTS, 2)
        if self.head_pose is not None:
            self.head_pose = np.asarray(self.head_pose, dtype=np.float32).reshape(-1, 3)
        sizes = {"landmarks": len(self.landmarks), "probs": len(self.probs)}
        sizes.update({k: len(v) for k, v in (("eyes", self.eyes), ("head_pose", self.head_pose)) if v is not None})
        if any(size != n for size in sizes.values()):
            raise ValueError(f"FaceTrack: boxes has {n} rows but " + ", ".join(f"{k} {v}" for k, v in sizes.items()))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: frames with a face and finite landmarks."""
        return np.isfinite(self.boxes).all(1) & np.isfinite(self.landmarks).all(axis=(1, 2))

    @property
    def has_eye_landmarks(self) -> bool:
        return self.eyes is not None

    def select(self, indices) -> "FaceTrack":
        """The rows ``indices`` (an index array or a boolean mask)."""
        pick = (lambda a: None if a is None else a[indices])  # noqa: E731
        return FaceTrack(self.boxes[indices], self.landmarks[indices], self.probs[indices], pick(self.eyes),
                         pick(self.head_pose))  # fmt: skip

    @classmethod
    def concatenate(cls, tracks: Sequence["FaceTrack"]) -> "FaceTrack":
        """Join consecutive tracks of the same video (e.g. the chunks of a long video) into one."""
        tracks = list(tracks)
        if not tracks:
            raise ValueError("no face tracks to concatenate")
        if any(t.eyes is not None for t in tracks):  # dense parts beside 5-point ones: NaN eyes where none
            tracks = [t if t.eyes is not None else FaceTrack(t.boxes, t.landmarks, t.probs,
                                                              np.full((len(t), 2, NUM_EYE_POINTS, 2), np.nan),
                                                              t.head_pose) for t in tracks]  # fmt: skip
        if any(t.head_pose is not None for t in tracks):
            tracks = [t if t.head_pose is not None else FaceTrack(t.boxes, t.landmarks, t.probs, t.eyes,
                                                                   np.full((len(t), 3), np.nan)) for t in tracks]  # fmt: skip
        join = (lambda name: None if getattr(tracks[0], name) is None  # noqa: E731
                else np.concatenate([getattr(t, name) for t in tracks]))  # fmt: skip
        return cls(join("boxes"), join("landmarks"), join("probs"), join("eyes"), join("head_pose"))

    @classmethod
    def empty(cls, n: int, dense: bool = False) -> "FaceTrack":
        """N rows without a face (with NaN eye landmarks and head pose when ``dense``)."""
        nan = lambda *shape: np.full(shape, np.nan, np.float32)  # noqa: E731
        return cls(nan(n, 4), nan(n, 5, 2), nan(n), nan(n, 2, NUM_EYE_POINTS, 2) if dense else None,
                   nan(n, 3) if dense else None)  # fmt: skip


class FaceLandmarkBackend:
    """The protocol of a face + landmark detector used by the visual extractor and the video processor.

    Subclasses implement :meth:`detect`. Call the backend (``backend(frames)``) to get a :class:`FaceTrack`.
    A 5-point backend returns boxes, landmarks and probabilities; a dense one also fills ``FaceTrack.eyes`` (and
    ``head_pose``), which the extractor then uses for blinks (eyelid aperture), eye crops and gaze. To plug in your
    own landmark model, subclass this and return a :class:`FaceTrack` (see :class:`FaceMeshBackend` for the eye
    point layout), then pass it as ``backend=`` to the extractor or set ``processor.face_backend``.
    """

    #: whether :meth:`detect` fills ``FaceTrack.eyes``
    dense = False

    def detect(self, frames: Sequence[np.ndarray]):
        """Detect the most probable face in each frame.

        Args:
            frames: N RGB uint8 frames (H, W, 3), consecutive frames of one clip.
        Returns:
            a :class:`FaceTrack`, or the tuple ``(boxes, landmarks, probs)``: (N, 4) float ``x1, y1, x2, y2``,
            (N, 5, 2) float, (N,) float; NaN rows where a frame has no face.
        """
        raise NotImplementedError

    def __call__(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        return run_face_backend(self, frames)


def run_face_backend(backend, frames: Sequence[np.ndarray]) -> FaceTrack:
    """``backend.detect(frames)`` as a :class:`FaceTrack`, for any object with a ``detect`` method (a
    :class:`FaceLandmarkBackend` or a duck-typed one returning ``(boxes, landmarks, probs)``)."""
    result = backend.detect(list(frames))
    return result if isinstance(result, FaceTrack) else FaceTrack(*result)


_TORCH_THREADS_LOCK = threading.Lock()


@contextmanager
def torch_threads(num_threads: Optional[int]):
    """Run the block with torch's intra-op pool at ``num_threads`` (None: as it is), one block at a time.

    MTCNN's many small convolutions gain nothing from a second thread, and when other processes keep the cores busy
    the pool's threads wait for each other: measured on 2 shared cores, one full detection of a 320x180 frame took
    2.26 s with 2 threads and 0.23 s with 1."""
    if num_threads is None:
        yield
        return
    import torch

    with _TORCH_THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(int(num_threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)


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
        num_threads: torch threads while MTCNN runs on the CPU (default 1, see :func:`torch_threads`; None: leave
            torch's setting).
    """

    num_threads: Optional[int] = 1  # (a class default too: backends pickled before this setting existed)

    def __init__(
        self,
        detect_size: int = 320,
        detect_every: int = 10,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        track_threshold: float = 0.8,
        batch_size: int = 16,
        device: str = "cpu",
        num_threads: Optional[int] = 1,
    ):
        from facenet_pytorch import MTCNN

        self.detect_size = int(detect_size)
        self.detect_every = max(1, int(detect_every))
        self.track_threshold = float(track_threshold)
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.num_threads = num_threads if str(device).startswith("cpu") else None
        self.mtcnn = MTCNN(
            keep_all=False, select_largest=False, min_face_size=min_face_size, thresholds=list(thresholds),
            device=device,
        )
        self.mtcnn.eval()

    # -- the full detector on downscaled frames
    def _detect_full(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(frames)
        boxes = np.full((n, 4), np.nan, np.float32)
        lms = np.full((n, 5, 2), np.nan, np.float32)
        probs = np.full(n, np.nan, np.float32)
        if n == 0:
            return boxes, lms, probs
        scale = self._detection_scale(frames[0])
        for start in range(0, n, self.batch_size):
            chunk = [self._downscale(f, scale) for f in frames[start : start + self.batch_size]]
            with torch_threads(self.num_threads):
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
        with torch.inference_mode(), torch_threads(self.num_threads):
            reg, pts, prob = self.mtcnn.onet(x.to(self.device))
        reg, pts, prob = reg[0].cpu().numpy(), pts[0].cpu().numpy(), float(prob[0, 1])
        bw = bh = float(s)  # facenet's convention: width = x2 - x1 + 1 on the integer square box
        lm = np.stack([bw * pts[:5] + x1 - 1, bh * pts[5:] + y1 - 1], axis=1)
        new_box = np.array([x1 + reg[0] * bw, y1 + reg[1] * bh, x1 + s - 1 + reg[2] * bw, y1 + s - 1 + reg[3] * bh])
        return new_box.astype(np.float32), lm.astype(np.float32), prob

    def _detection_scale(self, frame: np.ndarray) -> float:
        """The factor (<= 1) that brings the frame's longer side to ``detect_size``; raised where the shorter side would
        end up below the smallest face MTCNN looks for (a tiny frame is upscaled: MTCNN has no scale to run at below
        it and fails)."""
        h, w = frame.shape[:2]
        smallest = float(getattr(self.mtcnn, "min_face_size", 20))
        return max(min(1.0, self.detect_size / float(max(h, w))), smallest / float(max(1, min(h, w))))

    @staticmethod
    def _downscale(frame: np.ndarray, scale: float) -> np.ndarray:
        """The frame resized by ``scale`` (down for detection; up for a tiny frame)."""
        import cv2

        if scale == 1.0:
            return frame
        h, w = frame.shape[:2]
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)

    def detect_all(self, frame: np.ndarray, min_prob: float = 0.9) -> FaceTrack:
        """EVERY face of one frame (a row per face, most probable first), at the detection scale used by
        :meth:`detect` and mapped back to frame pixels; ``min_prob`` drops weak detections."""
        scale = self._detection_scale(frame)
        with torch_threads(self.num_threads):
            boxes, probs, landmarks = self.mtcnn.detect(np.ascontiguousarray(self._downscale(frame, scale)),
                                                        landmarks=True)  # fmt: skip
        if boxes is None or len(boxes) == 0:
            return FaceTrack.empty(0)
        keep = np.asarray(probs, np.float64) >= min_prob
        order = np.argsort(-np.asarray(probs, np.float64)[keep])
        return FaceTrack(np.asarray(boxes)[keep][order] / scale, np.asarray(landmarks)[keep][order] / scale,
                         np.asarray(probs)[keep][order])  # fmt: skip

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


# ---------------------------------------------------------------------------------------------- dense landmarks
#: Indices into MediaPipe's 468-point face mesh, per eye in :data:`EYE_POINT_NAMES` order (the iris centre comes
#: from the iris model). "left"/"right" are the subject's: the left eye is image-right for a non-mirrored camera.
MESH_EYE_INDICES = {
    "left": (263, 362, 387, 386, 385, 373, 374, 380),
    "right": (33, 133, 160, 159, 158, 144, 145, 153),
}
#: The same eye points among the iris model's first 16 eye-contour points (lower lid corner to corner, then upper
#: lid), for a right eye or a mirrored left eye.
IRIS_CONTOUR_EYE_INDICES = (0, 8, 11, 12, 13, 3, 4, 5)
MESH_NOSE_TIP, MESH_MOUTH_CORNERS, MESH_FOREHEAD, MESH_CHIN = 1, (61, 291), 10, 152
MESH_SIZE, IRIS_SIZE = 192, 64


def landmark_weights_dir() -> Path:
    """The folder of the shipped MediaPipe face-mesh and iris models (``weights/mediapipe`` of the package).

    Remote code (a checkpoint loaded with ``trust_remote_code=True``) has no weights beside it: it uses those of an
    installed ``emvfer_hf``. Raises ``FileNotFoundError`` with the fix when neither has them.
    """
    import importlib.util

    candidates = [Path(__file__).resolve().parent / "weights" / "mediapipe"]
    spec = importlib.util.find_spec("emvfer_hf")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "weights" / "mediapipe" for p in spec.submodule_search_locations]
    for folder in candidates:
        if (folder / "face_landmark.tflite").exists() and (folder / "iris_landmark.tflite").exists():
            return folder
    raise FileNotFoundError(
        "the MediaPipe face-mesh weights (face_landmark.tflite, iris_landmark.tflite) ship inside the emvfer-hf "
        f"package and were not found in {', '.join(str(c) for c in candidates)}: `pip install emvfer-hf`, or use "
        "MTCNNBackend (5 landmarks)"
    )


def _crop_transform(centre, side: float, angle_deg: float, size: int) -> np.ndarray:
    """(2, 3) affine from frame pixels to a ``size`` x ``size`` crop: a square of ``side`` pixels around ``centre``,
    rotated by ``angle_deg`` so that a line at that angle in the frame (e.g. the eye line) becomes horizontal."""
    import cv2

    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle_deg), size / max(float(side), 1.0))
    m[:, 2] += (size / 2.0 - centre[0], size / 2.0 - centre[1])
    return m


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _invert(m: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(m)


def _head_pose(mesh: np.ndarray) -> np.ndarray:
    """``yaw, pitch, roll`` in degrees from the 3-D mesh (frame pixels, z in the same scale, smaller = nearer).

    yaw: the depth difference across the outer eye corners (right → left eye); pitch: across forehead → chin;
    roll: the angle of the eye line in the image.
    """
    a, b = mesh[MESH_EYE_INDICES["right"][0]], mesh[MESH_EYE_INDICES["left"][0]]
    top, bottom = mesh[MESH_FOREHEAD], mesh[MESH_CHIN]
    d = b - a
    v = bottom - top
    yaw = np.degrees(np.arctan2(d[2], np.hypot(d[0], d[1])))
    pitch = np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1])))
    roll = np.degrees(np.arctan2(d[1], d[0]))
    return np.array([yaw, pitch, roll], np.float32)


class FaceMeshBackend(FaceLandmarkBackend):
    """Dense landmarks: MediaPipe's 468-point face mesh and its iris model, run with LiteRT (``ai-edge-litert``).

    The weights ship inside this package (Apache-2.0, ``weights/mediapipe/NOTICE.md``); nothing is downloaded.
    Per clip:

    1. key frames (every ``detect_every`` frames, and ``retry_every`` frames after the face was lost) go to a 5-point
       ``detector`` (default :class:`MTCNNBackend`, full detector) in one batch;
    2. each frame's face region — from the detector on key frames, else from the previous frame's mesh, as MediaPipe
       tracks — is cut out square (``roi_scale`` x the face size), rotated so that the eyes are level, at 192x192;
    3. the face mesh gives 468 points with depth and a face-presence score; below ``min_presence`` the frame has no
       face (and the next frame asks the detector again);
    4. with ``iris=True`` each eye region (2.3 x the corner distance, at 64x64; the left eye mirrored, as the model
       expects) goes to the iris model for the iris centre.

    The :class:`FaceTrack` carries the box (the mesh's extent), MTCNN's 5-point layout (eye centres, nose tip, mouth
    corners, taken from the mesh), the presence score, the eye points of :data:`EYE_POINT_NAMES` and the head pose.

    Args:
        detector: the 5-point backend for key frames (default ``MTCNNBackend(detect_every=1)``).
        iris: run the iris model (the iris centre for gaze; costs about 2 ms per eye on one core).
        detect_every: key-frame period in frames.
        retry_every: frames between detector calls while no face is tracked.
        min_presence: face-presence probability needed to accept a mesh.
        roi_scale: side of the face region in face sizes.
        num_threads: LiteRT threads per interpreter (default 1: the crops are small, one thread wastes least).
        workers: threads that each take a consecutive segment of the frames (default: the CPU count, at most 4);
            a clip shorter than ``min_segment`` frames per worker uses fewer.
    """

    dense = True

    def __init__(
        self,
        detector: Optional[FaceLandmarkBackend] = None,
        iris: bool = True,
        detect_every: int = 30,
        retry_every: int = 3,
        min_presence: float = 0.5,
        roi_scale: float = 1.5,
        num_threads: int = 1,
        workers: Optional[int] = None,
        min_segment: int = 32,
    ):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:  # pragma: no cover - depends on the platform
            raise ImportError(
                "FaceMeshBackend runs MediaPipe's face mesh with LiteRT: `pip install ai-edge-litert` (a dependency of "
                "emvfer-hf on Linux and macOS), or use MTCNNBackend (5 landmarks, no eyelids)"
            ) from error
        self._interpreter_class = Interpreter
        self._folder = landmark_weights_dir()
        self.detector = detector if detector is not None else MTCNNBackend(detect_every=1)
        self.iris = bool(iris)
        self.detect_every = max(1, int(detect_every))
        self.retry_every = max(1, int(retry_every))
        self.min_presence = float(min_presence)
        self.roi_scale = float(roi_scale)
        self.num_threads = int(num_threads)
        self.workers = max(1, int(workers if workers is not None else min(4, os.cpu_count() or 1)))
        self.min_segment = max(1, int(min_segment))
        self._interpreters = {}
        self._clone_interpreters = []
        self._lock = threading.RLock()

    def _model(self, name: str):
        """The LiteRT interpreter of ``face_landmark`` or ``iris_landmark``, built on first use (and again after
        unpickling: interpreters do not pickle, so a backend travels to worker processes without them)."""
        if name not in self._interpreters:
            interpreter = self._interpreter_class(model_path=str(self._folder / f"{name}.tflite"),
                                                  num_threads=self.num_threads)  # fmt: skip
            interpreter.allocate_tensors()
            self._interpreters[name] = interpreter
        return self._interpreters[name]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_interpreters"], state["_clone_interpreters"] = {}, []
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @staticmethod
    def _run(interpreter, image: np.ndarray) -> list[np.ndarray]:
        """One forward pass on an RGB uint8 crop, scaled to [0, 1]."""
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                               (image.astype(np.float32) * (1.0 / 255.0))[None])  # fmt: skip
        interpreter.invoke()
        outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
        return sorted(outputs, key=lambda a: -a.size)  # landmarks first, then the score / the iris

    def _mesh_in(self, frame: np.ndarray, roi: tuple) -> tuple[np.ndarray, float]:
        """The mesh (468, 3) in frame pixels and the presence probability, for ``roi = (centre, side, angle)``."""
        import cv2

        centre, side, angle = roi
        m = _crop_transform(centre, side, angle, MESH_SIZE)
        crop = cv2.warpAffine(frame, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        points, score = self._run(self._model("face_landmark"), crop)
        points = points.reshape(-1, 3).astype(np.float64)
        inv = _invert(m)
        mesh = np.concatenate([_apply(inv, points[:, :2]), points[:, 2:] * (side / MESH_SIZE)], axis=1)
        return mesh, float(1.0 / (1.0 + np.exp(-float(score.reshape(-1)[0]))))

    def _iris_model(self, frame: np.ndarray, outer: np.ndarray, inner: np.ndarray, mirror: bool) -> np.ndarray:
        """The iris model on the eye between two corners: (9, 2) frame pixels, the eye points of
        :data:`EYE_POINT_NAMES` from its eye contour (finer than the mesh's: the eye fills its 64x64 input) and the
        iris centre."""
        import cv2

        centre = (outer + inner) / 2.0
        left, right = (inner, outer) if mirror else (outer, inner)  # the image-left corner first
        angle = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
        m = _crop_transform(centre, 2.3 * np.linalg.norm(right - left), angle, IRIS_SIZE)
        crop = cv2.warpAffine(frame, m, (IRIS_SIZE, IRIS_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if mirror:
            crop = np.ascontiguousarray(crop[:, ::-1])
        contour, iris = self._run(self._model("iris_landmark"), crop)
        points = np.concatenate([contour.reshape(-1, 3)[list(IRIS_CONTOUR_EYE_INDICES), :2],
                                 iris.reshape(-1, 3)[:1, :2]]).astype(np.float64)  # fmt: skip
        if mirror:
            points[:, 0] = IRIS_SIZE - points[:, 0]
        return _apply(_invert(m), points)

    def _accept(self, frame: np.ndarray, roi: Optional[tuple]):
        """``(mesh, presence)`` for the face region ``roi``, or None when there is none or no face in it."""
        if roi is None:
            return None
        mesh, presence = self._mesh_in(frame, roi)
        return (mesh, presence) if presence >= self.min_presence else None

    def _roi_from_mesh(self, mesh: np.ndarray) -> tuple:
        a, b = mesh[MESH_EYE_INDICES["right"][0], :2], mesh[MESH_EYE_INDICES["left"][0], :2]
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        m = _crop_transform(mesh[:, :2].mean(0), 1.0, angle, 1)  # rotation only (scale 1): measure the extent
        level = _apply(m, mesh[:, :2])
        lo, hi = level.min(0), level.max(0)
        centre = _apply(_invert(m), ((lo + hi) / 2.0)[None])[0]
        return centre, float(max(hi - lo)) * self.roi_scale, angle

    def _roi_from_detection(self, box: np.ndarray, landmarks: np.ndarray) -> tuple:
        angle = float(np.degrees(np.arctan2(landmarks[1, 1] - landmarks[0, 1], landmarks[1, 0] - landmarks[0, 0])))
        centre = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
        return centre, float(max(box[2] - box[0], box[3] - box[1])) * self.roi_scale, angle

    def detect(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        frames = [np.ascontiguousarray(f) for f in frames]
        segments = max(1, min(self.workers, len(frames) // self.min_segment))
        if segments == 1:
            with self._lock:
                return self._detect_segment(frames)
        # Consecutive segments on their own threads (LiteRT and OpenCV release the GIL), each with its own
        # interpreters; each segment starts with a detection, as a key frame would.
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, len(frames), segments + 1).round().astype(int)
        with self._lock:  # one caller at a time: LiteRT interpreters are not thread-safe
            while len(self._clone_interpreters) < segments - 1:
                self._clone_interpreters.append({})
            # clones carry the current settings; each keeps its own interpreters across calls
            workers = [self, *(self._clone(cache) for cache in self._clone_interpreters[: segments - 1])]
            with ThreadPoolExecutor(segments) as pool:
                parts = list(pool.map(lambda k: workers[k]._detect_segment(frames[bounds[k] : bounds[k + 1]]),
                                      range(segments)))  # fmt: skip
        return FaceTrack.concatenate(parts)

    def _clone(self, interpreters: dict) -> "FaceMeshBackend":
        clone = copy.copy(self)
        clone._interpreters, clone._clone_interpreters = interpreters, []
        return clone

    def _detect_segment(self, frames: list) -> FaceTrack:
        n = len(frames)
        out = FaceTrack.empty(n, dense=True)
        keys = np.flatnonzero(np.arange(n) % self.detect_every == 0)
        key_faces = self.detector([frames[i] for i in keys]) if len(keys) else None
        key_row = {int(i): k for k, i in enumerate(keys)}
        roi, last_try = None, -self.retry_every
        for i, frame in enumerate(frames):
            tracked = roi is not None
            if i in key_row and key_faces.found[key_row[i]]:
                k = key_row[i]
                roi = self._roi_from_detection(key_faces.boxes[k], key_faces.landmarks[k])
            mesh = self._accept(frame, roi)
            if mesh is None and (tracked or i - last_try >= self.retry_every) and i not in key_row:
                # tracking broke (or the face has been lost for a while): ask the detector on this frame
                last_try = i
                found = self.detector([frame])
                if found.found[0]:
                    mesh = self._accept(frame, self._roi_from_detection(found.boxes[0], found.landmarks[0]))
            roi = None
            if mesh is not None:
                mesh, presence = mesh
                self._fill(out, i, frame, mesh, presence)
                roi = self._roi_from_mesh(mesh)
        return out

    def _fill(self, out: FaceTrack, i: int, frame: np.ndarray, mesh: np.ndarray, presence: float) -> None:
        xy = mesh[:, :2]
        out.boxes[i] = (*xy.min(0), *xy.max(0))
        out.probs[i] = presence
        for e, side in enumerate(("left", "right")):
            idx = MESH_EYE_INDICES[side]
            out.eyes[i, e, :8] = xy[list(idx)]
            if self.iris:
                out.eyes[i, e] = self._iris_model(frame, xy[idx[0]], xy[idx[1]], mirror=(side == "left"))
        eye_image_left, eye_image_right = out.eyes[i, 1, :8].mean(0), out.eyes[i, 0, :8].mean(0)
        out.landmarks[i] = (eye_image_left, eye_image_right, xy[MESH_NOSE_TIP], xy[MESH_MOUTH_CORNERS[0]],
                            xy[MESH_MOUTH_CORNERS[1]])  # fmt: skip
        out.head_pose[i] = _head_pose(mesh)



# ---------------------------------------------------------------------------------------------------- face tracks
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class _TrackState:
    track_id: int
    box: np.ndarray
    appearance: np.ndarray
    last_frame: int
    roi: Optional[tuple] = None  # the face mesh's region for the next frame (dense tracking)
    lost: bool = False


class FaceTracker:
    """Every face of a video, linked into tracks across frames — streamed: call :meth:`update` chunk by chunk.

    1. Key frames (every ``detect_every`` frames, and the first frame after a cut) go to the detector's
       :meth:`MTCNNBackend.detect_all` (every face above ``min_prob``; the ``max_faces`` largest when set).
    2. Detections are assigned to the active tracks by box overlap (IoU ≥ ``iou_threshold``, optimal assignment).
    3. A detection that overlaps no active track is matched against the tracks lost within ``max_lost_s`` by
       identity (the ``identity`` backend's descriptor: dlib's face embedding when ``pip install
       'emvfer-hf[identity]'`` is installed, else the face's colour histogram; distance ≤ ``reid_threshold``): a face
       that leaves and comes back keeps its track id. Otherwise it starts a new track.
    4. After a cut (the picture changes at once: the mean absolute difference of two consecutive frames' 32x18 grey
       thumbnails is above ``cut_threshold``, in 0..1) positions mean nothing: every detection is matched against
       every track by identity alone (optimal assignment, distance ≤ ``reid_threshold``), so that two people who
       swap places across a cut keep their ids.
    5. Between key frames each track follows its face: with a dense ``landmarks`` backend (:class:`FaceMeshBackend`)
       from the previous frame's mesh, as MediaPipe tracks (the mesh's presence score ends the track's frame run);
       with the 5-point detector, by MTCNN's O-Net on the previous box.

    :meth:`update` returns, per track seen in the chunk, a :class:`FaceTrack` with one row per frame of the chunk
    (NaN rows where the track's face is absent), with dense eye landmarks and head pose when ``landmarks`` is
    dense — the input of the eye-movement extractor and of the face crops, per person.

    Args:
        detector: the :class:`MTCNNBackend` (default: one with ``detect_size=320``).
        landmarks: a :class:`FaceMeshBackend` for dense eye landmarks, or None for 5 points (default: a
            :class:`FaceMeshBackend` on ``detector`` when LiteRT is available).
        detect_every: key-frame period in frames.
        max_faces: at most this many faces per frame (the largest).
        min_prob: detection confidence for a face on a key frame.
        iou_threshold: box overlap that continues a track.
        reid_threshold: identity distance at or under which a lost track is taken up again (default: the identity
            backend's ``threshold``).
        max_lost_s: how long a lost track can be taken up again (None: for the whole video).
        fps: frame rate (for ``max_lost_s``).
        identity: a :class:`~.face_identity_mert.FaceIdentityBackend`, or its name for
            :func:`~.face_identity_mert.default_identity_backend` ("auto": the embedding where installed, "dlib",
            "histogram").
        cut_threshold: the thumbnail difference that counts as a cut (None: no cut detection).
        describe_every_s: how often (seconds, on key frames) each followed face's running descriptor takes one more
            look (the embedding costs about 0.05–0.1 s per face on a CPU core).
    """

    def __init__(
        self,
        detector: Optional[MTCNNBackend] = None,
        landmarks: Optional[FaceMeshBackend] = "default",
        detect_every: int = 10,
        max_faces: Optional[int] = None,
        min_prob: float = 0.9,
        iou_threshold: float = 0.3,
        reid_threshold: Optional[float] = None,
        max_lost_s: Optional[float] = None,
        fps: float = 25.0,
        identity="auto",
        cut_threshold: Optional[float] = 0.2,
        describe_every_s: float = 1.0,
    ):
        self.detector = detector if detector is not None else MTCNNBackend(detect_size=320)
        if isinstance(landmarks, str):
            try:
                landmarks = FaceMeshBackend(detector=self.detector, workers=1)
            except (ImportError, FileNotFoundError) as error:
                import warnings

                warnings.warn(f"{error}; face tracks get MTCNN's 5 landmarks (no eyelids)", stacklevel=2)
                landmarks = None
        self.landmarks = landmarks
        self.identity: FaceIdentityBackend = default_identity_backend(identity) if isinstance(identity, str) else identity
        self.detect_every = max(1, int(detect_every))
        self.max_faces = None if max_faces is None else max(1, int(max_faces))
        self.min_prob = float(min_prob)
        self.iou_threshold = float(iou_threshold)
        self.reid_threshold = float(self.identity.threshold if reid_threshold is None else reid_threshold)
        self.max_lost_s = max_lost_s
        self.fps = float(fps)
        self.cut_threshold = None if cut_threshold is None else float(cut_threshold)
        self.describe_every = self.detect_every * max(1, int(round(describe_every_s * self.fps / self.detect_every)))
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self._tracks: dict[int, _TrackState] = {}
        self._next_id = 0
        self._frame = 0
        self._thumbnail: Optional[np.ndarray] = None
        self.cuts: list[int] = []  # frames detected as the first after a cut

    @property
    def dense(self) -> bool:
        return self.landmarks is not None

    @property
    def num_tracks(self) -> int:
        """Tracks started so far."""
        return self._next_id

    def track_descriptors(self) -> dict[int, np.ndarray]:
        """``{track_id: descriptor}``: each track's running identity descriptor (the ``identity`` backend's), for
        grouping the tracks of many videos into persons (:func:`~.face_identity_mert.cluster_descriptors`)."""
        return {tid: track.appearance.copy() for tid, track in sorted(self._tracks.items())}

    # -- one frame
    def _is_cut(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` starts a new shot (its thumbnail differs from the previous frame's by more than
        ``cut_threshold``)."""
        if self.cut_threshold is None:
            return False
        import cv2

        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        thumbnail = cv2.resize(grey, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        previous, self._thumbnail = self._thumbnail, thumbnail
        return previous is not None and float(np.abs(thumbnail - previous).mean()) > self.cut_threshold

    def _key_detections(self, frame: np.ndarray) -> FaceTrack:
        faces = self.detector.detect_all(frame, min_prob=self.min_prob)
        if self.max_faces is not None and len(faces) > self.max_faces:
            size = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
            faces = faces.select(np.sort(np.argsort(-size)[: self.max_faces]))
        return faces

    def _assign(self, frame: np.ndarray, faces: FaceTrack, cut: bool = False) -> list[tuple[int, int]]:
        """(detection row, track id) pairs for a key frame's detections; starts and resumes tracks. After a ``cut``
        every detection is matched to every track by identity alone."""
        from scipy.optimize import linear_sum_assignment

        active = [t for t in self._tracks.values() if not t.lost]
        pairs, free = [], list(range(len(faces)))
        if active and len(faces) and not cut:
            iou = box_iou(faces.boxes, np.stack([t.box for t in active]))
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold:
                    pairs.append((int(r), active[c].track_id))
                    free.remove(int(r))
        matched = {tid for _, tid in pairs}
        for track in active:  # not seen on this key frame: lost (it may come back)
            if track.track_id not in matched:
                track.lost, track.roi = True, None
        if not free:
            return pairs
        described = self.identity.describe(frame, faces.boxes[free], faces.landmarks[free])
        candidates = [t for t in self._tracks.values() if t.lost and t.track_id not in matched
                      and (self.max_lost_s is None or (self._frame - t.last_frame) / self.fps <= self.max_lost_s)]  # fmt: skip
        taken: dict[int, _TrackState] = {}
        if candidates:
            distance = self.identity.distances(described, np.stack([t.appearance for t in candidates]))
            rows, cols = linear_sum_assignment(distance)
            taken = {int(r): candidates[c] for r, c in zip(rows, cols) if distance[r, c] <= self.reid_threshold}
        for k, r in enumerate(free):
            track = taken.get(k)
            if track is not None:
                track.lost = False
            else:
                track = _TrackState(self._next_id, faces.boxes[r], described[k], self._frame)
                self._tracks[track.track_id] = track
                self._next_id += 1
            pairs.append((r, track.track_id))
        return pairs

    def update(self, frames: Sequence[np.ndarray]) -> dict[int, FaceTrack]:
        """Track the faces of the next consecutive ``frames`` of the video.

        Returns:
            ``{track_id: FaceTrack}`` for every track with a face in at least one of these frames; each FaceTrack
            has ``len(frames)`` rows.
        """
        frames = [np.ascontiguousarray(f) for f in frames]
        n = len(frames)
        out: dict[int, FaceTrack] = {}

        def row(track_id: int) -> FaceTrack:
            if track_id not in out:
                out[track_id] = FaceTrack.empty(n, dense=self.dense)
            return out[track_id]

        for i, frame in enumerate(frames):
            seen = set()
            cut = self._is_cut(frame)
            if cut:
                self.cuts.append(self._frame)
            key = self._frame % self.detect_every == 0 or cut
            if key:
                faces = self._key_detections(frame)
                for r, tid in self._assign(frame, faces, cut=cut):
                    track = self._tracks[tid]
                    if self.dense:
                        track.roi = self.landmarks._roi_from_detection(faces.boxes[r], faces.landmarks[r])
                    else:
                        target = row(tid)
                        target.boxes[i], target.landmarks[i], target.probs[i] = (faces.boxes[r], faces.landmarks[r],
                                                                                 faces.probs[r])  # fmt: skip
                        track.box, track.last_frame = faces.boxes[r], self._frame
                        seen.add(tid)
            for track in self._tracks.values():
                if track.lost or track.track_id in seen:
                    continue
                if self.dense:
                    accepted = self.landmarks._accept(frame, track.roi)
                    if accepted is None:
                        track.lost, track.roi = True, None
                        continue
                    mesh, presence = accepted
                    target = row(track.track_id)
                    self.landmarks._fill(target, i, frame, mesh, presence)
                    track.roi = self.landmarks._roi_from_mesh(mesh)
                    track.box = target.boxes[i].copy()
                else:
                    box, lm, prob = self.detector._track(frame, track.box)
                    if prob < self.detector.track_threshold or not np.isfinite(box).all():
                        track.lost = True
                        continue
                    target = row(track.track_id)
                    target.boxes[i], target.landmarks[i], target.probs[i] = box, lm, prob
                    track.box = box
                track.last_frame = self._frame
            if self._frame % self.describe_every == 0:  # a slow running mean of the look of each face
                self._update_descriptors(frame, [t for t in self._tracks.values() if not t.lost
                                                 and t.last_frame == self._frame])  # fmt: skip
            self._frame += 1
        return out

    def _update_descriptors(self, frame: np.ndarray, tracks: list) -> None:
        if tracks:
            described = self.identity.describe(frame, np.stack([t.box for t in tracks]))
            for track, descriptor in zip(tracks, described):
                track.appearance = self.identity.merge(track.appearance, descriptor, 0.2)


FACE_BACKENDS = ("mesh", "mtcnn")


def default_face_backend(name: str = "mesh", detect_size: int = 320, device: str = "cpu") -> FaceLandmarkBackend:
    """The face backend by name: ``"mesh"`` (default: :class:`FaceMeshBackend`, dense eye landmarks) or ``"mtcnn"``
    (:class:`MTCNNBackend`, 5 points). Where LiteRT is not installed (it has no Windows wheel) ``"mesh"`` falls back to
    MTCNN with a warning; the eye channels then come from the 5-point path (no eyelid aperture)."""
    if name not in FACE_BACKENDS:
        raise ValueError(f"face backend must be one of {FACE_BACKENDS}, got {name!r}")
    detector = MTCNNBackend(detect_size=detect_size, device=device, detect_every=1 if name == "mesh" else 10)
    if name == "mtcnn":
        return detector
    try:
        return FaceMeshBackend(detector=detector)
    except (ImportError, FileNotFoundError) as error:
        import warnings

        warnings.warn(f"{error}; using MTCNNBackend (5 landmarks) instead", stacklevel=2)
        detector.detect_every = 10  # tracking with O-Net between key frames, as the "mtcnn" backend
        return detector


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
    return run_face_backend(backend or default_face_backend(), load_frames(frames_or_video)[0])
