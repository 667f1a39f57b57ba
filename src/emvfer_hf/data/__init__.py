"""Datasets of EM-VFER: annotation parsers, loaders of the six benchmarks, their protocols, the sample-data
generator and the preprocessing cache (see DATASETS.md and ARCHITECTURE §7)."""

from .annotations import (
    read_affwild2_labels,
    read_casme2_labels,
    read_casme3_labels,
    read_dfew_split,
    read_emer_labels,
    read_emer_split,
    read_mafw_split,
)
from .labels import LABELS, label_names
