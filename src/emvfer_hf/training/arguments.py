"""The command-line flags shared by `examples/pretrain_mert.py` and `examples/finetune_peml.py`, following the
conventions of transformers' `*_no_trainer.py` examples."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..data.benchmarks import benchmark_names

DATASET_CHOICES = benchmark_names()  # the registered benchmarks (emvfer_hf.data.benchmarks)


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags of one training run (model, data, optimisation, checkpointing, tracking, Hub)."""
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASET_CHOICES, default=None,
                      help="benchmark layout of --data_dir (default: the bundled sample data)")
    data.add_argument("--data_dir", default=None,
                      help="dataset root; without it the bundled sample data is generated and used")
    data.add_argument("--fold", type=int, default=1, help="fold of 5-fold protocols (DFEW, MAFW, EMER)")
    data.add_argument("--protocol", default=None,
                      help="label protocol (CASME: 3class/5class/4class/7class; EMER: 7class/3class) or 'loso'")
    data.add_argument("--test_subject", default=None, help="LOSO: the held-out subject (default: every subject)")
    data.add_argument("--validation_fraction", type=float, default=None,
                      help="share of the training fold held out as a validation split, for early stopping and the "
                      "best model (the test fold is scored once, at the end). Grouped by subject where the dataset "
                      "has subjects (EMER participants, CASME subjects), by video on Aff-Wild2, else a random split "
                      "stratified by label (DFEW, MAFW). Default: 0.1 with --early_stopping_patience or "
                      "--metric_for_best_model, else 0 (every training clip trains)")
    data.add_argument("--validation_split_seed", type=int, default=0,
                      help="seed of the validation split; fixed apart from --seed so that runs with several "
                      "training seeds share one validation split (default 0)")
    data.add_argument("--max_train_samples", type=int, default=None)
    data.add_argument("--max_eval_samples", type=int, default=None)
    data.add_argument("--cache_dir", default=None,
                      help="preprocessing cache of faces + visual eye series (default: $EMVFER_CACHE/preprocessing or "
                      "~/.cache/emvfer/preprocessing)")
    data.add_argument("--preprocessing_num_workers", type=int, default=None,
                      help="processes for the one-time face + eye-movement preprocessing")
    data.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", default=None, help="checkpoint folder or Hub id")
    model.add_argument("--model_size", choices=("small", "paper"), default=None,
                       help="size of a model built from scratch and its processor (default: small on the sample "
                       "data, the paper configuration on a real dataset)")
    model.add_argument("--config_overrides", default=None,
                       help='comma-separated MERTConfig overrides, e.g. "num_hidden_layers=2,hidden_size=64"')
    model.add_argument("--ignore_mismatched_sizes", action="store_true",
                       help="re-initialise the classifier and level heads when the label set differs")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--per_device_train_batch_size", type=int, default=4)
    opt.add_argument("--per_device_eval_batch_size", type=int, default=4)
    opt.add_argument("--learning_rate", type=float, default=1e-4)
    opt.add_argument("--weight_decay", type=float, default=1e-2,
                     help="AdamW weight decay of the weight matrices only: vectors (biases, norms, alpha, fusion "
                     "gates), prompts, CLS tokens and position / missing embeddings get none (as in BERT and ViT "
                     "practice: decaying them pulls learnt tokens and normalisation scales towards 0 without "
                     "regularising any mapping)")
    opt.add_argument("--num_train_epochs", type=int, default=20)
    opt.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    opt.add_argument("--gradient_accumulation_steps", type=int, default=1)
    opt.add_argument("--lr_scheduler_type", default="cosine")
    opt.add_argument("--num_warmup_steps", type=int, default=0)
    opt.add_argument("--seed", type=int, default=42)
    opt.add_argument("--max_grad_norm", type=float, default=None,
                     help="clip the global gradient norm to this value (default: no clipping)")
    opt.add_argument("--gradient_checkpointing", action="store_true",
                     help="recompute each Transformer layer in the backward pass (less activation memory)")
    opt.add_argument("--torch_compile", action="store_true", help="wrap the model in torch.compile")
    opt.add_argument("--torch_compile_backend", default="inductor",
                     help="torch.compile backend (inductor; 'eager' or 'aot_eager' to debug)")
    opt.add_argument("--early_stopping_patience", type=int, default=None,
                     help="stop when the validation metric has not improved for this many evaluations (epochs); "
                     "needs a validation split (--validation_fraction)")
    opt.add_argument("--metric_for_best_model", default=None,
                     help="validation metric of early stopping and of the best model, whose weights are restored "
                     "before the one final test evaluation (default: the first one, war)")
    opt.add_argument("--greater_is_better", type=lambda v: str(v).lower() in ("1", "true", "yes"), default=True,
                     help="whether a larger --metric_for_best_model is better (default true)")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default=None, help="default: emvfer-<dataset>")
    run.add_argument("--checkpointing_steps", default=None, help="an integer (every N steps) or 'epoch'")
    run.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest'")
    run.add_argument("--with_tracking", action="store_true")
    run.add_argument("--report_to", default="all")
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", default=None, help="default: <your namespace>/<output_dir name>")
    run.add_argument("--hub_token", default=None)
    return parser


DEFAULT_VALIDATION_FRACTION = 0.1  # of the training fold, when early stopping or best-model selection asks for one


def validation_fraction(args) -> float:
    """`--validation_fraction`, resolved: DEFAULT_VALIDATION_FRACTION when early stopping or best-model selection is
    requested, 0 otherwise (short runs keep all their training clips). Checks it before any training starts."""
    fraction = getattr(args, "validation_fraction", None)
    selects = getattr(args, "early_stopping_patience", None) is not None or getattr(args, "metric_for_best_model", None)
    if fraction is None:
        fraction = DEFAULT_VALIDATION_FRACTION if selects else 0.0
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--validation_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0 and selects:
        flag = "--early_stopping_patience" if getattr(args, "early_stopping_patience", None) is not None else (
            "--metric_for_best_model")
        raise ValueError(f"{flag} selects on a validation split, never on the test fold: --validation_fraction must "
                         "be > 0 (or leave it out for the default 0.1)")
    return float(fraction)


def parse_config_overrides(text: str | None) -> dict:
    """`"a=1,b=0.5,c=true,d=[1,2]"` → `{"a": 1, "b": 0.5, "c": True, "d": [1, 2]}`."""
    import json

    overrides = {}
    for item in _split_top_level(text or ""):
        if "=" not in item:
            raise ValueError(f"--config_overrides: {item!r} is not key=value")
        key, value = (part.strip() for part in item.split("=", 1))
        try:
            overrides[key] = json.loads(value.lower() if value.lower() in ("true", "false", "null") else value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p for p in parts + [current] if p.strip()]


def resolve_output_dir(args) -> Path:
    """`--output_dir`, defaulting to `emvfer-<dataset>`; checks that it is writable before any training starts."""
    name = args.output_dir or f"emvfer-{args.dataset or 'sample'}"
    path = Path(name)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test"):  # unique per process: no race
            pass
    except OSError as error:
        raise SystemExit(f"--output_dir {path}: not writable ({error.strerror or error})") from error
    args.output_dir = str(path)
    return path
