"""Expression timelines of recordings: every face of a long video, window by window.

``analyze_video`` streams a video (decoded in small chunks, so memory stays bounded whatever its length), links the
faces into tracks (:class:`~emvfer_hf.face_tracking_mert.FaceTracker`), reads each track's own eye-movement signal, and
runs MERT on each track's face crops and eye signal in sliding windows. The result is a pandas DataFrame with one
row per track and window, in the spirit of py-feat's ``Fex``: ready to filter, group and plot.

    >>> from emvfer_hf.analysis import analyze_video, plot_timeline
    >>> timeline = analyze_video("interview.mp4", model, processor, window=2.0, stride=1.0)
    >>> timeline.groupby("track_id").label.value_counts()
    >>> plot_timeline(timeline, "timeline.png")

:class:`TimelineAnalyzer` is the streaming core (``feed`` frames, get finished rows back); ``emvfer live`` uses it
on a camera or stream.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from .eye_extraction_mert import EyeMeasurements, VisualEyeMovementExtractor
from .eye_movement_mert import BLINK, SACCADE, runs
from .face_tracking_mert import FaceTracker
from .faces_mert import FaceTrack
from .inference import Classifier, ClipOptions, clip_inputs, default_batch_size, face_tracker
from .outputs import atomic_output, check_outputs, partial_path
from .video_io_mert import VideoTruncatedWarning, VideoWriter, check_frame_size, iter_timed_chunks, probe_duration

#: the columns of a timeline before the per-class ``p_<class>`` ones
TIMELINE_COLUMNS = ("track_id", "start_s", "end_s", "label", "score")
#: the columns after them
EYE_COLUMNS = ("instruction_weight", "blinks", "saccade_rate", "valid_fraction", "face_fraction", "blink_times_s",
               "reason")  # fmt: skip
#: the track's face box in the window (pixels: left, top, width, height, as py-feat's FaceRect columns; the median
#: of its boxes in the window's frames), after the eye columns
FACE_COLUMNS = ("face_x", "face_y", "face_w", "face_h")


def eye_window_statistics(series) -> dict:
    """Blink count, saccade rate (onsets per second), valid fraction and blink onset times of one window's
    eye-movement series (normalised behaviour channel: fixation 0, saccade 0.5, blink 1)."""
    if len(series) == 0:
        return {"blinks": 0, "saccade_rate": 0.0, "valid_fraction": 0.0, "blink_times_s": ""}
    behaviour = series.behaviour_codes()
    blinks = [start for start, _ in runs((behaviour == BLINK) & series.valid)]
    saccades = [start for start, _ in runs((behaviour == SACCADE) & series.valid)]
    span = max(series.duration_s, 1e-9)
    return {
        "blinks": int(len(blinks)),
        "saccade_rate": round(float(len(saccades) / span), 3),
        "valid_fraction": round(float(series.valid.mean()), 3),
        "blink_times_s": " ".join(f"{series.times_s[i]:.2f}" for i in blinks),
    }


#: tolerance (seconds) when a frame's time is compared with a window's bounds
_EPS = 1e-6


@dataclass
class _Window:
    """One analysis window: frames [first, stop) of the stream fed, its start/end in seconds and its model frames.

    Planned with its nominal bounds ``[start_s, end_s)``; as frames arrive, ``first`` becomes the first frame at or
    after the start (``start_s`` its time) and ``stop`` the first frame at or after the end (``end_s`` its time, or
    the end of the stream). ``model_frames`` holds, for each of the T segment middles ``middles`` (equal spans of
    time), the last frame at or before it (the first frame after it where there is none): the frames the processor
    picks for a clip, chosen by time, so that a variable frame rate samples the same moments."""

    index: int
    start_s: float
    end_s: float
    middles: np.ndarray
    model_frames: np.ndarray
    first: Optional[int] = None
    stop: Optional[int] = None
@dataclass
class _TrackPiece:
    """One chunk's face rows and raw eye measurements of one track (frames [first, first + len(faces)))."""

    first: int
    faces: FaceTrack
    raw: EyeMeasurements


@dataclass
class _Pending:
    window: _Window
    track_id: Optional[int]
    inputs: Optional[dict] = None
    row: dict = field(default_factory=dict)
    done_at: float = 0.0


class TimelineAnalyzer:
    """The streaming core of :func:`analyze_video` and ``emvfer live``: feed consecutive frames, get rows back.

    Windows start every ``stride`` seconds and last ``window`` seconds, on the frames' presentation times (given to
    :meth:`feed`, so that a variable frame rate is timed right). When the frames of a window have all arrived,
    each face track present in at least ``min_face_fraction`` of its frames becomes one model input: the track's
    face crops at the window's ``num_frames`` segment middles in time (one square box per window, the union of the
    track's boxes there, as the processor crops a clip) and the track's eye-movement series over the window (the raw
    measurements of its frames, classified and normalised over the window, resampled to L). Inputs go through the
    model ``batch_size`` at a time. A window with no such track gives a row with ``reason="no face"``.

    Args:
        model: a :class:`~emvfer_hf.MERTForVideoClassification` (any model with its call signature and config).
        processor: the checkpoint's :class:`~emvfer_hf.MERTVideoProcessor` (crop size, normalisation, frames per clip,
            eye steps L, face margin and landmark backend).
        fps: the video's (average) frame rate: the face tracker's rate, and the spacing of frames fed without times.
        window, stride: window length and step in seconds (positive).
        start_s: the time the first window starts (``--start``; frames fed without times start there).
        max_faces: at most this many faces per frame (the largest; at least 1).
        batch_size: windows per model call (at least 1; default :func:`~.inference.default_batch_size`: 1 on a CPU,
            8 on a GPU).
        device: the model's device.
        dtype: the model's precision (:mod:`~emvfer_hf.precision`): "auto" (bf16 weights where the device computes
            bf16 natively, else fp32), "fp32", "bf16" (bf16 weights), "bf16-autocast", "fp16" (autocast) or "int8"
            (CPU, dynamic quantisation). ``self.dtype`` is the choice made.
        min_face_fraction: a track takes part in a window when its face is in at least this share of the frames.
        tracker: a configured :class:`~emvfer_hf.face_tracking_mert.FaceTracker` (default: built from the processor).
        box_history_s: keep the face boxes of only the last this many seconds (live use); default all of them (for
            the annotated video).
        identity: the face tracker's identity backend (re-identification after a gap or a cut): "auto" (dlib's
            embedding where ``emvfer-hf[identity]`` is installed, else the colour histogram), "dlib", "histogram",
            or a :class:`~emvfer_hf.face_identity_mert.FaceIdentityBackend` (ignored when ``tracker`` is given).
    """

    def __init__(
        self,
        model,
        processor,
        fps: float,
        window: float = 2.0,
        stride: float = 1.0,
        start_s: float = 0.0,
        max_faces: Optional[int] = None,
        batch_size: Optional[int] = None,
        device: str = "cpu",
        dtype: str = "auto",
        min_face_fraction: float = 0.5,
        tracker: Optional[FaceTracker] = None,
        box_history_s: Optional[float] = None,
        identity="auto",
    ):
        check_window_arguments(window, stride, max_faces=max_faces, batch_size=batch_size)
        if not fps or fps <= 0:
            raise ValueError(f"the frame rate must be positive, got {fps}")
        self.classifier = Classifier(model, device, dtype)  # ValueError for an unknown dtype
        self.dtype = self.classifier.dtype
        self.processor = processor
        self.fps = float(fps)
        self.window, self.stride, self.start_s = float(window), float(stride), float(start_s)
        self.batch_size = int(batch_size) if batch_size is not None else default_batch_size(device)
        self.device = device
        self.min_face_fraction = float(min_face_fraction)
        self.num_frames = int(processor.num_frames)
        # each track is cropped to its own face (whatever do_face_crop says), with numpy on the CPU
        self.clip_options = ClipOptions.from_settings(processor, do_face_crop=True, device=None)
        self.labels = self.classifier.labels
        if tracker is None:
            tracker = face_tracker(processor, max_faces=max_faces, fps=self.fps, identity=identity)
        self.tracker = tracker
        self.box_history = None if box_history_s is None else int(round(box_history_s * self.fps))
        self.extractor = VisualEyeMovementExtractor(backend=tracker.landmarks or tracker.detector)
        self.frame_count = 0  # frames fed so far
        self._windows: deque[_Window] = deque()
        self._next_window = 0
        self._frames: dict[int, np.ndarray] = {}  # model frames of pending windows
        self._pieces: dict[int, list[_TrackPiece]] = {}
        self._boxes: dict[int, dict[int, np.ndarray]] = {}  # track → frame → box (for the annotated video)
        self._queue: list[_Pending] = []
        self._prepared_any = False
        self._arrival: dict[int, float] = {}  # window index → wall time its last frame arrived
        self._times: dict[int, float] = {}  # frame index → presentation time (s), for the pending windows
        self._last_time: Optional[float] = None
        self._last_step = 1.0 / self.fps

    @property
    def model(self):
        """The model that runs (a bf16 or int8 copy where the dtype asks for one)."""
        return self.classifier.model

    # -- windows
    def _window(self, k: int) -> _Window:
        start = self.start_s + k * self.stride
        middles = start + (np.arange(self.num_frames) + 0.5) * (self.window / self.num_frames)
        return _Window(k, start, start + self.window, middles, np.full(self.num_frames, -1, dtype=np.int64))

    def _open_windows(self, t: float) -> None:
        """Plan the windows that start at or before time ``t``."""
        while self.start_s + self._next_window * self.stride <= t + _EPS:
            self._windows.append(self._window(self._next_window))
            self._next_window += 1

    def _place(self, index: int, t: float) -> bool:
        """Frame ``index`` at time ``t`` enters the open windows (or ends them); whether one takes it as a model
        frame."""
        used = False
        for w in self._windows:
            if w.stop is not None:
                continue
            if t >= w.end_s - _EPS:  # the first frame after the window: it is complete
                w.stop, w.end_s = index, t
                if w.first is None:
                    w.first = index  # a gap in the stream longer than the window: no frame in it
                continue
            if w.first is None:
                w.first, w.start_s = index, t
            pick = (t <= w.middles + _EPS) | (w.model_frames < 0)
            w.model_frames[pick] = index
            used |= bool(pick.any())
        return used

    def _needed(self, index: int) -> bool:
        return any(index in w.model_frames for w in self._windows)

    @property
    def stream_end_s(self) -> float:
        """The end of the frames fed so far (seconds): the last frame's time plus its duration (the gap before it,
        or ``1 / fps``)."""
        if self._last_time is None:
            return self.start_s
        return self._last_time + self._last_step

    # -- feeding
    def feed(self, frames: Sequence[np.ndarray], times: Optional[Sequence[float]] = None) -> list[dict]:
        """Add the next consecutive RGB frames (H, W, 3) uint8 and their presentation times in seconds (increasing;
        default: ``1 / fps`` apart after the last one); returns the rows finished so far (in window order)."""
        frames = [np.asarray(f) for f in frames]
        if not frames:
            return []
        if times is None:
            after = self.start_s if self._last_time is None else self._last_time + 1.0 / self.fps
            times = after + np.arange(len(frames)) / self.fps
        times = np.asarray(times, dtype=np.float64)
        if len(times) != len(frames):
            raise ValueError(f"got {len(times)} frame times for {len(frames)} frames")
        first = self.frame_count
        for k, (frame, t) in enumerate(zip(frames, times)):
            t = float(t)
            if self._last_time is not None:
                self._last_step = max(t - self._last_time, 1e-6)
            self._last_time = t
            self._times[first + k] = t
            self._open_windows(t)
            if self._place(first + k, t):
                self._frames[first + k] = frame
        tracks = self.tracker.update(frames)
        for track_id, faces in tracks.items():
            raw = self.extractor.measure_clip(frames, faces)
            self._pieces.setdefault(track_id, []).append(_TrackPiece(first, faces, raw))
            boxes = self._boxes.setdefault(track_id, {})
            for k in np.flatnonzero(faces.found):
                boxes[first + int(k)] = faces.boxes[k].copy()
        self.frame_count += len(frames)
        self._prepare_complete()
        self._prune()
        return self._run(flush=False)

    def _prepare_complete(self) -> None:
        """Queue the leading windows whose frames have all arrived."""
        now = time.perf_counter()
        while self._windows and self._windows[0].stop is not None:
            window = self._windows.popleft()
            self._arrival[window.index] = now
            self._prepare(window)
            self._prepared_any = True

    def finish(self) -> list[dict]:
        """The video has ended: close the windows that end with it (``stream_end_s``); close a window that started
        but is cut short only when no window ended yet (a clip shorter than ``window``: its model frames are the
        frames nearest to its segment middles that arrived); run what is queued, and return the last rows."""
        end = self.stream_end_s
        for w in self._windows:
            if w.stop is None and w.first is not None and w.end_s <= end + _EPS:
                w.stop, w.end_s = self.frame_count, end
        self._prepare_complete()
        if not self._prepared_any and self.frame_count > 0 and self._windows and self._windows[0].first is not None:
            window = self._windows.popleft()
            window.stop, window.end_s = self.frame_count, end
            self._arrival[window.index] = time.perf_counter()
            self._prepare(window)
            self._prepared_any = True
        self._windows.clear()
        rows = self._run(flush=True)
        self._frames.clear()
        return rows

    # -- per window
    def _prepare(self, window: _Window) -> None:
        if window.first >= window.stop:  # a gap in the stream
            self._queue.append(_Pending(window, None, row={"reason": "no frames"}))
            return
        candidates = []
        for track_id in sorted(self._pieces):
            faces, raws = self._track_faces(track_id, window)
            if faces is None:
                continue
            fraction = float(faces.found.mean())
            if fraction >= self.min_face_fraction:
                candidates.append((track_id, faces, raws, fraction))
        if not candidates:
            self._queue.append(_Pending(window, None, row={"reason": "no face"}))
            return
        # the window's frames and times, the same for every track
        rows = window.model_frames - window.first
        times = np.array([self._times[i] for i in range(window.first, window.stop)])
        frames = [self._frames[int(i)] for i in window.model_frames]
        for track_id, faces, raw, fraction in candidates:
            series = self.extractor.series_from(raw, faces, times, fps=self.fps)
            stats = eye_window_statistics(series)
            inputs = clip_inputs(frames, faces.boxes[rows], series, self.clip_options).model_inputs()
            found = faces.boxes[faces.found]
            x1, y1, x2, y2 = np.median(found, axis=0) if len(found) else (np.nan,) * 4
            row = {**stats, "face_fraction": round(fraction, 3), "reason": "", "face_x": round(float(x1), 1),
                   "face_y": round(float(y1), 1), "face_w": round(float(x2 - x1), 1), "face_h": round(float(y2 - y1), 1)}  # fmt: skip
            self._queue.append(_Pending(window, track_id, inputs, row))

    def _track_faces(self, track_id: int, window: _Window):
        """(FaceTrack, raw measurements) of one track over the window's frames, or (None, None) if it is absent."""
        n = window.stop - window.first
        parts_faces, parts_raw, dense = [], [], self.tracker.dense
        position = window.first
        for piece in self._pieces[track_id]:
            a, b = max(window.first, piece.first), min(window.stop, piece.first + len(piece.faces))
            if a >= b:
                continue
            if a > position:
                parts_faces.append(FaceTrack.empty(a - position, dense=dense))
                parts_raw.append(None)
            rows = np.arange(a - piece.first, b - piece.first)
            parts_faces.append(piece.faces.select(rows))
            parts_raw.append(piece.raw.select(rows))
            position = b
        if not parts_faces:
            return None, None
        if position < window.first + n:
            parts_faces.append(FaceTrack.empty(window.first + n - position, dense=dense))
            parts_raw.append(None)
        faces = FaceTrack.concatenate(parts_faces)
        if not faces.found.any():
            return None, None
        template = next(r for r in parts_raw if r is not None)
        raws = [r if r is not None else template.missing(len(f)) for r, f in zip(parts_raw, parts_faces)]
        return faces, EyeMeasurements.concatenate(raws)

    def _prune(self) -> None:
        """Drop what no pending window needs any more (memory stays bounded)."""
        oldest = min([w.first for w in self._windows if w.first is not None] + [p.window.first for p in self._queue]
                     + [self.frame_count])  # fmt: skip
        for index in [i for i in self._frames if i < oldest or not self._needed_or_queued(i)]:
            del self._frames[index]
        for index in [i for i in self._times if i < oldest]:
            del self._times[index]
        for track_id in list(self._pieces):
            self._pieces[track_id] = [p for p in self._pieces[track_id] if p.first + len(p.faces) > oldest]
        if self.box_history is not None:
            keep_from = self.frame_count - self.box_history
            for boxes in self._boxes.values():
                for index in [i for i in boxes if i < keep_from]:
                    del boxes[index]

    def _needed_or_queued(self, index: int) -> bool:
        return self._needed(index) or any(index in p.window.model_frames for p in self._queue)

    # -- the model
    def _run(self, flush: bool) -> list[dict]:
        ready = [p for p in self._queue if p.inputs is not None]
        if not ready or (len(ready) < self.batch_size and not flush):
            return self._emit(flush)
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start : start + self.batch_size]
            if len(batch) < self.batch_size and not flush:
                break
            prediction = self.classifier({key: np.stack([p.inputs[key] for p in batch]) for key in batch[0].inputs})
            done = time.perf_counter()
            for k, pending in enumerate(batch):
                label, score = prediction.best(k)
                pending.row.update({"label": label, "score": round(score, 4)})
                pending.row.update({f"p_{name}": round(p, 4) for name, p in prediction.probabilities(k).items()})
                weight = prediction.weight(k)
                pending.row["instruction_weight"] = None if weight is None else round(weight, 4)
                pending.inputs, pending.done_at = None, done
        return self._emit(flush)

    def _emit(self, flush: bool) -> list[dict]:
        """Rows of the queue's leading finished windows, in order."""
        rows = []
        while self._queue and self._queue[0].inputs is None:
            pending = self._queue.pop(0)
            window = pending.window
            row = {"track_id": -1 if pending.track_id is None else pending.track_id,
                   "start_s": round(window.start_s, 3), "end_s": round(window.end_s, 3), "label": "", "score": np.nan}  # fmt: skip
            row.update({f"p_{name}": np.nan for name in self.labels})
            row.update({"instruction_weight": np.nan, "blinks": 0, "saccade_rate": np.nan, "valid_fraction": 0.0,
                        "face_fraction": 0.0, "blink_times_s": "", "reason": ""})  # fmt: skip
            row.update({name: np.nan for name in FACE_COLUMNS})
            row.update({k: v for k, v in pending.row.items() if v is not None})
            row["latency_s"] = round(max(0.0, (pending.done_at or time.perf_counter())
                                         - self._arrival.get(window.index, time.perf_counter())), 3)  # fmt: skip
            rows.append(row)
        return rows

    def track_boxes(self) -> dict[int, dict[int, np.ndarray]]:
        """Every box of every track so far: ``{track_id: {frame index: (x1, y1, x2, y2)}}`` (frame 0 = the first
        frame fed)."""
        return self._boxes


# ---------------------------------------------------------------------------------------------------- whole videos
def load_checkpoint(model_dir, device: str = "cpu"):
    """``(model, processor)`` from a checkpoint folder (or Hub id) saved with ``save_pretrained``, in eval mode.

    Raises:
        ValueError: naming the checkpoint, in one line, when it is missing or cannot be loaded (a corrupt or
            truncated weights file, a broken config).
    """
    import emvfer_hf  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForVideoClassification, AutoVideoProcessor

    processor = load_or_explain(model_dir, lambda: AutoVideoProcessor.from_pretrained(str(model_dir)))
    model = load_or_explain(model_dir, lambda: AutoModelForVideoClassification.from_pretrained(str(model_dir)))
    return model.to(device).eval(), processor


def load_or_explain(model_dir, load: Callable):
    """``load()``; any error it raises (an ``UnpicklingError`` of a corrupt ``pytorch_model.bin``, a
    ``SafetensorError``, a JSON error, a missing folder) becomes a one-line ``ValueError`` naming ``model_dir``."""
    try:
        return load()
    except Exception as error:  # noqa: BLE001  (whatever the loaders raise: one line that names the checkpoint)
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[0] if lines else ""
        raise ValueError(f"{model_dir}: cannot load the checkpoint ({type(error).__name__}: {detail})") from error


def load_model_and_processor(model, processor=None):
    """``(model, processor)``: loaded from a checkpoint folder / Hub id given as ``model`` (its own processor unless
    one is given), or as given. A ValueError when either is missing."""
    if isinstance(model, (str, Path)):
        loaded, own = load_checkpoint(model)
        model, processor = loaded, processor or own
    if model is None or processor is None:
        raise ValueError("analyze_video needs a model and its processor (or a checkpoint folder as `model`)")
    return model, processor


def _frames_between(chunks: Iterable, start_s: float, end_s: Optional[float], state: dict):
    """The frames of ``(frames, times_s, fps)`` chunks with ``start_s <= t < end_s`` (t: the frame's presentation
    time), as chunks; ``state`` counts the frames read."""
    for frames, times, fps in chunks:
        state["read"] = state.get("read", 0) + len(frames)
        keep = times >= start_s - _EPS
        if end_s is not None:
            keep &= times < end_s - _EPS
        picked = np.flatnonzero(keep)
        if len(picked):
            yield [frames[i] for i in picked], times[picked], fps
        if end_s is not None and len(times) and times[-1] >= end_s - _EPS:
            return


def timeline_columns(labels: Sequence[str]) -> list[str]:
    """The columns of a timeline for these class labels, in order."""
    return [*TIMELINE_COLUMNS, *(f"p_{name}" for name in labels), *EYE_COLUMNS, *FACE_COLUMNS, "latency_s"]


def check_window_arguments(window: float = 2.0, stride: float = 1.0, start: Optional[float] = None,
                           end: Optional[float] = None, max_faces: Optional[int] = None,
                           batch_size: Optional[int] = None, name: str = "") -> None:  # fmt: skip
    """A ``ValueError`` for an argument out of range (rather than a silent change): ``window`` and ``stride`` must be
    positive, ``start`` at least 0, ``end`` after ``start``, ``max_faces`` and ``batch_size`` at least 1."""
    prefix = f"{name}: " if name else ""
    if not window > 0 or not stride > 0:
        raise ValueError(f"{prefix}window and stride must be positive seconds, got window={window}, stride={stride}")
    if start is not None and not start >= 0:
        raise ValueError(f"{prefix}--start must be 0 s or later, got {start}")
    if end is not None and not end > float(start or 0.0):
        raise ValueError(f"{prefix}--end ({end}) must be after --start ({float(start or 0.0)})")
    if max_faces is not None and int(max_faces) < 1:
        raise ValueError(f"{prefix}--max-faces must be at least 1, got {max_faces}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"{prefix}--batch-size must be at least 1, got {batch_size}")


def analyze_video(
    video,
    model=None,
    processor=None,
    *,
    window: float = 2.0,
    stride: float = 1.0,
    start: Optional[float] = None,
    end: Optional[float] = None,
    max_faces: Optional[int] = None,
    batch_size: Optional[int] = None,
    device: str = "cpu",
    dtype: str = "auto",
    min_face_fraction: float = 0.5,
    chunk_frames: int = 32,
    progress: bool = True,
    annotated: Optional[str] = None,
    on_rows: Optional[Callable] = None,
    identity="auto",
):
    """The expression timeline of a video: one row per face track and window.

    Windows, sampling and every time column follow the frames' presentation times from the stream (a variable frame
    rate is timed right), and frames are analysed upright (a phone video's rotation is applied).

    Args:
        video: a video file (anything FFmpeg reads) or a folder of frames.
        model, processor: a MERT model and its processor, or a checkpoint folder as ``model``.
        window, stride: window length and step in seconds (default 2 s every 1 s).
        start, end: analyse only this part of the video (seconds; ``start >= 0``).
        max_faces: at most this many faces per frame (the largest; at least 1).
        batch_size: windows per model call (at least 1; default :func:`~.inference.default_batch_size`: 1 on a CPU,
            8 on a GPU).
        device, dtype: where and how the model runs; dtype "auto" (default: bf16 weights where the device computes
            bf16 natively, else fp32), "fp32", "bf16", "bf16-autocast", "fp16" or "int8" (see :class:`TimelineAnalyzer`).
        min_face_fraction: a track enters a window when its face is in at least this share of its frames.
        chunk_frames: frames decoded at a time (memory stays bounded by it and the window, not by the video).
        progress: a progress bar counting seconds of video.
        annotated: also write this video file with face boxes, track ids and labels (see
            :func:`write_annotated_video`; cut short, it is kept as ``<name>.partial<suffix>``).
        on_rows: called with each batch of rows as they are finished (a DataFrame with the timeline's columns), the
            last-row reason included: ``emvfer analyze`` writes them to its CSV as they come.
        identity: how faces are re-identified after a gap or a cut (see :class:`TimelineAnalyzer`).

    Returns:
        a pandas DataFrame with columns ``track_id, start_s, end_s, label, score, p_<class>..., instruction_weight,
        blinks, saccade_rate, valid_fraction, face_fraction, blink_times_s, reason, face_x, face_y, face_w, face_h,
        latency_s``; a window without a face is a row with ``track_id = -1`` and ``reason = "no face"``.
        ``timeline.attrs`` holds the video, its rate, the window settings, the number of tracks, the identity backend
        and each track's identity descriptor (``track_descriptors``: ``{track_id: [floats]}``) and, when decoding stopped early, ``"stopped_early"`` (the
        message; the rows decoded until then are kept, and a last row gives the reason). An interrupt
        (``KeyboardInterrupt``: Ctrl-C, or SIGTERM as the CLI turns it) stops the analysis too: the rows so far are
        kept, a last row says ``interrupted ...``, and ``timeline.attrs["interrupted"]`` holds the message.

    Raises:
        FileNotFoundError / ValueError naming the file when it is missing, empty, not a video, has no video stream,
        or frames too small to find a face in; ValueError for an argument out of range; RuntimeError naming the file
        and the time when face detection or the model fails (not reported as the decoding stopping).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    check_window_arguments(window, stride, start, end, max_faces, batch_size, name=str(video))
    if annotated:
        check_outputs({"video": video}, {"annotated video": annotated})
    model, processor = load_model_and_processor(model, processor)
    path = Path(video)
    if not path.exists():
        raise FileNotFoundError(f"{video}: no such file or folder")
    start_s = float(start or 0.0)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    columns = timeline_columns(labels)
    duration = probe_duration(video) if path.is_file() else None
    total = (min(duration, end) if end is not None and duration else (end or duration)) or None
    total = None if total is None else round(max(0.0, total - start_s), 1)
    bar = tqdm(total=total, unit="s", desc=f"analysing {path.name}",
               disable=not progress, file=sys.stderr, bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s [{elapsed}<{remaining}]")  # fmt: skip
    state: dict = {}
    chunks = _frames_between(iter_timed_chunks(video, chunk_frames, float(processor.default_fps)), start_s, end, state)
    analyzer, rows, stopped, interrupted = None, [], None, None

    def emit(new_rows: list) -> None:
        rows.extend(new_rows)
        if on_rows is not None and new_rows:
            on_rows(pd.DataFrame(new_rows, columns=columns))

    def reached() -> float:
        return start_s if analyzer is None else analyzer.stream_end_s

    with warnings.catch_warnings(record=True) as caught:  # the decoder's VideoTruncatedWarning: said once, below
        warnings.simplefilter("always", VideoTruncatedWarning)
        try:
            while True:
                try:  # decoding errors end the stream; analysis errors (faces, model) are raised as such, below
                    frames, times, fps = next(chunks)
                except StopIteration:
                    break
                except (ValueError, OSError, RuntimeError) as error:
                    if analyzer is None:  # nothing decoded: the file itself is the problem
                        raise
                    stopped = f"{video}: decoding stopped at {reached():.2f} s: {error}"
                    break
                if analyzer is None:
                    check_frame_size(frames[0], str(video))
                    analyzer = TimelineAnalyzer(model, processor, fps, window, stride, start_s, max_faces, batch_size,
                                                device, dtype, min_face_fraction, identity=identity)  # fmt: skip
                before = reached()
                try:
                    emit(analyzer.feed(frames, times))
                except (RuntimeError, ValueError, OSError) as error:
                    raise RuntimeError(f"{video}: the analysis failed at {before:.2f} s (face detection or the model, "
                                       f"not the decoding): {type(error).__name__}: {error}") from error  # fmt: skip
                done = reached() - start_s
                bar.update(max(0.0, (done if total is None else min(done, total)) - bar.n))
        except KeyboardInterrupt:
            if analyzer is None:  # nothing analysed: nothing to keep
                raise
            interrupted = f"{video}: stopped at {reached():.2f} s"
        finally:
            bar.close()
            chunks.close()  # stops the decoder's prefetch thread
    for record in caught:
        if not issubclass(record.category, VideoTruncatedWarning):
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
        elif stopped is None and interrupted is None:
            stopped = str(record.message)
    if analyzer is None:
        raise ValueError(f"{video}: no frames between {start_s} s and {end} s (the video has {state.get('read', 0)} frames)")
    if interrupted is None:
        emit(analyzer.finish())
    analysed_to = analyzer.stream_end_s
    expected_to = min(duration, end) if (duration and end is not None) else (end or duration)
    if not stopped and not interrupted and duration and expected_to - analysed_to > max(0.5, 2.0 / analyzer.fps):
        stopped = f"{video}: the stream ended at {analysed_to:.2f} s of the {expected_to:.2f} s it declares"
    if stopped or interrupted:
        if stopped:
            warnings.warn(stopped + " (the rows before it are kept)", VideoTruncatedWarning, stacklevel=2)
        reason = (f"stream ended early: {stopped}" if stopped
                  else f"interrupted: {interrupted} (the rows before it are kept)")  # fmt: skip
        emit([{"track_id": -1, "start_s": round(analysed_to, 3), "end_s": round(analysed_to, 3), "label": "",
               "reason": reason}])  # fmt: skip
    timeline = pd.DataFrame(rows, columns=columns)
    timeline.attrs.update({
        "video": str(video), "fps": analyzer.fps, "window_s": window, "stride_s": stride, "start_s": start_s,
        "analysed_s": analysed_to - start_s, "num_tracks": analyzer.tracker.num_tracks, "labels": list(labels),
        "identity": analyzer.tracker.identity.name,
        "track_descriptors": {int(t): [float(v) for v in d] for t, d in analyzer.tracker.track_descriptors().items()},
    })  # fmt: skip
    if stopped:
        timeline.attrs["stopped_early"] = stopped
    if interrupted:
        timeline.attrs["interrupted"] = interrupted
    elif annotated:
        try:
            write_annotated_video(video, timeline, analyzer.track_boxes(), annotated, start_s=start_s,
                                  end_s=analysed_to)  # fmt: skip
        except KeyboardInterrupt:
            timeline.attrs["interrupted"] = (f"{video}: interrupted while writing the annotated video (kept, cut "
                                             f"short, as {partial_path(annotated)})")  # fmt: skip
    return timeline


# ---------------------------------------------------------------------------------------------------- pictures
def plot_timeline(timeline, path=None, title: Optional[str] = None):
    """Each track's class probabilities over time (at the window centres), blinks marked, windows without a face
    shaded. Returns the matplotlib Figure; writes a PNG when ``path`` is given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = [c for c in timeline.columns if c.startswith("p_")]
    tracks = sorted(int(t) for t in timeline.track_id.unique() if t >= 0)
    no_face = timeline[(timeline.track_id < 0) & (timeline.reason != "")]
    fig, axes = plt.subplots(max(1, len(tracks)), 1, figsize=(11, 2.4 * max(1, len(tracks)) + 0.6), sharex=True,
                             squeeze=False)  # fmt: skip
    colors = plt.get_cmap("tab10")
    for ax, track in zip(axes[:, 0], tracks or [None]):
        for _, row in no_face.iterrows():
            ax.axvspan(row.start_s, max(row.end_s, row.start_s + 0.05), color="0.85", lw=0)
        if track is None:
            ax.text(0.5, 0.5, "no face in any window", ha="center", va="center", transform=ax.transAxes)
            continue
        rows = timeline[timeline.track_id == track].sort_values("start_s")
        centre = (rows.start_s + rows.end_s) / 2
        for k, column in enumerate(probs):
            ax.plot(centre, rows[column], marker=".", lw=1.4, color=colors(k % 10), label=column[2:])
        blinks = sorted({float(t) for text in rows.blink_times_s.fillna("") for t in str(text).split()})
        if blinks:
            ax.plot(blinks, np.full(len(blinks), 1.04), "|", color="black", ms=9, mew=1.5, label="blink",
                    clip_on=False)  # fmt: skip
        ax.set_ylim(0, 1.08)
        ax.set_ylabel(f"track {track}\np(class)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    video = timeline.attrs.get("video")
    fig.suptitle(title or ("expression timeline" + (f" — {Path(video).name}" if video else "")))
    fig.tight_layout()
    if path is not None:
        with atomic_output(path) as target:
            fig.savefig(target, dpi=100)
        plt.close(fig)
    return fig


def _label_at(rows_by_track: dict, track: int, t: float) -> Optional[tuple]:
    """(label, score) of the track's window whose centre is nearest to ``t`` among those containing it."""
    rows = rows_by_track.get(track)
    if rows is None or not len(rows):
        return None
    inside = rows[(rows[:, 0] <= t) & (rows[:, 1] >= t)]
    pick = inside if len(inside) else rows
    k = int(np.argmin(np.abs((pick[:, 0] + pick[:, 1]) / 2 - t)))
    return int(pick[k, 2]), float(pick[k, 3])


def write_annotated_video(video, timeline, track_boxes: dict, path, start_s: float = 0.0,
                          end_s: Optional[float] = None) -> Path:
    """Write ``video`` again (:class:`~emvfer_hf.video_io_mert.VideoWriter`: H.264, else MPEG-4) with each track's face box, id and current label drawn on it, each frame
    at its own presentation time (a variable frame rate stays variable).

    ``track_boxes`` is :meth:`TimelineAnalyzer.track_boxes` (frame 0 = the frame at ``start_s``). The video is written
    as ``NAME.partial.EXT`` and renamed to ``path`` when complete; cut short (an interrupt, an error), it is finalised
    so that it plays but keeps the partial name."""
    path = Path(path)
    labels = list(timeline.attrs.get("labels") or [c[2:] for c in timeline.columns if c.startswith("p_")])
    named = timeline[(timeline.track_id >= 0) & (timeline.label != "")]
    rows_by_track = {
        int(t): np.stack([g.start_s, g.end_s, g.label.map(labels.index), g.score], axis=1).astype(np.float64)
        for t, g in named.groupby("track_id")
    }
    colors = [(230, 25, 75), (40, 150, 60), (0, 110, 200), (225, 110, 30), (145, 30, 180), (0, 150, 150)]
    index = 0
    with atomic_output(path, keep_partial=True) as target:
        writer = None
        try:
            for frames, times, fps in _frames_between(iter_timed_chunks(video, 32), start_s, end_s, {}):
                writer = writer or VideoWriter(target, fps)
                for frame, t in zip(frames, times):
                    canvas = np.ascontiguousarray(frame.copy())
                    _draw_tracks(canvas, track_boxes, index, rows_by_track, labels, float(t), colors)
                    writer.write(canvas, float(t) - start_s)
                    index += 1
        finally:
            if writer is not None:
                writer.close()  # finalised so that it plays, also when cut short
        if writer is None or not writer.frames:
            raise ValueError(f"{video}: no frames to annotate")
    return path


def _draw_tracks(canvas: np.ndarray, track_boxes: dict, index: int, rows_by_track: dict, labels: list, t: float,
                 colors: list) -> None:  # fmt: skip
    """Draw each track's box, id and label at time ``t`` on frame ``index`` (in place)."""
    import cv2

    thick = max(1, int(round(canvas.shape[0] / 360)))
    for track, boxes in track_boxes.items():
        box = boxes.get(index)
        if box is None:
            continue
        color = colors[track % len(colors)]
        x1, y1, x2, y2 = [int(round(v)) for v in box]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thick)
        found = _label_at(rows_by_track, track, t)
        text = f"#{track}" + ("" if found is None else f" {labels[found[0]]} {found[1]:.2f}")
        scale = 0.6 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        y = max(th + base, y1)
        cv2.rectangle(canvas, (x1, y - th - base - 2), (x1 + tw + 4, y), color, cv2.FILLED)
        cv2.putText(canvas, text, (x1 + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)  # fmt: skip


__all__ = ["FACE_COLUMNS", "TimelineAnalyzer", "analyze_video", "check_window_arguments", "eye_window_statistics", "load_checkpoint",
           "load_model_and_processor", "load_or_explain", "plot_timeline", "timeline_columns", "write_annotated_video"]  # fmt: skip
