"""Datasets of EM-VFER: annotation parsers, loaders of the six benchmarks, their protocols, the sample-data
generator and the preprocessing cache (see docs/datasets.md and docs/design.md §Sample data)."""

from .annotations import (
    read_affwild2_labels,
    read_casme2_labels,
    read_casme3_labels,
    read_dfew_split,
    read_emer_labels,
    read_emer_split,
    read_mafw_split,
)
from .cache import (
    PreprocessingCache,
    compute_fn_version,
    make_compute_fn,
    media_fingerprint,
    preprocess_dataset,
)
from .labels import LABELS, label_names
from .loaders import (
    load_affwild2,
    load_benchmark,
    load_casme2,
    load_casme3,
    load_dfew,
    load_emer,
    load_mafw,
    loso_splits,
)
from .sample_data import (
    SAMPLE_DATASETS,
    add_sample_data_arguments,
    load_sample_eye_series,
    make_sample_dataset,
    run_sample_data,
    sample_eye_series_path,
)

__all__ = [
    "LABELS", "SAMPLE_DATASETS", "PreprocessingCache", "add_sample_data_arguments", "label_names",
    "load_affwild2", "load_benchmark", "load_casme2", "load_casme3", "load_dfew", "load_emer", "load_mafw",
    "load_sample_eye_series", "loso_splits", "compute_fn_version", "make_compute_fn", "make_sample_dataset",
    "media_fingerprint",
    "preprocess_dataset", "read_affwild2_labels", "read_casme2_labels", "read_casme3_labels", "read_dfew_split",
    "read_emer_labels", "read_emer_split", "read_mafw_split", "run_sample_data", "sample_eye_series_path",
]
