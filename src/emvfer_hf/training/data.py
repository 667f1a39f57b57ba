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
import logging
import os
import re
from pathlib import Path
from typing import Optional

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
from ..video_io_mert import DEFAULT_FPS

EYE_SOURCES = ("tracker", "visual", "none")

logger = logging.getLogger(__name__)


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
def video_timeline(video: str, default_fps: float = DEFAULT_FPS):
    """``(num_frames, fps)`` of a video file or frame folder without decoding it (the container's frame count, else
    a count of its packets; a frame folder has ``default_fps``). None for anything else (arrays)."""
    from ..video_io_mert import list_frame_files, probe_video

    path = Path(video)
    if path.is_dir():
        return len(list_frame_files(path)), float(default_fps)
    if not path.is_file():
        return None
    info = probe_video(path)
    return info.num_frames, info.fps or float(default_fps)


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
            video, fps = row.get("video"), float(getattr(self.processor, "default_fps", None) or DEFAULT_FPS)
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


def clip_eye_series(clip_dataset: ClipDataset) -> list:
    """The eye series `clip_dataset` gives each of its clips (`ClipDataset.eye_series`), in row order: for the
    tracker source the clip's span of its recording (`tracker_clip_series`), exactly what stage 1 trains on. Clips
    without a recording are left out; an error names the dataset when none has one (the prior Ē is fitted on these)."""
    if clip_dataset.eye_source == "none":
        raise ValueError("clip_eye_series: eye_source='none' gives no eye series")
    series = []
    for row in clip_dataset.dataset:
        if clip_dataset.eye_source == "tracker" and not row.get("eye_tracking"):
            continue
        value = clip_dataset.eye_series(row)
        if value is not None:
            series.append(value)
    if not series:
        raise ValueError(f"clip_eye_series: none of the {len(clip_dataset)} clips has a {clip_dataset.eye_source} "
                         "eye series (EMER needs its eye-tracker recordings to fit the prior)")
    return series


# ----------------------------------------------------------------------------------------------------------------------
# Validation split
def validation_groups(dataset) -> tuple[Optional[list[str]], Optional[str]]:
    """`(group of each row, what the groups are)` for a validation split that keeps each group on one side:
    `"subject"` (EMER participants, CASME subjects: the `subject` column), `"video"` (Aff-Wild2, whose rows are
    windows of annotated videos: the `subject` column without `_left`/`_right`, so that the two persons of one
    recording stay together), or `(None, None)` where the dataset has no such column (DFEW, MAFW: clips are split
    one by one, stratified by label)."""
    if "subject" not in dataset.column_names:
        return None, None
    subjects = [str(s) for s in dataset["subject"]]
    if "frame_numbers" in dataset.column_names:  # Aff-Wild2 windows (docs/datasets.md §Aff-Wild2)
        return [re.sub(r"_(left|right)$", "", s) for s in subjects], "video"
    return subjects, "subject"


def split_validation(dataset, fraction: float, seed: int, label_names=None) -> tuple:
    """Carve a validation split from a training fold: `(train, validation, info)` (`datasets.Dataset`s, rows in
    their original order; `validation` is None when `fraction` is 0).

    Disjoint by group (`validation_groups`: subject, or video) where the dataset has groups, and stratified by label:
    each class gets a target count (`fraction` of the fold, at least one clip, shared out between the classes by
    largest remainder), and groups, visited in an order drawn from `seed`, join the validation split while they
    bring its class counts closer to the targets, never taking a class's last training clip. Without groups every
    class gets exactly its target. The split depends only on the rows, `fraction` and `seed`: identical on every
    process. `info` records it for the results JSON: fraction, seed, `grouped_by`, the validation `clips` (clip ids)
    and `groups`. Errors name `--validation_fraction` when no split can leave every class a training clip."""
    info = {"fraction": float(fraction), "seed": int(seed)}
    if fraction == 0:
        return dataset, None, {**info, "clips": []}
    if not 0 < fraction < 1:
        raise ValueError(f"--validation_fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(dataset["label"], dtype=np.int64)
    n = len(labels)
    if n < 2:
        raise ValueError(f"--validation_fraction {fraction}: the training fold has {n} clip(s), too few to split")
    groups, grouped_by = validation_groups(dataset)
    keys = groups if groups is not None else [str(i) for i in range(n)]
    names = sorted(set(keys))
    if len(names) < 2:
        raise ValueError(f"--validation_fraction {fraction}: the training fold has a single {grouped_by} "
                         f"({names[0]!r}); a validation split by {grouped_by} needs two or more")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    num_classes = int(labels.max()) + 1
    index_of = {name: i for i, name in enumerate(names)}
    row_group = np.array([index_of[k] for k in keys])
    counts = np.zeros((len(names), num_classes), dtype=np.int64)  # clips of each class in each group
    np.add.at(counts, (row_group, labels), 1)
    totals = counts.sum(0)
    target = _largest_remainder(totals, max(1, round(fraction * n)), rng)

    def cost(taken):
        return np.abs(taken - target).sum()

    def keeps_every_class(taken):
        return bool(((totals - taken)[totals > 0] > 0).all())

    taken, chosen = np.zeros(num_classes, dtype=np.int64), []
    for g in order:
        candidate = taken + counts[g]
        if cost(candidate) < cost(taken) and keeps_every_class(candidate):
            taken, chosen = candidate, chosen + [g]
    if not chosen:  # every group overshoots the targets (few large groups): the one closest to them
        allowed = [g for g in order if keeps_every_class(counts[g])]
        if not allowed:
            unit = grouped_by or "clip"
            alone = [_name(label_names, c) for c in np.flatnonzero((totals > 0) & (counts.max(0) == totals))]
            raise ValueError(
                f"--validation_fraction {fraction}: every {unit} holds all the training clips of some class "
                f"(classes held by one {unit}: {', '.join(map(str, alone))}), so no validation split "
                f"{'by ' + unit + ' ' if grouped_by else ''}leaves each class a training clip; use data with more "
                f"{unit}s per class, or --validation_fraction 0 (no early stopping, no best-model selection)"
            )
        g = min(allowed, key=lambda g: cost(counts[g]))  # min keeps the first of equal costs, in the seeded order
        taken, chosen = counts[g].copy(), [g]
    in_validation = np.isin(row_group, chosen)
    missing = [_name(label_names, c) for c in np.flatnonzero((totals > 0) & (taken == 0))]
    if missing:
        logger.warning("validation split (--validation_fraction %s): no validation clip of class(es) %s", fraction,
                       ", ".join(map(str, missing)))
    train_rows, validation_rows = np.flatnonzero(~in_validation), np.flatnonzero(in_validation)
    validation = dataset.select(validation_rows.tolist())
    clip_ids = validation["clip_id"] if "clip_id" in dataset.column_names else validation_rows.tolist()
    info.update(grouped_by=grouped_by or "none (clips, stratified by label)", clips=list(clip_ids),
                groups=sorted(names[g] for g in chosen) if groups is not None else None,
                num_train=int(len(train_rows)), num_validation=int(len(validation_rows)))
    return dataset.select(train_rows.tolist()), validation, info


def _largest_remainder(totals: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` shared out between the classes in proportion to `totals` (Hamilton's method; equal remainders go
    to the larger class, then in an order drawn from `rng`)."""
    share = count * totals / totals.sum()
    target = np.floor(share).astype(np.int64)
    tie = rng.permutation(len(totals))
    ranked = sorted(range(len(totals)), key=lambda c: (-(share[c] - target[c]), -totals[c], tie[c]))
    for c in ranked[: count - int(target.sum())]:
        target[c] += 1
    return target


def _name(label_names, index: int):
    return label_names[index] if label_names is not None and index < len(label_names) else int(index)


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
