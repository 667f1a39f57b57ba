"""Readers for Tobii exports (Pro Lab TSV in both header styles, Pro Lab .xlsx, Pro SDK gaze-sample dicts/CSV) and
for SR Research EyeLink ``.edf`` files (optional extra ``eyelink``: the ``eyelinkio`` package).

All readers return an :class:`~emvfer_hf.eyetracking.EyeTrackingRecording`. They keep real recordings: a
timestamp that jumps back, repeats or is missing, and a row that does not parse (wrong number of fields, a line cut
short at the end of a truncated file, a timestamp that is not a number), cost only the samples concerned, with ONE
:class:`EyeTrackingDataWarning` per file naming the file, the samples and what was done. They raise ``ValueError``
naming the file and the column or problem when nothing usable remains (unreadable file, missing gaze columns, no
valid sample, no usable timestamp). Text exports are read in chunks of rows, keeping only the columns the recording
needs, and an error message never quotes more than a short excerpt of the file.
"""

from __future__ import annotations

import ast
import csv
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..eye_movement_mert import label_runs, runs
from .events import EVENT_COLUMNS, empty_events
from .recording import EyeTrackingRecording

PathLike = Union[str, os.PathLike]
DEFAULT_RESOLUTION = (1920.0, 1080.0)
# a run of "EyesNotFound" labels this long (ms) is a blink; longer is lost tracking
BLINK_MIN_MS, BLINK_MAX_MS = 50.0, 500.0
_MICRO = ("μs", "µs", "us")
_VALID_WORDS = {"valid", "1", "true", "0.0", "1.0"}
_QUOTE_CHARS = 120  # at most this much of a file's content is quoted in a message
_CHUNK_ROWS = 100_000  # rows parsed at a time
_CHUNK_BYTES = 1 << 22  # bytes scanned at a time when counting fields
_MAX_HEADER_BYTES = 1 << 20
# unit-less column names (see _base) a Pro Lab recording is built from; the reader keeps only these
_PROLAB_BASES = {
    "recording timestamp", "eyetracker timestamp", "computer timestamp", "sensor", "event", "gaze point x",
    "gaze point y", "gaze point left x", "gaze point left y", "gaze point right x", "gaze point right y",
    "pupil diameter left", "pupil diameter right", "pupil diameter filtered", "pupil diameter", "validity left",
    "validity right", "recording resolution width", "recording resolution height", "participant name",
    "recording name", "eye movement type",
}


class EyeTrackingDataWarning(UserWarning):
    """A recording was read with some samples dropped or repaired (the message names the file, the samples and what
    was done)."""


def _clip(text: object, limit: int = _QUOTE_CHARS) -> str:
    """``text`` for an error message: at most ``limit`` characters, with the full length when cut."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _which(indices: Sequence[int], noun: str = "sample", limit: int = 8) -> str:
    """``'samples 3, 17 and 40'`` / ``'sample 5'`` / ``'samples 1, 2, 3, ... (120 in all)'``: at most ``limit``
    numbers."""
    idx = [int(i) for i in indices]
    if len(idx) == 1:
        return f"{noun} {idx[0]}"
    if len(idx) <= limit:
        return f"{noun}s {', '.join(map(str, idx[:-1]))} and {idx[-1]}"
    return f"{noun}s {', '.join(map(str, idx[:limit]))}, ... ({len(idx)} in all)"


def _base(name: str) -> str:
    """Column name without its unit suffix, lower case: ``'Gaze point X [DACS px]'`` -> ``'gaze point x'``."""
    return re.sub(r"\s*[\[(].*$", "", str(name)).strip().lower()


def _suffix(name: str) -> str:
    m = re.search(r"[\[(]([^\])]*)[\])]", str(name))
    return m.group(1).strip() if m else ""


def _find_column(columns: Sequence[str], base: str, avoid: Sequence[str] = ()) -> Optional[str]:
    """The column whose unit-less name is ``base`` (case-insensitive); among several, the first whose unit
    contains none of ``avoid`` (e.g. prefer ``[DACS px]`` over ``(MCSnorm)``)."""
    hits = [c for c in columns if _base(c) == base]
    for c in hits:
        if not any(a in _suffix(c).lower() for a in avoid):
            return c
    return hits[0] if hits else None


def _numeric(series: pd.Series) -> np.ndarray:
    """Numbers from a column of strings with '.' or ',' decimals; empty or non-numeric cells become NaN."""
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64)
    s = series.astype(str).str.strip().str.replace(",", ".", regex=False)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)


def _nanmean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Element-wise mean of the finite entries of equally shaped arrays (NaN where none is finite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        return np.nanmean(np.stack(arrays), axis=0)


def _validity(series: pd.Series) -> np.ndarray:
    """``Valid``/``Invalid`` strings (or 1/0) to bool; Tobii's old numeric codes count 0 as valid only when the
    column holds codes 0-4."""
    s = series.astype(str).str.strip().str.lower()
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().any() and num.max() > 1:  # Tobii Studio codes: 0 = valid ... 4 = not found
        return (num == 0).to_numpy()
    return s.isin(_VALID_WORDS).to_numpy()


def _timestamps_ms(values: np.ndarray, column: str) -> np.ndarray:
    """Timestamps in ms from a column whose unit is in its suffix or inferred from the median step."""
    unit = _suffix(column).lower()
    if unit in ("ms",):
        scale = 1.0
    elif unit in _MICRO:
        scale = 1e-3
    elif unit == "s":
        scale = 1000.0
    else:  # 30-2000 Hz: a step of 0.5-33 means ms, 500-33000 means µs
        steps = np.diff(values[np.isfinite(values)])
        step = float(np.median(steps)) if len(steps) else 1.0
        scale = 1e-3 if step > 100 else 1.0
    return values * scale


def increasing_subsequence(t: np.ndarray) -> np.ndarray:
    """Mask of a longest strictly increasing subsequence of ``t`` (finite values; O(n log n) patience sorting).

    Keeping it drops the fewest samples that make the time stamps increase: a single stamp that jumps back or
    forward, or repeats, costs that one sample; after a clock reset the longer side is kept.
    """
    import bisect

    n = len(t)
    tails: list[float] = []  # smallest last value of an increasing run of each length
    tail_idx: list[int] = []
    parent = np.full(n, -1, dtype=np.int64)
    for i, v in enumerate(t.tolist()):
        k = bisect.bisect_left(tails, v)
        if k < len(tails) and tails[k] == v:  # a repeat: the earlier sample keeps its place
            continue
        if k == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[k] = v
            tail_idx[k] = i
        parent[i] = tail_idx[k - 1] if k else -1
    keep = np.zeros(n, dtype=bool)
    i = tail_idx[-1] if tail_idx else -1
    while i >= 0:
        keep[i] = True
        i = parent[i]
    return keep


def repair_timestamps(t: np.ndarray, column: str, source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Make a sample clock strictly increasing at the cost of the samples concerned only.

    - A run of missing stamps (empty cell) between two stamps whose spacing is that many nominal steps (median
      step, ±10 %) is repaired by linear interpolation; other missing stamps are dropped.
    - Stamps that repeat or jump back (or forward and back) are dropped: the samples kept are a longest strictly
      increasing subsequence (:func:`increasing_subsequence`).

    Args:
        t: (N,) stamps, NaN where missing.
    Returns:
        ``(t_kept, keep, notes)``: the kept stamps, the (N,) mask of kept samples, and one phrase per problem
        (empty when there was none) for the reader's warning.
    Raises:
        ValueError: fewer than two usable stamps.
    """
    t = np.asarray(t, dtype=np.float64).copy()
    n = len(t)
    notes: list[str] = []
    fin = np.isfinite(t)
    if fin.sum() < min(2, n):
        raise ValueError(f"{source}: column {column!r} has no usable timestamp ({int(fin.sum())} of {n} samples "
                         f"have one)")
    if not fin.all():
        steps = np.diff(t[fin])
        step = float(np.median(steps[steps > 0])) if (steps > 0).any() else np.nan
        repaired, dropped = [], []
        for a, b in runs(~fin):
            k = b - a + 1
            if 0 < a and b < n - 1 and np.isfinite(step):
                gap = (t[b + 1] - t[a - 1]) / (k + 1)
                if abs(gap - step) <= 0.1 * step:
                    t[a : b + 1] = t[a - 1] + gap * np.arange(1, k + 1)
                    repaired += range(a, b + 1)
                    continue
            dropped += range(a, b + 1)
        if repaired:
            notes.append(f"{_which(repaired)} had no timestamp in {column!r}: repaired from their neighbours")
        if dropped:
            notes.append(f"{_which(dropped)} had no timestamp in {column!r}: dropped")
    fin = np.isfinite(t)
    keep = fin.copy()
    if n > 1 and np.any(np.diff(t[fin]) <= 0):
        idx = np.flatnonzero(fin)
        mono = increasing_subsequence(t[idx])
        bad = idx[~mono]
        keep[bad] = False
        prev = np.maximum.accumulate(np.where(keep, t, -np.inf))  # the latest kept stamp before each sample
        earlier = np.concatenate([[-np.inf], prev[:-1]])
        repeats = [int(i) for i in bad if t[i] == earlier[i]]
        others = [int(i) for i in bad if t[i] != earlier[i]]
        if repeats:
            notes.append(f"{_which(repeats)} repeated the previous timestamp in {column!r}: dropped")
        if others:
            notes.append(f"{_which(others)} had a timestamp out of order in {column!r} (e.g. sample {others[0]}: "
                         f"{t[others[0]]:g} after {earlier[others[0]]:g}): dropped")
    if keep.sum() < min(2, n):
        raise ValueError(f"{source}: column {column!r} has no two increasing timestamps")
    return t[keep], keep, notes


def _warn_once(source: str, notes: Sequence[str], kept: int, total: int) -> None:
    """The reader's one warning for a file: what was dropped or repaired."""
    if notes:
        kept_text = f"kept {kept} of {total} eye-tracker samples" if kept < total else f"read {kept} samples"
        warnings.warn(f"{source}: {kept_text}; " + "; ".join(notes), EyeTrackingDataWarning, stacklevel=3)


def events_from_labels(timestamps_ms: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """Turn per-sample ``Eye movement type`` labels into an event table (``event``, ``onset_ms``, ``offset_ms``).

    ``Fixation``/``Saccade`` runs become fixations/saccades; ``EyesNotFound`` runs of 50-500 ms become blinks
    (longer ones are lost tracking, not events); ``Unclassified`` is dropped. Offsets are the last sample's time.
    """
    labels = pd.Series(labels).astype(str).str.strip().str.lower().to_numpy()
    t = np.asarray(timestamps_ms, dtype=np.float64)
    if len(t) == 0:
        return empty_events()
    rows = []
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    for lab, a, b in label_runs(labels):
        if lab in ("fixation", "saccade"):
            rows.append((lab, t[a], t[b]))
        elif lab == "eyesnotfound" and BLINK_MIN_MS <= t[b] - t[a] + step <= BLINK_MAX_MS:
            rows.append(("blink", t[a], t[b]))
    if not rows:
        return empty_events()
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def _gaze_columns(cols: Sequence[str]):
    """(x column, y column, units) for the combined gaze point, falling back to the per-eye columns."""
    gx = _find_column(cols, "gaze point x", avoid=("norm", "mm"))
    gy = _find_column(cols, "gaze point y", avoid=("norm", "mm"))
    if gx is not None and gy is not None:
        return [gx], [gy], _suffix(gx).lower()
    lx, rx = (_find_column(cols, f"gaze point {e} x", avoid=("norm", "mm")) for e in ("left", "right"))
    ly, ry = (_find_column(cols, f"gaze point {e} y", avoid=("norm", "mm")) for e in ("left", "right"))
    xs, ys = [c for c in (lx, rx) if c], [c for c in (ly, ry) if c]
    if xs and ys:
        return xs, ys, _suffix(xs[0]).lower()
    return None, None, ""


def recording_from_frame(
    df: pd.DataFrame,
    source: str,
    resolution: Optional[Sequence[float]] = None,
    sampling_rate_hz: Optional[float] = None,
    notes: Sequence[str] = (),
) -> EyeTrackingRecording:
    """Build a recording from a Pro Lab export table (TSV or xlsx) whose cells may still be strings.

    Rows whose timestamp does not parse are dropped, and the eye-tracker samples' timestamps are repaired
    (:func:`repair_timestamps`); what was dropped or repaired, with ``notes`` from the file reader, makes ONE
    :class:`EyeTrackingDataWarning`.

    Args:
        df: one row per sample/event, Pro Lab column names in either header style. Its index numbers the rows in
            messages (``df.attrs["row_noun"]``, default "row"; ``df.attrs["header"]``: the file's full header).
        source: file name used in error messages.
        resolution: (width, height) of the gaze plane; default from ``Recording resolution width/height`` when the
            export has them, else 1920x1080 (then ``metadata["resolution_source"] == "default"``).
        sampling_rate_hz: used to build time stamps when the export has no timestamp column (e.g. EMER xlsx).
        notes: problems already handled by the file reader (rows that did not parse), for the one warning.
    """
    notes = list(notes)
    noun = df.attrs.get("row_noun", "row")
    header = df.attrs.get("header", [str(c) for c in df.columns])
    df = df.rename(columns=lambda c: str(c).strip())
    cols = list(df.columns)
    tcol = next((c for c in (_find_column(cols, b) for b in ("recording timestamp", "eyetracker timestamp",
                                                             "computer timestamp")) if c), None)
    if tcol is not None and not pd.api.types.is_numeric_dtype(df[tcol]):
        text = df[tcol].fillna("").astype(str).str.strip()
        unparsed = ((text != "") & ~np.isfinite(_numeric(df[tcol]))).to_numpy()
        if unparsed.any():
            first = text[unparsed].iloc[0]
            notes.append(f"{_which(df.index[unparsed], noun)} had a timestamp in {tcol!r} that does not parse (e.g. "
                         f"{_clip(first, 40)!r}): dropped")
            df = df[~unparsed]
    sensor = _find_column(cols, "sensor")
    if sensor is not None:
        df = df[df[sensor].astype(str).str.strip().str.lower() == "eye tracker"]
    else:
        event_col = _find_column(cols, "event")
        if event_col is not None:  # event rows carry an Event value and no gaze
            df = df[df[event_col].isna() | (df[event_col].astype(str).str.strip().isin(("", "nan")))]
    df = df.reset_index(drop=True)

    xs, ys, gaze_unit = _gaze_columns(cols)
    if xs is None:
        raise ValueError(
            f"{source}: missing gaze columns: expected 'Gaze point X'/'Gaze point Y' (or 'Gaze point X [DACS px]' "
            f"...); found {_clip(header, 300)}"
        )
    if len(df) == 0:
        if notes:
            raise ValueError(f"{source}: nothing usable remains: " + "; ".join(notes))
        raise ValueError(f"{source}: no eye-tracker samples (no rows with Sensor == 'Eye Tracker')")

    total = len(df)
    if tcol is not None:
        t_raw, keep, t_notes = repair_timestamps(_numeric(df[tcol]), tcol, source)
        notes += t_notes
        if not keep.all():
            df = df[keep].reset_index(drop=True)
        t = _timestamps_ms(t_raw, tcol)
    elif sampling_rate_hz:
        t = np.arange(len(df)) * 1000.0 / float(sampling_rate_hz)
        tcol = "<synthesised>"
    else:
        raise ValueError(f"{source}: missing timestamp column 'Recording timestamp' (or pass sampling_rate_hz)")
    t = t - t[0]

    gx = _nanmean([_numeric(df[c]) for c in xs])
    gy = _nanmean([_numeric(df[c]) for c in ys])

    pl_col = _find_column(cols, "pupil diameter left")
    pr_col = _find_column(cols, "pupil diameter right")
    pf_col = _find_column(cols, "pupil diameter filtered") or _find_column(cols, "pupil diameter")
    nan = np.full(len(df), np.nan)
    pl = _numeric(df[pl_col]) if pl_col else (_numeric(df[pf_col]) if pf_col else nan)
    pr = _numeric(df[pr_col]) if pr_col else (_numeric(df[pf_col]) if pf_col else nan)

    vl_col, vr_col = _find_column(cols, "validity left"), _find_column(cols, "validity right")
    gaze_ok = np.isfinite(gx) & np.isfinite(gy)
    vl = _validity(df[vl_col]) if vl_col else np.isfinite(pl) | gaze_ok
    vr = _validity(df[vr_col]) if vr_col else np.isfinite(pr) | gaze_ok
    pl = np.where(vl, pl, np.nan)
    pr = np.where(vr, pr, np.nan)
    valid = gaze_ok & (vl | vr)
    if not valid.any():
        raise ValueError(f"{source}: no valid sample (every row lacks a gaze point in {xs[0]!r} or is Invalid)")

    meta = {"timestamp_column": tcol, "gaze_columns": (xs, ys)}
    if resolution is None:
        wcol, hcol = _find_column(cols, "recording resolution width"), _find_column(cols, "recording resolution height")
        w = _numeric(df[wcol]) if wcol else np.array([])
        h = _numeric(df[hcol]) if hcol else np.array([])
        if np.isfinite(w).any() and np.isfinite(h).any():
            resolution = (float(np.nanmax(w)), float(np.nanmax(h)))
            meta["resolution_source"] = "export"
        elif "norm" in gaze_unit:
            resolution = (1.0, 1.0)
            meta["resolution_source"] = "normalised gaze"
        else:
            resolution = DEFAULT_RESOLUTION
            meta["resolution_source"] = "default"
    else:
        meta["resolution_source"] = "argument"
    for key, base in (("participant", "participant name"), ("recording", "recording name")):
        c = _find_column(cols, base)
        if c is not None and len(df):
            meta[key] = str(df[c].iloc[0])

    events = None
    mcol = _find_column(cols, "eye movement type")
    if mcol is not None and (df[mcol].fillna("").astype(str).str.strip() != "").any():  # an all-empty column: no labels
        events = events_from_labels(t, df[mcol].fillna(""))
    meta["reader_notes"] = list(notes)  # what was dropped or repaired (also in the warning)
    rec = EyeTrackingRecording(t, pl, pr, gx, gy, valid, vl, vr, resolution, events, source, meta)
    _warn_once(source, notes, len(rec), total)
    return rec


def _line_fields(path: Path, sep: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Fields per line of a text export (separators + 1), scanned in chunks of bytes without decoding.

    Returns:
        ``(fields, blank, cut)``: per line (the header first) the number of fields and whether the line is blank
        (empty or ``\\r``), and whether the file ends without a line break (its last line may be cut short).
    """
    sep_byte, nl = ord(sep), ord("\n")
    counts, blanks = [], []
    carry_seps, carry_len = 0, 0
    last_byte = nl
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK_BYTES)
            if not chunk:
                break
            arr = np.frombuffer(chunk, dtype=np.uint8)
            last_byte = int(arr[-1])
            ends = np.flatnonzero(arr == nl)
            seps = np.cumsum(arr == sep_byte, dtype=np.int32)
            if len(ends):
                before = np.concatenate([[0], seps[ends[:-1]]])
                n_sep = seps[ends] - before
                n_sep[0] += carry_seps
                length = np.diff(np.concatenate([[-1], ends])) - 1
                length[0] += carry_len
                cr = np.concatenate([[False], arr[ends[1:] - 1] == 13]) if len(ends) > 1 else np.array([False])
                if ends[0] > 0:
                    cr[0] = arr[ends[0] - 1] == 13
                counts.append(n_sep + 1)
                blanks.append((length == 0) | ((length == 1) & cr))
                carry_seps = int(seps[-1] - seps[ends[-1]])
                carry_len = len(arr) - 1 - int(ends[-1])
            else:
                carry_seps += int(seps[-1])
                carry_len += len(arr)
    cut = last_byte != nl and carry_len > 0
    if cut:
        counts.append(np.array([carry_seps + 1]))
        blanks.append(np.array([False]))
    if not counts:
        return np.zeros(0, np.int64), np.zeros(0, bool), False
    return np.concatenate(counts), np.concatenate(blanks), cut


def _read_text_table(path: Path, sep: str, keep_column=None) -> pd.DataFrame:
    """Read a delimited text export as strings, in chunks of rows, keeping the rows that parse.

    Lines whose number of fields differs from the header's (a line cut short at the end of a truncated file, a
    line with a stray separator) are dropped; ``df.attrs["notes"]`` says which (file line numbers), and the index
    of the table is the file line number of each row. Unreadable, empty and header-only files are rejected with a
    clear error; so is a file of which no line parses.

    Args:
        keep_column: optional predicate on a column name: only those columns are kept (memory).
    """
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    with open(path, "rb") as f:  # the header must be a reasonable line of text before anything is parsed
        head = f.readline(_MAX_HEADER_BYTES + 1)
    if len(head) > _MAX_HEADER_BYTES:
        raise ValueError(f"{path}: not a text export (its first line is longer than {_MAX_HEADER_BYTES} bytes)")
    try:
        header = [c.strip() for c in head.decode("utf-8-sig").rstrip("\r\n").split(sep)]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text export ({e.reason} at byte {e.start})") from None
    if len(header) < 2:
        raise ValueError(f"{path}: not a {'tab' if sep == chr(9) else repr(sep)}-separated export "
                         f"(header has {len(header)} column: {_clip(header[0], 60)!r})")
    with open(path, "rb") as f:
        quoted = sep != "\t" and b'"' in f.read(65536)
    notes: list[str] = []
    if quoted:  # quoted cells may hold separators: let the parser judge lines (too-long lines are skipped)
        lines = None
    else:
        fields, blank, cut = _line_fields(path, sep)
        data = np.flatnonzero(~blank)
        data = data[data > 0]  # line 0 is the header
        bad_mask = fields[data] != len(header)
        short_last = cut and len(data) and data[-1] == len(fields) - 1 and bad_mask[-1]
        bad_lines = data[bad_mask] + 1  # 1-based file line numbers
        if len(bad_lines):
            wrong = [int(x) for x in bad_lines if not (short_last and x == data[-1] + 1)]
            if wrong:
                notes.append(f"{_which(wrong, 'line')} had a number of fields other than the header's "
                             f"{len(header)} (e.g. {int(fields[wrong[0] - 1])}): dropped")
            if short_last:
                notes.append(f"the last line ({int(data[-1] + 1)}) is cut short (a truncated export): dropped")
        # the parser's rows: the non-blank data lines (with usecols it pads short lines and cuts long ones)
        lines = (data + 1, fields[data] == len(header))
    # with usecols the parser pads short lines and cuts long ones, one row per data line, as the scan counts them
    usecols = None if keep_column is None and quoted else (lambda c: keep_column is None or keep_column(str(c)))
    chunks = []
    row0 = 0
    try:
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                                 engine="c", skip_blank_lines=True, on_bad_lines="warn", chunksize=_CHUNK_ROWS,
                                 quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE, usecols=usecols)
            for chunk in reader:
                k = len(chunk)
                if lines is not None:
                    numbers, good = lines[0][row0 : row0 + k], lines[1][row0 : row0 + k]
                    if len(numbers) != k:  # the parser and the line scan disagree: keep the parser's view
                        numbers, good = np.arange(row0, row0 + k) + 2, np.ones(k, bool)
                    chunk.index = numbers
                    chunk = chunk[good]
                else:
                    chunk.index = np.arange(row0, row0 + k) + 2
                row0 += k
                chunks.append(chunk)
        skipped_lines = [int(m.group(1)) for w in skipped
                         for m in [re.search(r"Skipping line (\d+)", str(w.message))] if m]
        if skipped_lines:  # only where the line scan could not run (quoted cells)
            notes.append(f"{_which(skipped_lines, 'line')} had more fields than the header: dropped")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text export ({e.reason} at byte {e.start})") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"{path}: malformed export ({_clip(str(e).strip(), 200)})") from None
    except ValueError as e:  # usecols matched nothing
        raise ValueError(f"{path}: {_clip(e, 200)}; header {_clip(header, 300)}") from None
    df = pd.concat(chunks) if chunks else pd.DataFrame(columns=[c for c in header if usecols is None or usecols(c)])
    if row0 and not len(df):
        raise ValueError(f"{path}: no line of the export parses ({'; '.join(notes)})")
    df.attrs.update(notes=notes, row_noun="line", header=header)
    return df


def _is_prolab_column(name: str) -> bool:
    return _base(name) in _PROLAB_BASES


def read_tobii_tsv(
    path: PathLike,
    resolution: Optional[Sequence[float]] = None,
    sampling_rate_hz: Optional[float] = None,
) -> EyeTrackingRecording:
    """Read a Tobii Pro Lab "Data export" TSV (either header style, '.' or ',' decimals).

    Only ``Sensor == "Eye Tracker"`` rows are kept; the timestamp unit comes from the header suffix (``[ms]``,
    ``[μs]``) or, for bare headers, from the median sample step; ``Valid``/``Invalid`` validity, ``EyesNotFound``
    rows and empty cells become invalid samples. Pro Lab's own ``Eye movement type`` labels, when present, end up
    in ``recording.events``.

    Args:
        path: the .tsv file (a .csv or .xlsx is dispatched to the matching reader).
        resolution: (width, height) of the display in gaze pixels; default from the export's
            ``Recording resolution`` columns, else 1920x1080.
        sampling_rate_hz: only used when the export has no timestamp column.
    Returns:
        :class:`EyeTrackingRecording`.
    Raises:
        ValueError: naming the file and the problem (missing gaze column, truncated file, no valid sample,
            non-monotonic timestamps, ...).
    """
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xls"):
        return read_tobii_xlsx(path, resolution=resolution, sampling_rate_hz=sampling_rate_hz)
    df = _read_text_table(path, "\t", _is_prolab_column)
    return recording_from_frame(df, str(path), resolution, sampling_rate_hz, df.attrs["notes"])


#: a workbook is loaded whole by openpyxl: a part that expands beyond this, or far beyond what a spreadsheet
#: compresses by (real sheets: 5–20x), is refused before loading instead of filling the memory
XLSX_MAX_PART_BYTES = 512 * 2**20
XLSX_MAX_COMPRESSION_RATIO = 200


def _check_workbook_size(path: Path) -> None:
    """Refuse a workbook whose parts would expand past :data:`XLSX_MAX_PART_BYTES` or by more than
    :data:`XLSX_MAX_COMPRESSION_RATIO` (a 1 MB file holding a 1 GiB cell), reading only the zip's directory."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except zipfile.BadZipFile:
        return  # not a zip: openpyxl's own error says so
    for part in parts:
        ratio = part.file_size / max(part.compress_size, 1)
        if part.file_size > XLSX_MAX_PART_BYTES or (part.file_size > 2**20 and ratio > XLSX_MAX_COMPRESSION_RATIO):
            raise ValueError(
                f"{path}: its part {part.filename!r} expands to {part.file_size / 2**20:.0f} MiB "
                f"({ratio:.0f}x its compressed size): too large to load as a workbook; export the recording as a "
                "Pro Lab TSV, which is read in chunks"
            )


def read_tobii_xlsx(
    path: PathLike,
    sheet_name: Union[int, str] = 0,
    resolution: Optional[Sequence[float]] = None,
    sampling_rate_hz: Optional[float] = None,
) -> EyeTrackingRecording:
    """Read a Pro Lab export saved as an Excel workbook (EMER ships one ``eye/<ID>.xlsx`` per sample).

    Same columns and rules as :func:`read_tobii_tsv`. EMER sheets may lack timestamps: pass ``sampling_rate_hz``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    _check_workbook_size(path)
    try:
        df = pd.read_excel(path, sheet_name=sheet_name, dtype=object, engine="openpyxl")
    except Exception as e:  # zipfile.BadZipFile, KeyError, openpyxl errors: all mean "not a workbook"
        raise ValueError(f"{path}: unreadable .xlsx workbook ({type(e).__name__}: {_clip(e, 200)})") from None
    df.index = df.index + 2  # the sheet's row numbers (row 1: the header), for messages
    return recording_from_frame(df, str(path), resolution, sampling_rate_hz)


# ---------------------------------------------------------------------------------------------- Pro SDK
_SDK_KEYS = ("gaze_point_on_display_area", "gaze_point_validity", "pupil_diameter", "pupil_validity")


def _pair(value) -> tuple[float, float]:
    """An (x, y) pair from a tuple/list or its string form ``'(0.5, 0.4)'``; NaNs when missing."""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return (np.nan, np.nan)
        try:
            value = ast.literal_eval(value.replace("nan", "None"))
        except (ValueError, SyntaxError):
            return (np.nan, np.nan)
    if value is None or (np.isscalar(value) and not np.isfinite(value)):
        return (np.nan, np.nan)
    x, y = list(value)[:2]
    return (np.nan if x is None else float(x), np.nan if y is None else float(y))


def read_tobii_sdk(
    samples: Union[PathLike, Iterable[Mapping]],
    resolution: Optional[Sequence[float]] = None,
) -> EyeTrackingRecording:
    """Read Tobii Pro SDK (``tobii_research``) gaze samples: a list of callback dicts, or a CSV of them.

    Each sample has ``device_time_stamp`` (µs) and, for ``left_``/``right_``: ``gaze_point_on_display_area``
    ((x, y) in 0..1, top-left origin), ``gaze_point_validity``, ``pupil_diameter`` (mm), ``pupil_validity``. In a
    CSV the pairs may be one column holding ``"(x, y)"`` or two columns suffixed ``_x``/``_y``.

    Gaze is the mean of the valid eyes in display units 0..1 (``resolution`` (1, 1)) unless ``resolution`` is
    given, in which case gaze is scaled to those pixels.
    """
    if isinstance(samples, (str, os.PathLike)):
        path = Path(samples)
        df = _read_text_table(path, ",")
        source = str(path)
    else:
        df = pd.DataFrame(list(samples))
        source = "<Pro SDK samples>"
        if len(df) == 0:
            raise ValueError(f"{source}: no samples")
    cols = set(df.columns)
    tcol = next((c for c in ("device_time_stamp", "system_time_stamp") if c in cols), None)
    if tcol is None:
        raise ValueError(f"{source}: missing timestamp column 'device_time_stamp'")

    def pair_column(eye: str) -> np.ndarray:
        key = f"{eye}_gaze_point_on_display_area"
        if key in cols:
            return np.array([_pair(v) for v in df[key]], dtype=np.float64).reshape(-1, 2)
        if f"{key}_x" in cols and f"{key}_y" in cols:
            return np.stack([_numeric(df[f"{key}_x"]), _numeric(df[f"{key}_y"])], axis=1)
        raise ValueError(f"{source}: missing gaze column {key!r}")

    def flag(name: str, default: np.ndarray) -> np.ndarray:
        return _numeric(df[name]) > 0.5 if name in cols else default

    notes, total = list(df.attrs.get("notes", [])), len(df)
    t_raw, keep, t_notes = repair_timestamps(_numeric(df[tcol]), tcol, source)
    notes += t_notes
    if not keep.all():
        df = df[keep].reset_index(drop=True)
    t = (t_raw - t_raw[0]) / 1000.0
    eyes = {}
    for eye in ("left", "right"):
        g = pair_column(eye)
        gv = flag(f"{eye}_gaze_point_validity", np.isfinite(g).all(axis=1)) & np.isfinite(g).all(axis=1)
        p = _numeric(df[f"{eye}_pupil_diameter"]) if f"{eye}_pupil_diameter" in cols else np.full(len(df), np.nan)
        pv = flag(f"{eye}_pupil_validity", np.isfinite(p)) & np.isfinite(p)
        eyes[eye] = (np.where(gv[:, None], g, np.nan), gv, np.where(pv, p, np.nan))
    gaze = _nanmean([eyes["left"][0], eyes["right"][0]])
    vl, vr = eyes["left"][1], eyes["right"][1]
    valid = (vl | vr) & np.isfinite(gaze).all(axis=1)
    if not valid.any():
        raise ValueError(f"{source}: no valid sample (every gaze_point_validity is 0)")
    w, h = (1.0, 1.0) if resolution is None else (float(resolution[0]), float(resolution[1]))
    rec = EyeTrackingRecording(
        t, eyes["left"][2], eyes["right"][2], gaze[:, 0] * w, gaze[:, 1] * h, valid, vl, vr, (w, h), None, source,
        {"timestamp_column": tcol, "format": "tobii_research", "reader_notes": notes},
    )
    _warn_once(source, notes, len(rec), total)
    return rec


def read_eye_tracking(path: PathLike, **kwargs) -> EyeTrackingRecording:
    """Read any supported export by its suffix: ``.tsv``/``.txt`` (Pro Lab), ``.xlsx`` (Pro Lab workbook),
    ``.csv`` (Pro SDK samples when it has ``device_time_stamp``, else a comma-separated Pro Lab table)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xls"):
        return read_tobii_xlsx(path, **kwargs)
    if suffix == ".csv":
        df = _read_text_table(path, ",")
        if "device_time_stamp" in df.columns:
            return read_tobii_sdk(path, **kwargs)
        return recording_from_frame(df, str(path), notes=df.attrs["notes"], **kwargs)
    return read_tobii_tsv(path, **kwargs)


# ---------------------------------------------------------------------------------------------- EyeLink EDF
_EYELINK_EYES = {"LEFT_EYE": ("left",), "RIGHT_EYE": ("right",), "BINOCULAR": ("left", "right")}


def _import_eyelinkio():
    try:
        import eyelinkio
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"read_eyelink_edf needs the optional package 'eyelinkio' ({e}); install it with "
            f'pip install "emvfer-hf[eyelink]"'
        ) from None
    return eyelinkio


_EDF_PROBE = """
import ctypes, sys
from eyelinkio.edf._edf2py import edf_close_file, edf_open_file
err = ctypes.c_int(1)
fid = edf_open_file(sys.argv[1].encode(), 2, 1, 1, ctypes.byref(err))
if fid is None or err.value != 0:
    sys.exit(3)
edf_close_file(fid)
"""


def _probe_edf(path: Path, timeout_s: float = 300.0) -> None:
    """Open the EDF once in a child process: SR Research's edfapi, which eyelinkio wraps, crashes the process
    (segmentation fault) on some corrupt files instead of returning an error."""
    import subprocess
    import sys

    try:
        proc = subprocess.run([sys.executable, "-c", _EDF_PROBE, os.fspath(path.resolve())], capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ValueError(f"{path}: the EyeLink EDF API did not finish opening the file in {timeout_s:.0f} s") from None
    if proc.returncode < 0:
        raise ValueError(f"{path}: corrupt EyeLink EDF file (the EDF API crashed opening it, signal "
                         f"{-proc.returncode})")
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).replace("loadEvents = 1", "").strip()[-300:]
        raise ValueError(f"{path}: unreadable EyeLink EDF file (the EDF API could not open it: {detail or 'error'})")


def _binocular_gaze(left, right, times):
    """Cyclopean gaze of two eyes: their mean where both are valid; where one eye is lost, that eye shifted by half
    the local left-right disparity (interpolated from the neighbouring binocular samples), so that losing one eye
    does not make the gaze point jump by half the vergence/calibration difference (a spurious saccade)."""
    out = []
    both = left[3] & right[3]
    for k in (0, 1):
        lv, rv = left[k], right[k]
        mean = 0.5 * (lv + rv)
        if both.any():
            d = np.interp(times, times[both], (lv - rv)[both])
        else:
            d = np.zeros(len(times))
        g = np.where(both, mean, np.where(left[3], lv - 0.5 * d, np.where(right[3], rv + 0.5 * d, np.nan)))
        out.append(g)
    return out[0], out[1]


def read_eyelink_edf(path: PathLike, eye: Optional[str] = None, probe: bool = True) -> EyeTrackingRecording:
    """Read an SR Research EyeLink ``.edf`` recording (needs the optional extra ``emvfer-hf[eyelink]``).

    Samples come from ``eyelinkio.read_edf``: gaze (``gx``/``gy``) in screen pixels of the ``GAZE_COORDS`` the
    tracker was set up with (the gaze plane, ``recording.resolution``; ``to_series`` maps it to [-1, 1]), and the
    pupil size in the EDF's own unit (``metadata["pupil_units"]``: ``PUPIL_AREA`` or ``PUPIL_DIAMETER``, arbitrary
    camera units, not mm; the canonical series z-scores pupils per recording, so only their dynamics matter).
    A sample is valid where the eye has a gaze point and a non-zero pupil (EyeLink writes missing data as pupil 0
    and gaze ``MISSING_DATA``). eyelinkio joins recording blocks end to end, so timestamps run without gaps.

    The tracker's online-parser events of the chosen eye (``ENDFIX``/``ENDSACC``/``ENDBLINK``) are carried in
    ``recording.events`` (``event``, ``onset_ms``, ``offset_ms``, and ``peak_velocity`` for saccades, in the
    parser's own units). EyeLink reports every blink inside a saccade (the lid moves the pupil image before it is
    lost): those blink-saccade pairs stay as the parser wrote them, with ``contains_blink`` True on the saccade.
    All eyes' events are in ``metadata["tracker_events"]`` with an ``eye`` column.

    Args:
        path: the ``.edf`` file.
        eye: ``"left"``, ``"right"`` or ``"both"``; default: the recorded eye, ``"both"`` for binocular files.
            With both eyes gaze is their mean (where one eye is lost, that eye corrected by the local disparity)
            and the events are those of the eye with more valid samples (``metadata["events_eye"]``).
        probe: first open the file in a child process (a fraction of a second), because the native EDF API
            crashes the whole process on some corrupt files; ``False`` skips it for files known to be good.
    Returns:
        :class:`EyeTrackingRecording`.
    Raises:
        ImportError: eyelinkio is not installed.
        ValueError: naming the file: missing, not an EDF / unreadable, no samples, an eye that was not recorded, or
            no valid sample.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    eyelinkio = _import_eyelinkio()
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith(b"SR_RESEARCH"):
        raise ValueError(f"{path}: not an EyeLink EDF file (it does not start with the 'SR_RESEARCH' preamble)")
    if probe:
        _probe_edf(path)
    try:
        edf = eyelinkio.read_edf(str(path))
    except Exception as e:  # OSError from the edfapi, RuntimeError/ValueError on corrupt content
        raise ValueError(f"{path}: unreadable EyeLink EDF file ({type(e).__name__}: {e})") from None
    info = edf["info"]
    samples, times = edf["samples"], np.asarray(edf["times"], dtype=np.float64)
    if samples is None or len(times) == 0:
        raise ValueError(f"{path}: the EDF holds no samples (recorded with link/file samples off?)")
    fields = list(info["sample_fields"])
    recorded = _EYELINK_EYES.get(str(info.get("eye")), ())
    if not recorded:
        raise ValueError(f"{path}: unknown recorded eye {info.get('eye')!r}")
    if eye is None:
        eye = "both" if len(recorded) == 2 else recorded[0]
    eye = str(eye).lower()
    wanted = ("left", "right") if eye == "both" else (eye,)
    if eye not in ("left", "right", "both") or any(e not in recorded for e in wanted):
        raise ValueError(f"{path}: eye={eye!r} not available; the file recorded {info.get('eye')} "
                         f"(choose from {list(recorded) + (['both'] if len(recorded) == 2 else [])})")

    def channel(name: str, which: str) -> np.ndarray:
        key = name if len(recorded) == 1 else f"{name}_{which}"
        if key not in fields:
            return np.full(len(times), np.nan)
        return np.asarray(samples[fields.index(key)], dtype=np.float64)

    n = len(times)
    per_eye = {}
    for which in ("left", "right"):
        if which not in recorded:
            per_eye[which] = (np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool))
            continue
        x, y, p = channel("xpos", which), channel("ypos", which), channel("ps", which)
        ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(p) & (p > 0)
        per_eye[which] = (np.where(ok, x, np.nan), np.where(ok, y, np.nan), np.where(ok, p, np.nan), ok)
    use = [w for w in ("left", "right") if w in wanted]
    if len(use) == 2:
        gx, gy = _binocular_gaze(per_eye["left"], per_eye["right"], times)
    else:
        gx, gy = per_eye[use[0]][0], per_eye[use[0]][1]
    vl = per_eye["left"][3] if "left" in use else np.zeros(n, bool)
    vr = per_eye["right"][3] if "right" in use else np.zeros(n, bool)
    pl = per_eye["left"][2] if "left" in use else np.full(n, np.nan)
    pr = per_eye["right"][2] if "right" in use else np.full(n, np.nan)
    if len(use) == 1:  # one eye (recorded or chosen): it is both pupil channels, as a Pro Lab export with one eye
        pl = pr = per_eye[use[0]][2]
        vl = vr = per_eye[use[0]][3]
    valid = (vl | vr) & np.isfinite(gx) & np.isfinite(gy)
    if not valid.any():
        raise ValueError(f"{path}: no valid sample for eye={eye!r} (gaze missing or pupil 0 everywhere)")

    # the online parser's events, per eye (eyelinkio numbers eyes 0 = left, 1 = right)
    rows = []
    disc = edf["discrete"]
    blinks = disc.get("blinks")
    for name, key in (("fixation", "fixations"), ("saccade", "saccades"), ("blink", "blinks")):
        table = disc.get(key)
        if table is None or len(table) == 0:
            continue
        for ev in table:
            which = "right" if int(ev["eye"]) == 1 else "left"
            if len(recorded) == 1:
                which = recorded[0]
            row = {"event": name, "onset_ms": float(ev["stime"]) * 1000.0, "offset_ms": float(ev["etime"]) * 1000.0,
                   "eye": which, "peak_velocity": float(ev["pv"]) if name == "saccade" else np.nan,
                   "contains_blink": False}
            if name == "saccade" and blinks is not None and len(blinks):
                same = (blinks["eye"] == ev["eye"]) & (blinks["stime"] >= ev["stime"]) & (blinks["etime"] <= ev["etime"])
                row["contains_blink"] = bool(same.any())
            rows.append(row)
    tracker = pd.DataFrame(rows, columns=list(EVENT_COLUMNS) + ["eye", "peak_velocity", "contains_blink"])
    tracker = tracker.sort_values("onset_ms", kind="stable").reset_index(drop=True)
    if eye == "both":
        events_eye = "left" if per_eye["left"][3].sum() >= per_eye["right"][3].sum() else "right"
    else:
        events_eye = eye
    events = tracker[tracker["eye"] == events_eye].drop(columns="eye").reset_index(drop=True)
    if len(events) == 0:
        events = None

    coords = info.get("screen_coords")
    resolution = (float(coords[0]), float(coords[1])) if coords is not None else DEFAULT_RESOLUTION
    meta = {
        "format": "eyelink_edf",
        "tracker": str(info.get("version", "")),
        "camera": str(info.get("camera", "")),
        "recorded_eye": str(info.get("eye")),
        "eye": eye,
        "events_eye": events_eye,
        "pupil_units": str(info.get("ps_units")),
        "sampling_rate_hz": float(info.get("sfreq", np.nan)),
        "resolution_source": "GAZE_COORDS" if coords is not None else "default",
        "meas_date": str(info.get("meas_date", "")),
        "tracker_events": tracker,
        "calibrations": info.get("calibrations", []),
    }
    return EyeTrackingRecording(times * 1000.0, pl, pr, gx, gy, valid, vl, vr, resolution, events, str(path), meta)
