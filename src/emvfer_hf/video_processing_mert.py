"""MERTVideoProcessor: from a video file, a frame folder or an array to MERT's inputs.

docs/design.md §Data flow:

    video file / frame folder / array
      └─ decode (PyAV; frame folders via OpenCV) ─ sample T frames, one per equal segment
         (middle of the segment at eval, random within it with `do_train_sampling`)
         face: the face backend (MTCNN + face mesh by default) ─ one square box per clip (union, or smoothed per-frame boxes) with a
               margin ─ crop ─ resize ─ rescale + normalise
         eyes: the visual extractor on a denser set of frames of the SAME decoded video → canonical 5-channel series
               (eye_movement_mert) → resampled to `eye_sequence_length` steps; its quality features for W(E', Ē)
               at its own rate (eye_prior_mert)
         → pixel_values (B, T, 3, H, W), eye_movement_values (B, L, 5), eye_movement_mask (B, L),
           eye_quality_features (B, F)

Flat module (single-dot sibling imports, heavy dependencies imported lazily) so it ships as remote code.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor

from .eye_movement_mert import NUM_EYE_MOVEMENT_CHANNELS, EyeMovementSeries
from .face_backends_mert import FACE_BACKENDS
from .faces_mert import FACE_BOX_MODES, run_face_backend
from .inference import MODEL_INPUT_NAMES, ClipOptions, clip_inputs
from .video_io_mert import DEFAULT_FPS, check_frame_size, decode_video

CALL_TIME_KWARGS = (
    "eye_movements", "face_box", "sampling_seed", "return_face_boxes", "return_frame_indices", "return_eye_series",
)  # fmt: skip


class MERTVideoProcessorKwargs(VideosKwargs, total=False):
    """The keyword arguments of `MERTVideoProcessor` beyond transformers' `VideosKwargs`."""

    eye_sequence_length: Optional[int]
    eye_frames: Optional[int]
    do_face_crop: Optional[bool]
    face_margin: Optional[float]
    face_box_mode: Optional[str]
    face_detection_size: Optional[int]
    landmark_backend: Optional[str]
    do_extract_eye_movements: Optional[bool]
    do_train_sampling: Optional[bool]
    allow_no_face: Optional[bool]
    default_fps: Optional[float]
    eye_movements: Optional[Any]
    face_box: Optional[Any]
    sampling_seed: Optional[int]
    return_face_boxes: Optional[bool]
    return_frame_indices: Optional[bool]
    return_eye_series: Optional[bool]


# ----------------------------------------------------------------------------------------------------------------------
# Sampling and face boxes
def sample_segment_indices(
    num_available: int, num_frames: int, train: bool = False, rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    """T frame indices, one per equal segment of the video: the middle frame of each segment at evaluation, a random
    frame within each segment in training. A clip shorter than T repeats its last frame."""
    if num_available <= 0:
        raise ValueError("cannot sample frames from an empty video")
    if num_available < num_frames:
        return np.concatenate([np.arange(num_available), np.full(num_frames - num_available, num_available - 1)])
    edges = np.linspace(0, num_available, num_frames + 1)
    if train:
        rng = rng or np.random.default_rng()
        starts, ends = np.floor(edges[:-1]).astype(int), np.maximum(np.floor(edges[1:]).astype(int), 1)
        return np.array([rng.integers(s, max(e, s + 1)) for s, e in zip(starts, ends)])
    return np.minimum(np.floor((edges[:-1] + edges[1:]) / 2).astype(int), num_available - 1)


def is_variable_rate(times_s, tolerance: float = 0.5, share: float = 0.05) -> bool:
    """Whether frames at these presentation times (seconds, increasing) come at a variable rate: more than ``share`` of
    the gaps between frames differ from the typical (median) gap by over ``tolerance`` of it. A frame missing now and
    then (a truncated file's last B-frame, a dropped frame) is not a variable rate."""
    gaps = np.diff(np.asarray(times_s, dtype=np.float64))
    if len(gaps) < 2 or not float(np.median(gaps)) > 0:
        return False
    return float(np.mean(np.abs(gaps / np.median(gaps) - 1.0) > tolerance)) > share


def sample_segment_times(times_s, num_frames: int) -> np.ndarray:
    """T frame indices by time, one per equal span of the clip's duration: the last frame shown at or before the
    span's middle (the first frame after it where there is none). For a constant rate these are the frames of
    `sample_segment_indices`; for a variable rate they are the same moments, where frame counts would crowd the
    samples into the faster part. The clip lasts from its first frame to its last plus the last gap."""
    times = np.asarray(times_s, dtype=np.float64)
    if len(times) == 0:
        raise ValueError("cannot sample frames from an empty video")
    end = times[-1] + (times[-1] - times[-2] if len(times) > 1 else 0.0)
    middles = times[0] + (np.arange(num_frames) + 0.5) * (end - times[0]) / num_frames
    return np.clip(np.searchsorted(times, middles + 1e-6, side="right") - 1, 0, len(times) - 1)


def eye_frame_indices(num_available: int, eye_frames: Optional[int]) -> np.ndarray:
    """The denser, evenly spaced frames read by the visual eye-movement extractor (all frames when `eye_frames` is
    None or the video is shorter)."""
    if eye_frames is None or eye_frames >= num_available:
        return np.arange(num_available)
    return np.unique(np.round(np.linspace(0, num_available - 1, eye_frames)).astype(int))


def _as_metadata_list(video_metadata, num_videos: int) -> list:
    """`video_metadata` as given (None, one or a list of `VideoMetadata`/dicts, possibly nested one level as
    transformers' processors pass it) → one `VideoMetadata` or None per video."""
    from transformers.video_utils import VideoMetadata

    if video_metadata is None:
        return [None] * num_videos
    items = video_metadata if isinstance(video_metadata, (list, tuple)) else [video_metadata]
    flat = []
    for item in items:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    flat = [VideoMetadata(**{"total_num_frames": 0, **item}) if isinstance(item, dict) else item for item in flat]
    if len(flat) != num_videos:
        raise ValueError(f"got {len(flat)} video_metadata entries for {num_videos} videos")
    return flat


# ----------------------------------------------------------------------------------------------------------------------
# The processor
class MERTVideoProcessor(BaseVideoProcessor):
    r"""
    Video processor of MERT (EM-VFER). Turns videos into `pixel_values` (B, T, 3, H, W), `eye_movement_values`
    (B, L, 5), `eye_movement_mask` (B, L) and `eye_quality_features` (B, F): the quality features of each clip's eye
    series at its own rate, from which the model computes W(E', Ē) (`EyeMovementSeries.quality_features`).

    Inputs: a video file path (anything FFmpeg reads: mp4, avi, mov, webm, …), a folder of frame images (the DFEW /
    CASME layouts), an array or tensor (T, H, W, 3) (grayscale (T, H, W) too), or a list of these. Decoding is the
    processor's own (`decode_video`, PyAV): transformers' torchcodec-based `fetch_videos` is never used.

    Args (all saved in `video_preprocessor_config.json`):
        num_frames (`int`, defaults to 16): frames T per clip, one per equal segment (of a variable-frame-rate file:
            one per equal span of time, from the frames' presentation times).
        size (`dict`, defaults to `{"height": 224, "width": 224}`): size of the face crops.
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: as in transformers (mean/std 0.5).
        do_face_crop (`bool`, defaults to True): crop the face found by the face backend; False takes the
            central square.
        face_margin (`float`, defaults to 0.3): the square crop's side is `max(w, h) * (1 + face_margin)`.
        face_box_mode (`str`, defaults to "union"): one box for the clip ("union") or smoothed per-frame boxes.
        face_detection_size (`int`, defaults to 320): frames are downscaled so their longer side is at most this
            before face detection (boxes are mapped back to full resolution).
        landmark_backend (`str`, defaults to "mesh"): "mesh" — MTCNN finds the face, MediaPipe's face mesh and iris
            model (shipped in the package) give the eyelids, eye corners and iris; "mtcnn" — MTCNN's 5 points only
            (the fallback; no eyelid aperture). A custom `FaceLandmarkBackend` can be set as `processor.face_backend`.
        do_extract_eye_movements (`bool`, defaults to True): read the eye-movement series from the video.
        eye_frames (`int`, defaults to 64): frames read by the eye extractor, evenly spaced (None: every frame).
        eye_sequence_length (`int`, defaults to 256): steps L of the series given to the model.
        do_train_sampling (`bool`, defaults to False): random frame within each segment (training augmentation).
        allow_no_face (`bool`, defaults to False): a video with no face anywhere gives central crops and an all-invalid
            eye mask instead of an error.
        default_fps (`float`, defaults to 25): the rate assumed for frame folders and arrays.

    Call-time only:
        eye_movements: high-quality eye movements to use INSTEAD of visual extraction, one per video: an
            `EyeTrackingRecording`, an `EyeMovementSeries`, or an array (N, 5) of canonical values.
        face_box: a known square face box (x0, y0, x1, y1) per video (e.g. from the preprocessing cache): used for
            every frame, and face detection is skipped unless eye movements are extracted.
        sampling_seed (`int`): seed of the random frame choice of `do_train_sampling` (reproducible training).
        return_face_boxes (`bool`): also return `face_boxes` (B, T, 4) in frame pixels (NaN where none was used).
        return_frame_indices (`bool`): also return `frame_indices` (B, T), the sampled frames (0-based).
        return_eye_series (`bool`): also return `eye_series`, the per-frame `EyeMovementSeries` before resampling.

    The v5 `BaseVideoProcessor` contract:
        do_sample_frames (`bool`, defaults to True): False takes the frames as given (pre-sampled), all of them.
        fps (`float`, *optional*): sample at this rate instead of `num_frames` (T = frames · fps / video fps, at least
            1; the model interpolates its temporal positions for that T). Needs the video's rate: from the file, from
            `video_metadata`, or `default_fps` for arrays and frame folders.
        video_metadata: `VideoMetadata` or dicts (fps, total_num_frames, duration), one per video: overrides the
            rate of the decoded input (e.g. for arrays).
        return_metadata (`bool`): also return `video_metadata`, a `VideoMetadata` per video with its fps, duration,
            frame count and the frame indices used (`frames_indices`).
        device (`str` or `torch.device`): resize, rescale and normalise the cropped frames with torch on that device
            (e.g. "cuda"); the returned tensors are on it. Decoding and face detection stay where they are.
        size: `{"height", "width"}` or `{"shortest_edge"}` (a square face crop of that side); with `do_center_crop`
            the result is centre-cropped to `crop_size`.
    """

    valid_kwargs = MERTVideoProcessorKwargs
    model_input_names = list(MODEL_INPUT_NAMES)
    num_frames = 16
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    do_convert_rgb = True
    do_sample_frames = True
    default_to_square = False  # an int size is the shortest edge, as in transformers (a face crop is square anyway)
    do_face_crop = True
    face_margin = 0.3
    face_box_mode = "union"
    face_detection_size = 320
    landmark_backend = "mesh"
    do_extract_eye_movements = True
    eye_frames = 64
    eye_sequence_length = 256
    do_train_sampling = False
    allow_no_face = False
    default_fps = DEFAULT_FPS

    def __init__(self, **kwargs):
        for key in CALL_TIME_KWARGS:
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        for key in CALL_TIME_KWARGS:
            setattr(self, key, None)
        if self.landmark_backend not in FACE_BACKENDS:
            raise ValueError(f"landmark_backend must be one of {FACE_BACKENDS}, got {self.landmark_backend!r}")
        if self.face_box_mode not in FACE_BOX_MODES:
            raise ValueError(f"face_box_mode must be one of {FACE_BOX_MODES}, got {self.face_box_mode!r}")
        self._face_backend = None
        self._eye_extractor = None

    def to_dict(self) -> dict:
        # the backends hold models: keep them out of the base class's deep copy of __dict__
        held = {key: self.__dict__.pop(key) for key in ("_face_backend", "_eye_extractor") if key in self.__dict__}
        try:
            output = super().to_dict()
        finally:
            self.__dict__.update(held)
        for key in ("_face_backend", "_eye_extractor", "_custom_face_backend", *CALL_TIME_KWARGS):
            output.pop(key, None)
        return output

    # -- backends (created lazily: MTCNN weights load only when a face is needed) -------------------------------------
    @property
    def face_backend(self):
        if self._face_backend is None:
            from .face_backends_mert import default_face_backend

            self._face_backend = default_face_backend(self.landmark_backend, self.face_detection_size)
        return self._face_backend

    @face_backend.setter
    def face_backend(self, backend):
        self._face_backend = backend
        self._custom_face_backend = backend is not None  # part of the preprocessing cache key
        self._eye_extractor = None

    @property
    def custom_face_backend(self):
        """The face backend a caller set on this processor (``processor.face_backend = ...``), None for the
        default one (which its settings describe)."""
        return self._face_backend if getattr(self, "_custom_face_backend", False) else None

    @property
    def eye_extractor(self):
        if self._eye_extractor is None:
            from .eye_extraction_mert import VisualEyeMovementExtractor

            self._eye_extractor = VisualEyeMovementExtractor(backend=self.face_backend)
        return self._eye_extractor

    # -- the processing ----------------------------------------------------------------------------------------------
    def preprocess(self, videos, **kwargs) -> BatchFeature:
        """Process one video or a list of videos into MERT's inputs (see the class docstring)."""
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__) - {"return_tensors"}
        if unknown:
            raise TypeError(f"MERTVideoProcessor got unexpected keyword arguments {sorted(unknown)}")
        options = {key: kwargs.get(key, getattr(self, key, None)) for key in self.valid_kwargs.__annotations__}
        if kwargs.get("fps") is not None and kwargs.get("num_frames") is not None:
            raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
        if kwargs.get("num_frames") is not None:
            options["fps"] = None  # a call-time num_frames wins over a saved fps (and a call-time fps over num_frames)
        if options["do_resize"] is False:
            raise ValueError("MERTVideoProcessor resizes the face crops to `size`: do_resize=False is not supported")
        for key in CALL_TIME_KWARGS:
            options[key] = kwargs.get(key)
        return_tensors = kwargs.get("return_tensors")

        videos = self._as_video_list(videos)
        eye_movements = options["eye_movements"]
        if eye_movements is not None and not isinstance(eye_movements, (list, tuple)):
            eye_movements = [eye_movements]
        if eye_movements is not None and len(eye_movements) != len(videos):
            raise ValueError(f"got {len(eye_movements)} eye-movement inputs for {len(videos)} videos")
        metadata = _as_metadata_list(options["video_metadata"], len(videos))
        face_box = options["face_box"]
        if face_box is not None:
            face_box = np.asarray(face_box, dtype=np.float32).reshape(-1, 4)
            if len(face_box) != len(videos):
                raise ValueError(f"got {len(face_box)} face boxes for {len(videos)} videos")

        pixel_values, eye_values, eye_masks, eye_features, boxes, indices, series = [], [], [], [], [], [], []
        for i, video in enumerate(videos):
            result = self._process_one(
                video,
                options,
                eye_movements=None if eye_movements is None else eye_movements[i],
                face_box=None if face_box is None else face_box[i],
                metadata=metadata[i],
            )
            pixel_values.append(result["pixel_values"])
            eye_values.append(result["eye_movement_values"])
            eye_masks.append(result["eye_movement_mask"])
            eye_features.append(result["eye_quality_features"])
            boxes.append(result["face_boxes"])
            indices.append(result["frame_indices"])
            series.append(result["eye_series"])
            metadata[i] = result["video_metadata"]

        if options["device"] is not None:
            import torch

            stack = torch.stack
        else:
            stack = np.stack
        if len({tuple(p.shape) for p in pixel_values}) > 1:
            raise ValueError(
                "the videos sampled to different frame counts "
                f"{[p.shape[0] for p in pixel_values]} (fps= on videos of different lengths): process them one by one"
            )
        data = {
            "pixel_values": stack(pixel_values),
            "eye_movement_values": np.stack(eye_values),
            "eye_movement_mask": np.stack(eye_masks),
            "eye_quality_features": np.stack(eye_features),
        }
        if options["return_face_boxes"]:
            data["face_boxes"] = np.stack(boxes)
        if options["return_frame_indices"]:
            data["frame_indices"] = np.stack(indices)
        skip = []
        if options["return_eye_series"]:
            data["eye_series"] = series
            skip.append("eye_series")
        if options["return_metadata"]:
            data["video_metadata"] = metadata
            skip.append("video_metadata")
        skip = skip or None
        return BatchFeature(data=data, tensor_type=return_tensors, skip_tensor_conversion=skip)

    @staticmethod
    def _as_video_list(videos) -> list:
        if isinstance(videos, (str, os.PathLike)):
            return [videos]
        if hasattr(videos, "detach"):
            videos = videos.detach().cpu().numpy()
        if isinstance(videos, np.ndarray):
            return list(videos) if videos.ndim == 5 else [videos]
        if isinstance(videos, (list, tuple)):
            if not videos:
                raise ValueError("no video given")
            first = videos[0]
            if isinstance(first, (str, os.PathLike, list, tuple)) or getattr(first, "ndim", 0) == 4:
                return list(videos)
            return [list(videos)]  # a list of frames is one video
        raise ValueError(f"unsupported video input of type {type(videos).__name__}")

    def sample_frames(self, metadata, num_frames=None, fps=None, train: bool = False, rng=None, **kwargs) -> np.ndarray:
        """The frame indices of a video described by `metadata` (`VideoMetadata`): `num_frames` (default
        `self.num_frames`) one per equal segment (`sample_segment_indices`), or, with `fps`, as many as the video's
        duration holds at that rate (which needs `metadata.fps`)."""
        if fps is not None and num_frames is not None:
            raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
        total = int(metadata.total_num_frames)
        if fps is not None:
            if not metadata.fps:
                raise ValueError(
                    "sampling at `fps=` needs the video's own frame rate: pass `video_metadata` with an `fps` (or a "
                    "`default_fps` for arrays and frame folders)"
                )
            num_frames = max(1, int(total / metadata.fps * fps))
        num_frames = int(num_frames if num_frames is not None else self.num_frames)
        return sample_segment_indices(total, num_frames, train=train, rng=rng)

    def _process_one(self, video, options: dict, eye_movements=None, face_box=None, metadata=None) -> dict:
        from transformers.video_utils import VideoMetadata

        train = bool(options["do_train_sampling"])
        rng = np.random.default_rng(options["sampling_seed"])
        extract_eyes = bool(options["do_extract_eye_movements"]) and eye_movements is None
        eye_count = options["eye_frames"]
        fps = options["fps"]
        given_fps = metadata.fps if metadata is not None and metadata.fps else None
        plan = {}

        def indices_fn(total, video_fps=None, times_s=None):
            if options["do_sample_frames"] is False:  # pre-sampled frames: all of them, as they are
                plan["model"] = np.arange(total)
            else:
                rate = given_fps or video_fps or float(options["default_fps"])
                meta = VideoMetadata(total_num_frames=total, fps=rate, duration=total / rate)
                num = None if fps is not None else options["num_frames"]
                plan["model"] = self.sample_frames(meta, num_frames=num, fps=fps, train=train, rng=rng)
                variable = times_s is not None and len(times_s) == total and is_variable_rate(times_s)
                if variable and not train and total >= len(plan["model"]):
                    plan["model"] = sample_segment_times(times_s, len(plan["model"]))  # the same moments, by time
            plan["eyes"] = eye_frame_indices(total, eye_count) if extract_eyes else np.array([], dtype=int)
            return np.union1d(plan["model"], plan["eyes"])

        decoded = decode_video(video, indices_fn=indices_fn, default_fps=float(options["default_fps"]))
        video_fps = given_fps or decoded.fps
        if "model" not in plan or (fps is not None and given_fps is None and decoded.fps != options["default_fps"]):
            indices_fn(decoded.num_frames, decoded.fps)  # arrays decode without a count; a file's own rate for fps=
            missing = [i for i in np.union1d(plan["model"], plan["eyes"]) if int(i) not in decoded.frames]
            if missing:
                keep = set(int(i) for i in np.union1d(plan["model"], plan["eyes"]))
                decoded = decode_video(video, indices_fn=lambda total: sorted(keep),
                                       default_fps=float(options["default_fps"]))  # fmt: skip
        model_idx, eye_idx = plan["model"], plan["eyes"]
        if given_fps:
            decoded.fps = given_fps
        video_metadata = VideoMetadata(
            total_num_frames=decoded.num_frames, fps=video_fps, duration=decoded.num_frames / video_fps,
            frames_indices=[int(i) for i in model_idx], video_backend="emvfer",
        )  # fmt: skip

        # Faces: one detection pass over every frame we use (none when the caller knows the face box)
        crop_faces = options["do_face_crop"] and face_box is None
        needed = np.union1d(model_idx, eye_idx) if crop_faces or extract_eyes else np.array([], int)
        if len(needed):
            check_frame_size(decoded.frames[int(needed[0])], decoded.name)
        track = run_face_backend(self.face_backend, [decoded.frames[int(i)] for i in needed]) if len(needed) else None
        row = {int(i): k for k, i in enumerate(needed)}
        any_face = track is not None and bool(track.found.any())
        if len(needed) and not any_face and not options["allow_no_face"]:
            raise ValueError(
                f"{decoded.name}: no face was found in any of the {len(needed)} frames examined; "
                "pass allow_no_face=True to process it anyway (central crops, no eye-movement signal)"
            )

        # The model inputs (inference.clip_inputs): crops of the model frames, the eye series in L steps
        series = None
        if eye_movements is not None:
            series = self._series_from_user(eye_movements)
        elif extract_eyes and any_face:
            eye_frames = [decoded.frames[int(i)] for i in eye_idx]
            faces = track.select([row[int(i)] for i in eye_idx])
            # the eye frames are evenly spaced: their own rate is the video's rate over the spacing
            span = (eye_idx[-1] - eye_idx[0]) / decoded.fps if len(eye_idx) > 1 else 0.0
            eye_fps = (len(eye_idx) - 1) / span if span > 0 else decoded.fps
            series = self.eye_extractor(
                eye_frames, fps=eye_fps, faces=faces, source=decoded.name, allow_no_face=True
            )  # a face seen only in the model frames: an all-invalid series, not an error
        if face_box is not None:
            boxes = face_box  # known: cropped as it is
        elif any_face:
            boxes = track.boxes[[row[int(i)] for i in model_idx]]
        else:
            boxes = None
        inputs = clip_inputs([decoded.frames[int(i)] for i in model_idx], boxes, series,
                             ClipOptions.from_settings(options))  # fmt: skip
        return {
            **inputs.model_inputs(),
            "video_metadata": video_metadata,
            "face_boxes": inputs.face_boxes,
            "frame_indices": np.asarray(model_idx, dtype=np.int64),
            "eye_series": series,
        }

    @staticmethod
    def _series_from_user(eye_movements) -> EyeMovementSeries:
        if isinstance(eye_movements, EyeMovementSeries):
            return eye_movements
        if hasattr(eye_movements, "to_series"):  # an EyeTrackingRecording
            return eye_movements.to_series()
        values = np.asarray(eye_movements, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != NUM_EYE_MOVEMENT_CHANNELS:
            raise ValueError(
                f"eye_movements must be an EyeTrackingRecording, an EyeMovementSeries or an array (N, "
                f"{NUM_EYE_MOVEMENT_CHANNELS}), got shape {values.shape}"
            )
        return EyeMovementSeries(values, np.ones(len(values), bool), np.arange(len(values), dtype=np.float64))


__all__ = ["MERTVideoProcessor", "eye_frame_indices", "is_variable_rate", "sample_segment_indices", "sample_segment_times"]
