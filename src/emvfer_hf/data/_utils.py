"""Small helpers shared by the annotation parsers and the loaders: tolerant path lookup, natural sort, errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from ..video_io_mert import natural_frame_key

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def frame_number(path: PathLike) -> int:
    """The frame index encoded in a frame file name (the last integer of the stem), or -1."""
    return natural_frame_key(path)[0]


def require_dir(path: PathLike, what: str) -> Path:
    """Return ``path`` as a Path, raising ``FileNotFoundError`` (naming ``what``) when it is not a directory."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: directory {str(path)!r} does not exist")
    return path


def require_file(path: PathLike, what: str) -> Path:
    """Return ``path`` as a Path, raising ``FileNotFoundError`` (naming ``what``) when it is not a file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file {str(path)!r} does not exist")
    return path


def find_child(parent: PathLike, *names: str, case_insensitive: bool = True, kind: str = "any") -> Optional[Path]:
    """The first existing child of ``parent`` among ``names`` (in order), matched case-insensitively if needed.

    Args:
        kind: ``"dir"``, ``"file"`` or ``"any"``.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return None

    def ok(p: Path) -> bool:
        return p.is_dir() if kind == "dir" else p.is_file() if kind == "file" else p.exists()

    for name in names:
        cand = parent / name
        if ok(cand):
            return cand
    if case_insensitive:
        lowered = {}
        for child in parent.iterdir():
            lowered.setdefault(child.name.lower(), child)
        for name in names:
            cand = lowered.get(name.lower())
            if cand is not None and ok(cand):
                return cand
    return None


def find_path(root: PathLike, parts: Sequence[str], kind: str = "any") -> Optional[Path]:
    """Walk ``root/parts[0]/parts[1]/...`` matching each part case-insensitively; None when a part is missing."""
    cur = Path(root)
    for i, part in enumerate(parts):
        cur = find_child(cur, part, kind="dir" if i < len(parts) - 1 else kind)
        if cur is None:
            return None
    return cur


def find_file_glob(root: PathLike, patterns: Iterable[str], what: str) -> Path:
    """The first file matching one of the glob ``patterns`` under ``root`` (recursive patterns allowed)."""
    root = Path(root)
    for pattern in patterns:
        hits = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("~$"))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"{what}: no file matching {list(patterns)} under {str(root)!r}")


def handle_missing(missing: List[str], total: int, source: PathLike, policy: str) -> None:
    """Apply the ``missing=`` policy of the loaders to the clips of ``source`` not found on disk.

    Args:
        missing: ids of the clips whose media are absent.
        total: number of clips the annotation names.
        policy: ``"raise"`` (default of every loader) or ``"skip"`` (log a warning, keep the others).
    """
    if policy not in ("raise", "skip"):
        raise ValueError(f"missing must be 'raise' or 'skip', got {policy!r}")
    if not missing:
        return
    head = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    msg = f"{source}: {len(missing)} of {total} clips named there are missing on disk ({head})"
    if policy == "raise":
        raise FileNotFoundError(msg + "; pass missing='skip' to continue without them")
    logger.warning(msg + "; skipping them")


def check_nonempty(n: int, what: str) -> None:
    """Raise ``ValueError`` (naming ``what``) when ``n`` is 0: a fold or split without samples."""
    if n == 0:
        raise ValueError(f"{what}: no samples (empty fold or split)")
