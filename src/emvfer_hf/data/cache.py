"""Preprocessing cache: run face detection and visual eye-movement extraction ONCE per clip, not every epoch.

:func:`preprocess_dataset` is a ``datasets.map`` step (multi-process with ``num_proc``) that adds, per clip,

- ``frame_indices`` (T,) — the sampled frame positions (0-based, natural frame order),
- ``face_boxes`` (T, 4) — the square face crop box (with margin) of each sampled frame, ``x1, y1, x2, y2``: one box
  repeated in the processor's default "union" mode; NaN rows when no face was found in the clip,
- ``eye_movements`` (L, 5), ``eye_valid`` (L,), ``eye_times_s`` (L,) — the visual canonical eye series,
- ``preprocess_key`` — the cache key,

computed by an injected ``compute_fn(video) -> dict`` with those keys (:func:`make_compute_fn` builds the
default one on the processor's face backend and visual extractor). Results are stored as one compressed ``.npz``
per clip under ``cache_dir/<key[:2]>/<key>.npz``, keyed by the media's CONTENT AND MTIME (size, mtime_ns and a
hash of the first and last 64 KiB of every file; a frame folder hashes all its frames' names, sizes and mtimes) and
by the ``version`` of the compute function: a changed file (or changed settings) is recomputed, an unchanged one is
read back, also across dataset reloads and processes.

What a row's clip is comes from :func:`clip_source`: its ``video`` (a file or frame folder), except for a WINDOW of
a frame folder (Aff-Wild2 rows, with ``frame_numbers``): its own frame files, in order, keyed by those files, so
two windows of one video never share an entry (``compute_fn`` then gets the tuple of frame paths). A row with a
source video (``raw_video``) is processed at that video's frame rate (``compute_fn(video, fps=...)``, the rate in
the key too); frame folders otherwise have the processor's ``default_fps``.

Disk cost (measured on the sample data): a 16-frame clip (16 boxes, 16-step eye series) takes about 1.7 KB
(compressed npz incl. container overhead), i.e. about 1.7 MB per 1,000 clips; the eye series grows with the clip
length (one row per frame, ~24 bytes), so 300-frame videos take about 6–8 KB, i.e. 6–8 MB per 1,000 clips.
``datasets`` additionally keeps the mapped Arrow table in its own cache (the same arrays uncompressed, of the same
order).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import datasets
import numpy as np

from ..video_io_mert import list_frame_files
from ._utils import PathLike, frame_number

logger = logging.getLogger(__name__)

CACHE_FIELDS = ("frame_indices", "face_boxes", "eye_movements", "eye_valid", "eye_times_s")
_EDGE = 64 * 1024
ComputeFn = Callable[..., dict[str, np.ndarray]]
Media = str | tuple[str, ...]  # a video file / frame folder, or the frame files of a window


# ------------------------------------------------------------------------------------------------ a row's clip
def window_frame_files(folder: PathLike, frame_numbers: Sequence[int]) -> tuple[str, ...]:
    """The image files of ``frame_numbers`` (1-based, as in the file names) in the frame folder ``folder``, in the
    order given: ``<folder>/<%05d>.jpg`` (the Aff-Wild2 ``cropped_aligned`` names) where those exist, else looked
    up by the number in the folder's names (:func:`frame_number`). Raises ``FileNotFoundError`` naming the folder
    and the missing frames."""
    folder = Path(folder)
    files = [folder / f"{int(n):05d}.jpg" for n in frame_numbers]
    if all(f.is_file() for f in files):
        return tuple(str(f) for f in files)
    by_number = {frame_number(f): f for f in list_frame_files(folder)} if folder.is_dir() else {}
    missing = [int(n) for n in frame_numbers if int(n) not in by_number]
    if missing:
        raise FileNotFoundError(f"{folder}: no image of frame(s) {missing[:10]} of the window (of {len(files)})")
    return tuple(str(by_number[int(n)]) for n in frame_numbers)


@functools.lru_cache(maxsize=4096)
def _frame_count(folder: str) -> int:
    return len(list_frame_files(folder))


@functools.lru_cache(maxsize=4096)
def video_file_fps(path: str) -> float | None:
    """The frame rate of a video file's first video stream (:func:`~emvfer_hf.video_io_mert.probe_video`, no
    decoding); None when it declares none or the file cannot be read. Memoised per process."""
    from ..video_io_mert import probe_video

    try:
        return probe_video(path, count_frames=False).fps
    except (OSError, ValueError):
        return None


def clip_source(row: dict, video_column: str = "video") -> tuple[Media, float | None]:
    """``(media, fps)`` of a dataset row: what the processor reads for it, and at which frame rate.

    ``media`` is the row's ``video_column`` (a video file or a frame folder), except for a window of a frame folder
    (a row with ``frame_numbers``, :func:`~emvfer_hf.data.load_affwild2`) that covers only part of it: then the
    tuple of the window's frame files (:func:`window_frame_files`). A window covering every frame of its folder is
    the folder itself. ``fps`` is the rate of the row's source video (``raw_video``: Aff-Wild2's frames are the
    video's frames, docs/datasets.md §Aff-Wild2) when there is one, else None (the processor's ``default_fps``)."""
    video = row[video_column]
    raw = row.get("raw_video")
    fps = video_file_fps(str(raw)) if raw else None
    numbers = row.get("frame_numbers")
    if numbers is None or not Path(video).is_dir() or len(numbers) == _frame_count(str(video)):
        return video, fps  # (frame_numbers are distinct frames of the folder: as many as it holds is all of them)
    return window_frame_files(video, numbers), fps


def processor_video(media: Media, fps: float | None = None) -> tuple:
    """``(video, kwargs)`` for ``processor(video, **kwargs)`` of a :func:`clip_source`: a path as it is; a window's
    frame files read into an array (T, H, W, 3) uint8; ``fps`` as the processor's ``video_metadata``."""
    kwargs = {} if fps is None else {"video_metadata": {"fps": float(fps)}}
    if isinstance(media, (str, os.PathLike)):
        return media, kwargs
    from ..video_io_mert import decode_video

    frames = [decode_video(f).frames[0] for f in media]
    shapes = sorted({f.shape for f in frames})
    if len(shapes) > 1:
        raise ValueError(f"{_describe(tuple(media))}: the window's frames differ in size ({shapes})")
    return np.stack(frames), kwargs


def _file_digest(h, path: Path, content: bool) -> None:
    st = path.stat()
    h.update(f"{path.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    if content:
        with open(path, "rb") as f:
            h.update(f.read(_EDGE))
            if st.st_size > 2 * _EDGE:
                f.seek(-_EDGE, os.SEEK_END)
                h.update(f.read(_EDGE))


def media_fingerprint(path, version: str = "") -> str:
    """Hex key of a video file or frame folder: content (edges of the file) + size + mtime, and ``version``. A
    sequence of frame files (a window, :func:`clip_source`) is keyed by those files (names, sizes, mtimes and the
    middle one's content), in order."""
    h = hashlib.sha1(f"v={version}|".encode())
    if isinstance(path, (list, tuple)):
        files = [Path(f) for f in path]
        if not files:
            raise ValueError("preprocessing cache: a window of no frame")
        h.update(f"frames={len(files)}|".encode())  # never the key of a folder holding the same files
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"preprocessing cache: frame {f} does not exist")
            _file_digest(h, f, content=False)
        _file_digest(h, files[len(files) // 2], content=True)
        return h.hexdigest()
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise FileNotFoundError(f"preprocessing cache: frame folder {path} holds no image")
        for f in files:
            _file_digest(h, f, content=False)
        _file_digest(h, files[len(files) // 2], content=True)
    elif path.is_file():
        _file_digest(h, path, content=True)
    else:
        raise FileNotFoundError(f"preprocessing cache: {path} does not exist")
    return h.hexdigest()


class PreprocessingCache:
    """Compute-or-load of per-clip preprocessing results, one ``.npz`` per clip under ``cache_dir``.

    Args:
        cache_dir: folder of the cache (created).
        compute_fn: ``compute_fn(video) -> dict`` returning (at least) :data:`CACHE_FIELDS`; ``video`` is a path
            or a window's frame files (:func:`clip_source`); called as ``compute_fn(video, fps=fps)`` for a clip
            with a known frame rate.
        version: tag of the compute function's settings; part of every key.
    """

    def __init__(self, cache_dir: PathLike, compute_fn: ComputeFn, version: str = "1"):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.compute_fn = compute_fn
        self.version = str(version)

    def path_for(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npz"

    def __call__(self, video_path: Media, fps: float | None = None) -> dict[str, np.ndarray]:
        key = media_fingerprint(video_path, self.version if fps is None else f"{self.version}|fps={float(fps)!r}")
        path = self.path_for(key)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    out = {k: z[k] for k in z.files}
                out["preprocess_key"] = key
                return out
            except (OSError, ValueError) as err:  # a truncated file: recompute
                logger.warning("preprocessing cache: unreadable %s (%s); recomputing", path, err)
        media = str(video_path) if isinstance(video_path, (str, os.PathLike)) else tuple(map(str, video_path))
        result = self.compute_fn(media) if fps is None else self.compute_fn(media, fps=fps)
        missing = [k for k in CACHE_FIELDS if k not in result]
        if missing:
            raise KeyError(f"compute_fn({_describe(media)}) did not return {missing}")
        arrays = {k: np.asarray(v) for k, v in result.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")  # atomic across processes
        os.close(fd)
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        arrays["preprocess_key"] = key
        return arrays


CACHE_FEATURES = {
    "preprocess_key": datasets.Value("string"),
    "frame_indices": datasets.Sequence(datasets.Value("int32")),
    "face_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
    "eye_movements": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=5)),
    "eye_valid": datasets.Sequence(datasets.Value("bool")),
    "eye_times_s": datasets.Sequence(datasets.Value("float32")),
}


def _describe(media: Media) -> str:
    """A clip's name in messages: the path, or ``<folder> frames <first>–<last>`` of a window."""
    if isinstance(media, str):
        return media
    return f"{Path(media[0]).parent} frames {Path(media[0]).stem}–{Path(media[-1]).stem}"


def _map_row(example, cache: PreprocessingCache, video_column: str):
    out = cache(*clip_source(example, video_column))
    return {
        "preprocess_key": str(out["preprocess_key"]),
        "frame_indices": np.asarray(out["frame_indices"], np.int32).reshape(-1),
        "face_boxes": np.asarray(out["face_boxes"], np.float32).reshape(-1, 4),
        "eye_movements": np.asarray(out["eye_movements"], np.float32).reshape(-1, 5),
        "eye_valid": np.asarray(out["eye_valid"], bool).reshape(-1),
        "eye_times_s": np.asarray(out["eye_times_s"], np.float32).reshape(-1),
    }


def preprocess_dataset(
    dataset: datasets.Dataset,
    compute_fn: ComputeFn,
    cache_dir: PathLike,
    num_proc: Optional[int] = None,
    video_column: str = "video",
    version: str = "1",
) -> datasets.Dataset:
    """Add the cached preprocessing columns to ``dataset`` (see the module docstring).

    Args:
        dataset: a split from one of the loaders (needs ``video_column``; windows are their own clips,
            :func:`clip_source`).
        compute_fn: ``compute_fn(video) -> dict`` (picklable for ``num_proc > 1``: a module-level function or
            a :func:`functools.partial` of one).
        cache_dir: the per-clip ``.npz`` store.
        num_proc: worker processes of ``datasets.map``.
        version: change it when ``compute_fn``'s settings change.
    """
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict({k: preprocess_dataset(v, compute_fn, cache_dir, num_proc, video_column, version)
                                     for k, v in dataset.items()})
    if video_column not in dataset.column_names:
        raise ValueError(f"preprocess_dataset: no {video_column!r} column in {dataset.column_names}")
    cache = PreprocessingCache(cache_dir, compute_fn, version)
    features = dataset.features.copy()
    features.update(CACHE_FEATURES)
    return dataset.map(
        _map_row, fn_kwargs={"cache": cache, "video_column": video_column}, num_proc=num_proc, features=features,
        desc="preprocessing (faces, eye movements)", load_from_cache_file=False,
    )


def preprocess_shard(
    dataset: datasets.Dataset,
    compute_fn: ComputeFn,
    cache_dir: PathLike,
    shard_index: int = 0,
    num_shards: int = 1,
    video_column: str = "video",
    version: str = "1",
) -> int:
    """Fill this shard's part of the per-clip cache: rows ``shard_index, shard_index + num_shards, ...`` of
    ``dataset`` (one shard per Accelerate process, ``accelerator.process_index`` of ``num_processes``, on any number
    of machines sharing ``cache_dir``). Every clip is one ``.npz`` file written atomically, so the shards write
    disjoint parts of the same cache and, together, exactly the cache one process would write. Returns the number
    of clips of the shard."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
    if video_column not in dataset.column_names:
        raise ValueError(f"preprocess_shard: no {video_column!r} column in {dataset.column_names}")
    cache = PreprocessingCache(cache_dir, compute_fn, version)
    columns = [c for c in (video_column, "frame_numbers", "raw_video") if c in dataset.column_names]
    rows = dataset.select_columns(columns).select(range(shard_index, len(dataset), num_shards))
    for row in rows:
        cache(*clip_source(row, video_column))
    return len(rows)


def make_compute_fn(processor, extract_eyes: bool = True) -> ComputeFn:
    """The ``compute_fn`` of the project: ONE pass of a :class:`~emvfer_hf.MERTVideoProcessor` over the clip
    (decoding, faces (the processor's face backend) on the sampled and the eye frames, the visual eye series from the same detections).
    Clips without a face are kept (central crops, an all-invalid eye series) with a warning."""
    return functools.partial(_processor_compute, processor=processor, extract_eyes=extract_eyes)


def compute_fn_version(processor, extract_eyes: bool = True) -> str:
    """A ``version`` tag that changes whenever the processor's settings do (so the cache is recomputed), including a
    custom face backend set on it (its class and public settings)."""
    backend = getattr(processor, "custom_face_backend", None)
    custom = "" if backend is None else type(backend).__name__ + repr(sorted(
        (k, v) for k, v in vars(backend).items() if not k.startswith("_") and isinstance(v, (int, float, str, bool))))
    text = processor.to_json_string() + str(bool(extract_eyes)) + custom
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _processor_compute(
    video_path: Media, processor, extract_eyes: bool = True, fps: float | None = None
) -> dict[str, np.ndarray]:
    video, kwargs = processor_video(video_path, fps)
    out = processor(
        video, return_face_boxes=True, return_frame_indices=True, return_eye_series=extract_eyes,
        do_extract_eye_movements=extract_eyes, allow_no_face=True, **kwargs,
    )  # fmt: skip
    series = out["eye_series"][0] if extract_eyes else None
    if not np.isfinite(out["face_boxes"][0]).all() or (extract_eyes and (series is None or not series.valid.any())):
        logger.warning("%s: no face found; the clip is used with central crops and no eye signal",
                       _describe(video_path))  # fmt: skip
    if series is None:
        values, valid, times = np.zeros((0, 5), np.float32), np.zeros(0, bool), np.zeros(0, np.float32)
    else:
        values, valid, times = series.values, series.valid, series.times_s
    return {"frame_indices": out["frame_indices"][0], "face_boxes": out["face_boxes"][0], "eye_movements": values,
            "eye_valid": valid, "eye_times_s": times}
