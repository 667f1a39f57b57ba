"""Who a face is: the descriptors that re-identify a face after a gap or a cut, and group tracks into persons.

A :class:`FaceIdentityBackend` turns the face in a box of a frame into a descriptor and measures how far two
descriptors are apart; the :class:`~.face_tracking_mert.FaceTracker` uses it to take up a lost track again when its face comes
back, and to match faces after a cut (where positions mean nothing); :func:`cluster_descriptors` groups the tracks of
many videos into persons. Two backends:

- :class:`DlibResNetIdentity`: dlib's ResNet face descriptor (128-d, a face-recognition embedding; the same person
  under other light, pose or clothes stays within 0.6, different people lie beyond it). Installed with
  ``pip install 'emvfer-hf[identity]'`` (``dlib-bin``, a prebuilt dlib wheel, and ``face-recognition-models``, which
  holds the weights: nothing is downloaded at run time). Licences: the two model files used,
  ``dlib_face_recognition_resnet_model_v1.dat`` and ``shape_predictor_5_face_landmarks.dat``, are Davis King's and
  are dedicated to the public domain under CC0 1.0 (the LICENSE file of ``face-recognition-models`` 0.3.0; its
  metadata says "MIT", its LICENSE and README say CC0); dlib itself is under the Boost Software License. The package's
  68-point predictor (trained on iBUG 300-W, not for commercial use) is never loaded.
- :class:`HistogramIdentity`: the face's hue-saturation histogram (Hellinger distance), the fallback when the extra is
  not installed. It tells apart people who look different in colour (skin, hair, light); two people lit and dressed
  alike, or one person under changing light, can swap or split.

:func:`default_identity_backend` picks the embedding when it is installed and the histogram otherwise.

Flat module (no sibling imports, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

IDENTITY_BACKENDS = ("auto", "dlib", "histogram")


@runtime_checkable
class FaceIdentityBackend(Protocol):
    """What the face tracker needs to tell faces apart.

    Attributes:
        name: a short name ("dlib", "histogram"), recorded with the outputs.
        threshold: the distance at or under which two descriptors are taken as the same person.
    """

    name: str
    threshold: float

    def describe(self, frame: np.ndarray, boxes: np.ndarray, landmarks: Optional[np.ndarray] = None) -> np.ndarray:
        """Descriptors (N, D) of the faces in ``boxes`` (N, 4: x1, y1, x2, y2 pixels) of an RGB ``frame``; five
        landmarks per face (N, 5, 2: eyes, nose, mouth corners) where the caller has them."""
        ...

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances (N, M) between every descriptor of ``a`` (N, D) and of ``b`` (M, D)."""
        ...

    def merge(self, running: np.ndarray, new: np.ndarray, weight: float) -> np.ndarray:
        """A track's running descriptor after one more look at its face (``weight``: the new look's share)."""
        ...


# ---------------------------------------------------------------------------------------------------- histogram
def face_appearance(frame: np.ndarray, box: np.ndarray, bins: tuple = (16, 8)) -> np.ndarray:
    """A small appearance descriptor of the face in ``box``: its hue-saturation histogram (``bins``), L1-normalised.
    It re-identifies a face that left the picture and came back (skin, hair, glasses and lighting differ between
    people far more than within one person's clip); it is not a face-recognition embedding."""
    import cv2

    h, w = frame.shape[:2]
    x1, y1 = int(np.clip(np.floor(box[0]), 0, w - 1)), int(np.clip(np.floor(box[1]), 0, h - 1))
    x2, y2 = int(np.clip(np.ceil(box[2]), x1 + 1, w)), int(np.clip(np.ceil(box[3]), y1 + 1, h))
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[y1:y2, x1:x2]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(bins), [0, 180, 0, 256]).reshape(-1).astype(np.float64)
    return hist / max(hist.sum(), 1e-9)


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance of two appearance histograms: 0 (same) … 1 (disjoint)."""
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(a * b)))))


class HistogramIdentity:
    """The face's hue-saturation histogram (:func:`face_appearance`) and the Hellinger distance: no extra package.

    Args:
        threshold: Hellinger distance at or under which two faces are the same person (0.35: the tracker's
            long-standing setting).
        bins: hue and saturation bins.
    """

    name = "histogram"

    def __init__(self, threshold: float = 0.35, bins: tuple = (16, 8)):
        self.threshold = float(threshold)
        self.bins = tuple(bins)

    def describe(self, frame, boxes, landmarks=None) -> np.ndarray:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        size = int(np.prod(self.bins))
        return np.stack([face_appearance(frame, box, self.bins) for box in boxes]) if len(boxes) else np.zeros((0, size))

    def distances(self, a, b) -> np.ndarray:
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        overlap = np.sqrt(np.clip(a, 0, None)) @ np.sqrt(np.clip(b, 0, None)).T
        return np.sqrt(np.clip(1.0 - overlap, 0.0, None))

    def merge(self, running, new, weight: float) -> np.ndarray:
        return (1.0 - weight) * running + weight * new


# ---------------------------------------------------------------------------------------------------- dlib ResNet
def dlib_models_dir() -> Path:
    """The folder of the model files of the ``face-recognition-models`` package, located without importing it (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer has); ImportError when it is missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the face embedding needs the package face-recognition-models (the dlib model files): "
                          "pip install 'emvfer-hf[identity]'")  # fmt: skip
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    for name in (DlibResNetIdentity.RECOGNITION_MODEL, DlibResNetIdentity.SHAPE_MODEL):
        if not (folder / name).is_file():
            raise ImportError(f"{folder / name}: missing from the face-recognition-models installation (reinstall it)")
    return folder


class DlibResNetIdentity:
    """dlib's ResNet face descriptor: 128 numbers per face, Euclidean distance, the same person within ``threshold``
    (0.6: dlib's own setting, 99.38% on LFW).

    Each face is aligned by dlib's 5-point shape predictor run in its box (the detector's landmarks are not needed)
    and described by the ResNet on the 150x150 aligned chip. About 0.05–0.1 s per face on one CPU core; the tracker
    describes faces only on its key frames.

    Args:
        threshold: the distance at or under which two faces are the same person.
        jitter: dlib's ``num_jitters`` (describe this many jittered copies and average; 0 is dlib's default).

    Raises:
        ImportError: ``dlib`` (``dlib-bin``) or ``face-recognition-models`` is not installed (``pip install
            'emvfer-hf[identity]'``).
    """

    name = "dlib"
    threshold = 0.6
    RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
    SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"

    def __init__(self, threshold: float = 0.6, jitter: int = 0):
        try:
            import dlib
        except ImportError as error:
            raise ImportError("the face embedding needs dlib: pip install 'emvfer-hf[identity]' (the dlib-bin "
                              f"wheel) ({error})") from error  # fmt: skip
        folder = dlib_models_dir()
        self.threshold = float(threshold)
        self.jitter = int(jitter)
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(folder / self.SHAPE_MODEL))
        self._net = dlib.face_recognition_model_v1(str(folder / self.RECOGNITION_MODEL))

    def __getstate__(self):  # the dlib objects do not pickle: they are loaded again
        return {"threshold": self.threshold, "jitter": self.jitter}

    def __setstate__(self, state):
        self.__init__(**state)

    def describe(self, frame, boxes, landmarks=None) -> np.ndarray:
        dlib = self._dlib
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not len(boxes):
            return np.zeros((0, 128))
        image = np.ascontiguousarray(frame, dtype=np.uint8)
        h, w = image.shape[:2]
        shapes = dlib.full_object_detections()
        for x1, y1, x2, y2 in boxes:
            left, top = int(np.clip(round(x1), 0, w - 1)), int(np.clip(round(y1), 0, h - 1))
            right, bottom = int(np.clip(round(x2), left + 1, w)), int(np.clip(round(y2), top + 1, h))
            shapes.append(self._shape(image, dlib.rectangle(left, top, right, bottom)))
        described = self._net.compute_face_descriptor(image, shapes, self.jitter)
        return np.array([np.asarray(d, dtype=np.float64) for d in described])

    def distances(self, a, b) -> np.ndarray:
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        return np.sqrt(np.clip((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0, None))

    def merge(self, running, new, weight: float) -> np.ndarray:
        return (1.0 - weight) * running + weight * new


def identity_extra_installed() -> bool:
    """Whether the face embedding's packages (``pip install 'emvfer-hf[identity]'``) are installed."""
    return importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None


def default_identity_backend(name: str = "auto") -> FaceIdentityBackend:
    """The identity backend by name: ``"dlib"`` (the face embedding; ImportError when its extra is missing),
    ``"histogram"``, or ``"auto"``: the embedding when ``dlib`` and ``face-recognition-models`` are installed, else
    the histogram. ``EMVFER_IDENTITY`` (the same names) overrides ``"auto"``."""
    if name == "auto":
        name = os.environ.get("EMVFER_IDENTITY", "auto") or "auto"
    if name not in IDENTITY_BACKENDS:
        raise ValueError(f"the identity backend must be one of {IDENTITY_BACKENDS}, got {name!r}")
    if name == "histogram" or (name == "auto" and not identity_extra_installed()):
        return HistogramIdentity()
    return DlibResNetIdentity()


def identity_backend_from_name(name: str) -> FaceIdentityBackend:
    """The backend that wrote descriptors under ``name`` ("dlib" or "histogram"), for clustering them."""
    if name == "dlib":
        return DlibResNetIdentity.__new__(DlibResNetIdentity)  # distances need no model
    if name == "histogram":
        return HistogramIdentity()
    raise ValueError(f"unknown identity backend {name!r} (descriptors written by another version?)")


def cluster_descriptors(descriptors: Sequence[np.ndarray], backend: FaceIdentityBackend,
                        threshold: Optional[float] = None) -> np.ndarray:  # fmt: skip
    """Group descriptors into persons: average-linkage agglomerative clustering, two groups joined while their mean
    distance is at most ``threshold`` (default the backend's). Returns one person id per descriptor (0, 1, ...,
    numbered by first appearance)."""
    descriptors = [np.asarray(d, np.float64) for d in descriptors]
    if not descriptors:
        return np.zeros(0, dtype=np.int64)
    if len(descriptors) == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    matrix = backend.distances(np.stack(descriptors), np.stack(descriptors))
    matrix = (matrix + matrix.T) / 2
    np.fill_diagonal(matrix, 0.0)
    tree = linkage(squareform(matrix, checks=False), method="average")
    limit = backend.threshold if threshold is None else float(threshold)
    groups = fcluster(tree, t=limit, criterion="distance")
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(g), len(order)) for g in groups], dtype=np.int64)


__all__ = ["DlibResNetIdentity", "FaceIdentityBackend", "HistogramIdentity", "appearance_distance",
           "cluster_descriptors", "default_identity_backend", "dlib_models_dir", "face_appearance",
           "identity_backend_from_name", "identity_extra_installed"]  # fmt: skip
