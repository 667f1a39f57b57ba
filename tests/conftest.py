"""Shared test fixtures: tiny MERT configurations (ARCHITECTURE §8) and offline Hugging Face settings."""

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
