"""The benchmark registry (emvfer_hf.data.benchmarks): every benchmark found by name, what each one declares, and
that a run's splits come from the benchmark object."""

import pytest

from emvfer_hf.data import LABELS, benchmark_names, get_benchmark, make_sample_dataset
from emvfer_hf.data.benchmarks import find_benchmark
from emvfer_hf.metrics import AFFWILD2_HEADLINE


def test_the_six_benchmarks_are_registered_in_the_order_of_their_sample_streams():
    assert benchmark_names() == ("emer", "dfew", "mafw", "affwild2", "casme2", "casme3")
    assert [get_benchmark(n).sample_stream for n in benchmark_names()] == list(range(6))


@pytest.mark.parametrize("spelling, name", [("Aff-Wild2", "affwild2"), ("CAS(ME)^3", "casme3"), ("CASME_2", "casme2"),
                                            ("DFEW", "dfew")])
def test_a_benchmark_is_found_by_any_usual_spelling(spelling, name):
    assert get_benchmark(spelling).name == name


def test_an_unknown_name_lists_the_known_ones():
    assert find_benchmark("ravdess") is None
    with pytest.raises(ValueError, match="unknown dataset 'ravdess'.*'affwild2'"):
        get_benchmark("ravdess")


def test_each_benchmark_declares_its_labels_protocols_and_metrics():
    for name in benchmark_names():
        bench = get_benchmark(name)
        assert bench.title and bench.folder and bench.loader is not None
        assert all(key in LABELS for key in bench.label_sets.values())
        assert bench.label_names() == LABELS[next(iter(bench.label_sets.values()))]
        assert bench.frame_scored == (name == "affwild2")
        assert bench.eye_tracking == (name == "emer")
    assert get_benchmark("affwild2").headline_metrics == AFFWILD2_HEADLINE
    assert get_benchmark("dfew").headline_metrics == ("war", "uar", "uf1")
    assert get_benchmark("casme3").protocols == ("3class", "4class", "7class")
    assert get_benchmark("casme2").evaluation == "loso" and get_benchmark("mafw").evaluation == "folds"
    with pytest.raises(ValueError, match="unknown protocol"):
        get_benchmark("emer").label_names("9class")


def test_load_splits_follows_each_benchmarks_evaluation(tmp_path):
    opts = dict(clips_per_class=1, num_frames=8, resolution=96, seed=0)
    casme2 = make_sample_dataset("casme2", tmp_path / "CASME2", **opts)
    every, none = get_benchmark("casme2").load_splits(casme2)
    assert none is None and every.features["label"].names == list(LABELS["casme2_3class"])
    train, test = get_benchmark("casme2").load_splits(casme2, protocol="5class", test_subject="sub01")
    assert set(test["subject"]) == {"sub01"} and "sub01" not in set(train["subject"])
    assert train.features["label"].names == list(LABELS["casme2_5class"])
    dfew = make_sample_dataset("dfew", tmp_path / "DFEW", **opts)
    train, test = get_benchmark("dfew").load_splits(dfew, fold=2, protocol="ignored")
    assert len(train) + len(test) == len(LABELS["dfew"])
