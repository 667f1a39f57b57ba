"""The benchmark registry: one module per benchmark (EMER, DFEW, MAFW, Aff-Wild2, CASME II, CAS(ME)^3), each
defining its folder layout, label sets, protocols, annotation readers, loader, sample writer, headline metrics and
frame scoring as a :class:`~emvfer_hf.data.benchmarks.base.Benchmark`; :func:`get_benchmark` finds one by name and
:func:`benchmark_names` lists them (docs/datasets.md).

Importing this package registers the six benchmarks.
"""

from .base import Benchmark, benchmark_names, canonical_name, find_benchmark, get_benchmark, register
from .common import loso_splits

# the benchmarks, in the order of their sample streams (each registers itself)
from .emer import EMER, load_emer, read_emer_labels, read_emer_split  # noqa: I001
from .dfew import DFEW, load_dfew, read_dfew_split
from .mafw import MAFW, load_mafw, read_mafw_split
from .affwild2 import AFFWILD2, affwild2_frame_labels, load_affwild2, read_affwild2_labels
from .casme2 import CASME2, load_casme2, read_casme2_labels
from .casme3 import CASME3, load_casme3, read_casme3_labels
from .samples import add_sample_data_arguments, make_sample_dataset, run_sample_data


def load_benchmark(name: str, root, **kwargs):
    """Load benchmark ``name`` (``emer``, ``dfew``, ``mafw``, ``affwild2``, ``casme2``, ``casme3``; any spelling
    :func:`canonical_name` accepts) from ``root`` with its loader (``load_<name>(root, **kwargs)``)."""
    return get_benchmark(name).load(root, **kwargs)


__all__ = [
    "AFFWILD2", "Benchmark", "CASME2", "CASME3", "DFEW", "EMER", "MAFW", "add_sample_data_arguments",
    "affwild2_frame_labels", "benchmark_names", "canonical_name", "find_benchmark", "get_benchmark", "load_affwild2",
    "load_benchmark", "load_casme2", "load_casme3", "load_dfew", "load_emer", "load_mafw", "loso_splits",
    "make_sample_dataset", "read_affwild2_labels", "read_casme2_labels", "read_casme3_labels", "read_dfew_split",
    "read_emer_labels", "read_emer_split", "read_mafw_split", "register", "run_sample_data",
]
