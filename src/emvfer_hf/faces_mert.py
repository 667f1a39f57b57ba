"""Faces for EM-VFER: the face track of a clip, the backend protocol, the one loop that follows faces, and boxes.

A :class:`FaceLandmarkBackend` turns RGB frames into a :class:`FaceTrack`: per frame the face box, five landmarks
(eye centres, nose tip, mouth corners) and a confidence; a dense backend also gives eye landmarks (corners, eyelids,
iris centre) and the head pose. Besides :meth:`~FaceLandmarkBackend.detect` (a whole clip) the protocol has two
per-frame steps: :meth:`~FaceLandmarkBackend.locate` (the face at a detector's box) and
:meth:`~FaceLandmarkBackend.follow` (the same face in the next frame). :class:`FaceFollower` drives a backend through
consecutive frames with those two steps and a detector on key frames: it is the one tracking loop, used by each
backend's single-face :meth:`~FaceLandmarkBackend.detect` (one face) and by the multi-face
:class:`~.face_tracking_mert.FaceTracker`.

The rooms of the faces: this module (the contract), :mod:`.face_backends_mert` (MTCNN, MediaPipe's face mesh + iris)
and :mod:`.face_tracking_mert` (every face of a video, linked into tracks by position and identity). Used by the video
processor (face crops) and the visual eye-movement extractor (eye regions).

Flat module (single-dot sibling imports only, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

FACE_BOX_MODES = ("union", "smooth")

#: ArcFace's 5-point alignment template for 112x112 face crops (InsightFace, ``python-package/insightface/utils/
#: face_align.py``, ``arcface_dst``; Deng et al., "ArcFace", CVPR 2019) in frame pixels of that crop: image-left eye,
#: image-right eye, nose tip, image-left and image-right mouth corners (MTCNN's landmark order).
_ARCFACE_112_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
#: the midpoint of the template's two eyes, ((38.2946 + 73.5318) / 2, (51.6963 + 51.5014) / 2) rounded
_ARCFACE_112_EYE_MIDPOINT = np.array([55.9132, 51.5989])
#: the template's horizontal eye distance, 73.5318 - 38.2946
_ARCFACE_112_EYE_DISTANCE = 35.2372
#: :data:`_ARCFACE_112_POINTS` in units of the inter-ocular distance, centred between the eyes: the face frame in
#: which the visual extractor places the eye regions of a 5-point backend.
FACE_TEMPLATE = (_ARCFACE_112_POINTS - _ARCFACE_112_EYE_MIDPOINT) / _ARCFACE_112_EYE_DISTANCE


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` (K, 2) onto ``dst`` (K, 2).

    Returns the (2, 3) matrix ``M`` with ``dst ≈ src @ M[:, :2].T + M[:, 2]`` (Umeyama, "Least-squares estimation of
    transformation parameters between two point patterns", IEEE TPAMI 1991, without reflection).
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
class Face:
    """One face in one frame, as a backend located or followed it (a row of a :class:`FaceTrack`).

    Attributes:
        box: (4,) float32 ``x1, y1, x2, y2`` in frame pixels.
        landmarks: (5, 2) float32, the 5 points in :class:`FaceTrack`'s order.
        prob: the backend's confidence (the detection probability, O-Net's confidence, the mesh's face presence).
        eyes: (2, 9, 2) float32 or None: dense eye landmarks (:data:`EYE_POINT_NAMES`), the subject's left eye first.
        head_pose: (3,) float32 or None: ``yaw, pitch, roll`` in degrees.
        region: what the backend that made this face needs to follow it into the next frame (its own business: the
            face mesh keeps its crop region here; None: the backend follows from the box).
    """

    box: np.ndarray
    landmarks: np.ndarray
    prob: float
    eyes: Optional[np.ndarray] = None
    head_pose: Optional[np.ndarray] = None
    region: Any = None

    def __post_init__(self):
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        if self.eyes is not None:
            self.eyes = np.asarray(self.eyes, dtype=np.float32).reshape(2, NUM_EYE_POINTS, 2)
        if self.head_pose is not None:
            self.head_pose = np.asarray(self.head_pose, dtype=np.float32).reshape(3)


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

    def put(self, index: int, face: Face) -> None:
        """Write ``face`` into row ``index`` (its eye landmarks and head pose where both have them)."""
        self.boxes[index], self.landmarks[index], self.probs[index] = face.box, face.landmarks, face.prob
        if self.eyes is not None and face.eyes is not None:
            self.eyes[index] = face.eyes
        if self.head_pose is not None and face.head_pose is not None:
            self.head_pose[index] = face.head_pose

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
    """The protocol of a face + landmark detector used by the visual extractor, the video processor and the tracker.

    Subclasses implement :meth:`detect`. Call the backend (``backend(frames)``) to get a :class:`FaceTrack`.
    A 5-point backend returns boxes, landmarks and probabilities; a dense one also fills ``FaceTrack.eyes`` (and
    ``head_pose``), which the extractor then uses for blinks (eyelid aperture), eye crops and gaze. To plug in your
    own landmark model, subclass this and return a :class:`FaceTrack` (see
    :class:`~.face_backends_mert.FaceMeshBackend` for the eye point layout), then pass it as ``backend=`` to the
    extractor or set ``processor.face_backend``.

    A backend that also implements :meth:`follow` (and, for a dense one, :meth:`locate`) can be driven frame by frame
    by :class:`FaceFollower`: that is how the package's backends detect, and how the face tracker follows each face.
    """

    #: whether the backend fills ``FaceTrack.eyes`` (and ``head_pose``)
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

    def locate(self, frame: np.ndarray, box: np.ndarray, landmarks: Optional[np.ndarray] = None,
               prob: float = float("nan")) -> Optional[Face]:  # fmt: skip
        """The face this backend sees at a detector's ``box`` (with the detector's 5 ``landmarks`` and ``prob``), or
        None when there is none. By default the detection itself: a 5-point backend's detections are its faces."""
        if landmarks is None:
            landmarks = np.full((5, 2), np.nan)
        return Face(box, landmarks, prob)

    def follow(self, frame: np.ndarray, face: Face) -> Optional[Face]:
        """The same face in ``frame``, the frame after the one where it was ``face``; None when it is lost there."""
        raise NotImplementedError(f"{type(self).__name__} cannot follow a face from one frame to the next")

    def __call__(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        return run_face_backend(self, frames)


def run_face_backend(backend, frames: Sequence[np.ndarray]) -> FaceTrack:
    """``backend.detect(frames)`` as a :class:`FaceTrack`, for any object with a ``detect`` method (a
    :class:`FaceLandmarkBackend` or a duck-typed one returning ``(boxes, landmarks, probs)``)."""
    result = backend.detect(list(frames))
    return result if isinstance(result, FaceTrack) else FaceTrack(*result)


@dataclass
class FollowedFace:
    """A face that a :class:`FaceFollower` follows: its track id, its face in the last frame where it was seen, and
    its running identity descriptor (the face tracker's)."""

    track_id: int
    appearance: Optional[np.ndarray]
    last_frame: int  # the video frame where it was last seen (where it started, until it is first seen)
    face: Optional[Face] = None  # its face in ``last_frame``; None while lost
    lost: bool = False

    @property
    def box(self) -> np.ndarray:
        return self.face.box


class FaceFollower:
    """Follows faces through consecutive frames of a video: the one tracking loop of the package.

    Per frame:

    1. on a key frame (every ``detect_every`` frames, and where :meth:`is_cut` says a new shot starts) the detector's
       faces (:meth:`detect_keys`) are assigned to the followed faces (:meth:`assign`), and the backend's
       :meth:`~FaceLandmarkBackend.locate` finds each assigned face at its detection;
    2. the backend's :meth:`~FaceLandmarkBackend.follow` carries every other followed face over from the previous
       frame; a face that the backend does not find (or that a key frame's detector missed, unless ``keep_missed``)
       is lost;
    3. with ``retry_every`` (one face): on a frame that is not a key frame and has no face, the detector looks again
       right after the face was lost and then every ``retry_every`` frames (1: on every such frame).

    As it stands it follows ONE face, the most probable of each detection — the single-face detection of the package's
    backends (:meth:`track_one`); :class:`~.face_tracking_mert.FaceTracker` follows every face, assigning detections
    to tracks by position and identity. Stream a video through :meth:`update` chunk by chunk.

    Args:
        backend: the :class:`FaceLandmarkBackend` that locates and follows the faces (its ``dense`` decides whether
            the tracks carry eye landmarks).
        find: the key-frame detector of one face: frames → a :class:`FaceTrack` with the most probable face of each
            frame (NaN rows where none).
        detect_every: key-frame period in frames.
        retry_every: see step 3 (None: only key frames detect).
        keep_missed: on a key frame where the detector finds no face, go on following the face (True) or lose it.
    """

    def __init__(
        self,
        backend: FaceLandmarkBackend,
        find: Optional[Callable[[list], FaceTrack]] = None,
        detect_every: int = 10,
        retry_every: Optional[int] = None,
        keep_missed: bool = False,
    ):
        self.backend = backend
        self.find = find
        self.detect_every = max(1, int(detect_every))
        self.retry_every = None if retry_every is None else max(1, int(retry_every))
        self.keep_missed = bool(keep_missed)
        self.reset()

    def reset(self) -> None:
        """Forget every face (a new video)."""
        self._tracks: dict[int, FollowedFace] = {}
        self._frame = 0
        self._last_try = -(self.retry_every or 0)
        self.cuts: list[int] = []  # frames detected as the first after a cut

    @property
    def dense(self) -> bool:
        return bool(getattr(self.backend, "dense", False))

    # -- the steps a multi-face tracker replaces
    def is_cut(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` starts a new shot (then it is a key frame). One face: never asked."""
        return False

    def detect_keys(self, frames: list) -> list[FaceTrack]:
        """The detector's faces on each of these key ``frames``. One face: the most probable, where one is found."""
        found = self.find(frames)
        return [found.select([k]) if found.found[k] else FaceTrack.empty(0) for k in range(len(frames))]

    def assign(self, frame: np.ndarray, faces: FaceTrack, cut: bool = False) -> list[tuple[int, FollowedFace]]:
        """(detection row, followed face) pairs for a key frame's detections ``faces``; starts and resumes faces and
        loses the followed faces that no detection continues (unless ``keep_missed``). One face: the detection, if
        any, is the face."""
        if not len(faces):
            if not self.keep_missed:
                for track in self._tracks.values():
                    track.lost, track.face = True, None
            return []
        track = self._tracks.setdefault(0, FollowedFace(0, None, self._frame))
        track.lost = False
        return [(0, track)]

    def after_frame(self, frame: np.ndarray) -> None:
        """Called once the faces of ``frame`` are known (the face tracker refreshes descriptors here)."""

    # -- the loop
    def update(self, frames: Sequence[np.ndarray]) -> dict[int, FaceTrack]:
        """Follow the faces through the next consecutive ``frames`` of the video.

        Returns:
            ``{track_id: FaceTrack}`` for every face seen in at least one of these frames; each FaceTrack has
            ``len(frames)`` rows (NaN where that face is absent).
        """
        frames = [np.ascontiguousarray(f) for f in frames]
        n = len(frames)
        cuts = [self.is_cut(frame) for frame in frames]
        self.cuts.extend(self._frame + i for i in range(n) if cuts[i])
        keys = [i for i in range(n) if (self._frame + i) % self.detect_every == 0 or cuts[i]]
        detections = dict(zip(keys, self.detect_keys([frames[i] for i in keys]))) if keys else {}
        out: dict[int, FaceTrack] = {}

        def place(i: int, track: FollowedFace, face: Optional[Face]) -> None:
            if face is None:
                track.lost, track.face = True, None
                return
            track.face, track.last_frame = face, self._frame
            if track.track_id not in out:
                out[track.track_id] = FaceTrack.empty(n, dense=self.dense)
            out[track.track_id].put(i, face)

        def locate_all(i: int, frame: np.ndarray, faces: FaceTrack, cut: bool) -> set:
            pairs = self.assign(frame, faces, cut=cut)
            for r, track in pairs:
                place(i, track, self.backend.locate(frame, faces.boxes[r], faces.landmarks[r], faces.probs[r]))
            return {track.track_id for _, track in pairs}

        for i, frame in enumerate(frames):
            followed = any(not t.lost for t in self._tracks.values())
            located = locate_all(i, frame, detections[i], cuts[i]) if i in detections else set()
            for track in list(self._tracks.values()):
                if not track.lost and track.track_id not in located:
                    place(i, track, self.backend.follow(frame, track.face))
            if (self.retry_every is not None and i not in detections and all(t.lost for t in self._tracks.values())
                    and (followed or self._frame - self._last_try >= self.retry_every)):  # fmt: skip
                self._last_try = self._frame
                locate_all(i, frame, self.detect_keys([frame])[0], False)
            self.after_frame(frame)
            self._frame += 1
        return out

    def track_one(self, frames: Sequence[np.ndarray]) -> FaceTrack:
        """The face of a whole clip (:meth:`update` on a fresh follower, one face): one row per frame."""
        self.reset()
        tracks = self.update(frames)
        return tracks[0] if tracks else FaceTrack.empty(len(frames), dense=self.dense)


# ---------------------------------------------------------------------------------------------------------- boxes
#: the frames over which ``clip_face_boxes(mode="smooth")`` averages each box coordinate (a centred moving mean)
SMOOTH_BOX_FRAMES = 5


def square_box(box: np.ndarray, margin: float) -> np.ndarray:
    """(x0, y0, x1, y1) → a square around its centre with side `max(w, h) * (1 + margin)`."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


def clip_face_boxes(boxes: np.ndarray, margin: float, mode: str = "union") -> np.ndarray:
    """One square face box per frame from per-frame detections (rows of NaN where no face was found).

    `mode="union"`: the union of every detected box, the same square for all frames (steady crops, as in the
    datasets' aligned clips); `mode="smooth"`: per-frame boxes, missing ones interpolated, smoothed over
    :data:`SMOOTH_BOX_FRAMES` frames. Returns (T, 4) float32 or `None` when no frame has a face.
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
    kernel = np.ones(SMOOTH_BOX_FRAMES) / SMOOTH_BOX_FRAMES
    half = SMOOTH_BOX_FRAMES // 2
    padded = np.pad(filled, ((half, half), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(4)], axis=1)
    return np.stack([square_box(b, margin) for b in smooth]).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


# ------------------------------------------------------------------------------------------------- moved names
def __getattr__(name: str):
    """The backends and the tracker live in their own modules now; the names the README gives here still resolve.

    Imported on first use: :mod:`.face_backends_mert` and :mod:`.face_tracking_mert` import this module, so a
    module-level re-export would be an import circle."""
    if name in ("MTCNNBackend", "FaceMeshBackend"):
        from .face_backends_mert import FaceMeshBackend, MTCNNBackend

        return {"MTCNNBackend": MTCNNBackend, "FaceMeshBackend": FaceMeshBackend}[name]
    if name == "FaceTracker":
        from .face_tracking_mert import FaceTracker

        return FaceTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
