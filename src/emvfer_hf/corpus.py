"""Expression timelines of a whole corpus of recordings: one process or many (``accelerate launch``), resumable.

``emvfer analyze CORPUS... --out-dir OUT`` runs :func:`analyze_corpus`:

- **Inputs** (:func:`resolve_corpus`): video files, folders (searched recursively for :data:`VIDEO_EXTENSIONS`), glob
  patterns (``"sessions/**/*.mp4"``, quoted so that the shell leaves them alone), and manifests (``*.csv`` / ``*.tsv``
  with a ``video``, ``path`` or ``file`` column, or else the first column; ``*.txt`` / ``*.lst`` with one path per
  line). A manifest's other columns are carried into the output; its relative paths are relative to its folder.
- **Outputs** in ``OUT``: ``timelines/<name>.parquet``, one per video (the timeline of :func:`~.analysis.analyze_video`
  with a ``video`` column), each written under a partial name and renamed when complete, then sealed by
  ``timelines/<name>.done.json`` (its SHA-256, the settings, the video's size and time); ``timeline.parquet``, all of
  them merged in corpus order with the manifest's columns (and ``person_id`` with ``persons=True``), which opens in one
  line: ``pandas.read_parquet("OUT/timeline.parquet")`` or ``datasets.load_dataset("parquet",
  data_files="OUT/timeline.parquet")``; ``failures.csv``: each video that failed (``video``, ``error``, ``reason``).
- **Processes**: under ``accelerate launch`` (CPU processes, GPUs, machines: ``OUT`` on storage they all reach) each
  process analyses its share of the videos the main process listed (the largest first, dealt round-robin: what
  accelerate's ``split_between_processes`` does, balanced by size) on its own device; the main process shows the
  progress (videos and seconds of video of the whole corpus), waits for the others' completion files and writes
  the merged dataset. Without ``accelerate launch`` the same call runs in one process.
- **Resuming**: a rerun skips each video whose timeline is sealed, whose checksum matches and whose settings and
  source file are unchanged; the others (failed, interrupted, new, changed) are analysed again. A video whose stream
  ends early keeps its rows (a last row gives the reason) and counts as complete. A video that fails is
  recorded (``timelines/<name>.failed.json`` and ``failures.csv``) and the others go on. Ctrl-C or SIGTERM stops at
  once: the video in progress leaves only its partial file, never a file under a final name, and no seal.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

#: the file name extensions taken as videos when a folder is searched (lower case)
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
                    ".m2ts", ".3gp", ".ogv", ".mxf")  # fmt: skip
#: the extensions read as manifests
MANIFEST_EXTENSIONS = (".csv", ".tsv", ".txt", ".lst")
#: the columns a CSV manifest may name its paths by (else its first column)
MANIFEST_PATH_COLUMNS = ("video", "path", "file", "filename")
#: the names of the files in the output folder
TIMELINES, MERGED, FAILURES = "timelines", "timeline.parquet", "failures.csv"


@dataclass
class CorpusVideo:
    """One video of a corpus: its path, the manifest columns that go with it, and the stem of its output files."""

    path: Path
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``<stem>-<10 hex digits of the SHA-1 of the absolute path>``: unique per file, readable."""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", self.path.stem)[:60] or "video"
        digest = hashlib.sha1(str(self.path.absolute()).encode("utf-8")).hexdigest()[:10]
        return f"{stem}-{digest}"


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _read_manifest(path: Path) -> list[CorpusVideo]:
    """The videos a manifest lists (relative paths are relative to the manifest's folder)."""
    folder = path.parent
    if path.suffix.lower() in (".txt", ".lst"):
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        return [CorpusVideo(_resolve(folder, line)) for line in lines if line and not line.startswith("#")]
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the manifest ({type(error).__name__}: {error})") from error
    if table.columns.empty:
        raise ValueError(f"{path}: the manifest has no columns")
    lower = {str(c).strip().lower(): c for c in table.columns}
    column = next((lower[name] for name in MANIFEST_PATH_COLUMNS if name in lower), table.columns[0])
    extras = [c for c in table.columns if c != column]
    for reserved in [c for c in extras if c == "video"]:
        raise ValueError(f"{path}: the manifest's column {reserved!r} is not its path column; rename it")
    videos = []
    for _, row in table.iterrows():
        text = str(row[column]).strip()
        if text:
            videos.append(CorpusVideo(_resolve(folder, text), {str(c): str(row[c]) for c in extras}))
    return videos


def _resolve(folder: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else folder / path


def resolve_corpus(inputs: Sequence) -> list[CorpusVideo]:
    """The videos of a corpus, in order, each once (the first mention wins).

    Args:
        inputs: video files, folders (every file with a :data:`VIDEO_EXTENSIONS` extension below it, sorted), glob
            patterns (``**`` recurses) and manifests (:data:`MANIFEST_EXTENSIONS`). Files a manifest lists need not
            exist yet: a missing one fails on its own and goes to ``failures.csv``.
    Raises:
        ValueError: an input that is no file, folder or matching pattern, a manifest that cannot be read, or a corpus
            without any video; the message names the input.
    """
    videos: list[CorpusVideo] = []
    for given in inputs:
        text = str(given)
        path = Path(os.path.expanduser(text))
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise ValueError(f"{text}: no video file in this folder (extensions {', '.join(VIDEO_EXTENSIONS)})")
            videos += [CorpusVideo(p) for p in found]
        elif path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
            listed = _read_manifest(path)
            if not listed:
                raise ValueError(f"{text}: the manifest lists no video")
            videos += listed
        elif path.is_file():
            videos.append(CorpusVideo(path))
        elif _is_glob(text):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
            if not found:
                raise ValueError(f"{text}: no file matches this pattern")
            videos += [CorpusVideo(p) for p in found]
        else:
            raise ValueError(f"{text}: no such file, folder or matching pattern")
    seen, unique = set(), []
    for video in videos:
        key = os.path.realpath(video.path)
        if key not in seen:
            seen.add(key)
            unique.append(video)
    if not unique:
        raise ValueError("the corpus has no video")
    columns = list(dict.fromkeys(c for v in unique for c in v.extra))
    for video in unique:  # every video gets every manifest column ("" where its manifest has none)
        video.extra = {c: video.extra.get(c, "") for c in columns}
    return unique


# ---------------------------------------------------------------------------------------------------- sealed files
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_state(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_json(path: Path, data: dict) -> None:
    from .outputs import atomic_output

    with atomic_output(path) as target:
        target.write_text(json.dumps(data, indent=1), encoding="utf-8")


def read_seal(out_dir: Path, video: CorpusVideo, settings: Optional[dict] = None) -> Optional[dict]:
    """The completion record of ``video``'s timeline when it is complete and current, else None: the seal exists and
    parses, the Parquet file has the SHA-256 it records, and the settings (when given) and the video's size and
    modification time are those it records."""
    folder = Path(out_dir) / TIMELINES
    seal, table = folder / f"{video.name}.done.json", folder / f"{video.name}.parquet"
    try:
        record = json.loads(seal.read_text(encoding="utf-8"))
        if not table.is_file() or _sha256(table) != record.get("sha256"):
            return None
        if settings is not None and record.get("settings") != settings:
            return None
        if video.path.exists() and record.get("source") != _source_state(video.path):
            return None
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return record


def _typed_table(frame):
    """A timeline DataFrame as a pyarrow Table with fixed types: text columns strings, ``track_id`` (and
    ``person_id``) integers, the others floating point (the types of :class:`~.outputs.RowWriter`)."""
    import pandas as pd
    import pyarrow as pa

    from .outputs import RowWriter

    typed = {}
    for name in frame.columns:
        column = frame[name]
        if name in RowWriter.TEXT_COLUMNS or name == "video" or column.dtype == object:
            typed[name] = column.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
        elif name in ("track_id", "person_id"):
            typed[name] = pd.to_numeric(column, errors="coerce").fillna(-1).astype("int64")
        else:
            typed[name] = pd.to_numeric(column, errors="coerce").astype("float64")
    return pa.Table.from_pandas(pd.DataFrame(typed, columns=list(frame.columns)), preserve_index=False)


# ---------------------------------------------------------------------------------------------------- the run
def process_state():
    """This process's ``accelerate.PartialState``: one process without a launcher; under ``accelerate launch`` (or
    ``torchrun``) its rank among all processes, on ``cuda:<local rank>`` where there are GPUs and on the CPU (gloo)
    where there are none or ``ACCELERATE_USE_CPU`` is set."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    available = getattr(torch, "accelerator", None)
    has_accelerator = available.is_available() if available is not None else torch.cuda.is_available()
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not has_accelerator)


@dataclass
class CorpusResult:
    """What :func:`analyze_corpus` did: the merged dataset, the videos analysed now, skipped (already complete),
    failed (``{video: reason}``), and whether it was interrupted."""

    merged: Optional[Path]
    analysed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0  # seconds of video analysed now (this process)
    complete: int = 0  # videos of the corpus with a complete timeline (main process, after the merge)
    batches: Optional[dict] = None  # with videos_at_once > 1: {"calls": forward passes, "shared": of several videos}


def _rank_file(out_dir: Path, rank: int) -> Path:
    return out_dir / ".ranks" / f"rank-{rank}.done"


def _share(videos: list[CorpusVideo], rank: int, processes: int) -> list[CorpusVideo]:
    """This process's videos: the corpus sorted by file size (largest first), dealt round-robin (so that every
    process gets a similar amount of video), in corpus order."""
    if processes <= 1:
        return list(videos)
    sizes = [v.path.stat().st_size if v.path.is_file() else 0 for v in videos]
    order = sorted(range(len(videos)), key=lambda k: (-sizes[k], k))
    mine = sorted(order[rank::processes])
    return [videos[k] for k in mine]


def analyze_corpus(
    inputs: Sequence,
    out_dir,
    model,
    processor=None,
    *,
    model_name: Optional[str] = None,
    window: float = 2.0,
    stride: float = 1.0,
    start: Optional[float] = None,
    end: Optional[float] = None,
    max_faces: Optional[int] = None,
    batch_size: Optional[int] = None,
    device: Optional[str] = None,
    dtype: str = "auto",
    min_face_fraction: float = 0.5,
    identity: str = "auto",
    persons: bool = False,
    progress: bool = True,
    videos_at_once: int = 1,
    state=None,
    poll_s: float = 2.0,
) -> CorpusResult:
    """Analyse every video of a corpus into ``out_dir`` (see the module's documentation), in this process's share
    when launched with ``accelerate launch``.

    Args:
        inputs: what :func:`resolve_corpus` takes (files, folders, patterns, manifests), or a list of
            :class:`CorpusVideo`.
        out_dir: the output folder (shared by all processes and machines).
        model, processor: a MERT model and its processor, or a checkpoint folder / Hub id as ``model``.
        model_name: recorded in each seal (default ``model`` when it is a path): a rerun with another model
            analyses every video again.
        window, stride, start, end, max_faces, batch_size, dtype, min_face_fraction, identity: as
            :func:`~.analysis.analyze_video` (``identity``: "auto", "dlib" or "histogram").
        device: where the model runs (default: this process's accelerate device: ``cuda:<local rank>`` under a
            multi-GPU launch, else the CPU).
        persons: group the tracks of all videos into persons by face identity (``person_id`` in the merged
            dataset; -1 on rows without a face).
        progress: the progress bar on the main process (videos and seconds of video of the whole corpus).
        videos_at_once: analyse this many videos at once in each process (threads: their decoding and face
            pipelines overlap, and their windows share the model's forward passes through :class:`SharedBatches`,
            up to ``batch_size`` x ``videos_at_once`` windows: for GPUs). The probabilities can then differ from a
            run with 1 in the last digits (another batch, other kernels).
        state: an ``accelerate.PartialState`` (default: :func:`process_state`).
        poll_s: how often the main process looks for the other processes' results while it waits.

    Returns:
        a :class:`CorpusResult` (``merged`` is None on processes other than the main one, and when interrupted).

    Raises:
        ValueError: a bad input (see :func:`resolve_corpus`), an output folder that cannot be written, a model that
            cannot be loaded; naming it.
        KeyboardInterrupt: never; an interrupt returns ``interrupted=True`` with only complete files left.
    """
    from tqdm.auto import tqdm

    from .analysis import check_window_arguments, load_model_and_processor
    from .face_identity_mert import default_identity_backend
    from .outputs import check_writable
    from .precision import inference_model, resolve_dtype

    check_window_arguments(window, stride, start, end, max_faces, batch_size)
    out_dir = Path(out_dir)
    given = list(inputs)
    videos = given if given and all(isinstance(v, CorpusVideo) for v in given) else resolve_corpus(given)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir}: is a file; give a folder")
    check_writable(out_dir / TIMELINES / ".write-check", "--out-dir")
    for video in videos:
        if os.path.realpath(video.path) == os.path.realpath(out_dir / MERGED):
            raise ValueError(f"--out-dir {out_dir}: the input {video.path} is its merged dataset; write elsewhere")
    state = state or process_state()
    rank, processes, main = state.process_index, state.num_processes, state.is_main_process
    if device is None:
        device = str(state.device)
    dtype = resolve_dtype(dtype, device)  # "auto" → the precision it picks on this device, recorded in the seals
    model_name = model_name or (str(model) if isinstance(model, (str, Path)) else type(model).__name__)
    backend = default_identity_backend(identity)
    settings = {"model": model_name, "window": window, "stride": stride, "start": start, "end": end,
                "max_faces": max_faces, "dtype": dtype, "min_face_fraction": min_face_fraction,
                "identity": backend.name}  # fmt: skip
    _rank_file(out_dir, rank).unlink(missing_ok=True)
    listing = out_dir / ".ranks" / "corpus.json"
    if processes > 1 and main:  # one list for all: a folder or pattern read on several machines may differ
        _write_json(listing, {"videos": [{"path": str(v.path), "extra": v.extra} for v in videos]})
    state.wait_for_everyone()  # every stale completion file is gone, and the list written, before anyone goes on
    if processes > 1 and not main:
        try:
            videos = [CorpusVideo(Path(v["path"]), v["extra"]) for v in json.loads(listing.read_text())["videos"]]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"--out-dir {out_dir}: cannot read the main process's corpus list {listing} ({error}); "
                             "the output folder must be on storage every process reaches") from error  # fmt: skip
    mine = _share(videos, rank, processes)
    result = CorpusResult(merged=None)
    bar = None
    if main and progress:
        from .video_io_mert import probe_duration

        durations = {v.name: probe_duration(v.path) or 0.0 for v in videos}
        bar = tqdm(total=round(sum(durations.values()), 1), unit="s", desc=f"analysing {len(videos)} videos",
                   file=sys.stderr, bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s of video [{elapsed}<{remaining}"
                   "{postfix}]")  # fmt: skip
    tracker = _Progress(out_dir, videos, bar, processes)
    options = dict(window=window, stride=stride, start=start, end=end, max_faces=max_faces, batch_size=batch_size,
                   device=device, dtype=dtype, min_face_fraction=min_face_fraction)  # fmt: skip
    todo: list = []
    outcomes: dict = {}
    try:
        for video in mine:
            if read_seal(out_dir, video, settings) is not None:
                result.skipped.append(video.path)
                tracker.done(video)
            else:
                todo.append(video)
        if todo:
            loaded_model, loaded_processor = load_model_and_processor(model, processor)
            # one bf16 / int8 copy for the whole corpus (and the threads of videos_at_once), not one per video
            loaded_model = inference_model(loaded_model, dtype, device)
            loaded = (loaded_model, loaded_processor)
            if videos_at_once <= 1:
                for video in todo:
                    outcomes[video.name] = _analyze_one(video, out_dir, loaded, settings, backend, tracker, options)
                    tracker.done(video)
            else:
                result.batches = _analyze_at_once(todo, out_dir, loaded, settings, identity, tracker, options,
                                                  videos_at_once, outcomes)  # fmt: skip
        _write_json(_rank_file(out_dir, rank), {"rank": rank, "processes": processes, "videos": len(mine)})
        if main:
            tracker.wait_for_ranks(poll_s)
            seals = read_seals(out_dir, videos, settings)  # each timeline's checksum computed once
            result.merged = write_merged(out_dir, videos, settings, persons=persons, seals=seals)
            result.complete = sum(record is not None for record in seals.values())
            write_failures(out_dir, videos, settings, seals=seals)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    for video in todo:  # what this process did, also when interrupted
        outcome = outcomes.get(video.name)
        if isinstance(outcome, str):
            result.failed[str(video.path)] = outcome
        elif outcome is not None:
            result.analysed.append(video.path)
            result.seconds += outcome
    return result


class _Progress:
    """The main process's bar: seconds of video and videos done over the whole corpus (the other processes' work
    is counted from their seals and failure records, looked up every few seconds)."""

    def __init__(self, out_dir: Path, videos: list, bar, processes: int):
        self.out_dir, self.videos, self.bar, self.processes = out_dir, videos, bar, processes
        self.counted: set = set()
        self.current: dict = {}  # the seconds reached in each video being analysed here
        self.last_scan = 0.0
        self.seconds = 0.0

    def _duration(self, video) -> float:
        folder = self.out_dir / TIMELINES
        for suffix in (".done.json", ".failed.json"):
            try:
                return float(json.loads((folder / f"{video.name}{suffix}").read_text()).get("analysed_s") or 0.0)
            except (OSError, ValueError):
                continue
        return 0.0

    def _refresh(self) -> None:
        if self.bar is None:
            return
        self.bar.n = round(self.seconds + sum(self.current.values()), 1)
        self.bar.set_postfix_str(f"{len(self.counted)}/{len(self.videos)} videos", refresh=False)
        self.bar.refresh()

    def running(self, video, seconds: float) -> None:
        self.current[video.name] = seconds
        if self.processes > 1 and time.monotonic() - self.last_scan > 5.0:
            self.scan()
        self._refresh()

    def done(self, video) -> None:
        if video.name not in self.counted:
            self.counted.add(video.name)
            self.seconds += self._duration(video)
        self.current.pop(video.name, None)
        self._refresh()

    def scan(self) -> None:
        """Count the videos the other processes have finished."""
        self.last_scan = time.monotonic()
        folder = self.out_dir / TIMELINES
        for video in self.videos:
            if video.name not in self.counted and ((folder / f"{video.name}.done.json").exists()
                                                   or (folder / f"{video.name}.failed.json").exists()):  # fmt: skip
                self.counted.add(video.name)
                self.seconds += self._duration(video)
        self._refresh()

    def wait_for_ranks(self, poll_s: float) -> None:
        """Wait until every process has written its completion file (no collective barrier: no timeout, however
        unequal the shares)."""
        while not all(_rank_file(self.out_dir, k).exists() for k in range(self.processes)):
            self.scan()
            time.sleep(poll_s)
        self.scan()


class SharedBatches:
    """One model for several videos analysed at once (threads of one process): the windows each video's analysis
    sends are pooled into shared forward passes.

    It stands in for the model in :class:`~.analysis.TimelineAnalyzer`: a call blocks until the windows queued by
    all the videos make up ``max_batch`` windows, or until every video being analysed is waiting on the model (none
    can queue more), or ``max_wait_s`` has passed; then one of the waiting threads runs the model on all of them
    (in its own inference and autocast settings: every video uses the same) and each call gets its rows of the
    output. ``shared`` counts the forward passes that held the windows of more than one video.
    """

    def __init__(self, model, max_batch: int, max_wait_s: float = 5.0):
        import threading

        self.model, self.max_batch, self.max_wait_s = model, max(1, int(max_batch)), float(max_wait_s)
        self.config = model.config
        self._cond = threading.Condition()
        self._queue: list = []
        self.active = 0  # videos being analysed
        self.calls = self.shared = 0

    def to(self, device):
        self.model = self.model.to(device)
        return self

    def eval(self):
        self.model.eval()
        return self

    def __getattr__(self, name):  # has_eye_prior and the like: the model's
        return getattr(self.__dict__["model"], name)

    def video_started(self) -> None:
        with self._cond:
            self.active += 1

    def video_done(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def __call__(self, **tensors):
        request = _Request(tensors)  # compared by identity (a dict would compare its tensors)
        deadline = time.monotonic() + self.max_wait_s
        with self._cond:
            self._queue.append(request)
            self._cond.notify_all()
            while request.out is None and request.error is None:
                queued = sum(r.n for r in self._queue)
                waiting = len({r.thread for r in self._queue})
                if any(r is request for r in self._queue) and (queued >= self.max_batch or waiting >= self.active
                                               or time.monotonic() >= deadline):  # fmt: skip
                    batch, total = [], 0
                    for r in list(self._queue):
                        if batch and total + r.n > self.max_batch:
                            break
                        batch.append(r)
                        total += r.n
                    self._queue = self._queue[len(batch):]
                    self._cond.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cond.acquire()
                        self._cond.notify_all()
                else:
                    self._cond.wait(timeout=max(0.01, deadline - time.monotonic()))
        if request.error is not None:
            raise request.error
        return request.out

    def _run(self, batch: list) -> None:
        import types

        import torch

        try:
            joined = {key: torch.cat([r.tensors[key] for r in batch]) for key in batch[0].tensors}
            out = self.model(**joined)
        except BaseException as error:  # noqa: BLE001  (each waiting video gets the error)
            for r in batch:
                r.error = error
            return
        self.calls += 1
        self.shared += len({r.thread for r in batch}) > 1
        weights = getattr(out, "instruction_weights", None)
        start = 0
        for r in batch:
            part = slice(start, start + r.n)
            r.out = types.SimpleNamespace(logits=out.logits[part],
                                             instruction_weights=None if weights is None else weights[part])  # fmt: skip
            start += r.n


class _Request:
    """One call's windows waiting in :class:`SharedBatches`."""

    __slots__ = ("tensors", "n", "out", "error", "thread")

    def __init__(self, tensors: dict):
        import threading

        self.tensors, self.n = tensors, len(next(iter(tensors.values())))
        self.out, self.error, self.thread = None, None, threading.get_ident()


def _analyze_at_once(videos: list, out_dir: Path, model_and_processor, settings: dict, identity: str, tracker,
                     options: dict, at_once: int, outcomes: dict) -> dict:  # fmt: skip
    """Analyse ``videos`` ``at_once`` at a time in threads that share the model (:class:`SharedBatches`); fills
    ``outcomes`` (video name → seconds or failure reason). An interrupt stops every thread at its next rows and is
    raised again. Returns the forward passes run and how many were shared."""
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from .face_identity_mert import default_identity_backend
    from .inference import default_batch_size

    model, processor = model_and_processor
    batch_size = options["batch_size"] or default_batch_size(options["device"])
    shared = SharedBatches(model, int(batch_size) * at_once, max_wait_s=1.0)
    stop, local = threading.Event(), threading.local()

    def work(video):
        if stop.is_set():
            raise KeyboardInterrupt
        if not hasattr(local, "identity"):  # one identity backend per thread (dlib's objects are not shared)
            local.identity = default_identity_backend(identity)
        shared.video_started()
        try:
            return _analyze_one(video, out_dir, (shared, processor), settings, local.identity, tracker, options, stop)
        finally:
            shared.video_done()

    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="emvfer-video") as pool:
        futures = {pool.submit(work, video): video for video in videos}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    video = futures[future]
                    outcomes[video.name] = future.result()  # a KeyboardInterrupt of a thread is raised here
                    tracker.done(video)
        except KeyboardInterrupt:
            stop.set()
            for future in pending:
                future.cancel()
            wait(pending)
            raise
    return {"calls": shared.calls, "shared": shared.shared}


def _analyze_one(video: CorpusVideo, out_dir: Path, model_and_processor, settings: dict, backend, tracker,
                 options: dict, stop=None):  # fmt: skip
    """Analyse one video into its sealed timeline; the seconds analysed, or the reason it failed (recorded in
    ``<name>.failed.json``). A KeyboardInterrupt leaves no file under a final name and is raised again."""
    from .analysis import analyze_video
    from .outputs import atomic_output

    folder = out_dir / TIMELINES
    table_path, seal, failed = (folder / f"{video.name}.parquet", folder / f"{video.name}.done.json",
                                folder / f"{video.name}.failed.json")  # fmt: skip
    seal.unlink(missing_ok=True)  # stale (other settings, changed source): the new timeline replaces it
    model, processor = model_and_processor
    start_s = float(options.get("start") or 0.0)

    def on_rows(rows) -> None:
        if stop is not None and stop.is_set():  # another thread was interrupted: stop here, keep nothing
            raise KeyboardInterrupt
        if len(rows):
            tracker.running(video, max(0.0, float(rows.end_s.max()) - start_s))

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a stream that ends early is recorded in the seal and the last row
            timeline = analyze_video(video.path, model, processor, progress=False, on_rows=on_rows,
                                     identity=backend, **options)  # fmt: skip
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001  (any failure of one video is recorded; the others go on)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        _write_json(failed, {"video": str(video.path), "error": type(error).__name__, "reason": reason,
                             "settings": settings})  # fmt: skip
        return reason
    if "interrupted" in timeline.attrs:
        raise KeyboardInterrupt(timeline.attrs["interrupted"])
    timeline.insert(0, "video", str(video.path))
    table = _typed_table(timeline)
    import pyarrow.parquet as pq

    with atomic_output(table_path) as target:
        pq.write_table(table, target)
    record = {"video": str(video.path), "rows": len(timeline), "sha256": _sha256(table_path), "settings": settings,
              "source": _source_state(video.path), "analysed_s": round(float(timeline.attrs["analysed_s"]), 3),
              "num_tracks": int(timeline.attrs["num_tracks"]), "identity": timeline.attrs["identity"],
              "track_descriptors": timeline.attrs["track_descriptors"],
              "stopped_early": timeline.attrs.get("stopped_early", "")}  # fmt: skip
    _write_json(seal, record)
    failed.unlink(missing_ok=True)
    return float(timeline.attrs["analysed_s"])


def read_seals(out_dir, videos: list[CorpusVideo], settings: Optional[dict] = None) -> dict:
    """``{video name: its seal record, or None}`` (:func:`read_seal`) for every video."""
    return {v.name: read_seal(Path(out_dir), v, settings) for v in videos}


def write_merged(out_dir, videos: list[CorpusVideo], settings: Optional[dict] = None, persons: bool = False,
                 seals: Optional[dict] = None) -> Path:  # fmt: skip
    """Merge the complete timelines of ``videos`` (in their order) into ``out_dir/timeline.parquet``, with the
    manifest columns after ``video`` and, with ``persons``, ``person_id`` after ``track_id`` (tracks grouped by face
    identity over the whole corpus; -1 on rows without a face). Written under a partial name, then renamed.
    ``seals``: :func:`read_seals` of the videos where the caller has it (else read here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .face_identity_mert import cluster_descriptors, identity_backend_from_name
    from .outputs import atomic_output

    out_dir = Path(out_dir)
    seals = read_seals(out_dir, videos, settings) if seals is None else seals
    complete = [(v, seals[v.name]) for v in videos if seals[v.name] is not None]
    person_of: dict = {}
    if persons and complete:
        names = {r.get("identity") for _, r in complete}
        if len(names) > 1:
            raise ValueError(f"{out_dir}: the timelines were written with different identity backends ({sorted(names)}): "
                             "analyse again with one --identity to group persons")  # fmt: skip
        keys, descriptors = [], []
        for video, record in complete:
            for track, descriptor in (record.get("track_descriptors") or {}).items():
                keys.append((video.name, int(track)))
                descriptors.append(descriptor)
        groups = cluster_descriptors(descriptors, identity_backend_from_name(names.pop()))
        person_of = dict(zip(keys, groups.tolist()))
    columns = list(videos[0].extra) if videos else []
    target_path = out_dir / MERGED
    writer = None
    with atomic_output(target_path) as target:
        try:
            for video, _ in complete:
                table = pq.read_table(out_dir / TIMELINES / f"{video.name}.parquet")
                table = table.set_column(table.schema.get_field_index("video"), "video",
                                         pa.array([str(video.path)] * len(table), pa.string()))  # fmt: skip
                for k, name in enumerate(columns):
                    table = table.add_column(1 + k, name, pa.array([video.extra.get(name, "")] * len(table), pa.string()))
                if persons:
                    tracks = table.column("track_id").to_pylist()
                    ids = [person_of.get((video.name, int(t)), -1) if t >= 0 else -1 for t in tracks]
                    table = table.add_column(table.schema.get_field_index("track_id") + 1, "person_id",
                                             pa.array(ids, pa.int64()))  # fmt: skip
                if writer is None:
                    writer = pq.ParquetWriter(str(target), table.schema)
                writer.write_table(table.cast(writer.schema))
            if writer is None:  # no complete timeline: an empty dataset with the columns known
                schema = pa.schema([("video", pa.string()), *((c, pa.string()) for c in columns)])
                writer = pq.ParquetWriter(str(target), schema)
        finally:
            if writer is not None:
                writer.close()
    return target_path


def write_failures(out_dir, videos: list[CorpusVideo], settings: Optional[dict] = None,
                   seals: Optional[dict] = None) -> Optional[Path]:  # fmt: skip
    """``out_dir/failures.csv``: each video of the corpus without a complete timeline that failed (``video``,
    ``error``, ``reason``); removed when there is none. Returns its path, or None. ``seals``: as
    :func:`write_merged`."""
    import pandas as pd

    from .outputs import atomic_output

    out_dir = Path(out_dir)
    seals = read_seals(out_dir, videos, settings) if seals is None else seals
    rows = []
    for video in videos:
        if seals[video.name] is not None:
            continue
        try:
            record = json.loads((out_dir / TIMELINES / f"{video.name}.failed.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rows.append({"video": str(video.path), "error": record.get("error", ""), "reason": record.get("reason", "")})
    path = out_dir / FAILURES
    if not rows:
        path.unlink(missing_ok=True)
        return None
    with atomic_output(path) as target:
        pd.DataFrame(rows, columns=["video", "error", "reason"]).to_csv(target, index=False)
    return path


__all__ = ["CorpusResult", "CorpusVideo", "MANIFEST_EXTENSIONS", "VIDEO_EXTENSIONS", "analyze_corpus",
           "process_state", "read_seal", "resolve_corpus", "write_failures", "write_merged"]  # fmt: skip
