"""MAFW (Liu et al., ACM MM 2022): 10,045 clips, the single-label 11-class protocol, 5-fold cross-validation
(docs/datasets.md §MAFW).

Layout::

    MAFW/data/clips/<id>.mp4                                  (or the frame folders data/frames/<id>/)
    MAFW/Train & Test Set/single/no_caption/set_<k>/{train,test}.txt      "<id>.mp4 <label>" per line

The split files are read by :func:`read_mafw_split`, the layout by :func:`load_mafw`, and :class:`MAFWBenchmark`
writes the same layout for the sample data.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd

from .._media import write_mp4
from .._utils import PathLike, find_child, find_path, require_dir, require_file
from ..labels import LABELS, normalize_label_string
from ..sample_data import SampleWriter, class_plan, clip_rng, fold_of, render_clip
from .base import Benchmark, register
from .common import NUM_FOLDS, base_features, check_fold, finish_labels, fold_dict, media_in, train_test_rows


def read_mafw_split(txt_path: PathLike) -> pd.DataFrame:
    """Parse a MAFW split file ``Train & Test Set/single/no_caption/set_<k>/{train,test}.txt``.

    Lines are ``<clip>.mp4 <label>`` (space-separated); ``with_caption`` files (tab-separated, extra caption fields,
    gb18030 encoding) are read too, only the first two fields are used. Compound labels (``anger_disgust``) are
    rejected: this parser serves the single-label protocol.

    Returns:
        DataFrame with ``clip_id`` (``"00025"``), ``filename`` (``"00025.mp4"``), ``label`` (order ``LABELS["mafw"]``)
        and ``label_name``.
    """
    path = require_file(txt_path, "MAFW split")
    raw = path.read_bytes()
    for enc in ("utf-8", "gb18030", "cp1252"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    names = LABELS["mafw"]
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            raise ValueError(f"{path}: line {i}: expected '<clip>.mp4 <label>', got {line!r}")
        filename = parts[0].strip()
        label = normalize_label_string(parts[1], names, source=f"{path}: line {i}")
        rows.append({"clip_id": Path(filename).stem, "filename": filename, "label_name": label})
    return finish_labels(pd.DataFrame(rows), names, path)


def load_mafw(root: PathLike, fold: int = 1, missing: str = "raise") -> datasets.DatasetDict:
    """MAFW single-label 11-class protocol, 5-fold (``Train & Test Set/single/no_caption/set_<k>``).

    Media: ``data/clips/<id>.mp4``, else the frame folder ``data/frames/<id>/``.
    """
    root = require_dir(root, "MAFW root")
    check_fold(fold, "load_mafw")
    set_dir = find_path(root, ["Train & Test Set", "single", "no_caption", f"set_{fold}"], kind="dir")
    if set_dir is None:
        raise FileNotFoundError(f"MAFW: split folder {root / 'Train & Test Set/single/no_caption' / f'set_{fold}'} "
                                "does not exist")
    clips, frames = find_path(root, ["data", "clips"], kind="dir"), find_path(root, ["data", "frames"], kind="dir")

    def resolve(rec):
        return media_in(clips, rec["clip_id"]) or media_in(frames, rec["clip_id"])

    def split_file(split):
        path = find_child(set_dir, f"{split}.txt", kind="file")
        if path is None:
            raise FileNotFoundError(f"MAFW: split file {set_dir / f'{split}.txt'} does not exist")
        return path

    out = train_test_rows(split_file, read_mafw_split, resolve, missing)
    return fold_dict(out, base_features(LABELS["mafw"]), f"MAFW fold {fold}")


class MAFWBenchmark(Benchmark):
    """MAFW: 11 classes (single-label), 5 folds, scored per clip (WAR, UAR)."""

    name, title, folder = "mafw", "MAFW", "MAFW"
    label_sets = {"": "mafw"}
    evaluation = "folds"
    sample_stream = 2
    loader = staticmethod(load_mafw)

    def write_sample(self, root: Path, writer: SampleWriter, clips_per_class, num_frames, size, noise, seed) -> None:
        """The MAFW layout: mp4 clips (faces not cropped), the single/no_caption split files, the label sheet."""
        names = LABELS["mafw"]
        splits = {f: {"train": [], "test": []} for f in range(1, NUM_FOLDS + 1)}
        single = []
        for i, (k, name) in enumerate(class_plan(names, clips_per_class)):
            rng = clip_rng(seed, self.sample_stream, i)
            clip = render_clip(name, rng, num_frames, size, noise, face_scale=0.7)  # frames are not face-cropped
            cid = f"{19 + 3 * i:05d}"
            write_mp4(root / "data" / "clips" / f"{cid}.mp4", clip.frames)
            test_fold = fold_of(k, names.index(name))
            for f in range(1, NUM_FOLDS + 1):
                splits[f]["test" if f == test_fold else "train"].append(f"{cid}.mp4 {name}")
            single.append({"clip": cid, **{n: int(n == name) * 11 for n in names},
                           "single_label": names.index(name) + 1})
            writer.add(cid, name, clip, test_fold=test_fold)
        for f, parts in splits.items():
            d = root / "Train & Test Set" / "single" / "no_caption" / f"set_{f}"
            d.mkdir(parents=True, exist_ok=True)
            for part, lines in parts.items():
                (d / f"{part}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / "Labels").mkdir(exist_ok=True)
        pd.DataFrame(single).to_excel(root / "Labels" / "single-set.xlsx", index=False)


MAFW = register(MAFWBenchmark())
