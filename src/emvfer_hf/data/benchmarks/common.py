"""Pieces every benchmark module builds on: reading annotation tables (cells as text, tolerant column names, errors
that name the file and row), resolving media on disk, and turning rows into ``datasets`` splits (k folds, a fixed
split, leave one subject out).

Every annotation parser returns a ``pandas.DataFrame`` with an integer ``label`` column (index into the protocol's
class order of :data:`emvfer_hf.data.labels.LABELS`) and a ``label_name`` column, plus the data set's own keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import datasets
import pandas as pd

from ...video_io_mert import IMAGE_EXTENSIONS
from .._utils import VIDEO_EXTENSIONS, PathLike, check_nonempty, find_child, handle_missing

#: The k of the k-fold protocols (DFEW, MAFW and EMER are each released with 5 folds; docs/datasets.md)
NUM_FOLDS = 5


# ------------------------------------------------------------------------------------------------ annotation tables
def check_protocol(protocol: str, allowed, what: str) -> str:
    """``protocol`` written as the parsers key it (``"3-class"`` → ``"3class"``); a ``ValueError`` naming ``what``
    when it is not one of ``allowed``."""
    protocol = str(protocol).lower().replace("-", "").replace("_", "")
    if protocol not in allowed:
        raise ValueError(f"{what}: unknown protocol {protocol!r}; expected one of {list(allowed)}")
    return protocol


def read_table(path: Path, **kwargs) -> pd.DataFrame:
    """Read a csv/tsv/txt or xls(x) table with every cell as text."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls"):
        return pd.read_excel(path, dtype=str, **kwargs)
    sep = "\t" if suffix == ".tsv" else ","
    return pd.read_csv(path, dtype=str, sep=sep, **kwargs)


def to_int(value, path: Path, column: str, row: int, default: Optional[int] = None) -> int:
    """Cast a text cell ('46', '46.0', ' 46 ') to int; non-numeric cells (e.g. '/') give ``default`` or raise."""
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        if default is not None:
            return default
        raise ValueError(f"{path}: row {row}: column {column!r} holds {value!r}, expected an integer") from None


def find_column(df: pd.DataFrame, candidates, path: Path, required: bool = True) -> Optional[str]:
    """The first column of ``df`` whose normalised name equals one of ``candidates`` (case/blank-insensitive)."""
    norm = {re.sub(r"[\s_]+", "", str(c)).lower(): c for c in df.columns}
    for cand in candidates:
        key = re.sub(r"[\s_]+", "", cand).lower()
        if key in norm:
            return norm[key]
    if required:
        raise ValueError(f"{path}: none of the columns {list(candidates)} found (columns: {list(df.columns)})")
    return None


def finish_labels(df: pd.DataFrame, names, path: Path) -> pd.DataFrame:
    """A parser's result: ``label`` (index of ``label_name`` in ``names``), ``attrs`` ``class_names`` and
    ``source``; a ``ValueError`` when no row is left."""
    if df.empty:
        raise ValueError(f"{path}: no samples (empty file, or every row excluded by the protocol)")
    df = df.reset_index(drop=True)
    df["label"] = [names.index(n) for n in df["label_name"]]
    df.attrs["class_names"] = tuple(names)
    df.attrs["source"] = str(path)
    return df


# ------------------------------------------------------------------------------------------------------- media
def check_fold(fold: int, what: str, num_folds: int = NUM_FOLDS) -> int:
    """``fold`` when it is an integer in 1..``num_folds``; a ``ValueError`` naming ``what`` otherwise."""
    if not isinstance(fold, int) or not 1 <= fold <= num_folds:
        raise ValueError(f"{what}: fold must be an integer in 1..{num_folds}, got {fold!r}")
    return fold


def has_media(path: Optional[Path]) -> bool:
    """Whether ``path`` is a folder holding images or a non-empty file."""
    if path is None or not path.exists():
        return False
    if path.is_dir():
        return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())
    return path.stat().st_size > 0


def media_in(folder: Optional[Path], clip_id: str) -> Optional[Path]:
    """``folder/<clip_id>`` as a frame folder or ``folder/<clip_id>.<video ext>``, case-insensitively."""
    if folder is None:
        return None
    return find_child(folder, clip_id, *(clip_id + ext for ext in VIDEO_EXTENSIONS))


def resolve_rows(df: pd.DataFrame, resolve, source: PathLike, missing: str) -> List[dict]:
    """Attach ``video`` to each annotation row via ``resolve(row) -> Path | None``; apply the missing policy
    (:func:`emvfer_hf.data._utils.handle_missing`)."""
    rows, absent = [], []
    for rec in df.to_dict("records"):
        media = resolve(rec)
        if not has_media(media):
            absent.append(str(rec["clip_id"]))
            continue
        rec["video"] = str(media)
        rows.append(rec)
    handle_missing(absent, len(df), source, missing)
    return rows


def train_test_rows(split_file, reader, resolve, missing: str) -> Dict[str, List[dict]]:
    """The rows of the ``train`` and ``test`` split files of one fold: ``split_file(split) -> Path``,
    ``reader(path) -> DataFrame`` (an annotation parser), media by ``resolve`` (:func:`resolve_rows`)."""
    out = {}
    for split in ("train", "test"):
        path = split_file(split)
        out[split] = resolve_rows(reader(path), resolve, path, missing)
    return out


# ---------------------------------------------------------------------------------------------------- splits
def base_features(names: Sequence[str], subject: bool = False, **extra) -> datasets.Features:
    """The columns every loader returns (``clip_id``, ``video``, ``subject`` where asked, ``extra``, ``label`` as a
    ``ClassLabel`` of ``names``)."""
    feats = {"clip_id": datasets.Value("string"), "video": datasets.Value("string")}
    if subject:
        feats["subject"] = datasets.Value("string")
    feats.update(extra)
    feats["label"] = datasets.ClassLabel(names=list(names))
    return datasets.Features(feats)


def to_dataset(rows: List[dict], features: datasets.Features, what: str) -> datasets.Dataset:
    """A ``datasets.Dataset`` of ``rows`` (the columns of ``features``); a ``ValueError`` when there is none."""
    check_nonempty(len(rows), what)
    cols = {k: [r[k] for r in rows] for k in features}
    return datasets.Dataset.from_dict(cols, features=features)


def fold_dict(rows_by_split: Dict[str, List[dict]], features, what: str) -> datasets.DatasetDict:
    """A ``DatasetDict`` with one split per key of ``rows_by_split``."""
    return datasets.DatasetDict({k: to_dataset(v, features, f"{what} [{k}]") for k, v in rows_by_split.items()})


def loso_dict(rows: List[dict], features, test_subject: Optional[str], what: str) -> datasets.DatasetDict:
    """``all`` (no ``test_subject``) or the ``train``/``test`` split holding ``test_subject`` out (matched
    case-insensitively)."""
    if test_subject is None:
        return datasets.DatasetDict({"all": to_dataset(rows, features, what)})
    key = str(test_subject).lower()
    test = [r for r in rows if r["subject"].lower() == key]
    if not test:
        raise ValueError(f"{what}: test_subject {test_subject!r} has no sample "
                         f"(subjects: {sorted({r['subject'] for r in rows})[:10]}...)")
    train = [r for r in rows if r["subject"].lower() != key]
    return fold_dict({"train": train, "test": test}, features, what)


def loso_splits(
    dataset: Union[datasets.Dataset, datasets.DatasetDict], subject_column: str = "subject"
) -> Iterator[Tuple[str, datasets.DatasetDict]]:
    """Leave-one-subject-out: yield ``(subject, DatasetDict(train=..., test=...))`` for every subject, in natural
    order (``sub2`` before ``sub10``). A ``DatasetDict`` must hold a single split (e.g. ``["all"]``)."""
    if isinstance(dataset, datasets.DatasetDict):
        if len(dataset) != 1:
            raise ValueError(f"loso_splits: pass one split, got a DatasetDict with {list(dataset)}")
        dataset = next(iter(dataset.values()))
    if subject_column not in dataset.column_names:
        raise ValueError(f"loso_splits: the dataset has no {subject_column!r} column ({dataset.column_names})")
    subjects = dataset[subject_column]
    check_nonempty(len(subjects), "loso_splits")

    def key(s):
        nums = re.findall(r"\d+", s)
        return (re.sub(r"\d+", "", s).lower(), int(nums[-1]) if nums else -1, s)

    for subject in sorted(set(subjects), key=key):
        test_idx = [i for i, s in enumerate(subjects) if s == subject]
        train_idx = [i for i, s in enumerate(subjects) if s != subject]
        yield subject, datasets.DatasetDict({"train": dataset.select(train_idx), "test": dataset.select(test_idx)})
