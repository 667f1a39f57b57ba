"""The inference core: a clip's frames, face boxes and eye series → MERT's inputs; the inputs → a prediction.

Two stages, shared by every way the package runs the model (docs/design.md §Data flow):

- :func:`clip_inputs`, pure: the T frames of one clip, the face track's boxes in them and the clip's eye-movement
  series → ``pixel_values`` (T, 3, H, W), ``eye_movement_values`` (L, 5), ``eye_movement_mask`` (L,) and
  ``eye_quality_features`` (F,), with the processor's settings (:class:`ClipOptions`).
  :class:`~emvfer_hf.MERTVideoProcessor` calls it for each video it is given,
  :class:`~emvfer_hf.analysis.TimelineAnalyzer` for each face track in each window of a long recording (whose faces
  it follows with :func:`face_tracker`, built from the same processor's settings).
- :class:`Classifier`: a PyTorch model (in the precision asked for, :mod:`~emvfer_hf.precision`) or an ONNX Runtime
  session of an exported graph behind one call, returning a :class:`Prediction` (class probabilities, labels and the
  instruction weight W). ``emvfer predict``, ``emvfer analyze``, ``emvfer live`` and the demo use it.

Flat module (single-dot sibling imports; torch and onnxruntime imported where they are used) so that it ships next
to the weights as remote code with the processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .eye_movement_mert import NUM_EYE_MOVEMENT_CHANNELS, EyeMovementSeries
from .eye_prior_mert import NUM_FEATURES
from .faces_mert import clip_face_boxes
from .precision import autocast_dtype, inference_model, native_cpu_bf16, resolve_dtype
from .video_io_mert import DEFAULT_FPS


# ----------------------------------------------------------------------------------------------------------------------
# Frames → pixel values
def crop_and_resize(
    frame: np.ndarray, box: Optional[np.ndarray], height: int, width: int, resize: bool = True
) -> np.ndarray:
    """Crop `box` (x0, y0, x1, y1; may reach outside the frame, which is padded with black) out of an (H, W, 3)
    frame and resize it to (height, width) (`resize=False`: the crop as it is). `box=None` takes the central square."""
    import cv2

    h, w = frame.shape[:2]
    if box is None:
        side = min(h, w)
        box = np.array([(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2])
    x0, y0, x1, y1 = [int(round(v)) for v in box]
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = frame[y0:y1, x0:x1]
    if not resize:
        return np.ascontiguousarray(crop)
    interpolation = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interpolation)


def output_size(size) -> tuple[int, int]:
    """(height, width) of a transformers size: an int, `{"height", "width"}` or `{"shortest_edge"}` (a face crop is
    square, so its shortest edge is its side)."""
    if isinstance(size, (int, float)):
        return int(size), int(size)
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    if get("shortest_edge"):
        return int(get("shortest_edge")), int(get("shortest_edge"))
    raise ValueError(f"size must have 'height' and 'width' or 'shortest_edge', got {size!r}")


def _center_crop(pixels, height: int, width: int):
    """Centre crop of (T, C, H, W) frames (numpy or torch) to (height, width); a smaller input is padded with 0."""
    h, w = pixels.shape[-2:]
    if h < height or w < width:
        pad_h, pad_w = max(0, height - h), max(0, width - w)
        if isinstance(pixels, np.ndarray):
            pixels = np.pad(pixels, ((0, 0), (0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
        else:
            import torch

            pixels = torch.nn.functional.pad(pixels, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = pixels.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return pixels[..., top : top + height, left : left + width]


def _resize_on_device(crops: list, height: int, width: int, device):
    """Face crops (uint8 (h, w, 3), any sizes) → (T, 3, height, width) float32 on `device`, resized there with
    antialiased bilinear interpolation (the processor's `device=`)."""
    import torch

    out = []
    for crop in crops:
        tensor = torch.from_numpy(np.ascontiguousarray(crop)).to(device).permute(2, 0, 1)[None].float()
        out.append(torch.nn.functional.interpolate(tensor, size=(height, width), mode="bilinear", antialias=True,
                                                   align_corners=False)[0])  # fmt: skip
    return torch.stack(out)


@dataclass
class ClipOptions:
    """How :func:`clip_inputs` turns a clip into model inputs: the processor's settings that it reads.

    Attributes:
        size: the face crops' size (an int, `{"height", "width"}` or `{"shortest_edge"}`).
        do_face_crop: crop the face; False takes the central square of each frame.
        face_margin: the square crop's side is the face box's longer side times (1 + margin).
        face_box_mode: "union" (one box for the clip) or "smooth" (per-frame boxes, smoothed).
        eye_sequence_length: the steps L of the eye series given to the model.
        do_center_crop, crop_size, do_rescale, rescale_factor, do_normalize, image_mean, image_std: as in
            transformers' image processors.
        device: resize, rescale and normalise with torch on this device (None: numpy on the CPU).
    """

    size: Any = field(default_factory=lambda: {"height": 224, "width": 224})
    do_face_crop: bool = True
    face_margin: float = 0.3
    face_box_mode: str = "union"
    eye_sequence_length: int = 256
    do_center_crop: Optional[bool] = None
    crop_size: Any = None
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: Sequence[float] = (0.5, 0.5, 0.5)
    image_std: Sequence[float] = (0.5, 0.5, 0.5)
    device: Any = None

    @classmethod
    def from_settings(cls, settings, **overrides) -> "ClipOptions":
        """The options of a processor (its attributes) or of a mapping (the processor's options of one call), with
        ``overrides`` on top; a setting that is absent keeps its default."""
        values = {}
        for f in fields(cls):
            if isinstance(settings, Mapping):
                if f.name in settings:
                    values[f.name] = settings[f.name]
            elif hasattr(settings, f.name):
                values[f.name] = getattr(settings, f.name)
        return cls(**{**values, **overrides})


def face_tracker(settings, max_faces: Optional[int] = None, fps: float = DEFAULT_FPS, identity="auto"):
    """The `FaceTracker` that follows every face of a long video with a processor's detector settings (its
    `face_detection_size`; the face mesh where its `landmark_backend` is "mesh"): at most `max_faces` faces per frame,
    at `fps` frames per second, re-identifying faces with `identity` (see `FaceTracker`). `settings`: a processor, or
    a mapping of those two settings."""
    from .face_backends_mert import MTCNNBackend
    from .face_tracking_mert import FaceTracker

    get = settings.get if isinstance(settings, Mapping) else lambda key: getattr(settings, key)
    detector = MTCNNBackend(detect_size=int(get("face_detection_size")), device="cpu")
    landmarks = "default" if get("landmark_backend") == "mesh" else None
    return FaceTracker(detector=detector, landmarks=landmarks, max_faces=max_faces, fps=fps, identity=identity)


def clip_pixels(frames: Sequence[np.ndarray], boxes: Optional[np.ndarray], options: ClipOptions):
    """`pixel_values` (T, 3, H, W) float32 of T frames (H, W, 3) uint8: each cropped to its square box (`boxes` (T, 4)
    or None for the central square), resized to `options.size`, centre-cropped (`do_center_crop`), rescaled and
    normalised. A numpy array, or a torch tensor on `options.device` when one is set."""
    height, width = output_size(options.size)
    device = options.device
    crops = [crop_and_resize(frame, None if boxes is None else boxes[k], height, width, resize=device is None)
             for k, frame in enumerate(frames)]  # fmt: skip
    if device is None:
        pixels = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)  # (T, 3, H, W)
    else:
        pixels = _resize_on_device(crops, height, width, device)
    if options.do_center_crop and options.crop_size is not None:
        pixels = _center_crop(pixels, *output_size(options.crop_size))
    if options.do_rescale:
        pixels = pixels * float(options.rescale_factor)
    if options.do_normalize:
        mean = np.asarray(options.image_mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(options.image_std, np.float32).reshape(1, -1, 1, 1)
        if not isinstance(pixels, np.ndarray):
            import torch

            mean, std = torch.as_tensor(mean, device=pixels.device), torch.as_tensor(std, device=pixels.device)
        pixels = (pixels - mean) / std
    return pixels.astype(np.float32) if device is None else pixels.float()


def eye_inputs(series: Optional[EyeMovementSeries], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(values (L, 5) float32, mask (L,) bool, quality features (F,) float32)` of a clip's eye series: normalised
    once (docs/design.md §Eye-movement format), resampled to `length` steps, and its quality features at its own
    rate (for W, §Instruction weight). No series (or an empty one): zeros, an all-False mask (W = 0)."""
    if series is None or not len(series):
        return (np.zeros((length, NUM_EYE_MOVEMENT_CHANNELS), np.float32), np.zeros(length, bool),
                np.zeros(NUM_FEATURES, np.float32))  # fmt: skip
    normalized = series.normalize()
    resampled = normalized.resample(length)
    features = normalized.quality_features().numpy()
    return (resampled.values.astype(np.float32), resampled.valid.astype(bool),
            np.asarray(features, dtype=np.float32))  # fmt: skip


#: windows (clips) per model call where none is given: one on a CPU, where a clip at a time runs fastest per clip (paper
#: size, bf16 weights, 2-core AMD EPYC: 1.01 s per clip at batch 1, 1.16 s at 3, 1.20 s at 8; benchmarks/README.md),
#: eight on a GPU, which needs batches to fill its cores
CPU_BATCH_SIZE, ACCELERATOR_BATCH_SIZE = 1, 8


def default_batch_size(device: str = "cpu") -> int:
    """Windows per model call on `device` when the caller gives none: `CPU_BATCH_SIZE` on the CPU, else
    `ACCELERATOR_BATCH_SIZE`."""
    import torch

    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else ACCELERATOR_BATCH_SIZE


#: the names of the model inputs of a clip, in the order of the model's signature
MODEL_INPUT_NAMES = ("pixel_values", "eye_movement_values", "eye_movement_mask", "eye_quality_features")


@dataclass
class ClipInputs:
    """The model inputs of one clip (add a batch dimension to call the model), and the face boxes cropped.

    Attributes:
        pixel_values: (T, 3, H, W) float32 (numpy; a torch tensor on the options' device when one was set).
        eye_movement_values: (L, 5) float32, the normalised series resampled to L steps.
        eye_movement_mask: (L,) bool, True where the step was measured.
        eye_quality_features: (F,) float32, the quality features of the series at its own rate.
        face_boxes: (T, 4) float32, the square box cropped in each frame (x0, y0, x1, y1 in frame pixels); NaN where
            the central square was taken.
    """

    pixel_values: Any
    eye_movement_values: np.ndarray
    eye_movement_mask: np.ndarray
    eye_quality_features: np.ndarray
    face_boxes: np.ndarray

    def model_inputs(self) -> dict:
        """The four model inputs by name (:data:`MODEL_INPUT_NAMES`)."""
        return {name: getattr(self, name) for name in MODEL_INPUT_NAMES}


def clip_inputs(frames: Sequence[np.ndarray], faces, eyes: Optional[EyeMovementSeries],
                options: ClipOptions) -> ClipInputs:  # fmt: skip
    """One clip → its model inputs: the one path from frames, faces and eyes to what the model reads.

    Args:
        frames: the clip's T model frames, RGB uint8 (H, W, 3).
        faces: where the face is in those frames: the face boxes of a track, (T, 4) (x0, y0, x1, y1; rows of NaN
            where no face was found), or a `FaceTrack` of the T frames; with `options.do_face_crop` they become one
            square crop box per frame with the margin and box mode of `options` (the central square where no frame
            has a face). A single box (4,) is a known square box, cropped as it is in every frame. None: the central
            square.
        eyes: the clip's eye-movement series (per measured frame, with its time stamps; normalised here), or None
            for no eye signal (an all-False mask, so W = 0).
        options: the processor's settings (:class:`ClipOptions`).
    Returns:
        :class:`ClipInputs`.
    """
    boxes = None
    if options.do_face_crop and faces is not None:
        boxes = np.asarray(getattr(faces, "boxes", faces))
        if boxes.shape == (4,):  # a known square box: every frame
            boxes = np.repeat(boxes.astype(np.float32)[None], len(frames), axis=0)
        else:
            boxes = clip_face_boxes(boxes, float(options.face_margin), options.face_box_mode)
    pixels = clip_pixels(frames, boxes, options)
    values, mask, features = eye_inputs(eyes, int(options.eye_sequence_length))
    face_boxes = np.full((len(frames), 4), np.nan, np.float32) if boxes is None else boxes
    return ClipInputs(pixels, values, mask, features, face_boxes)


# ----------------------------------------------------------------------------------------------------------------------
# Inputs → prediction
@dataclass
class Prediction:
    """What a classifier says about a batch of B clips.

    Attributes:
        labels: the C class names, in the model's class order.
        scores: (B, C) float32 class probabilities (the softmax of the logits).
        weights: (B,) float32 instruction weights W (docs/design.md §Instruction weight); None for a PyTorch model
            without the eye prior. An exported graph without the prior gives 0.
        logits: (B, C) float32.
    """

    labels: list
    scores: np.ndarray
    weights: Optional[np.ndarray]
    logits: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def best(self, row: int) -> tuple[str, float]:
        """(label, probability) of the most probable class of clip `row`."""
        k = int(self.scores[row].argmax())
        return self.labels[k], float(self.scores[row, k])

    def top_k(self, row: int, k: int) -> list[tuple[str, float]]:
        """The `k` most probable (label, probability) of clip `row`, most probable first."""
        order = np.argsort(-self.scores[row], kind="stable")[: max(1, int(k))]
        return [(self.labels[int(i)], float(self.scores[row, i])) for i in order]

    def probabilities(self, row: int) -> dict:
        """`{label: probability}` of clip `row`, every class."""
        return {label: float(p) for label, p in zip(self.labels, self.scores[row])}

    def weight(self, row: int) -> Optional[float]:
        """W of clip `row` (None without it)."""
        return None if self.weights is None else float(self.weights[row])


class ONNXVideoClassifier:
    """An onnxruntime session of an exported MERT graph (`emvfer_hf.export.export_onnx`), called like the PyTorch
    model on the processor's output: `classifier(**inputs)` → `{"logits": (B, num_labels), "instruction_weights":
    (B,)}` numpy arrays. onnxruntime comes with the `[onnx]` extra."""

    def __init__(self, path, num_threads: Optional[int] = None, providers=None):
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover
            raise ImportError("the ONNX runtime needs onnxruntime: pip install 'emvfer-hf[onnx]'") from error
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file (write one with `emvfer export`)")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, **inputs) -> dict:
        feed = {}
        for name in self.input_names:
            if name not in inputs:
                raise ValueError(f"the ONNX graph needs the input {name!r} (the processor returns it); got {sorted(inputs)}")
            value = inputs[name]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            feed[name] = np.asarray(value, dtype=bool if name == "eye_movement_mask" else np.float32)
        outputs = self.session.run(None, feed)
        return dict(zip([o.name for o in self.session.get_outputs()], outputs))


class Classifier:
    """A MERT classifier behind one call, whatever runs it: `classifier(inputs)` → :class:`Prediction`.

    `inputs` are the model inputs of B clips (the processor's output, a dict of numpy arrays or tensors with a batch
    dimension; extra keys are ignored).

    Args:
        model: a `MERTForVideoClassification` (or anything called like it that has its `config`).
        device: where it runs ("cpu", "cuda", …).
        dtype: its precision (:mod:`~emvfer_hf.precision`): "fp32" (default: the model as it is), "auto", "bf16",
            "bf16-autocast", "fp16" or "int8". A bf16 or int8 copy is made; the caller's model keeps its weights.

    :meth:`from_onnx` runs an exported graph with ONNX Runtime instead.

    Attributes:
        config: the model's config (class names in `id2label`).
        labels: the class names in class order.
        dtype: the precision chosen ("auto" resolved); "onnx" for a graph.
        model: the PyTorch model that runs (None for a graph).
    """

    def __init__(self, model, device: str = "cpu", dtype: str = "fp32"):
        import warnings

        import torch

        dtype = resolve_dtype(dtype, device)  # ValueError for an unknown one
        if dtype.startswith("bf16") and torch.device(device).type == "cpu" and not native_cpu_bf16():
            warnings.warn("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 runs several times slower than "
                          "fp32 here; use --dtype fp32 (or auto)", stacklevel=3)  # fmt: skip
        self.model = inference_model(model, dtype, device)  # a bf16 / int8 copy where the dtype asks for one
        self.session = None
        self.config = model.config
        self.device, self.dtype = device, dtype
        self.autocast = autocast_dtype(dtype)
        self.labels = [self.config.id2label[i] for i in range(self.config.num_labels)]

    @classmethod
    def from_onnx(cls, path, config, num_threads: Optional[int] = None, providers=None) -> "Classifier":
        """A classifier that runs the ONNX graph at `path` (`emvfer export`) with ONNX Runtime; `config` is the
        checkpoint's (the class names). W is the graph's (0 for a checkpoint without the eye prior)."""
        classifier = cls.__new__(cls)
        classifier.model, classifier.session = None, ONNXVideoClassifier(path, num_threads, providers)
        classifier.config, classifier.device, classifier.dtype, classifier.autocast = config, "cpu", "onnx", None
        classifier.labels = [config.id2label[i] for i in range(config.num_labels)]
        return classifier

    def __call__(self, inputs: Mapping) -> Prediction:
        import torch

        inputs = {name: inputs[name] for name in MODEL_INPUT_NAMES if name in inputs}
        if self.session is not None:
            result = self.session(**inputs)
            logits = torch.from_numpy(np.asarray(result["logits"])).float()
            weights = result.get("instruction_weights")
        else:
            tensors = {key: (value if torch.is_tensor(value) else torch.from_numpy(np.asarray(value))).to(self.device)
                       for key, value in inputs.items()}  # fmt: skip
            with torch.inference_mode(), torch.autocast(
                device_type=torch.device(self.device).type, dtype=self.autocast or torch.float32,
                enabled=self.autocast is not None,
            ):
                out = self.model(**tensors)
            logits = out.logits.float().cpu()
            weights = getattr(out, "instruction_weights", None)
            weights = None if weights is None else weights.float().cpu().numpy()
        scores = logits.softmax(-1).numpy()
        weights = None if weights is None else np.asarray(weights, dtype=np.float32).reshape(-1)
        return Prediction(list(self.labels), scores, weights, logits.numpy())


__all__ = [
    "ACCELERATOR_BATCH_SIZE",
    "CPU_BATCH_SIZE",
    "MODEL_INPUT_NAMES",
    "Classifier",
    "ClipInputs",
    "ClipOptions",
    "ONNXVideoClassifier",
    "Prediction",
    "clip_inputs",
    "clip_pixels",
    "crop_and_resize",
    "default_batch_size",
    "eye_inputs",
    "face_tracker",
    "output_size",
]
