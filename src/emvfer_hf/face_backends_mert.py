"""The face backends: MTCNN (5 landmarks, facenet-pytorch) and MediaPipe's face mesh + iris model (dense landmarks).

Each implements the protocol of :class:`~.faces_mert.FaceLandmarkBackend`: :meth:`detect` (the most probable face of
each frame of a clip), :meth:`locate` (the face at a detector's box) and :meth:`follow` (the same face in the next
frame). Their :meth:`detect` is :class:`~.faces_mert.FaceFollower` with one face: detection on key frames, following
in between, the same loop as the multi-face :class:`~.face_tracking_mert.FaceTracker`. :func:`default_face_backend`
picks one by name (the face mesh, falling back to MTCNN where LiteRT is missing: :func:`face_mesh_or_none`).

Flat module (single-dot sibling imports only, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

import copy
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .faces_mert import NUM_EYE_POINTS, Face, FaceFollower, FaceLandmarkBackend, FaceTrack, run_face_backend
from .video_io_mert import load_frames

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


# ------------------------------------------------------------------------------------------------------- MTCNN
#: MTCNN's fixed image standardisation, ``(pixel - 127.5) * 0.0078125`` (= / 128): the input its three networks were
#: trained on (facenet-pytorch 2.5, ``models/utils/detect_face.py``: ``detect_face`` scales every stage's crops so;
#: ``fixed_image_standardization`` in ``models/mtcnn.py`` is the same map). Our O-Net step feeds its crop the same way.
MTCNN_PIXEL_MEAN = 127.5
MTCNN_PIXEL_SCALE = 0.0078125
#: O-Net's input side in pixels (Zhang et al., "Joint Face Detection and Alignment Using Multitask Cascaded
#: Convolutional Networks", IEEE SPL 2016: the output network sees 48x48 crops)
ONET_SIZE = 48


class MTCNNBackend(FaceLandmarkBackend):
    """facenet-pytorch's MTCNN (weights ship in its wheel; no download), made fast for video.

    - The full three-stage detector runs on frames downscaled so that their longer side is ``detect_size`` pixels,
      in batches, on key frames only (every ``detect_every`` frames, and whenever tracking is lost).
    - In between, the face is followed with MTCNN's last stage alone (O-Net, :meth:`follow`): the previous frame's
      box, squared, is cropped from the full-resolution frame at 48x48 and O-Net returns the refined box, the 5
      landmarks and a confidence. Below ``track_threshold`` the frame is re-detected from scratch.

    Args:
        detect_size: longer side (px) of the frames given to the full detector; smaller frames are not upscaled.
        detect_every: key-frame period (1 = full detector on every frame).
        min_face_size: smallest face (px, at the detection scale) the full detector looks for.
        thresholds: MTCNN's P/R/O-Net thresholds (facenet-pytorch's defaults).
        track_threshold: O-Net confidence needed to keep following a face.
        batch_size: frames per batch of the full detector.
        device: torch device.
        num_threads: torch threads while MTCNN runs on the CPU (default 1, see :func:`torch_threads`; None: leave
            torch's setting).
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

    def detect_full(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        """The full detector on every one of ``frames`` (downscaled, in batches, nothing followed): the most
        probable face of each frame, NaN rows where none."""
        n = len(frames)
        boxes = np.full((n, 4), np.nan, np.float32)
        lms = np.full((n, 5, 2), np.nan, np.float32)
        probs = np.full(n, np.nan, np.float32)
        if n == 0:
            return FaceTrack(boxes, lms, probs)
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
        return FaceTrack(boxes, lms, probs)

    def follow(self, frame: np.ndarray, face: Face) -> Optional[Face]:
        """O-Net on the previous box, squared and cropped from the full-resolution frame: the refined box, the 5
        landmarks and O-Net's confidence; None below ``track_threshold``."""
        import cv2
        import torch

        box = face.box
        h, w = frame.shape[:2]
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        side = max(box[2] - box[0], box[3] - box[1])
        x1, y1 = int(round(cx - side / 2)), int(round(cy - side / 2))
        s = max(2, int(round(side)))
        pad = max(0, -x1, -y1, x1 + s - w, y1 + s - h)
        src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT) if pad else frame
        crop = src[y1 + pad : y1 + pad + s, x1 + pad : x1 + pad + s]
        crop = cv2.resize(crop, (ONET_SIZE, ONET_SIZE), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(crop).permute(2, 0, 1).float().unsqueeze(0).contiguous()
        x = (x - MTCNN_PIXEL_MEAN) * MTCNN_PIXEL_SCALE
        with torch.inference_mode(), torch_threads(self.num_threads):
            reg, pts, prob = self.mtcnn.onet(x.to(self.device))
        reg, pts, prob = reg[0].cpu().numpy(), pts[0].cpu().numpy(), float(prob[0, 1])
        # facenet-pytorch's box convention (detect_face: bbreg and the landmark step): the integer square box spans
        # x1 .. x1 + s - 1, its width is s = x2 - x1 + 1, and landmarks are offset by -1
        bw = bh = float(s)
        lm = np.stack([bw * pts[:5] + x1 - 1, bh * pts[5:] + y1 - 1], axis=1)
        new_box = np.array([x1 + reg[0] * bw, y1 + reg[1] * bh, x1 + s - 1 + reg[2] * bw, y1 + s - 1 + reg[3] * bh])
        new_box = new_box.astype(np.float32)
        if prob < self.track_threshold or not np.isfinite(new_box).all():
            return None
        return Face(new_box, lm.astype(np.float32), prob)

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
        """The most probable face of each frame: the full detector on key frames (and on every frame without a face),
        O-Net following in between. Returns ``(boxes, landmarks, probs)``."""
        follower = FaceFollower(self, find=self.detect_full, detect_every=self.detect_every, retry_every=1)
        track = follower.track_one(frames)
        return track.boxes, track.landmarks, track.probs


# ----------------------------------------------------------------------------------------------- dense landmarks
#: Indices into MediaPipe's 468-point face mesh, per eye in :data:`~.faces_mert.EYE_POINT_NAMES` order (the iris
#: centre comes from the iris model). "left"/"right" are the subject's: the left eye is image-right for a
#: non-mirrored camera.
MESH_EYE_INDICES = {
    "left": (263, 362, 387, 386, 385, 373, 374, 380),
    "right": (33, 133, 160, 159, 158, 144, 145, 153),
}
#: The same eye points among the iris model's first 16 eye-contour points (lower lid corner to corner, then upper
#: lid), for a right eye or a mirrored left eye.
IRIS_CONTOUR_EYE_INDICES = (0, 8, 11, 12, 13, 3, 4, 5)
#: the eye points that the mesh gives (all but the iris centre)
MESH_EYE_POINTS = len(IRIS_CONTOUR_EYE_INDICES)
MESH_NOSE_TIP, MESH_MOUTH_CORNERS, MESH_FOREHEAD, MESH_CHIN = 1, (61, 291), 10, 152
#: the input sides of the face-mesh and iris models in pixels (their MediaPipe model cards)
MESH_SIZE, IRIS_SIZE = 192, 64
#: the iris model's eye region: a square of this many eye-corner distances around the eye (MediaPipe's iris
#: landmark graph, ``mediapipe/modules/iris_landmark``: the eye ROI is scaled by 2.3)
IRIS_REGION_SCALE = 2.3
#: the models take pixels scaled to [0, 1]
_PIXEL_SCALE = 1.0 / 255.0


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
    Per clip (:meth:`detect`, :class:`~.faces_mert.FaceFollower` with one face):

    1. key frames (every ``detect_every`` frames, and ``retry_every`` frames after the face was lost) go to a 5-point
       ``detector`` (default :class:`MTCNNBackend`, full detector) in one batch;
    2. each frame's face region — from the detector on key frames (:meth:`locate`), else from the previous frame's
       mesh (:meth:`follow`), as MediaPipe tracks — is cut out square (``roi_scale`` x the face size), rotated so that
       the eyes are level, at 192x192;
    3. the face mesh gives 468 points with depth and a face-presence score; below ``min_presence`` the frame has no
       face (and the next frame asks the detector again);
    4. with ``iris=True`` each eye region (2.3 x the corner distance, at 64x64; the left eye mirrored, as the model
       expects) goes to the iris model for the iris centre.

    The :class:`~.faces_mert.FaceTrack` carries the box (the mesh's extent), MTCNN's 5-point layout (eye centres, nose
    tip, mouth corners, taken from the mesh), the presence score, the eye points of
    :data:`~.faces_mert.EYE_POINT_NAMES` and the head pose.

    Args:
        detector: the 5-point backend for key frames (default ``MTCNNBackend(detect_every=1)``).
        iris: run the iris model (the iris centre for gaze; costs about 2 ms per eye on one core).
        detect_every: key-frame period in frames.
        retry_every: frames between detector calls while no face is followed.
        min_presence: face-presence probability needed to accept a mesh.
        roi_scale: side of the face region in face sizes (1.5, as MediaPipe's face-landmark graph scales its ROI).
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
                               (image.astype(np.float32) * _PIXEL_SCALE)[None])  # fmt: skip
        interpreter.invoke()
        outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
        return sorted(outputs, key=lambda a: -a.size)  # landmarks first, then the score / the iris

    def _mesh_in(self, frame: np.ndarray, region: tuple) -> tuple[np.ndarray, float]:
        """The mesh (468, 3) in frame pixels and the presence probability, for ``region = (centre, side, angle)``."""
        import cv2

        centre, side, angle = region
        m = _crop_transform(centre, side, angle, MESH_SIZE)
        crop = cv2.warpAffine(frame, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        points, score = self._run(self._model("face_landmark"), crop)
        points = points.reshape(-1, 3).astype(np.float64)
        inv = _invert(m)
        mesh = np.concatenate([_apply(inv, points[:, :2]), points[:, 2:] * (side / MESH_SIZE)], axis=1)
        return mesh, float(1.0 / (1.0 + np.exp(-float(score.reshape(-1)[0]))))

    def _iris_model(self, frame: np.ndarray, outer: np.ndarray, inner: np.ndarray, mirror: bool) -> np.ndarray:
        """The iris model on the eye between two corners: (9, 2) frame pixels, the eye points of
        :data:`~.faces_mert.EYE_POINT_NAMES` from its eye contour (finer than the mesh's: the eye fills its 64x64
        input) and the iris centre."""
        import cv2

        centre = (outer + inner) / 2.0
        left, right = (inner, outer) if mirror else (outer, inner)  # the image-left corner first
        angle = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
        m = _crop_transform(centre, IRIS_REGION_SCALE * np.linalg.norm(right - left), angle, IRIS_SIZE)
        crop = cv2.warpAffine(frame, m, (IRIS_SIZE, IRIS_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if mirror:
            crop = np.ascontiguousarray(crop[:, ::-1])
        contour, iris = self._run(self._model("iris_landmark"), crop)
        points = np.concatenate([contour.reshape(-1, 3)[list(IRIS_CONTOUR_EYE_INDICES), :2],
                                 iris.reshape(-1, 3)[:1, :2]]).astype(np.float64)  # fmt: skip
        if mirror:
            points[:, 0] = IRIS_SIZE - points[:, 0]
        return _apply(_invert(m), points)

    def _face_in(self, frame: np.ndarray, region: tuple) -> Optional[Face]:
        """The face whose mesh is found in ``region`` of ``frame``, or None where the mesh sees no face there."""
        mesh, presence = self._mesh_in(frame, region)
        if presence < self.min_presence:
            return None
        xy = mesh[:, :2]
        eyes = np.full((2, NUM_EYE_POINTS, 2), np.nan, np.float32)
        for e, side in enumerate(("left", "right")):
            idx = MESH_EYE_INDICES[side]
            eyes[e, :MESH_EYE_POINTS] = xy[list(idx)]
            if self.iris:
                eyes[e] = self._iris_model(frame, xy[idx[0]], xy[idx[1]], mirror=(side == "left"))
        eye_image_left, eye_image_right = eyes[1, :MESH_EYE_POINTS].mean(0), eyes[0, :MESH_EYE_POINTS].mean(0)
        landmarks = (eye_image_left, eye_image_right, xy[MESH_NOSE_TIP], xy[MESH_MOUTH_CORNERS[0]],
                     xy[MESH_MOUTH_CORNERS[1]])  # fmt: skip
        return Face((*xy.min(0), *xy.max(0)), landmarks, presence, eyes, _head_pose(mesh), self._mesh_region(mesh))

    def _mesh_region(self, mesh: np.ndarray) -> tuple:
        """The face region of the next frame from this frame's mesh: its extent with the eyes level, scaled."""
        a, b = mesh[MESH_EYE_INDICES["right"][0], :2], mesh[MESH_EYE_INDICES["left"][0], :2]
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        m = _crop_transform(mesh[:, :2].mean(0), 1.0, angle, 1)  # rotation only (scale 1): measure the extent
        level = _apply(m, mesh[:, :2])
        lo, hi = level.min(0), level.max(0)
        centre = _apply(_invert(m), ((lo + hi) / 2.0)[None])[0]
        return centre, float(max(hi - lo)) * self.roi_scale, angle

    def _detection_region(self, box: np.ndarray, landmarks: Optional[np.ndarray]) -> tuple:
        """The face region from a detector's box, turned so that its two eye landmarks are level."""
        angle = 0.0 if landmarks is None else float(
            np.degrees(np.arctan2(landmarks[1, 1] - landmarks[0, 1], landmarks[1, 0] - landmarks[0, 0])))
        centre = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
        return centre, float(max(box[2] - box[0], box[3] - box[1])) * self.roi_scale, angle

    def locate(self, frame: np.ndarray, box: np.ndarray, landmarks: Optional[np.ndarray] = None,
               prob: float = float("nan")) -> Optional[Face]:  # fmt: skip
        """The mesh in the region of a detector's box (levelled by its eye landmarks); None below ``min_presence``."""
        return self._face_in(frame, self._detection_region(box, landmarks))

    def follow(self, frame: np.ndarray, face: Face) -> Optional[Face]:
        """The mesh in the region that ``face``'s mesh spans (as MediaPipe tracks); None below ``min_presence``."""
        if face.region is None:  # a face this backend did not make: start from its box
            return self.locate(frame, face.box, face.landmarks)
        return self._face_in(frame, face.region)

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
        """One face through consecutive ``frames``: the detector's face on key frames and on retries, the mesh
        followed in between; a key frame where the detector misses the face keeps following it."""
        follower = FaceFollower(self, find=lambda some: run_face_backend(self.detector, some), keep_missed=True,
                                detect_every=self.detect_every, retry_every=self.retry_every)  # fmt: skip
        return follower.track_one(frames)


# --------------------------------------------------------------------------------------------------- choosing
FACE_BACKENDS = ("mesh", "mtcnn")


def face_mesh_or_none(detector: FaceLandmarkBackend, **options) -> Optional[FaceMeshBackend]:
    """A :class:`FaceMeshBackend` on ``detector``, or None with a warning where it cannot run (LiteRT has no wheel
    for this platform, e.g. Windows, or the weights are missing): the caller falls back to the detector's 5 points."""
    try:
        return FaceMeshBackend(detector=detector, **options)
    except (ImportError, FileNotFoundError) as error:
        import warnings

        warnings.warn(f"{error}; falling back to MTCNN's 5 landmarks (no eyelids)", stacklevel=3)
        return None


def default_face_backend(name: str = "mesh", detect_size: int = 320, device: str = "cpu") -> FaceLandmarkBackend:
    """The face backend by name: ``"mesh"`` (default: :class:`FaceMeshBackend`, dense eye landmarks) or ``"mtcnn"``
    (:class:`MTCNNBackend`, 5 points). Where LiteRT is not installed (it has no Windows wheel) ``"mesh"`` falls back to
    MTCNN with a warning; the eye channels then come from the 5-point path (no eyelid aperture)."""
    if name not in FACE_BACKENDS:
        raise ValueError(f"face backend must be one of {FACE_BACKENDS}, got {name!r}")
    detector = MTCNNBackend(detect_size=detect_size, device=device, detect_every=1 if name == "mesh" else 10)
    mesh = face_mesh_or_none(detector) if name == "mesh" else None
    if mesh is not None:
        return mesh
    detector.detect_every = 10  # following with O-Net between key frames, as the "mtcnn" backend
    return detector


def detect_faces(frames_or_video, backend: Optional[FaceLandmarkBackend] = None) -> FaceTrack:
    """Faces and 5 landmarks of every frame (one detection pass, reusable by the video processor for face crops
    and by :func:`~.eye_movement_mert.extract_eye_movements` through ``faces=``)."""
    return run_face_backend(backend or default_face_backend(), load_frames(frames_or_video)[0])
