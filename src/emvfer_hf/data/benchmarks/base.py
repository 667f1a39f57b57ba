"""What a benchmark is, and the registry that holds them (the idea of pymovements' dataset definitions: one
definition per data set, found by name).

A :class:`Benchmark` gathers everything the package knows about one data set: its folder layout (the loader), its
label sets and protocols, how a run splits it into training and test data, the sample writer that renders a
synthetic copy of its layout, the metrics its results are headlined with and, where the benchmark is scored per
frame, how window predictions become frame predictions. The training, evaluation and study code ask this object;
they never branch on a data set's name.

Each benchmark module (``dfew.py``, ``mafw.py``, ...) defines one subclass and registers an instance with
:func:`register`; :func:`get_benchmark` and :func:`benchmark_names` read the registry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import datasets

from ..labels import LABELS

#: Per-clip metrics (emvfer_hf.metrics.classification_metrics): the summary line of a fine-tuning run ...
CLIP_HEADLINE = ("war", "uar", "uf1")
#: ... and the columns of the evaluation table
CLIP_TABLE = ("war", "uar", "uf1", "macro_f1")
#: How a benchmark is split into training and test data
EVALUATIONS = ("folds", "split", "loso")


class Benchmark:
    """One benchmark: layout, labels, protocols, loader, sample writer, headline metrics, frame scoring.

    Attributes (class attributes of each subclass):
        name: the registry key (``"dfew"``), as on the command line.
        title: how the data set is written in model cards and reports (``"CASME II"``).
        folder: the folder its sample data goes to under ``emvfer sample-data --output`` (``"CASME2"``).
        label_sets: label protocol → key of :data:`emvfer_hf.data.labels.LABELS`, the default protocol first; a
            benchmark with one class set has the protocol ``""`` only.
        evaluation: ``"folds"`` (k-fold cross-validation, ``fold`` 1..5), ``"split"`` (a fixed training and
            evaluation split) or ``"loso"`` (leave one subject out).
        headline_metrics: the metrics of the summary line of a fine-tuning run.
        table_metrics: the columns of the evaluation table.
        frame_scored: the benchmark is scored per frame (:meth:`frame_truth`, :meth:`frame_predictions`).
        eye_tracking: the benchmark has eye-tracker recordings (it can serve stage-1 pre-training).
        sample_stream: the stream of the sample generator's random numbers reserved for this benchmark (fixed, so
            that a sample set stays the same whatever other benchmarks are registered).
        sample_test_split: in the ``"gap"`` sample world its sample set has a test split of its own
            (``test_clips_per_class``).
    """

    name: str = ""
    title: str = ""
    folder: str = ""
    label_sets: Dict[str, str] = {}
    evaluation: str = "folds"
    headline_metrics: Tuple[str, ...] = CLIP_HEADLINE
    table_metrics: Tuple[str, ...] = CLIP_TABLE
    frame_scored: bool = False
    eye_tracking: bool = False
    sample_stream: int = -1
    sample_test_split: bool = False

    # -------------------------------------------------------------------------------------------------- labels
    @property
    def protocols(self) -> Tuple[str, ...]:
        """The label protocols (``("3class", "5class")``), empty where the benchmark has one class set."""
        return tuple(p for p in self.label_sets if p)

    def label_names(self, protocol: Optional[str] = None) -> Tuple[str, ...]:
        """The class names of ``protocol`` (default: the first), index 0 first."""
        key = protocol if protocol is not None else next(iter(self.label_sets))
        if key not in self.label_sets:
            raise ValueError(f"{self.title}: unknown protocol {protocol!r}; expected one of {list(self.protocols)}")
        return LABELS[self.label_sets[key]]

    # ---------------------------------------------------------------------------------------------- loading
    #: the loader (``load_<name>(root, **kwargs)``), a ``staticmethod`` of each subclass
    loader = None

    def load(self, root, **kwargs) -> datasets.DatasetDict:
        """The benchmark's loader (``load_<name>``) on its released layout under ``root``."""
        if self.loader is None:
            raise NotImplementedError(f"{type(self).__name__} defines no loader")
        return self.loader(root, **kwargs)

    def load_splits(self, root, fold: int = 1, protocol: Optional[str] = None, test_subject: Optional[str] = None):
        """``(train, test)`` ``datasets.Dataset``s of one run; for leave-one-subject-out without ``test_subject``,
        ``(all, None)``. ``protocol`` is the label protocol (ignored where the benchmark has a single class set;
        ``None``: the default one)."""
        kwargs = {"protocol": protocol or self.protocols[0]} if self.protocols else {}
        if self.evaluation == "loso":
            splits = self.load(root, test_subject=test_subject, **kwargs)
        else:
            splits = self.load(root, fold=fold, **kwargs)
        if "all" in splits:
            return splits["all"], None
        return splits["train"], splits["test"]

    # -------------------------------------------------------------------------------------------- sample data
    def write_sample(self, root: Path, writer, clips_per_class: int, num_frames: int, size: Tuple[int, int],
                     noise: float, seed: int, **world) -> None:
        """Render a small synthetic copy of the benchmark in its exact layout under ``root``, recording each clip
        with ``writer`` (:class:`emvfer_hf.data.sample_data.SampleWriter`). ``world`` holds the ``"gap"`` world's
        ``domain`` (and ``test_cpc`` where :attr:`sample_test_split`)."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- frame scoring
    def frame_truth(self, root) -> Optional[dict]:
        """The per-frame ground truth of the evaluation split (``{video: labels of frames 1..n}``), or None where
        the benchmark is scored per clip."""
        return None

    def frame_predictions(self, dataset, predictions: dict, truth: dict) -> dict:
        """Per-frame predictions (:func:`emvfer_hf.metrics.windows_to_frames`) of the rows of ``dataset`` predicted
        in ``predictions``, against ``truth`` (:meth:`frame_truth`)."""
        raise NotImplementedError(f"{self.title} is scored per clip")

    def frame_metrics(self, frames: dict, num_classes: int) -> dict:
        """The per-frame metrics of :meth:`frame_predictions`' output (with the frame counts)."""
        raise NotImplementedError(f"{self.title} is scored per clip")

    def __repr__(self) -> str:
        return f"<Benchmark {self.name}: {self.title}, {self.evaluation}>"


_REGISTRY: Dict[str, Benchmark] = {}


def canonical_name(name: str) -> str:
    """A benchmark name as the registry keys it: lower case, without ``-``, ``_``, brackets and ``^``
    (``"Aff-Wild2"`` → ``"affwild2"``, ``"CAS(ME)^3"`` → ``"casme3"``)."""
    return re.sub(r"[-_()^]", "", str(name).lower())


def register(benchmark: Benchmark) -> Benchmark:
    """Add ``benchmark`` to the registry under its name (checked: a known evaluation, a fresh name and sample
    stream)."""
    if benchmark.evaluation not in EVALUATIONS:
        raise ValueError(f"{benchmark.name}: evaluation must be one of {EVALUATIONS}, got {benchmark.evaluation!r}")
    if benchmark.name in _REGISTRY:
        raise ValueError(f"a benchmark {benchmark.name!r} is registered already")
    if any(b.sample_stream == benchmark.sample_stream for b in _REGISTRY.values()):
        raise ValueError(f"{benchmark.name}: sample stream {benchmark.sample_stream} is taken")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def find_benchmark(name) -> Optional[Benchmark]:
    """The registered benchmark called ``name`` (any spelling :func:`canonical_name` accepts), or None."""
    return _REGISTRY.get(canonical_name(name)) if name is not None else None


def get_benchmark(name) -> Benchmark:
    """The registered benchmark called ``name``; a ``ValueError`` lists the known names otherwise."""
    benchmark = find_benchmark(name)
    if benchmark is None:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(_REGISTRY)}")
    return benchmark


def benchmark_names() -> Tuple[str, ...]:
    """The registered benchmarks' names, in the order of their sample streams."""
    return tuple(sorted(_REGISTRY, key=lambda n: _REGISTRY[n].sample_stream))
