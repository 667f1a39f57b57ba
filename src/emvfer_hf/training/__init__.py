"""What the example scripts share: data for the two stages, the Accelerate loop, model cards, Hub upload."""

from .arguments import add_training_arguments, parse_config_overrides, resolve_output_dir
from .data import ClipDataset, collate_clips, preprocess_splits
from .loop import build_optimizer, predict, train
from .stages import run_evaluate, run_finetune, run_pretrain

__all__ = [
    "ClipDataset",
    "add_training_arguments",
    "build_optimizer",
    "collate_clips",
    "parse_config_overrides",
    "preprocess_splits",
    "predict",
    "resolve_output_dir",
    "run_evaluate",
    "run_finetune",
    "run_pretrain",
    "train",
]
