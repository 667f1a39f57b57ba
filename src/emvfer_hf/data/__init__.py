"""Datasets of EM-VFER: the benchmark registry (:mod:`emvfer_hf.data.benchmarks`: one module per benchmark with its
annotation readers, loader, protocols and sample writer), the class orders, the synthetic world of the sample data
and the preprocessing cache (see docs/datasets.md and docs/design.md §Sample data)."""

# the registry, the loaders (with the protocol helpers), the annotation readers, the sample data sets
from .benchmarks import Benchmark, benchmark_names, get_benchmark, load_benchmark
from .benchmarks import affwild2_frame_labels, load_affwild2, load_casme2, load_casme3, load_dfew, load_emer, load_mafw
from .benchmarks import loso_splits
from .benchmarks import read_affwild2_labels, read_casme2_labels, read_casme3_labels, read_dfew_split
from .benchmarks import read_emer_labels, read_emer_split, read_mafw_split
from .benchmarks import add_sample_data_arguments, make_sample_dataset, run_sample_data
from .cache import (
    PreprocessingCache,
    compute_fn_version,
    make_compute_fn,
    media_fingerprint,
    preprocess_dataset,
)
from .labels import LABELS, label_names
from .sample_data import load_sample_eye_series, sample_eye_series_path

__all__ = [
    "Benchmark", "LABELS", "PreprocessingCache", "add_sample_data_arguments", "affwild2_frame_labels",
    "benchmark_names", "compute_fn_version", "get_benchmark", "label_names", "load_affwild2", "load_benchmark",
    "load_casme2", "load_casme3", "load_dfew", "load_emer", "load_mafw", "load_sample_eye_series", "loso_splits",
    "make_compute_fn", "make_sample_dataset", "media_fingerprint", "preprocess_dataset", "read_affwild2_labels",
    "read_casme2_labels", "read_casme3_labels", "read_dfew_split", "read_emer_labels", "read_emer_split",
    "read_mafw_split", "run_sample_data", "sample_eye_series_path",
]
