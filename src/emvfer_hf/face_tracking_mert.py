"""Every face of a video, linked into tracks across frames, gaps and cuts: :class:`FaceTracker`.

The tracker is :class:`~.faces_mert.FaceFollower` (the one loop that follows faces through frames with a backend's
``locate`` and ``follow``) with many faces: it finds every face on key frames, assigns the detections to tracks by
box overlap, and by identity (:mod:`.face_identity_mert`) where a face comes back after a gap or a cut. Used by the
timeline analysis (``analysis.py``) and the corpus tools.

Flat module (single-dot sibling imports only, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .face_backends_mert import FaceMeshBackend, MTCNNBackend, face_mesh_or_none
from .face_identity_mert import FaceIdentityBackend, default_identity_backend
from .faces_mert import FaceFollower, FaceTrack, FollowedFace, box_iou
from .video_io_mert import DEFAULT_FPS

#: the grey thumbnail (width, height) whose change between two frames tells a cut (a 16:9 picture, tiny: a cut changes
#: the whole picture, a moving face a few of its pixels)
CUT_THUMBNAIL_SIZE = (32, 18)
#: how much of a face's running identity descriptor one new look replaces (an exponential moving average: a slow
#: mean of the face's look, so that one odd frame does not move it far)
DESCRIPTOR_UPDATE_WEIGHT = 0.2


class FaceTracker(FaceFollower):
    """Every face of a video, linked into tracks across frames — streamed: call :meth:`update` chunk by chunk.

    1. Key frames (every ``detect_every`` frames, and the first frame after a cut) go to the detector's
       :meth:`~.face_backends_mert.MTCNNBackend.detect_all` (every face above ``min_prob``; the ``max_faces`` largest
       when set).
    2. Detections are assigned to the active tracks by box overlap (IoU ≥ ``iou_threshold``, optimal assignment).
    3. A detection that overlaps no active track is matched against the tracks lost within ``max_lost_s`` by
       identity (the ``identity`` backend's descriptor: dlib's face embedding when ``pip install
       'emvfer-hf[identity]'`` is installed, else the face's colour histogram; distance ≤ ``reid_threshold``): a face
       that leaves and comes back keeps its track id. Otherwise it starts a new track.
    4. After a cut (the picture changes at once: the mean absolute difference of two consecutive frames' 32x18 grey
       thumbnails is above ``cut_threshold``, in 0..1) positions mean nothing: every detection is matched against
       every track by identity alone (optimal assignment, distance ≤ ``reid_threshold``), so that two people who
       swap places across a cut keep their ids.
    5. Each track's face is located at its detection and, between key frames, followed from the previous frame by the
       ``landmarks`` backend (the face mesh, as MediaPipe tracks; the mesh's presence score ends the track's frame
       run), or without one by the detector (MTCNN's O-Net on the previous box): the backend protocol's
       ``locate`` and ``follow``, in the loop of :class:`~.faces_mert.FaceFollower`.

    :meth:`update` returns, per track seen in the chunk, a :class:`~.faces_mert.FaceTrack` with one row per frame of
    the chunk (NaN rows where the track's face is absent), with dense eye landmarks and head pose when ``landmarks``
    is dense — the input of the eye-movement extractor and of the face crops, per person.

    Args:
        detector: the :class:`~.face_backends_mert.MTCNNBackend` (default: one with ``detect_size=320``).
        landmarks: a :class:`~.face_backends_mert.FaceMeshBackend` for dense eye landmarks, or None for 5 points
            (default: a face mesh on ``detector`` where LiteRT is available, see
            :func:`~.face_backends_mert.face_mesh_or_none`).
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
        fps: float = DEFAULT_FPS,
        identity="auto",
        cut_threshold: Optional[float] = 0.2,
        describe_every_s: float = 1.0,
    ):
        self.detector = detector if detector is not None else MTCNNBackend(detect_size=320)
        if isinstance(landmarks, str):
            landmarks = face_mesh_or_none(self.detector, workers=1)
        self.landmarks = landmarks
        self.identity: FaceIdentityBackend = default_identity_backend(identity) if isinstance(identity, str) else identity
        self.max_faces = None if max_faces is None else max(1, int(max_faces))
        self.min_prob = float(min_prob)
        self.iou_threshold = float(iou_threshold)
        self.reid_threshold = float(self.identity.threshold if reid_threshold is None else reid_threshold)
        self.max_lost_s = max_lost_s
        self.fps = float(fps)
        self.cut_threshold = None if cut_threshold is None else float(cut_threshold)
        super().__init__(landmarks if landmarks is not None else self.detector, detect_every=detect_every)
        self.describe_every = self.detect_every * max(1, int(round(describe_every_s * self.fps / self.detect_every)))

    def reset(self) -> None:
        """Forget every track (a new video)."""
        super().reset()
        self._next_id = 0
        self._thumbnail: Optional[np.ndarray] = None

    @property
    def num_tracks(self) -> int:
        """Tracks started so far."""
        return self._next_id

    def track_descriptors(self) -> dict[int, np.ndarray]:
        """``{track_id: descriptor}``: each track's running identity descriptor (the ``identity`` backend's), for
        grouping the tracks of many videos into persons (:func:`~.face_identity_mert.cluster_descriptors`)."""
        return {tid: track.appearance.copy() for tid, track in sorted(self._tracks.items())}

    # -- the steps of FaceFollower's loop, for many faces
    def is_cut(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` starts a new shot (its thumbnail differs from the previous frame's by more than
        ``cut_threshold``)."""
        if self.cut_threshold is None:
            return False
        import cv2

        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        thumbnail = cv2.resize(grey, CUT_THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        previous, self._thumbnail = self._thumbnail, thumbnail
        return previous is not None and float(np.abs(thumbnail - previous).mean()) > self.cut_threshold

    def detect_keys(self, frames: list) -> list[FaceTrack]:
        """Every face of each key frame above ``min_prob`` (the ``max_faces`` largest, in their detection order)."""
        return [self._largest(self.detector.detect_all(frame, min_prob=self.min_prob)) for frame in frames]

    def _largest(self, faces: FaceTrack) -> FaceTrack:
        if self.max_faces is not None and len(faces) > self.max_faces:
            size = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
            faces = faces.select(np.sort(np.argsort(-size)[: self.max_faces]))
        return faces

    def assign(self, frame: np.ndarray, faces: FaceTrack, cut: bool = False) -> list[tuple[int, FollowedFace]]:
        """(detection row, track) pairs for a key frame's detections; starts and resumes tracks, loses the active
        tracks that no detection continues. After a ``cut`` every detection is matched to every track by identity
        alone."""
        from scipy.optimize import linear_sum_assignment

        active = [t for t in self._tracks.values() if not t.lost]
        pairs, free = [], list(range(len(faces)))
        if active and len(faces) and not cut:
            iou = box_iou(faces.boxes, np.stack([t.box for t in active]))
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold:
                    pairs.append((int(r), active[c]))
                    free.remove(int(r))
        matched = {track.track_id for _, track in pairs}
        for track in active:  # not seen on this key frame: lost (it may come back)
            if track.track_id not in matched:
                track.lost, track.face = True, None
        if not free:
            return pairs
        described = self.identity.describe(frame, faces.boxes[free], faces.landmarks[free])
        candidates = [t for t in self._tracks.values() if t.lost and t.track_id not in matched
                      and (self.max_lost_s is None or (self._frame - t.last_frame) / self.fps <= self.max_lost_s)]  # fmt: skip
        taken: dict[int, FollowedFace] = {}
        if candidates:
            distance = self.identity.distances(described, np.stack([t.appearance for t in candidates]))
            rows, cols = linear_sum_assignment(distance)
            taken = {int(r): candidates[c] for r, c in zip(rows, cols) if distance[r, c] <= self.reid_threshold}
        for k, r in enumerate(free):
            track = taken.get(k)
            if track is not None:
                track.lost = False
            else:
                track = FollowedFace(self._next_id, described[k], self._frame)
                self._tracks[track.track_id] = track
                self._next_id += 1
            pairs.append((r, track))
        return pairs

    def after_frame(self, frame: np.ndarray) -> None:
        """Every ``describe_every`` frames, each face seen in ``frame`` takes one more look into its descriptor (a slow
        running mean of its look)."""
        if self._frame % self.describe_every:
            return
        tracks = [t for t in self._tracks.values() if not t.lost and t.last_frame == self._frame]
        if tracks:
            described = self.identity.describe(frame, np.stack([t.box for t in tracks]))
            for track, descriptor in zip(tracks, described):
                track.appearance = self.identity.merge(track.appearance, descriptor, DESCRIPTOR_UPDATE_WEIGHT)
