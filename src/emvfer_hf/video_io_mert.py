"""Video I/O for EM-VFER: the package's one decoder.

Video files are decoded with PyAV (anything FFmpeg reads), frame folders (the DFEW / CASME layouts) and image files
with OpenCV, arrays and tensors as they are. Long videos are read in chunks (:func:`iter_frame_chunks`) so that
memory stays bounded. Sampling a video file (:func:`decode_video` with `indices_fn`) costs in proportion to the
frames used: only those are converted to RGB, and sparse ones are reached by seeking to the keyframe before each,
the frames identified by their timestamps so that they are exactly those of a full decode. A file that ends early
warns (:class:`VideoTruncatedWarning`) and keeps what decoded. Frames come upright: a phone video's rotation (its
display matrix, or the older ``rotate`` tag) is applied, as is a frame image's EXIF orientation (OpenCV reads it).
:func:`iter_timed_chunks` gives each frame its presentation time from the stream (variable frame rates are timed
right). :func:`probe_video` reads a file's frame count, rate, size, rotation and duration from its container
without decoding; :func:`open_stream` reads a file or a network stream frame by frame for live use; :class:`VideoWriter`
encodes frames (H.264, else MPEG-4); :data:`DEFAULT_FPS` is the rate assumed where an input declares none. Used by
the video processor, the visual eye-movement extractor, the face module, the analysis, ``emvfer live``, the demo and
the training data alike.

Flat module (no sibling imports, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: The frame rate (frames per second) assumed where an input declares none: frame folders, arrays, a stream without a
#: rate. 25 Hz is the frame rate of 625-line (PAL / SECAM) video, ITU-R BT.601 (and EBU Tech 3213).
DEFAULT_FPS = 25.0


@dataclass
class DecodedVideo:
    """Frames of one video: `frames` maps a frame index to an RGB uint8 (H, W, 3) array; `num_frames` is the video's
    frame count; `fps` its rate; `name` names the input in error messages."""

    frames: dict
    num_frames: int
    fps: float
    name: str


def natural_frame_key(path) -> tuple:
    """Sort key of a frame file: the LAST integer of its stem (`00001_12.jpg` → 12, `img46.jpg` → 46), then the
    name. Frame files of DFEW, CASME II and CAS(ME)^3 are not zero-padded consistently: a lexicographic sort is wrong."""
    path = Path(path)
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.stem)


def _to_rgb_uint8(frame: np.ndarray, name: str) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of any numeric type → (H, W, 3) uint8."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3, 4):
        frame = np.moveaxis(frame, 0, -1)  # channels-first input
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected frames of shape (H, W, 3), (H, W) or (H, W, 1), got {frame.shape}")
    if frame.dtype != np.uint8:
        frame = np.asarray(frame, dtype=np.float32)
        if frame.size and frame.max() <= 1.0:
            frame = frame * 255.0
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def list_frame_files(folder: Union[str, Path]) -> list[Path]:
    """The image files of a frame folder, sorted naturally by the last integer in their names (docs/datasets.md:
    DFEW `00001_1.jpg … 00001_16.jpg`, CASME II `img46.jpg`, Aff-Wild2 `00001.jpg`)."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_frame_key)


def _read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot read this image file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


#: Faces are looked for in frames at least this many pixels on their shorter side (MTCNN's smallest face).
MIN_FACE_FRAME_SIDE = 20


def check_frame_size(frame: np.ndarray, name: str, minimum: int = MIN_FACE_FRAME_SIDE) -> None:
    """A `ValueError` naming the input when its frames are too small to find a face in (shorter side < `minimum`)."""
    h, w = frame.shape[:2]
    if min(h, w) < minimum:
        raise ValueError(f"{name}: the frames are {w}x{h} pixels, too small to find a face in (faces are looked for "
                         f"in frames at least {minimum}x{minimum} pixels; upscale the video)")  # fmt: skip


def upright(frame: np.ndarray, rotation: float) -> np.ndarray:
    """The frame as it is meant to be shown: rotated by `rotation` degrees counterclockwise (a display matrix's
    angle, as PyAV's `VideoFrame.rotation` gives it; a phone held upright records -90), to the nearest quarter turn."""
    turns = int(round(float(rotation or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


class VideoTruncatedWarning(UserWarning):
    """A video file or stream ended before its end (a truncated file, a dropped stream): the frames decoded up to
    there are used. Make it an error with ``warnings.simplefilter("error", VideoTruncatedWarning)``."""


def _video_stream(container, name: str):
    """The container's first video stream that is not an attached picture (an audio file's cover art); a
    `ValueError` naming the file and what it holds instead when there is none (an audio-only file, say)."""
    import av

    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    held = [f"{s.type} ({s.codec_context.name if s.codec_context else '?'})" for s in container.streams]
    what = f"its streams: {', '.join(held)}" if held else "it holds no stream at all"
    raise ValueError(f"{name}: the file has no video stream ({what})")


def stream_rate(stream) -> Optional[float]:
    """The frame rate a PyAV video stream declares (frames per second): its average rate, else the rate FFmpeg
    guesses from its timestamps; None when it declares neither."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _declared_duration(container, stream, only_stream: bool) -> Optional[float]:
    """The video stream's duration in seconds as the header declares it: the stream's own, else the container's
    (with ``only_stream``: only when the video is the container's only stream, since a container's duration also
    covers its audio); None when neither is known."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and (not only_stream or len(container.streams) == 1):
        return container.duration / 1e6
    return None


def _tag_rotation(stream) -> float:
    """A stream's legacy ``rotate`` tag (clockwise degrees) as degrees counterclockwise; 0 without one."""
    try:
        degrees = float(stream.metadata.get("rotate", 0) or 0)
    except ValueError:
        return 0.0
    return -degrees if degrees else 0.0


@dataclass
class VideoInfo:
    """What a video file's container says about its video stream, read without decoding a frame.

    Attributes:
        num_frames: the frame count: the header's, else (with ``count_frames``) a count of the video packets; None
            when the header gives none and the packets were not counted.
        fps: the declared frame rate (frames per second; :func:`stream_rate`), None when there is none
            (``fps or DEFAULT_FPS`` is the rate the decoder uses).
        width, height: the coded frame size in pixels (before the display rotation).
        rotation: the stream's display rotation in degrees counterclockwise from its legacy ``rotate`` tag (0 without
            one; a display matrix on the frames is applied by the decoder, frame by frame).
        duration_s: the duration the header declares (the stream's, else the container's), else ``num_frames / fps``
            where the frames were counted; None when unknown.
        format: the container format's name as FFmpeg gives it (``mov,mp4,m4a,3gp,3g2,mj2``, ``matroska,webm``, …).
        name: the file, as given.
    """

    num_frames: Optional[int]
    fps: Optional[float]
    width: int
    height: int
    rotation: float
    duration_s: Optional[float]
    format: str
    name: str


def probe_video(path, count_frames: bool = True) -> VideoInfo:
    """Frame count, frame rate, size, rotation and duration of a video file, from its container (no decoding).

    Args:
        path: a video file.
        count_frames: where the header gives no frame count (WebM, MKV, MPEG-TS), count the video packets (cheap:
            demuxing only, but it reads the whole file); False leaves ``num_frames`` None there.
    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file: it is empty, FFmpeg cannot read it, or it has no video stream.
    """
    import av

    name = str(path)
    if not Path(name).is_file():
        raise FileNotFoundError(f"{name}: no such video file")
    if Path(name).stat().st_size == 0:
        raise ValueError(f"{name}: the file is empty (0 bytes)")
    try:
        container = av.open(name)
    except av.error.FFmpegError as error:
        raise ValueError(f"{name}: not a readable video file ({error})") from error
    with container:
        stream = _video_stream(container, name)
        fps = stream_rate(stream)
        duration = _declared_duration(container, stream, only_stream=False)
        num_frames = int(stream.frames) if stream.frames else None
        if num_frames is None and count_frames:
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        rotation = _tag_rotation(stream)
        if duration is None and num_frames:
            duration = num_frames / (fps or DEFAULT_FPS)
        return VideoInfo(num_frames, fps, int(stream.width), int(stream.height), rotation, duration,
                         container.format.name, name)  # fmt: skip


def probe_duration(path) -> Optional[float]:
    """The duration in seconds a video file declares (:func:`probe_video` without counting frames); None when it
    declares none, or is not a readable video file."""
    try:
        return probe_video(path, count_frames=False).duration_s
    except (OSError, ValueError):
        return None


def decode_video(
    source,
    indices_fn=None,
    default_fps: float = DEFAULT_FPS,
    *,
    seek: bool = True,
    stats: Optional[dict] = None,
) -> DecodedVideo:
    """Decode a video file (PyAV), a folder of frame images, an image file or an array (T, H, W[, C]).

    Args:
        source: path (str / Path) or array / tensor / list of frames.
        indices_fn: `indices_fn(num_frames) -> iterable of int`: the frames to keep (default: all); one that takes a
            `times_s` keyword gets the frames' presentation times too (seconds from the first frame, read from a video
            file's packets; None where they are not known), to sample a variable frame rate by time. Only those are
            converted to RGB and kept in memory, and a video file's sparse frames are reached by seeking to the
            keyframe before each, so sampling a long video costs in proportion to the frames used. The frames are
            exactly those of a full decode; `num_frames` is the count a full decode yields.
        default_fps: the rate assumed where the input has none (frame folders, arrays).
        seek: a video file's sparse frames are reached by seeking (False: by decoding every frame; the frames are
            the same, only the cost differs).
        stats: a dict filled with what decoding a video file cost: frames decoded and converted, seeks, and `read`
            ("seek" or "from start").
    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the input cannot be decoded, has no video stream (an audio file) or holds no frame; the message
            names the input.
    Warns:
        VideoTruncatedWarning: a video file ends early (truncated); its frames up to there are used.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise FileNotFoundError(f"{name}: no such video file or frame folder")
        if path.is_dir():
            files = list_frame_files(path)
            if not files:
                raise ValueError(f"{name}: the frame folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            keep = sorted(set(indices_fn(len(files)))) if indices_fn else range(len(files))
            return DecodedVideo({i: _read_image(files[i]) for i in keep}, len(files), default_fps, name)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return DecodedVideo({0: _read_image(path)}, 1, default_fps, name)
        if path.stat().st_size == 0:
            raise ValueError(f"{name}: the file is empty (0 bytes)")
        return _decode_video_file(name, indices_fn, default_fps, seek=seek, stats=stats)

    # arrays, tensors, lists of frames
    if hasattr(source, "detach"):
        source = source.detach().cpu().numpy()
    if isinstance(source, (list, tuple)):
        frames = [_to_rgb_uint8(f, "video array") for f in source]
    else:
        array = np.asarray(source)
        if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] > 4):
            array = array[None]  # a single image
        if array.ndim not in (3, 4):
            raise ValueError(f"video array: expected shape (T, H, W, 3) or (T, H, W), got {array.shape}")
        if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 1, -1)  # (T, C, H, W)
        frames = [_to_rgb_uint8(f, "video array") for f in array]
    if not frames:
        raise ValueError("video array: it holds no frame")
    keep = sorted(set(indices_fn(len(frames)))) if indices_fn else range(len(frames))
    return DecodedVideo({i: frames[i] for i in keep}, len(frames), default_fps, "video array")


#: Sampling seeks to the keyframe before a wanted frame when that skips at least this many frames; closer frames
#: are reached by decoding forward (a seek empties the decoder, whose threads then refill their pipeline).
SEEK_MIN_SKIP = 8


@dataclass
class _StreamIndex:
    """The frames of a video stream, read from its packets alone (no decoding): the frame at position i (what a full
    decode yields i-th) is the packet with the i-th smallest pts. `starts`: the positions a decoder can start from,
    increasing: 0 (the start of the file) and every keyframe."""

    pts: np.ndarray
    starts: np.ndarray

    def times_s(self, time_base) -> Optional[np.ndarray]:
        """The frames' presentation times in seconds from the first frame (None without a time base)."""
        if not time_base:
            return None
        return (self.pts - self.pts[0]).astype(np.float64) * float(time_base)

    def start_before(self, position: int) -> int:
        """The last position at or before `position` that decoding can start from."""
        return int(self.starts[np.searchsorted(self.starts, position, side="right") - 1])


class _VideoFileReader:
    """The video stream of a file opened with PyAV, decoded in presentation order from the start or from a keyframe.
    Counts what sampling costs: the frames decoded, those converted to RGB, the seeks.

    Raises a `ValueError` naming the file when it cannot be opened as a video or has no video stream."""

    def __init__(self, name: str, default_fps: float, timeout_s: Optional[float] = None):
        self.name = name
        self.default_fps = default_fps
        self.timeout_s = timeout_s  # a network stream's open and read timeout (None: FFmpeg's default)
        self.decoded = self.converted = self.seeks = 0
        self._open()

    def _open(self) -> None:
        import av

        try:
            self.container = av.open(self.name, timeout=self.timeout_s) if self.timeout_s else av.open(self.name)
        except av.error.FFmpegError as error:
            what = "cannot be opened as a video stream" if "://" in self.name else "not a readable video file"
            raise ValueError(f"{self.name}: {what} ({error})") from error
        try:
            self.stream = _video_stream(self.container, self.name)
        except ValueError:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"
        self.fps = stream_rate(self.stream) or float(self.default_fps)
        self.declared_frames = int(self.stream.frames or 0)  # 0 where the container has no count (webm, mkv)
        self.tag_rotation = _tag_rotation(self.stream)  # a display matrix on the frames takes precedence
        self.declared_s = self._declared_duration()
        self.packets = 0  # packets read since the file was opened
        self.reached_s = 0.0  # how far into the stream (seconds from its start) the packets read reach
        self.error = None  # the FFmpeg error that ended the last read, if any

    def _declared_duration(self) -> Optional[float]:
        """The video stream's duration (s) as its header declares it (:func:`_declared_duration`, the container's
        only when the video is its only stream)."""
        return _declared_duration(self.container, self.stream, only_stream=True)

    def _count_packet(self, packet) -> None:
        if packet.size:
            self.packets += 1
            if packet.pts is not None and self.stream.time_base:
                start = self.stream.start_time or 0
                self.reached_s = max(self.reached_s, float((packet.pts - start) * self.stream.time_base) + 1 / self.fps)

    def reopen(self) -> None:
        """Back to the start of the file (a fresh demuxer and decoder); the cost counters carry on."""
        self.container.close()
        self._open()

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def frames(self):
        """Yield the decoded `av.VideoFrame`s from the current position to the end of the stream, in presentation
        order. A read error ends the generator (kept in `self.error`), or, before any frame was ever decoded, raises
        a `ValueError` naming the file."""
        import av

        self.error = None
        try:
            for packet in self.container.demux(self.stream):
                self._count_packet(packet)
                for frame in packet.decode():
                    self.decoded += 1
                    yield frame
        except av.error.FFmpegError as error:
            if not self.decoded:
                raise ValueError(f"{self.name}: no frame could be decoded; corrupt or truncated? ({error})") from error
            self.error = error

    def rgb(self, frame) -> np.ndarray:
        """(H, W, 3) uint8 RGB of a decoded frame, upright (its display rotation applied): the conversion every frame
        used costs, and only those."""
        self.converted += 1
        return upright(frame.to_ndarray(format="rgb24"), self.rotation(frame))

    def rotation(self, frame) -> float:
        """The frame's display rotation in degrees counterclockwise: its display matrix, else the stream's tag."""
        try:
            angle = float(frame.rotation or 0)  # 0 without a display matrix
        except (AttributeError, TypeError, ValueError):  # a PyAV without `VideoFrame.rotation`
            angle = 0.0
        return angle or self.tag_rotation

    def time_s(self, frame) -> Optional[float]:
        """The frame's presentation time in seconds from the stream's start (None when it has no timestamp)."""
        if frame.pts is None or not self.stream.time_base:
            return None
        return float((frame.pts - (self.stream.start_time or 0)) * self.stream.time_base)

    def seek(self, pts: int) -> None:
        """Move to the keyframe at or before `pts` (in the stream's time base); the decoder is flushed."""
        self.container.seek(int(pts), stream=self.stream, backward=True, any_frame=False)
        self.seeks += 1

    def index(self) -> tuple[int, Optional[_StreamIndex]]:
        """Demux the whole stream without decoding it, then reopen the file: `(count, index)`, the number of frames a
        full decode yields (the packets, less those the container marks to discard) and their `_StreamIndex`, or
        None where the packets lack distinct timestamps or demuxing failed (then only a full decode tells)."""
        import av

        pts, keyframes = [], []
        try:
            for packet in self.container.demux(self.stream):
                self._count_packet(packet)
                if packet.size and not packet.is_discard:
                    pts.append(packet.pts)
                    keyframes.append(packet.is_keyframe)
        except av.error.FFmpegError as error:
            self.error = error
        count, failed = len(pts), self.error is not None
        seen = self.packets, self.reached_s, self.error
        self.reopen()
        self.packets, self.reached_s, self.error = seen  # what the index saw, for `early_end`
        if failed or not count or any(p is None for p in pts) or len(set(pts)) != count:
            return count, None
        order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
        starts = np.union1d([0], np.flatnonzero(np.asarray(keyframes, dtype=bool)[order]))
        return count, _StreamIndex(np.asarray(pts, dtype=np.int64)[order], starts)

    def early_end(self) -> Optional[str]:
        """Why the last read from the start stopped before the end of the stream, or None: a read error, fewer
        packets than the header declares (a truncated mp4 simply stops), or packets that end over a second short of
        the duration the header declares (a truncated mkv or webm, which declare no frame count). A truncated file
        whose header declares neither (MPEG-TS, a live stream) cannot be told from a short one."""
        if self.error is not None:
            return f"read error: {self.error}"
        if self.declared_frames and self.packets < self.declared_frames:
            return f"{self.packets} of the {self.declared_frames} frames its header declares are present"
        if self.declared_s and self.reached_s < self.declared_s - max(1.0, 3 / self.fps):
            return f"its frames stop at {self.reached_s:.2f} s of the {self.declared_s:.2f} s its header declares"
        return None

    def stats(self) -> dict:
        return {"frames_decoded": self.decoded, "frames_converted": self.converted, "seeks": self.seeks}


def _warn_truncated(name: str, why: str, count: int) -> None:
    warnings.warn(f"{name}: the video ends early ({why}); using the {count} frames decoded before that",
                  VideoTruncatedWarning, stacklevel=3)  # fmt: skip


def _read_from_start(reader: _VideoFileReader, keep: Optional[set]) -> tuple[dict, int]:
    """`(frames, count)`: decode the whole stream from the start, converting to RGB only the frames at the positions
    in `keep` (all when None); `count` is the number of frames decoded."""
    frames: dict = {}
    count = 0
    for count, frame in enumerate(reader.frames(), start=1):
        if keep is None or count - 1 in keep:
            frames[count - 1] = reader.rgb(frame)
    if not count:
        raise ValueError(f"{reader.name}: the video holds no decodable frame")
    return frames, count


def _read_by_seeking(reader: _VideoFileReader, index: _StreamIndex, wanted: list) -> Optional[dict]:
    """The RGB frames at the increasing positions `wanted`, decoding forward and seeking to the keyframe before a
    wanted frame wherever that skips at least `SEEK_MIN_SKIP` frames; decoding stops after the last wanted frame.

    Each decoded frame is placed by its pts in `index`, and frames must arrive at consecutive positions from the
    keyframe sought to: the frames returned are those a full decode yields at these positions. None where the stream
    does not decode as its index says (a missing or unknown frame, an end before a wanted frame); the caller then
    decodes from the start."""
    position_of = {int(p): i for i, p in enumerate(index.pts)}
    frames: dict = {}
    decoding, position = None, 0  # the decoder's frames, and the position of the next one expected
    try:
        for target in wanted:
            start = index.start_before(target)
            if decoding is None or start - position >= SEEK_MIN_SKIP:
                if decoding is not None:
                    decoding.close()
                if start > 0:
                    reader.seek(index.pts[start])
                decoding, position = reader.frames(), start
            for frame in decoding:
                at = position_of.get(frame.pts)
                if at is None or at > position:
                    return None
                if at < position:  # shown before the keyframe sought to (a leading frame of an open GOP)
                    continue
                position += 1
                if at == target:
                    frames[target] = reader.rgb(frame)
                    break
            else:
                return None
    finally:
        if decoding is not None:
            decoding.close()
    return frames


def _call_indices_fn(indices_fn, count: int, times: Optional[np.ndarray]):
    """`indices_fn(count)`, with `times_s=times` where it takes that keyword."""
    import inspect

    try:
        takes_times = "times_s" in inspect.signature(indices_fn).parameters
    except (TypeError, ValueError):  # a builtin or other callable without a signature
        takes_times = False
    return indices_fn(count, times_s=times) if takes_times else indices_fn(count)


def _decode_video_file(
    name: str, indices_fn, default_fps: float, seek: bool = True, stats: Optional[dict] = None
) -> DecodedVideo:
    """Decode the frames `indices_fn(count)` of a video file (all without it) at a cost in proportion to them: only
    the frames used are converted to RGB and, with `seek`, sparse frames are reached by seeking to the keyframe before
    them. The frames are those of a full decode either way. `stats`, if given, is filled with the cost: frames decoded
    and converted, seeks, and `read` (how: "seek" or "from start")."""
    import av

    with _VideoFileReader(name, default_fps) as reader:
        total, index = reader.index() if indices_fn else (0, None)
        truncated = reader.early_end() if indices_fn else None
        times = index.times_s(reader.stream.time_base) if index is not None else None
        keep = sorted({int(i) for i in _call_indices_fn(indices_fn, total, times) if 0 <= int(i) < total}) \
            if indices_fn and total else None  # fmt: skip
        frames, read = None, "seek"
        if seek and index is not None and keep:
            try:
                frames = _read_by_seeking(reader, index, keep)
            except av.error.FFmpegError:
                frames = None
        if frames is None:  # a full decode: every frame decoded, those kept converted
            read = "from start"
            if reader.decoded or reader.seeks:
                reader.reopen()
            frames, decoded = _read_from_start(reader, None if keep is None else set(keep))
            truncated = truncated or reader.early_end()
            if indices_fn and decoded != total:  # the index was off: select again among the frames decoded
                wanted = sorted({int(i) for i in indices_fn(decoded) if 0 <= int(i) < decoded})
                if any(i not in frames for i in wanted):
                    reader.reopen()
                    frames, _ = _read_from_start(reader, set(wanted))
                frames = {i: frames[i] for i in wanted}
            total = decoded
        if stats is not None:
            stats.update(reader.stats(), read=read, num_frames=total)
    if truncated:
        _warn_truncated(name, truncated, total)
    return DecodedVideo(frames, total, reader.fps, name)


def iter_frame_chunks(source, chunk_size: int = 256, default_fps: float = DEFAULT_FPS, prefetch: bool = True):
    """Yield `(frames, fps)` chunks of at most `chunk_size` RGB frames of a video, in order, so that a long video
    never sits in memory whole: :func:`iter_timed_chunks` without the frame times."""
    for frames, _, fps in iter_timed_chunks(source, chunk_size, default_fps, prefetch):
        yield frames, fps


def iter_timed_chunks(source, chunk_size: int = 256, default_fps: float = DEFAULT_FPS, prefetch: bool = True):
    """Yield `(frames, times_s, fps)` chunks of at most `chunk_size` RGB frames of a video, in order, so that a long
    video never sits in memory whole; `times_s` (float64) holds each frame's presentation time in seconds from the
    first frame, read from the stream's timestamps (a variable frame rate is timed right; frames without a timestamp,
    frame folders and arrays are spaced `1 / fps`). `fps` is the stream's average rate (`default_fps` for frame
    folders and arrays). Frames come upright (rotation metadata applied). Inputs and errors as in `decode_video`;
    a frame folder is read a chunk at a time too.

    With `prefetch` (default) a video file's next chunk is decoded on a background thread while the caller works
    on the current one (PyAV releases the GIL): at most three chunks are in memory (the caller's, the one queued,
    the one being decoded).

    A stream that ends early (a truncated file) yields every frame decoded up to there, then warns with a
    `VideoTruncatedWarning` naming the file and what was missing, so that a caller keeps its partial results (turn
    the warning into an error to stop instead). A file that decodes no frame at all raises a `ValueError`.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    if path is not None and path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise ValueError(f"{path}: the frame folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        for start in range(0, len(files), chunk_size):  # read a chunk at a time: memory stays bounded
            frames = [_read_image(f) for f in files[start : start + chunk_size]]
            yield frames, (start + np.arange(len(frames))) / float(default_fps), float(default_fps)
        return
    if path is None or not path.is_file() or path.suffix.lower() in IMAGE_EXTENSIONS or path.stat().st_size == 0:
        decoded = decode_video(source, default_fps=default_fps)  # images, arrays; and its errors
        frames = [decoded.frames[i] for i in sorted(decoded.frames)]
        for start in range(0, len(frames), chunk_size):
            chunk = frames[start : start + chunk_size]
            yield chunk, (start + np.arange(len(chunk))) / decoded.fps, decoded.fps
        return
    reader = _VideoFileReader(str(path), default_fps)
    clock = _FrameClock(reader.fps)

    def chunks():
        with reader:
            chunk, times = [], []
            for frame in reader.frames():
                chunk.append(reader.rgb(frame))
                times.append(clock.time(reader.time_s(frame)))
                if len(chunk) == chunk_size:
                    yield chunk, np.asarray(times)
                    chunk, times = [], []
            if chunk:
                yield chunk, np.asarray(times)
            if not reader.decoded:
                raise ValueError(f"{reader.name}: the video holds no decodable frame")

    count = 0
    for chunk, times in (_prefetched(chunks()) if prefetch else chunks()):
        count += len(chunk)
        yield chunk, times, reader.fps
    why = reader.early_end()
    if why:  # warned here, on the caller's thread, once every frame decoded has been yielded
        _warn_truncated(reader.name, why, count)


def open_stream(source, default_fps: float = DEFAULT_FPS, timeout_s: float = 10.0):
    """``(frames, fps)`` of a video file or a network stream (a URL FFmpeg reads: rtsp://, http://, …), read frame
    by frame as it comes, for live use: ``frames`` yields RGB uint8 (H, W, 3) frames, upright, and closes the source
    when it ends or is closed; ``fps`` is the declared rate (``default_fps`` where there is none).

    Raises:
        ValueError: naming the source when it cannot be opened or has no video stream (``timeout_s``: how long a
            network stream may take to answer); the generator raises one when a read fails after the first frame.
    """
    reader = _VideoFileReader(str(source), default_fps, timeout_s=timeout_s if "://" in str(source) else None)

    def frames():
        with reader:
            for frame in reader.frames():
                yield reader.rgb(frame)
            if reader.error is not None:
                raise ValueError(f"{reader.name}: read error: {reader.error}")

    return frames(), reader.fps


class _FrameClock:
    """Frame times in seconds from the first frame, from the stream's timestamps: a frame without one, or one that
    does not come after the previous frame, is placed `1 / fps` after it."""

    def __init__(self, fps: float):
        self.step = 1.0 / float(fps)
        self.origin = None
        self.last = None

    def time(self, stream_s: Optional[float]) -> float:
        if stream_s is not None and self.origin is None:
            self.origin = stream_s - (0.0 if self.last is None else self.last + self.step)
        t = None if stream_s is None else stream_s - self.origin
        if t is None or (self.last is not None and t <= self.last):
            t = 0.0 if self.last is None else self.last + self.step
        self.last = t
        return t


def _prefetched(generator):
    """The items of `generator`, each produced on a background thread while the previous one is being used; an
    exception in the generator is raised here, at the item where it happened. Closing early stops the thread."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in generator:
                if not put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer
            put((None, error))
            return
        put((done, None))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while True:  # free a queued chunk so that a blocked producer sees `stop`
            try:
                items.get_nowait()
            except queue.Empty:
                break
        thread.join(timeout=5)


class VideoWriter:
    """Writes RGB frames (H, W, 3) uint8 as a video file with PyAV: H.264 (``libx264``) where this FFmpeg has it,
    else MPEG-4 part 2 (``mpeg4``), in yuv420p.

    The stream is opened at the first frame, sized to it (cut to even width and height, as yuv420p needs; every
    frame is cut the same way). Frames written with a time (``write(frame, time_s)``, seconds from the start) are
    stamped with it, so a variable frame rate stays variable (a time not after the previous frame's is moved one tick
    after it); frames written without one are spaced ``1 / fps`` by the encoder. Use it as a context manager or
    call :meth:`close`: a writer closed early (an error, an interrupt) still finalises the file so that it plays.

    Args:
        path: the file to write (its suffix picks the container: .mp4, .mkv, …).
        fps: the nominal frame rate (frames per second; a fraction such as 30000/1001 is kept as one).
        pixel_format: the frames' layout, ``"rgb24"`` (default) or ``"bgr24"`` (OpenCV's).
        x264_options: encoder options for H.264 (e.g. ``{"crf": "17", "preset": "ultrafast"}``).
        fallback_bit_rate: the MPEG-4 fallback's bit rate (bits per second; None: FFmpeg's default).
    """

    #: time bases of timed frames: 90 kHz (the MPEG system clock, ISO/IEC 13818-1) for H.264; MPEG-4 part 2 takes
    #: time bases of at most 16 bits (ISO/IEC 14496-2, vop_time_increment_resolution), so milliseconds there
    TIME_BASES = {"libx264": Fraction(1, 90000), "mpeg4": Fraction(1, 1000)}

    def __init__(self, path, fps: float, pixel_format: str = "rgb24", x264_options: Optional[dict] = None,
                 fallback_bit_rate: Optional[int] = None):  # fmt: skip
        self.path = Path(path)
        self.rate = Fraction(float(fps)).limit_denominator(1001)
        self.pixel_format = pixel_format
        self.x264_options = dict(x264_options or {})
        self.fallback_bit_rate = fallback_bit_rate
        self.container = self.stream = self.codec = None
        self.timed = False
        self.frames = 0
        self._last_pts = -1

    def _open(self, frame: np.ndarray, timed: bool) -> None:
        import av

        self.container = av.open(str(self.path), "w")
        try:
            self.stream, self.codec = self.container.add_stream("libx264", rate=self.rate), "libx264"
            if self.x264_options:
                self.stream.options = dict(self.x264_options)
        except (av.error.FFmpegError, ValueError):  # no H.264 encoder in this FFmpeg build
            self.stream, self.codec = self.container.add_stream("mpeg4", rate=self.rate), "mpeg4"
            if self.fallback_bit_rate:
                self.stream.bit_rate = int(self.fallback_bit_rate)
        self.timed = timed
        if timed:
            self.stream.codec_context.time_base = self.TIME_BASES[self.codec]
        h, w = frame.shape[:2]
        self.stream.width, self.stream.height, self.stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"

    def write(self, frame: np.ndarray, time_s: Optional[float] = None) -> None:
        """Encode one frame (H, W, 3) uint8, at ``time_s`` seconds from the start when given (give a time for every
        frame or for none)."""
        import av

        if self.container is None:
            self._open(frame, time_s is not None)
        frame = np.ascontiguousarray(frame[: self.stream.height, : self.stream.width])
        picture = av.VideoFrame.from_ndarray(frame, format=self.pixel_format)
        if self.timed:
            base = self.TIME_BASES[self.codec]
            self._last_pts = max(int(round(float(time_s) / base)), self._last_pts + 1)
            picture.pts, picture.time_base = self._last_pts, base
        for packet in self.stream.encode(picture):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file (nothing to do when no frame was written)."""
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def load_frames(frames_or_video, fps=None, default_fps: float = DEFAULT_FPS) -> tuple[list, float, str]:
    """``(frames, fps, name)``: every RGB frame of a video path (decoded with :func:`decode_video`) or of frames given
    as an array, tensor or list; ``fps`` overrides the stream's rate (``default_fps`` for frames)."""
    if isinstance(frames_or_video, (str, os.PathLike)):
        decoded = decode_video(frames_or_video, default_fps=default_fps)
        frames = [decoded.frames[i] for i in sorted(decoded.frames)]
        return frames, float(fps or decoded.fps), str(frames_or_video)
    frames = frames_or_video
    if hasattr(frames, "numpy") and not isinstance(frames, np.ndarray):
        frames = frames.numpy()
    return list(frames), float(fps or default_fps), "<frames>"


__all__ = [
    "DEFAULT_FPS", "MIN_FACE_FRAME_SIDE", "DecodedVideo", "VideoInfo", "VideoTruncatedWarning", "VideoWriter",
    "check_frame_size", "decode_video", "iter_frame_chunks", "iter_timed_chunks", "list_frame_files", "load_frames",
    "natural_frame_key", "open_stream", "probe_duration", "probe_video", "stream_rate", "upright",
]  # fmt: skip
