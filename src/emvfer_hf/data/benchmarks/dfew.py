"""DFEW (Jiang et al., ACM MM 2020): 16,372 film clips, 7 classes, 5-fold cross-validation (docs/datasets.md §DFEW).

Layout::

    DFEW/Clip/clip_224x224/<id>/<id>_<k>.jpg                face-aligned frame folders (also clip_224x224_16f, ...)
    DFEW/EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv      "video_name,label" (labels 1..7)

The split files are read by :func:`read_dfew_split`, the layout by :func:`load_dfew`, and :class:`DFEWBenchmark`
writes the same layout for the sample data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import datasets
import numpy as np
import pandas as pd

from .._media import write_jpgs
from .._utils import PathLike, find_child, find_path, require_dir, require_file
from ..labels import LABELS
from ..sample_data import Domain, SampleWriter, class_plan, clip_rng, fold_of, identity_name, render_clip
from .base import Benchmark, register
from .common import (
    NUM_FOLDS,
    base_features,
    check_fold,
    finish_labels,
    fold_dict,
    media_in,
    to_int,
    train_test_rows,
)

DFEW_NUM_CLASSES = 7
DFEW_FRAME_VARIANTS = ("clip_224x224", "clip_224x224_16f", "clip_224x224_avi", "original")
#: The class names of the official README's ids 1..7, as the release's annotation sheet spells them
DFEW_ANNOTATION_NAMES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")


def read_dfew_split(csv_path: PathLike) -> pd.DataFrame:
    """Parse a DFEW split file ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv``.

    The file has the header ``video_name,label``; ids are plain integers (``1``), labels 1-based (1 Happy ... 7 Fear,
    docs/datasets.md §DFEW). A file without header is accepted too.

    Returns:
        DataFrame with ``clip_id`` (5-digit zero-padded string, the frame-folder name), ``video_name`` (int),
        ``label`` (0-based, order ``LABELS["dfew"]``) and ``label_name``.
    """
    path = require_file(csv_path, "DFEW split")
    df = pd.read_csv(path, dtype=str, header=None, sep=None, engine="python")
    if df.empty:
        raise ValueError(f"{path}: empty split file")
    if str(df.iloc[0, 0]).strip().lower() in ("video_name", "videoname", "video", "name"):
        header = [str(c).strip().lower() for c in df.iloc[0]]
        df = df.iloc[1:].copy()
        df.columns = header
        vid_col, lab_col = "video_name" if "video_name" in header else header[0], "label" if "label" in header else header[1]
    else:
        vid_col, lab_col = 0, 1
    names = LABELS["dfew"]
    rows = []
    for i, (vid, lab) in enumerate(zip(df[vid_col], df[lab_col]), start=2):
        vid_i = to_int(Path(str(vid)).stem, path, "video_name", i)
        lab_i = to_int(lab, path, "label", i)
        if not 1 <= lab_i <= DFEW_NUM_CLASSES:
            raise ValueError(f"{path}: row {i}: label {lab_i} outside 1..{DFEW_NUM_CLASSES}")
        rows.append({"clip_id": f"{vid_i:05d}", "video_name": vid_i, "label_name": names[lab_i - 1]})
    return finish_labels(pd.DataFrame(rows), names, path)


def _split_file(root: Path, part: str, fold: int) -> Path:
    split_root = find_child(root, "EmoLabel_DataSplit", kind="dir")
    if split_root is None:
        raise FileNotFoundError(f"DFEW: {root / 'EmoLabel_DataSplit'} does not exist")
    folder = find_child(split_root, f"{part}(single-labeled)", f"{part}(single_labeled)", kind="dir")
    if folder is None:
        raise FileNotFoundError(f"DFEW: neither '{part}(single-labeled)' nor '{part}(single_labeled)' in {split_root}")
    path = find_child(folder, f"set_{fold}.csv", f"set{fold}.csv", kind="file")
    if path is None:
        raise FileNotFoundError(f"DFEW: split file {folder / f'set_{fold}.csv'} does not exist")
    return path


def load_dfew(
    root: PathLike, fold: int = 1, frames: str = "clip_224x224", missing: str = "raise"
) -> datasets.DatasetDict:
    """DFEW, 5-fold cross-validation (``train``/``test`` of ``fold``; the peers use no validation set).

    Args:
        root: the ``DFEW`` folder (with ``Clip/`` and ``EmoLabel_DataSplit/``).
        fold: 1..5.
        frames: which media under ``Clip/``: ``"clip_224x224"`` (face-aligned frame folders, default),
            ``"clip_224x224_16f"`` (TIM 16 frames), ``"clip_224x224_avi"`` or ``"original"`` (``<id>.mp4``).
        missing: ``"raise"`` or ``"skip"`` for clips of the split file absent on disk.
    """
    root = require_dir(root, "DFEW root")
    check_fold(fold, "load_dfew")
    if frames not in DFEW_FRAME_VARIANTS:
        raise ValueError(f"load_dfew: frames must be one of {DFEW_FRAME_VARIANTS}, got {frames!r}")
    media_root = find_path(root, ["Clip", frames], kind="dir")
    if media_root is None:
        raise FileNotFoundError(f"DFEW: media folder {root / 'Clip' / frames} does not exist")

    def resolve(rec):
        return media_in(media_root, rec["clip_id"]) or media_in(media_root, str(rec["video_name"]))

    rows = train_test_rows(lambda split: _split_file(root, split, fold), read_dfew_split, resolve, missing)
    return fold_dict(rows, base_features(LABELS["dfew"]), f"DFEW fold {fold}")


class DFEWBenchmark(Benchmark):
    """DFEW: 7 classes, 5 folds, scored per clip (WAR, UAR)."""

    name, title, folder = "dfew", "DFEW", "DFEW"
    label_sets = {"": "dfew"}
    loader = staticmethod(load_dfew)
    evaluation = "folds"
    sample_stream, sample_test_split = 1, True  # its "gap" sample set has a test split of its own

    def write_sample(self, root: Path, writer: SampleWriter, clips_per_class, num_frames, size, noise, seed,
                     domain: Optional[Domain] = None, test_cpc: int = 0) -> None:
        """The DFEW layout; with a ``domain`` (the "gap" world) ``clips_per_class`` labelled training clips and
        ``test_cpc`` test clips per class, the same split written as every fold."""
        names = LABELS["dfew"]
        cpc = clips_per_class
        split_rows = {f: {"train": [], "test": []} for f in range(1, NUM_FOLDS + 1)}
        ann = []
        vid = 0
        for i, (k, name) in enumerate(class_plan(names, cpc + (test_cpc if domain else 0))):
            vid += 1 if i % 6 else 2  # ids have gaps, as in the release (clips without a detected face are gone)
            rng = clip_rng(seed, self.sample_stream, i)
            person = i % domain.identities if domain else 0
            clip = render_clip(name, rng, num_frames, size, noise, domain=domain, identity=person)
            cid = f"{vid:05d}"
            write_jpgs(root / "Clip" / "clip_224x224" / cid, clip.frames,
                       [f"{cid}_{n + 1:05d}.jpg" for n in range(num_frames)])
            pick = np.linspace(0, num_frames - 1, 16).round().astype(int)  # TIM stand-in: 16 frames
            write_jpgs(root / "Clip" / "clip_224x224_16f" / cid, [clip.frames[j] for j in pick],
                       [f"{cid}_{n + 1}.jpg" for n in range(16)])
            label = names.index(name) + 1
            test_fold = fold_of(k, label - 1) if domain is None else None
            for f in range(1, NUM_FOLDS + 1):
                is_test = f == test_fold if domain is None else k >= cpc
                split_rows[f]["test" if is_test else "train"].append((vid, label))
            votes = {n: 0 for n in names}
            votes[name] = 8
            ann.append({"order": vid, **{f"{j + 1}{n}": votes[m] for j, (n, m) in
                                         enumerate(zip(DFEW_ANNOTATION_NAMES, names))},
                        "clip_name": cid, "annotation": label})
            if domain is None:
                writer.add(cid, name, clip, test_fold=test_fold)
            else:
                writer.add(cid, name, clip, split="test" if k >= cpc else "train",
                           identity=identity_name(domain, person))
        for f, parts in split_rows.items():
            for part, pairs in parts.items():
                d = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)"
                d.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(pairs, columns=["video_name", "label"]).to_csv(d / f"set_{f}.csv", index=False)
        (root / "Annotation").mkdir(exist_ok=True)
        pd.DataFrame(ann).to_excel(root / "Annotation" / "annotation.xlsx", index=False)
        (root / "README.md").write_text("DFEW sample data (synthetic) in the layout of the official release.\n")


DFEW = register(DFEWBenchmark())
