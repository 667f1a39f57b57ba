"""The files the `emvfer` commands write: never an input, checked before any work, written so that nothing is lost.

- :func:`check_outputs` resolves every output path (symlinks followed, hard links compared by inode) and refuses one
  that is an input, lies inside an input frame folder, is another output or a folder, or cannot be written, with a
  message naming the option and the path, before any work starts.
- :func:`atomic_output` writes a file under its partial name (``NAME.partial.EXT``) and renames it to ``NAME.EXT`` once
  complete: a file under its final name is always complete. Cut short, it is removed or kept under the partial name.
- :class:`RowWriter` appends table rows to a CSV (or Parquet) file as they come (flushed each time), in the same way;
  cut short, the rows so far are kept under the final name with a last row giving the reason, as for a stream that
  ended early.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, os.PathLike]


def real_path(path: PathLike) -> Path:
    """The absolute path with every symlink followed (also for a file that does not exist yet)."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def partial_path(path: PathLike) -> Path:
    """Where a file is written before it is complete: ``NAME.partial.EXT`` next to ``NAME.EXT``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    if real_path(a) == real_path(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_writable(path: PathLike, label: str = "output") -> Path:
    """Create the folder of ``path`` and check that a file can be written there (and over ``path`` where it exists);
    a ``ValueError`` naming the option and the path otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{label} {path}: is a folder; give a file name")
    folder = real_path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".emvfer-write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"{label} {path}: cannot be written ({error.strerror or error})") from error
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{label} {path}: the file exists and cannot be overwritten (no write permission)")
    return path


def check_outputs(inputs: dict, outputs: dict) -> dict[str, Path]:
    """Check the output paths of a command before it does any work.

    Args:
        inputs: ``{description: path}`` of what the command reads (None entries are skipped).
        outputs: ``{option: path}`` of what it writes (None entries are skipped).
    Returns:
        ``{option: Path}`` of the outputs given.
    Raises:
        ValueError: an output (or its partial name) is an input (the same file through any symlink or hard link),
            lies inside an input frame folder, is the same file as another output, is a folder, or cannot be written;
            the message names the option and the path.
    """
    ins = {label: Path(p) for label, p in inputs.items() if p is not None}
    outs = {label: Path(p) for label, p in outputs.items() if p is not None}
    checked: dict[str, Path] = {}
    for label, out in outs.items():
        for what, source in ins.items():
            if _same_file(out, source):
                raise ValueError(f"{label} {out}: this is the {what} {source}; an output never overwrites an input "
                                 "(choose another file name)")  # fmt: skip
            if _same_file(partial_path(out), source):
                raise ValueError(f"{label} {out}: it is written first as {partial_path(out)}, which is the {what} "
                                 f"{source} (choose another file name)")  # fmt: skip
            if source.is_dir() and real_path(source) in real_path(out).parents:
                raise ValueError(f"{label} {out}: this is inside the {what} {source} (the frame folder being read); "
                                 "write it elsewhere")  # fmt: skip
        for other, seen in checked.items():
            if _same_file(out, seen):
                raise ValueError(f"{label} {out}: the same file as {other} {seen}; give each output its own file")
        checked[label] = check_writable(out, label)
    return checked


@contextmanager
def atomic_output(path: PathLike, keep_partial: bool = False):
    """Yield the path to write ``path``'s content to (its partial name, same suffix, so writers that go by the suffix
    still work); on success it is renamed to ``path``. On any error or interrupt the partial file is removed, or with
    ``keep_partial`` left under its partial name (an annotated video cut short: it plays, and says it is partial)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = partial_path(path)
    try:
        yield temporary
    except BaseException:
        if temporary.exists() and not keep_partial:
            temporary.unlink()
        raise
    os.replace(temporary, path)


class RowWriter:
    """Table rows appended to a CSV or Parquet file as they come, so that an interrupt loses nothing.

    The rows go to ``NAME.partial.EXT`` (created at once: writability is checked before any work), which becomes
    ``path`` on :meth:`close`. Left by an exception (``with RowWriter(...)``) or :meth:`abort`, the rows so far are kept
    under ``path`` with a last row whose ``reason`` column (the last column where there is none) says why; with no row
    written, no file is left.

    A CSV (any name but ``*.parquet``) is flushed to disk after each batch: a process killed outright leaves its rows
    in the partial file. A Parquet file gets one row group per batch and can be read once closed; its column types
    are fixed: ``TEXT_COLUMNS`` strings, ``track_id`` integers, the others floating point.

    Args:
        path: the CSV or Parquet file.
        columns: the columns, in order (default: those of the first batch).
    """

    #: the columns a Parquet file stores as text (a timeline's); every other column but ``track_id`` is a float
    TEXT_COLUMNS = ("label", "blink_times_s", "reason")

    def __init__(self, path: PathLike, columns: Optional[list] = None):
        self.path = Path(path)
        self.columns = None if columns is None else list(columns)
        self.temporary = partial_path(self.path)
        self.parquet = self.path.suffix.lower() == ".parquet"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.temporary, "wb" if self.parquet else "w", newline=None if self.parquet else "",
                           encoding=None if self.parquet else "utf-8")  # fmt: skip
        self.writer = None  # the pyarrow ParquetWriter, from the first batch
        self.rows = 0
        self.closed = False

    def write(self, rows) -> None:
        """Append rows (a DataFrame, or a list of dicts) and flush them to disk."""
        import pandas as pd

        table = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=self.columns)
        if not len(table):
            return
        if self.columns is None:
            self.columns = list(table.columns)
        table = table.reindex(columns=self.columns)
        if self.parquet:
            self._write_parquet(table)
        else:
            table.to_csv(self.handle, header=self.rows == 0, index=False)
        self.rows += len(table)
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def _write_parquet(self, table) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        typed = {}
        for name in self.columns:
            column = table[name]
            if name in self.TEXT_COLUMNS:
                typed[name] = column.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
            elif name == "track_id":
                typed[name] = pd.to_numeric(column, errors="coerce").fillna(-1).astype("int64")
            else:
                typed[name] = pd.to_numeric(column, errors="coerce").astype("float64")
        batch = pa.Table.from_pandas(pd.DataFrame(typed), preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.handle, batch.schema)
        self.writer.write_table(batch.cast(self.writer.schema))

    def close(self) -> Path:
        """Finish the file: it takes its final name."""
        if not self.closed:
            self.closed = True
            if self.writer is not None:
                self.writer.close()
            self.handle.close()
            os.replace(self.temporary, self.path)
        return self.path

    def abort(self, reason: str) -> Optional[Path]:
        """Stop early: keep the rows so far under the final name with a last row giving ``reason`` (no file when no
        row was written). Returns the path kept, or None."""
        if self.closed:
            return self.path
        if not self.rows:
            self.closed = True
            self.handle.close()
            self.temporary.unlink(missing_ok=True)
            return None
        key = "reason" if "reason" in self.columns else self.columns[-1]
        row = {"track_id": -1, key: reason} if "track_id" in self.columns else {key: reason}
        self.write([row])
        return self.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            self.close()
        else:
            what = "interrupted" if issubclass(kind, KeyboardInterrupt) else f"failed: {kind.__name__}: {error}"
            self.abort(f"{what} (the rows before it are kept)")
        return False


__all__ = ["RowWriter", "atomic_output", "check_outputs", "check_writable", "partial_path", "real_path"]
