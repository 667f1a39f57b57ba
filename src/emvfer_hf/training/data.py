"""Training data: a dataset split (`datasets.Dataset` from `emvfer_hf.data`) → MERT inputs, clip by clip.

Where each clip's eye-movement series comes from is the only difference between the two stages (ARCHITECTURE §3):
- `eye_source="tracker"` (pre-training, EMER): the clip's eye-tracker recording (`eye_tracking` column) converted to
  the canonical series over the video's time line;
- `eye_source="visual"` (PEML fine-tuning, inference): the series read from the video itself — taken from the
  preprocessing cache when one is given, else extracted on the fly by the processor;
- `eye_source="none"`: no eye input (the video-only ablation).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)

EYE_SOURCES = ("tracker", "visual", "none")


def tracker_series(path: str):
    """The canonical series of an eye-tracker recording (any format `read_eye_tracking` reads), whole recording."""
    from ..eyetracking import read_eye_tracking

    return read_eye_tracking(path).to_series()


class ClipDataset(torch.utils.data.Dataset):
    """Processor inputs for each row of a dataset split.

    Args:
        dataset: a `datasets.Dataset` with at least `video` and `label` (and `eye_tracking` for the tracker source).
        processor: a `MERTVideoProcessor`.
        eye_source: "tracker", "visual" or "none" (see the module docstring).
        train: sample a random frame within each segment (seeded by `seed`, the epoch and the index, so a resumed
            run sees the same frames as an uninterrupted one).
        clip_cache: optional `clip_cache(video_path) -> dict` with `face_box` (4,) and `eye_series`
            (`EyeMovementSeries`), so that face detection and eye extraction do not run every epoch.
        seed: base seed of the training-time sampling.
    Items: `pixel_values` (T, 3, H, W), `eye_movement_values` (L, 5), `eye_movement_mask` (L,), `labels` (), `index` ().
    """

    def __init__(
        self,
        dataset,
        processor,
        eye_source: str = "visual",
        train: bool = False,
        clip_cache: Optional[Callable[[str], dict]] = None,
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
        self.clip_cache = clip_cache
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def eye_series(self, index: int):
        """The clip's canonical series for this dataset's eye source (None for "none", or when the processor should
        extract it)."""
        row = self.dataset[index]
        if self.eye_source == "tracker":
            if not row.get("eye_tracking"):
                raise ValueError(f"clip {row.get('clip_id', index)!r} has no eye-tracker recording")
            return tracker_series(row["eye_tracking"])
        if self.eye_source == "visual" and self.clip_cache is not None:
            return self.clip_cache(row["video"])["eye_series"]
        return None

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[index]
        kwargs = {}
        series = self.eye_series(index)
        if series is not None:
            kwargs["eye_movements"] = series
        elif self.eye_source == "none":
            kwargs["do_extract_eye_movements"] = False
        if self.clip_cache is not None:
            box = self.clip_cache(row["video"]).get("face_box")
            if box is not None and np.isfinite(box).all():
                kwargs["face_box"] = box
        if self.train:
            kwargs["do_train_sampling"] = True
            kwargs["sampling_seed"] = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        inputs = self.processor(row["video"], return_tensors="pt", **kwargs)
        item = {key: value[0] for key, value in inputs.items()}
        item["labels"] = torch.tensor(int(row["label"]), dtype=torch.long)
        item["index"] = torch.tensor(index, dtype=torch.long)
        return item


def collate_clips(items: list[dict]) -> dict:
    """Stack a list of `ClipDataset` items into a batch."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def clip_features(processor, video, extract_eyes: bool = True) -> dict:
    """What training needs to know of a clip once, from ONE processor pass: the square `face_box` (4,) of the clip
    (NaN when no face was found) and, with `extract_eyes`, its visual `eye_series` (`EyeMovementSeries`)."""
    out = processor(
        video, return_face_boxes=True, return_eye_series=extract_eyes, do_extract_eye_movements=extract_eyes,
        allow_no_face=True,
    )  # fmt: skip
    series = out["eye_series"][0] if extract_eyes else None
    if extract_eyes and (series is None or not series.valid.any()):
        logger.warning("%s: no face found; the clip trains with centre crops and no eye signal", video)
    return {"face_box": np.asarray(out["face_boxes"][0][0], dtype=np.float32), "eye_series": series}


def build_clip_cache(splits, processor, extract_eyes: bool, accelerator=None, cache_dir=None) -> Callable[[str], dict]:
    """Compute `clip_features` once for every clip of `splits` (datasets with a `video` column) and return the
    lookup `video -> features` used by `ClipDataset`, so face detection and eye extraction never run per epoch."""
    from tqdm.auto import tqdm

    videos = sorted({video for split in splits if split is not None for video in split["video"]})
    disable = accelerator is not None and not accelerator.is_local_main_process
    table = {}
    for video in tqdm(videos, desc="faces + eye movements" if extract_eyes else "faces", disable=disable):
        table[video] = clip_features(processor, video, extract_eyes)
    return table.__getitem__
