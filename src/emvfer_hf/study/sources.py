"""Are the two eye sources comparable? The tracker series and the visual series of the same clip, channel by channel.

EM-VFER pre-trains on eye-tracker series and fine-tunes / infers on series read from the video
(docs/design.md §Data flow, §Eye-movement format). Both must cover the same time span (the video's timeline) and
mean the same thing per channel. This module takes every clip that has both a tracker recording and a face video,
puts both series on the SAME time stamps and reports the per-channel Pearson correlation, per clip and pooled over
the clips.

- tracker series: exactly what pre-training feeds the model — `training.data.tracker_clip_series`: the recording
  from the video's first to its last frame, normalised over that span (`normalize_eye_movements`);
- visual series: `extract_eye_movements` over the whole video (one row per frame, t = frame index / fps), normalised
  over the clip (`normalize_eye_movements`, the same function);
- common time stamps: the video's frame times (the visual source's own rate: no invented visual samples); the tracker
  series is resampled to them (`EyeMovementSeries.resample_to_times`: continuous channels interpolated, behaviour
  nearest sample). Only rows valid in both are compared.

The only data here with BOTH a tracker and a video of the same eyes is the EMER-style sample data
(`emvfer_hf.data.make_sample_dataset("emer", root)`: rendered faces whose irises and pupils are drawn from the
same generated series that is written as the Tobii TSV). Real EMER has both too; none of the real recordings or real
face videos bundled for the tests do (they are different people and sessions).

    from emvfer_hf.study.sources import source_correlation
    table = source_correlation(out="docs/study/source_correlation.json")
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..eye_movement_mert import EYE_MOVEMENT_CHANNELS

#: the behaviour channel is fixation 0 / saccade 0.5 / blink 1 after normalisation: Pearson on it measures whether the
#: two sources agree on WHEN the eye blinks or jumps
CHANNELS = EYE_MOVEMENT_CHANNELS


def both_source_clips(root) -> list[dict]:
    """``{"clip_id", "video", "eye_tracking"}`` of every clip of an EMER-layout folder that has both a face video and
    an eye-tracker recording (all folds: the loader's train and test splits of fold 1)."""
    from ..data.benchmarks import load_emer

    splits = load_emer(root, fold=1, missing="skip")
    rows = []
    for split in splits.values():
        for row in split:
            if row.get("video") and row.get("eye_tracking"):
                rows.append({"clip_id": row["clip_id"], "video": row["video"], "eye_tracking": row["eye_tracking"]})
    return sorted(rows, key=lambda r: r["clip_id"])


def clip_sources(video: str, eye_tracking: str, extract: Optional[Callable] = None):
    """``(tracker, visual)`` normalised series of one clip, both on the video's timeline (see the module docstring).
    ``extract(video) -> EyeMovementSeries`` replaces the default visual extractor."""
    from ..eye_extraction_mert import extract_eye_movements
    from ..training.data import tracker_clip_series, video_timeline

    visual = (extract or (lambda v: extract_eye_movements(v, allow_no_face=True)))(str(video)).normalize()
    num_frames, fps = video_timeline(str(video))
    tracker = tracker_clip_series(str(eye_tracking), (num_frames - 1) / fps)
    return tracker, visual


def _pearson(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Pearson r, or None where either side is constant (r undefined) or there are fewer than 3 pairs."""
    if len(a) < 3 or np.std(a) < 1e-8 or np.std(b) < 1e-8:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = float(np.corrcoef(a, b)[0, 1])
    return r if np.isfinite(r) else None


def correlate_clips(clips: list[dict], extract: Optional[Callable] = None) -> dict:
    """Per-clip and pooled per-channel correlation of the two sources for ``clips`` (rows of
    :func:`both_source_clips`). Returns ``{"clips": {id: {...}}, "pooled": {channel: r}, "mean_per_clip": ...}``."""
    per_clip, pooled_t, pooled_v = {}, [], []
    for clip in clips:
        tracker, visual = clip_sources(clip["video"], clip["eye_tracking"], extract)
        times = visual.times_s
        on_frames = tracker.resample_to_times(times)
        both = on_frames.valid & visual.valid
        t_vals, v_vals = on_frames.values[both], visual.values[both]
        pooled_t.append(t_vals)
        pooled_v.append(v_vals)
        per_clip[clip["clip_id"]] = {
            "tracker_span_s": [round(float(tracker.times_s[0]), 6), round(float(tracker.times_s[-1]), 6)],
            "visual_span_s": [round(float(times[0]), 6), round(float(times[-1]), 6)],
            "tracker_samples": len(tracker), "frames": len(visual), "compared_rows": int(both.sum()),
            "correlation": {ch: _round(_pearson(t_vals[:, c], v_vals[:, c])) for c, ch in enumerate(CHANNELS)},
        }  # fmt: skip
    t_all, v_all = np.concatenate(pooled_t), np.concatenate(pooled_v)
    pooled = {ch: _round(_pearson(t_all[:, c], v_all[:, c])) for c, ch in enumerate(CHANNELS)}
    mean, defined = {}, {}
    for ch in CHANNELS:
        rs = [c["correlation"][ch] for c in per_clip.values() if c["correlation"][ch] is not None]
        mean[ch] = _round(float(np.mean(rs))) if rs else None
        defined[ch] = len(rs)
    return {"num_clips": len(per_clip), "num_rows": int(len(t_all)), "pooled": pooled, "mean_per_clip": mean,
            "clips_with_defined_r": defined, "clips": per_clip}  # fmt: skip


def _round(x: Optional[float], digits: int = 4) -> Optional[float]:
    return None if x is None else round(float(x), digits)


def source_correlation(root=None, clips_per_class: int = 4, out=None, extract: Optional[Callable] = None,
                       **sample_options) -> dict:  # fmt: skip
    """The correlation table of the two sources on the EMER-style sample data (written to ``root``, a temporary
    folder by default, with ``clips_per_class`` clips per class and ``sample_options`` for `make_sample_dataset`);
    written as JSON to ``out`` when given."""
    from ..data import make_sample_dataset

    root = Path(tempfile.mkdtemp(prefix="emvfer-sources-")) if root is None else Path(root)
    make_sample_dataset("emer", root, clips_per_class=clips_per_class, **sample_options)
    table = {
        "data": "EMER-style sample data (make_sample_dataset('emer'): rendered face videos + Tobii Pro Lab TSVs of "
                "the same generated eye series) — the only data here with a tracker and a video of the same eyes",
        "sample_options": {"clips_per_class": clips_per_class, **sample_options},
        "time_stamps": "the video's frame times; tracker resampled to them (continuous: linear, behaviour: nearest)",
        "normalisation": "normalize_eye_movements per clip for both (pupils z-scored, gaze clipped to [-1, 1], "
                         "behaviour code / 2)",
        **correlate_clips(both_source_clips(root), extract),
    }  # fmt: skip
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(table, indent=2) + "\n")
    return table


def markdown_table(table: dict) -> str:
    """Pooled and mean per-clip correlation per channel as a markdown table."""
    lines = ["| channel | pooled r | mean per-clip r (clips with r defined) |", "|---|---:|---:|"]
    for ch in CHANNELS:
        p, m = table["pooled"][ch], table["mean_per_clip"][ch]
        lines.append(f"| {ch} | {'—' if p is None else f'{p:.3f}'} | "
                     f"{'—' if m is None else f'{m:.3f}'} ({table['clips_with_defined_r'][ch]}/{table['num_clips']}) |")
    return "\n".join(lines)


__all__ = ["both_source_clips", "clip_sources", "correlate_clips", "markdown_table", "source_correlation"]


def visual_vs_truth(dataset, sample_root) -> dict:
    """How good the visual eye series of a generated sample split is: per channel, the Pearson r between the visual
    series the preprocessing cached for each clip (`eye_movements` of `preprocess_splits`) and the ground truth the
    clip was rendered from (`load_sample_eye_series`), both on the visual series' frame times (valid rows only).
    Returns ``{"num_clips", "mean_per_clip": {channel: r}, "pooled": {channel: r}}`` — r of the rows of all clips
    together, each clip's series z-scored first so that clips are comparable."""
    from ..data.sample_data import load_sample_eye_series
    from ..training.data import ClipDataset

    reader = ClipDataset(dataset, None, "visual")
    per_clip, pooled_t, pooled_v = [], [], []
    for row in dataset:
        visual = reader.eye_series(row)
        if visual is None or visual.valid.sum() < 3:
            continue
        truth = load_sample_eye_series(sample_root, row["clip_id"])[0].resample_to_times(visual.times_s)
        both = truth.valid & visual.valid
        t_vals, v_vals = truth.values[both].astype(np.float64), visual.values[both].astype(np.float64)
        per_clip.append([_pearson(t_vals[:, c], v_vals[:, c]) for c in range(len(CHANNELS))])

        def z(x):
            return (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)

        pooled_t.append(z(t_vals))
        pooled_v.append(z(v_vals))
    if not per_clip:
        return {"num_clips": 0, "mean_per_clip": {}, "pooled": {}}
    t_all, v_all = np.concatenate(pooled_t), np.concatenate(pooled_v)
    mean = {}
    for c, ch in enumerate(CHANNELS):
        rs = [r[c] for r in per_clip if r[c] is not None]
        mean[ch] = _round(float(np.mean(rs))) if rs else None
    return {"num_clips": len(per_clip), "mean_per_clip": mean,
            "pooled": {ch: _round(_pearson(t_all[:, c], v_all[:, c])) for c, ch in enumerate(CHANNELS)}}  # fmt: skip
