"""Video I/O for EM-VFER: the package's one decoder.

Video files are decoded with PyAV (anything FFmpeg reads), frame folders (the DFEW / CASME layouts) and image files
with OpenCV, arrays and tensors as they are. Long videos are read in chunks (:func:`iter_frame_chunks`) so that
memory stays bounded. Used by the video processor, the visual eye-movement extractor and the face module alike.

Flat module (no sibling imports, heavy dependencies imported lazily) so that it ships as remote code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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


def _count_video_frames(path: str) -> int:
    """Frame count of a video file: the container's own number, else a count of the video packets (no decoding)."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


def decode_video(
    source,
    indices_fn=None,
    default_fps: float = 25.0,
) -> DecodedVideo:
    """Decode a video file (PyAV), a folder of frame images, an image file or an array (T, H, W[, C]).

    Args:
        source: path (str / Path) or array / tensor / list of frames.
        indices_fn: `indices_fn(num_frames) -> iterable of int`: the frames to keep (default: all). Only those are
            kept in memory while decoding, so long or large videos stay cheap.
        default_fps: the rate assumed where the input has none (frame folders, arrays).
    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the input cannot be decoded or holds no frame; the message names the input.
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
        return _decode_video_file(name, indices_fn, default_fps)

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


def _open_video_file(name: str, default_fps: float):
    """`(fps, frames)`: the stream's rate and a generator of its RGB frames, in order. A truncated file ends the
    generator early (what decoded is kept); a file that decodes nothing raises a `ValueError` naming it."""
    import av

    try:
        container = av.open(name)
    except av.error.FFmpegError as error:
        raise ValueError(f"{name}: not a readable video file ({error})") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{name}: the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate or stream.guessed_rate or default_fps)

    def frames():
        count = 0
        try:
            for frame in container.decode(stream):
                count += 1
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as error:  # a truncated file: keep what decoded
            if not count:
                raise ValueError(f"{name}: cannot decode video ({error})") from error
        finally:
            container.close()
        if not count:
            raise ValueError(f"{name}: the video holds no decodable frame")

    return fps, frames()


def _decode_video_file(name: str, indices_fn, default_fps: float) -> DecodedVideo:
    import av

    try:
        total = _count_video_frames(name)
    except av.error.FFmpegError as error:
        raise ValueError(f"{name}: not a readable video file ({error})") from error
    keep = set(indices_fn(total)) if (indices_fn and total) else None
    fps, stream = _open_video_file(name, default_fps)
    frames: dict = {}
    decoded = 0
    for decoded, frame in enumerate(stream, start=1):
        if keep is None or decoded - 1 in keep:
            frames[decoded - 1] = frame
    if keep is not None and decoded != total:
        # The container's count was off (or the file is truncated): select again among the decoded frames,
        # decoding a second time if a wanted frame was not kept.
        wanted = sorted(set(indices_fn(decoded)))
        if any(i not in frames for i in wanted):
            wanted_set = set(wanted)
            frames = {i: f for i, f in enumerate(_open_video_file(name, default_fps)[1]) if i in wanted_set}
        frames = {i: frames[i] for i in wanted}
    return DecodedVideo(frames, decoded, fps, name)


def iter_frame_chunks(source, chunk_size: int = 256, default_fps: float = 25.0, prefetch: bool = True):
    """Yield `(frames, fps)` chunks of at most `chunk_size` RGB frames of a video, in order, so that a long video
    never sits in memory whole. Inputs and errors as in `decode_video`.

    With `prefetch` (default) a video file's next chunk is decoded on a background thread while the caller works
    on the current one (PyAV releases the GIL): at most three chunks are in memory (the caller's, the one queued,
    the one being decoded).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    if path is None or not path.is_file() or path.suffix.lower() in IMAGE_EXTENSIONS or path.stat().st_size == 0:
        decoded = decode_video(source, default_fps=default_fps)  # folders, images, arrays; and its errors
        frames = [decoded.frames[i] for i in sorted(decoded.frames)]
        for start in range(0, len(frames), chunk_size):
            yield frames[start : start + chunk_size], decoded.fps
        return
    fps, stream = _open_video_file(str(path), default_fps)

    def chunks():
        chunk = []
        for frame in stream:
            chunk.append(frame)
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    for chunk in (_prefetched(chunks()) if prefetch else chunks()):
        yield chunk, fps


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


def load_frames(frames_or_video, fps=None, default_fps: float = 25.0) -> tuple[list, float, str]:
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


__all__ = ["DecodedVideo", "decode_video", "iter_frame_chunks", "list_frame_files", "load_frames", "natural_frame_key"]
