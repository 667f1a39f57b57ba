"""Training data: a dataset split (`datasets.Dataset` from `emvfer_hf.data`) → MERT inputs, clip by clip.

Where each clip's eye-movement series comes from is the only difference between the two stages
(docs/design.md §Data flow):
- `eye_source="tracker"` (pre-training, EMER): the clip's eye-tracker recording (`eye_tracking` column) converted to
  the canonical series over the video's time line (first to last frame, `tracker_clip_series`: the span the
  visual series of the same clip covers);
- `eye_source="visual"` (PEML fine-tuning, inference): the series read from the video itself — taken from the
  preprocessing cache when one is given, else extracted on the fly by the processor;
- `eye_source="none"`: no eye input (the video-only ablation).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import numpy as np
import torch

from ..data.cache import (
    clip_source,
    compute_fn_version,
    make_compute_fn,
    preprocess_dataset,
    preprocess_shard,
    processor_video,
)

EYE_SOURCES = ("tracker", "visual", "none")


@functools.lru_cache(maxsize=4096)
def tracker_series(path: str):
    """The canonical series of an eye-tracker recording (any format `read_eye_tracking` reads), whole recording.
    Memoised: a recording is parsed once per process, not once per epoch."""
    from ..eyetracking import read_eye_tracking

    return read_eye_tracking(path).to_series()


@functools.lru_cache(maxsize=4096)
def _raw_tracker_series(path: str):
    from ..eyetracking import read_eye_tracking

    return read_eye_tracking(path).to_series(normalize=False)


@functools.lru_cache(maxsize=4096)
def video_timeline(video: str, default_fps: float = 25.0):
    """``(num_frames, fps)`` of a video file or frame folder without decoding it (the container's frame count, else
    a count of its packets; a frame folder has ``default_fps``). None for anything else (arrays)."""
    from ..video_io_mert import _count_video_frames, list_frame_files

    path = Path(video)
    if path.is_dir():
        return len(list_frame_files(path)), float(default_fps)
    if not path.is_file():
        return None
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or default_fps)
    return _count_video_frames(str(path)), fps


@functools.lru_cache(maxsize=4096)
def tracker_clip_series(path: str, end_s: float):
    """The tracker series of a clip on the VIDEO's timeline: from the first frame (t = 0, the recording's first
    sample — EMER's exports are cut per clip) to the last frame (``end_s`` = (frames − 1) / fps), normalised over that
    span. This is the span the visual series of the same clip covers (the extractor's rows are the frames, t = frame
    index / fps), so that step k of the model's L steps means the same instant for both sources. Samples the
    recording has beyond the last frame are dropped; a recording shorter than the video leaves its tail invalid."""
    raw = _raw_tracker_series(path)
    t = raw.times_s
    if end_s <= 0 or len(raw) < 2:
        return raw.normalize()
    times = np.concatenate([[0.0], t[(t > 0.0) & (t < end_s)], [end_s]])
    return raw.resample_to_times(times).normalize()


class ClipDataset(torch.utils.data.Dataset):
    """Processor inputs for each row of a dataset split.

    Args:
        dataset: a `datasets.Dataset` with at least `video` and `label` (and `eye_tracking` for the tracker source).
        processor: a `MERTVideoProcessor`.
        eye_source: "tracker", "visual" or "none" (see the module docstring).
        train: sample a random frame within each segment (seeded by `seed`, the epoch and the index, so a resumed
            run sees the same frames as an uninterrupted one).
        seed: base seed of the training-time sampling.
    Rows preprocessed by `preprocess_splits` carry `face_boxes` and the visual eye series (`eye_movements`,
    `eye_valid`, `eye_times_s`): then no face detection or eye extraction runs while training. A window row
    (Aff-Wild2's `frame_numbers`) is processed from its own frames only, at its source video's rate
    (`emvfer_hf.data.cache.clip_source`).
    Items: `pixel_values` (T, 3, H, W), `eye_movement_values` (L, 5), `eye_movement_mask` (L,), `labels` (), `index` ().
    """

    def __init__(
        self,
        dataset,
        processor,
        eye_source: str = "visual",
        train: bool = False,
        seed: int = 0,
    ):
        if eye_source not in EYE_SOURCES:
            raise ValueError(f"eye_source must be one of {EYE_SOURCES}, got {eye_source!r}")
        if eye_source == "tracker" and "eye_tracking" not in dataset.column_names:
            raise ValueError("eye_source='tracker' needs an `eye_tracking` column (EMER-style data)")
        self.dataset = dataset
        self.processor = processor
        self.eye_source = eye_source
        self.train = train
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def sample_for_epoch(self, epoch: int) -> None:
        """Seed the training-time frame sampling with this epoch (not named `set_epoch`: Accelerate calls that with
        its own loader iteration count, which a resumed run does not share)."""
        self.epoch = epoch

    def eye_series(self, row: dict):
        """The clip's canonical series for this dataset's eye source (None for "none", or when the processor should
        extract it). `row` is a row of the dataset."""
        if self.eye_source == "tracker":
            if not row.get("eye_tracking"):
                raise ValueError(f"clip {row.get('clip_id')!r} has no eye-tracker recording")
            video, fps = row.get("video"), float(getattr(self.processor, "default_fps", None) or 25.0)
            timeline = video_timeline(str(video), fps) if isinstance(video, (str, os.PathLike)) else None
            if timeline is None or timeline[0] < 2:
                return tracker_series(row["eye_tracking"])
            num_frames, fps = timeline
            return tracker_clip_series(row["eye_tracking"], (num_frames - 1) / fps)
        if self.eye_source == "visual" and "eye_movements" in row:
            from ..eye_movement_mert import EyeMovementSeries

            values = np.asarray(row["eye_movements"], np.float32).reshape(-1, 5)
            return EyeMovementSeries(values, np.asarray(row["eye_valid"], bool), np.asarray(row["eye_times_s"]))
        return None

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[index]
        kwargs = {"allow_no_face": True}  # a clip without a detectable face still trains (central crops)
        series = self.eye_series(row)
        if series is not None:
            kwargs["eye_movements"] = series
        elif self.eye_source == "none":
            kwargs["do_extract_eye_movements"] = False
        if row.get("face_boxes") and self.processor.face_box_mode == "union":  # one square box for the clip
            box = np.asarray(row["face_boxes"][0], np.float32)  # ("smooth" boxes follow the sampled frames:
            if np.isfinite(box).all():  # those are detected again)
                kwargs["face_box"] = box
        if self.train:
            kwargs["do_train_sampling"] = True
            kwargs["sampling_seed"] = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        video, media_kwargs = processor_video(*clip_source(row))  # an Aff-Wild2 window: its own frames
        inputs = self.processor(video, return_tensors="pt", **kwargs, **media_kwargs)
        item = {key: value[0] for key, value in inputs.items()}
        item["labels"] = torch.tensor(int(row["label"]), dtype=torch.long)
        item["index"] = torch.tensor(index, dtype=torch.long)
        return item


def collate_clips(items: list[dict]) -> dict:
    """Stack a list of `ClipDataset` items into a batch."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}



def default_cache_dir() -> Path:
    """Where the preprocessing cache lives unless `--cache_dir` says otherwise: `$EMVFER_CACHE/preprocessing`, or
    `~/.cache/emvfer/preprocessing`."""
    return Path(os.environ.get("EMVFER_CACHE", Path.home() / ".cache" / "emvfer")) / "preprocessing"


def preprocess_splits(splits, processor, extract_eyes: bool, cache_dir=None, num_proc=None, accelerator=None):
    """Add the cached per-clip preprocessing (face boxes, sampled frames and, with `extract_eyes`, the visual eye
    series) to each split (`None` stays `None`): face detection and eye extraction run once per clip, ever, not once
    per epoch (`emvfer_hf.data.preprocess_dataset`, keyed by file content/mtime and the processor's settings)."""
    compute_fn = make_compute_fn(processor, extract_eyes)
    version = compute_fn_version(processor, extract_eyes)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if accelerator is not None and accelerator.num_processes > 1:
        # Sharded across every process of every machine: process i computes clips i, i + N, ... into the shared
        # cache; then every process reads the whole cache (all hits) into its split.
        for split in splits:
            if split is not None:
                preprocess_shard(split, compute_fn, cache_dir, accelerator.process_index, accelerator.num_processes,
                                 version=version)  # fmt: skip
        accelerator.wait_for_everyone()
    context = accelerator.main_process_first() if accelerator is not None else contextlib.nullcontext()
    with context:
        return [
            None if split is None else preprocess_dataset(split, compute_fn, cache_dir, num_proc, version=version)
            for split in splits
        ]
