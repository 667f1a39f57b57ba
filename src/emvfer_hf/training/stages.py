"""The two stages of EM-VFER and the evaluation, as functions of parsed command-line flags.

`examples/pretrain_mert.py`, `examples/finetune_peml.py` and `examples/evaluate.py` are thin wrappers around
`run_pretrain`, `run_finetune` and `run_evaluate`; tests call these directly.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shlex
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..configuration_mert import MERTConfig
from ..data.benchmarks import find_benchmark, get_benchmark
from ..metrics import (
    classification_metrics,
    confusion_matrix,
    fold_summary,
    pool_frames,
    save_confusion_matrix,
)
from ..modeling_mert import MERTForVideoClassification
from ..video_processing_mert import MERTVideoProcessor
from .arguments import parse_config_overrides, resolve_output_dir, validation_fraction
from .data import ClipDataset, clip_eye_series, preprocess_splits, split_validation
from .loop import (
    make_dataloader,
    predict,
    predicted_labels,
    save_json,
    save_trained,
    train,
)

logger = logging.getLogger(__name__)

SAMPLE_DATA_DIR = Path("sample_data")  # where `emvfer sample-data` writes by default
# `--model_size small` (the default on the bundled sample data): a MERT that trains in minutes on 2 CPU cores.
SAMPLE_MODEL_CONFIG = dict(
    num_frames=8, image_size=64, patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=128, eye_sequence_length=64, fusion_bottleneck_size=16, head_hidden_size=32,
    num_prompt_tokens=4,
)  # fmt: skip
SAMPLE_PROCESSOR_OPTIONS = dict(eye_frames=16, face_detection_size=160)


# ----------------------------------------------------------------------------------------------------------------------
# Data
def _accelerator(args, output_dir: Path):
    """The run's `Accelerator`; seeds every RNG first, so the model's initialisation is reproducible too."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(args.seed)
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=str(output_dir),
    )


def ensure_sample_data(name: str, root: Optional[Path] = None, main_process_first=None) -> Path:
    """The bundled sample data of benchmark `name` under `sample_data/<its folder>` (generated once, on the main
    process first)."""
    from ..data.benchmarks import make_sample_dataset
    from ..data.sample_data import MANIFEST

    root = Path(root or SAMPLE_DATA_DIR / get_benchmark(name).folder)
    context = main_process_first() if main_process_first is not None else contextlib.nullcontext()
    with context:
        if not (root / MANIFEST).exists():
            logger.info("writing the %s sample data to %s", name, root)
            make_sample_dataset(name, root)  # the defaults of `emvfer sample-data`
    return root


def load_splits(name: str, root: Path, args) -> tuple:
    """`(train, test)` `datasets.Dataset`s of one fold of benchmark `name` (for LOSO: `(all, None)`), as the
    benchmark splits itself (`Benchmark.load_splits`) for `--fold`, `--protocol` (the label protocol; "loso" names
    the evaluation, not a label set) and `--test_subject`."""
    protocol = args.protocol if args.protocol not in (None, "loso") else None
    return get_benchmark(name).load_splits(root, fold=args.fold, protocol=protocol, test_subject=args.test_subject)


def is_sample_data(root: Path) -> bool:
    """Whether `root` was written by the sample-data generator (it leaves a manifest)."""
    from ..data.sample_data import MANIFEST

    return (Path(root) / MANIFEST).exists()


def is_small(args) -> bool:
    """`--model_size`, defaulting to "small" on the bundled sample data and "paper" on a real dataset."""
    return (getattr(args, "model_size", None) or ("small" if args.data_dir is None else "paper")) == "small"


def _limit(dataset, count: Optional[int]):
    return dataset if dataset is None or count is None else dataset.select(range(min(count, len(dataset))))


def label_names_of(dataset) -> list[str]:
    return list(dataset.features["label"].names)


def metrics_for(label_names):
    """`compute_metrics(predictions) -> dict` with the official scalar metrics over the dataset's classes."""

    def compute(predictions: dict) -> dict:
        y_true, y_pred = predicted_labels(predictions)
        return classification_metrics(y_true, y_pred, num_classes=len(label_names))

    return compute


def carve_validation(args, train_set) -> tuple:
    """`(train, validation or None, info)`: the validation split of `--validation_fraction` (resolved by
    `arguments.validation_fraction`) and `--validation_split_seed` carved from the training fold
    (`data.split_validation`: by subject / video where the dataset has them, else stratified by label). `info` goes
    to the results JSON under "validation"."""
    fraction = validation_fraction(args)
    seed = getattr(args, "validation_split_seed", None)
    seed = 0 if seed is None else seed
    return split_validation(train_set, fraction, seed, label_names_of(train_set))


def clip_datasets(args, processor, eye_source: str, accelerator, train_set, validation_set, test_set) -> tuple:
    """`(train, validation, test)` `ClipDataset`s of the splits (None stays None) for `eye_source`, each split
    preprocessed first (`preprocess_splits`: cached face boxes, and for the visual source the eye series); the
    training split samples its frames at random, seeded by `--seed`."""
    train_set, validation_set, test_set = preprocess_splits(
        [train_set, validation_set, test_set], processor, eye_source == "visual", args.cache_dir,
        args.preprocessing_num_workers, accelerator,
    )  # fmt: skip
    return (
        ClipDataset(train_set, processor, eye_source, train=True, seed=args.seed),
        None if validation_set is None else ClipDataset(validation_set, processor, eye_source),
        None if test_set is None else ClipDataset(test_set, processor, eye_source),
    )


def _selection_results(history: dict, validation: dict) -> dict:
    """What the results JSON says about model selection: the validation split, the per-epoch validation metrics,
    the restored best epoch and where training stopped."""
    keys = ("best_epoch", "best_metric", "stopped_early_at_epoch")
    return {"validation": validation, "validation_history": history["eval"],
            **{k: history[k] for k in keys if k in history}}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Models
def _sample_or_paper_config(args, label_names: list[str], sample: bool) -> MERTConfig:
    base = dict(SAMPLE_MODEL_CONFIG) if sample else {}
    base.update(parse_config_overrides(args.config_overrides))
    return MERTConfig(
        **base,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )


def processor_for(config: MERTConfig, sample: bool, **overrides) -> MERTVideoProcessor:
    """A processor matching `config` (frames, crop size, eye steps); `overrides` are other processor settings."""
    options = {**(SAMPLE_PROCESSOR_OPTIONS if sample else {}), **overrides}
    return MERTVideoProcessor(
        num_frames=config.num_frames,
        size={"height": config.image_size, "width": config.image_size},
        eye_sequence_length=config.eye_sequence_length,
        **options,
    )


def load_processor(path, config: MERTConfig, sample: bool) -> MERTVideoProcessor:
    """The checkpoint's own video processor; for a plain ViT checkpoint, a new one that keeps the ViT's pixel
    normalisation (its image processor's mean, std and rescale factor), so a frozen encoder sees what it learnt on."""
    from transformers import AutoImageProcessor, AutoVideoProcessor

    try:
        return AutoVideoProcessor.from_pretrained(path)
    except (OSError, ValueError):
        pass
    overrides = {}
    try:
        image_processor = AutoImageProcessor.from_pretrained(path)
        keys = ("image_mean", "image_std", "rescale_factor")
        overrides = {k: getattr(image_processor, k) for k in keys if getattr(image_processor, k, None) is not None}
    except (OSError, ValueError):
        pass
    return processor_for(config, sample, **overrides)


def align_labels(model: MERTForVideoClassification, label_names: list[str], ignore_mismatched_sizes: bool) -> None:
    """Make the classifier and level heads of `model` predict `label_names`, in that order.

    Same names in another order: the rows of the heads are permuted (nothing learnt is lost). Other names: with
    `ignore_mismatched_sizes` the heads are re-initialised, otherwise a `ValueError` explains the choice.
    """
    current = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if current == list(label_names):
        return
    heads = [model.classifier, *model.level_heads()]
    if sorted(current) == sorted(label_names):
        order = torch.tensor([current.index(name) for name in label_names])
        with torch.no_grad():
            for head in heads:
                head.weight.copy_(head.weight[order])
                head.bias.copy_(head.bias[order])
    elif not ignore_mismatched_sizes:
        raise ValueError(
            f"the checkpoint predicts {current} but the dataset has labels {list(label_names)}; pass "
            "--ignore_mismatched_sizes to re-initialise the classifier and the level heads for the new labels"
        )
    elif len(current) == len(label_names):  # same size: from_pretrained kept the old heads, re-initialise them
        with torch.no_grad():
            for head in heads:
                torch.nn.init.trunc_normal_(head.weight, std=model.config.initializer_range)
                torch.nn.init.zeros_(head.bias)
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}


def load_for_finetuning(path, label_names: list[str], ignore_mismatched_sizes: bool) -> MERTForVideoClassification:
    """A pre-trained MERT ready for PEML on `label_names`; errors before any training when it cannot be."""
    from transformers import AutoConfig

    import emvfer_hf  # noqa: F401  (Auto registration)

    path = str(path)
    if Path(path).is_dir() and not (Path(path) / "config.json").exists() or not Path(path).exists() and "/" not in path:
        raise ValueError(
            f"--model_name_or_path {path}: not a checkpoint folder (no config.json); pre-train one first "
            "(accelerate launch examples/pretrain_mert.py) or pass a checkpoint folder / Hub id"
        )
    config = AutoConfig.from_pretrained(path)
    if getattr(config, "model_type", None) != "mert":
        raise ValueError(f"{path} is a {config.model_type!r} checkpoint, not a pre-trained MERT (model_type 'mert')")
    kwargs = {}
    if config.num_labels != len(label_names):
        if not ignore_mismatched_sizes:
            raise ValueError(
                f"{path} has {config.num_labels} labels but the dataset has {len(label_names)} {list(label_names)}; "
                "pass --ignore_mismatched_sizes to re-initialise the classifier and the level heads"
            )
        kwargs = dict(num_labels=len(label_names), ignore_mismatched_sizes=True)
    model = MERTForVideoClassification.from_pretrained(path, **kwargs)
    if not model.has_eye_prior:
        raise ValueError(
            f"{path} has no eye-movement prior Ē, which PEML needs for its instruction weights; it is stored by "
            "examples/pretrain_mert.py (or set it with model.set_eye_prior_from_series(high_quality_series))"
        )
    align_labels(model, label_names, ignore_mismatched_sizes)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# Results
def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def write_results(
    output_dir: Path, predictions: dict, label_names: list[str], extra: dict, frames: Optional[dict] = None,
    pooled: bool = False, benchmark=None,
) -> dict:  # fmt: skip
    """results.json (metrics, per-class confusion matrix) and confusion_matrix.png in `output_dir`.

    `frames` (a `benchmark` scored per frame, Aff-Wild2: `Benchmark.frame_predictions`): `metrics` and the
    confusion matrix are per frame (`Benchmark.frame_metrics`: accuracy and macro-F1, with the frame counts), the metrics of the windows themselves go to `window_metrics`. `pooled`: the
    predictions are several folds' concatenated; their metrics are stored as `pooled_metrics`, not as `metrics`
    (the headline of a multi-fold evaluation is the mean ± std over folds, in `summary`)."""
    y_true, y_pred = predicted_labels(predictions)
    metrics = classification_metrics(y_true, y_pred, num_classes=len(label_names))
    window_metrics = None
    if frames is not None:
        window_metrics, metrics = metrics, benchmark.frame_metrics(frames, num_classes=len(label_names))
        y_true, y_pred = frames["labels"], frames["predictions"]
    matrix = confusion_matrix(y_true, y_pred, num_classes=len(label_names))
    save_confusion_matrix(matrix, label_names, output_dir / "confusion_matrix.png")
    weights = predictions["instruction_weights"]
    payload = {
        **extra,
        "pooled_metrics" if pooled else "metrics": metrics,
        **({"window_metrics": window_metrics} if window_metrics is not None else {}),
        "num_samples": int(len(predictions["labels"])),
        "confusion_matrix": matrix.tolist(),
        "label_names": list(label_names),
        "mean_instruction_weight": None if np.isnan(weights).all() else float(np.nanmean(weights)),
    }
    save_json(output_dir / "results.json", payload)
    return payload


def format_metrics_table(rows: list[tuple[str, dict]], keys=("war", "uar", "uf1", "macro_f1")) -> str:
    """A markdown table: one row per (name, metrics) pair, values in percent."""
    lines = ["| | " + " | ".join(k.upper() for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, metrics in rows:
        cells = []
        for k in keys:
            value = metrics.get(k)
            if isinstance(value, dict):
                cells.append(f"{100 * value['mean']:.2f} ± {100 * value['std']:.2f}")
            else:
                cells.append("—" if value is None else f"{100 * value:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# Stage 1: pre-training on EMER with the eye-tracker signal
def run_pretrain(args) -> dict:
    """EMER pre-training (CE [2]); stores the prior Ē of the training clips' recordings (their clip spans) in the
    model before training; with a validation split (by participant) selects the best epoch on it; scores the test
    fold once; saves model + processor. Returns the results dict (also written to `<output_dir>/results.json`)."""
    benchmark = find_benchmark(args.dataset or "emer")
    if benchmark is None or not benchmark.eye_tracking:
        raise ValueError("pre-training needs eye-tracker recordings: --dataset emer (EMER layout)")
    args.dataset = benchmark.name
    output_dir = resolve_output_dir(args)
    accelerator = _accelerator(args, output_dir)
    sample = is_small(args)
    root = Path(args.data_dir) if args.data_dir else ensure_sample_data(args.dataset, None, accelerator.main_process_first)
    train_set, test_set = load_splits(args.dataset, root, args)
    train_set, test_set = _limit(train_set, args.max_train_samples), _limit(test_set, args.max_eval_samples)
    label_names = label_names_of(train_set)
    train_set, validation_set, validation = carve_validation(args, train_set)  # by participant

    if args.model_name_or_path:
        model = _pretraining_model_from(args, label_names)
    else:
        model = MERTForVideoClassification(_sample_or_paper_config(args, label_names, sample))
    if getattr(args, "train_video_encoder", None) is not None:
        model.config.train_video_encoder = args.train_video_encoder
    model.set_training_stage("pretrain")
    processor = (
        load_processor(args.model_name_or_path, model.config, sample)
        if args.model_name_or_path
        else processor_for(model.config, sample)
    )
    train_data, validation_data, test_data = clip_datasets(args, processor, "tracker", accelerator, train_set,
                                                           validation_set, test_set)  # fmt: skip

    # The prior Ē of the high-quality training recordings [9]-[11], stored in the model BEFORE training: fitted on
    # exactly the series stage 1 trains on (each training clip's span of its recording, `ClipDataset.eye_series`;
    # validation and test clips excluded), so that W is defined from the first step. Every kind of prior is stored
    # (the feature prior of the default W and the paper-literal mean series with Σ).
    prior_series = clip_eye_series(train_data)
    model.set_eye_prior_from_series(prior_series)
    accelerator, model, history = train(args, model, train_data, validation_data, metrics_for(label_names),
                                        accelerator, test_dataset=test_data)  # fmt: skip
    save_trained(accelerator, model, output_dir, processor)

    results = {"stage": "pretrain", "dataset": args.dataset, "fold": args.fold, "train_loss": history["train_loss"],
               **_selection_results(history, validation),
               "eye_prior": {"fitted_on": "the training clips' spans of their recordings, before training",
                             "num_series": len(prior_series)},
               "num_processes": accelerator.num_processes, "command": _command_line()}  # fmt: skip
    if accelerator.is_main_process:
        if "predictions" in history:
            results = write_results(output_dir, history["predictions"], label_names, results)
        else:
            save_json(output_dir / "results.json", results)
        accelerator.print(f"pre-trained MERT saved to {output_dir}")
    return results


def _pretraining_model_from(args, label_names) -> MERTForVideoClassification:
    """A MERT checkpoint (continued pre-training) or any ViT checkpoint (initialises the video encoder)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.model_name_or_path)
    if config.model_type == "mert":
        model = MERTForVideoClassification.from_pretrained(args.model_name_or_path)
        align_labels(model, label_names, args.ignore_mismatched_sizes)
        return model
    overrides = parse_config_overrides(args.config_overrides)
    return MERTForVideoClassification.from_vision_pretrained(
        args.model_name_or_path, num_labels=len(label_names), id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)}, **overrides,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Stage 2: PEML fine-tuning with the visual eye-movement signal
def run_finetune(args) -> dict:
    """PEML fine-tuning of a pre-trained MERT on one fold (or every LOSO fold) of a benchmark; evaluation with the
    dataset's official metrics; saves model + processor + model card (+ Hub push)."""
    args.dataset = args.dataset or "dfew"
    output_dir = resolve_output_dir(args)
    args.model_name_or_path = args.model_name_or_path or "emvfer-emer"
    accelerator = _accelerator(args, output_dir)
    sample = is_small(args)
    root = Path(args.data_dir) if args.data_dir else ensure_sample_data(args.dataset, None, accelerator.main_process_first)
    train_set, test_set = load_splits(args.dataset, root, args)
    label_names = label_names_of(train_set)
    # every check that can fail happens before training starts
    model = load_for_finetuning(args.model_name_or_path, label_names, args.ignore_mismatched_sizes)
    processor = load_processor(args.model_name_or_path, model.config, sample)

    train_set, test_set = _limit(train_set, args.max_train_samples), _limit(test_set, args.max_eval_samples)
    if test_set is None:  # LOSO: one fresh fine-tuning per held-out subject, metrics on the concatenation
        return _run_loso(args, accelerator, train_set, label_names, processor, output_dir, root)
    if not len(test_set):
        raise ValueError(f"{args.dataset} fold {args.fold}: the evaluation split is empty (--max_eval_samples?)")
    model.set_training_stage("peml")
    train_set, validation_set, validation = carve_validation(args, train_set)  # by subject / video, else by label
    train_data, validation_data, test_data = clip_datasets(args, processor, "visual", accelerator, train_set,
                                                           validation_set, test_set)  # fmt: skip
    accelerator, model, history = train(args, model, train_data, validation_data, metrics_for(label_names),
                                        accelerator, test_dataset=test_data)  # fmt: skip
    predictions = history["predictions"]
    results = {"stage": "peml", "dataset": args.dataset, "fold": args.fold, "base_model": args.model_name_or_path,
               "sample_data": is_sample_data(root), "test_subject": args.test_subject,
               "train_loss": history["train_loss"], **_selection_results(history, validation),
               "num_processes": accelerator.num_processes, "command": _command_line()}  # fmt: skip
    model = save_trained(accelerator, model, output_dir, processor)
    if accelerator.is_main_process:
        benchmark, frames = get_benchmark(args.dataset), None
        if benchmark.frame_scored:
            frames = benchmark.frame_predictions(test_data.dataset, predictions, benchmark.frame_truth(root))
        results = write_results(output_dir, predictions, label_names, results, frames=frames, benchmark=benchmark)
        _release(model, output_dir, args, results)
    return results


def _run_loso(args, accelerator, all_set, label_names, processor, output_dir: Path, root: Path) -> dict:
    from ..data.benchmarks import loso_splits

    (all_set,) = preprocess_splits([all_set], processor, True, args.cache_dir, args.preprocessing_num_workers,
                                   accelerator)  # fmt: skip
    if args.resume_from_checkpoint:
        raise ValueError("--resume_from_checkpoint is not supported with --protocol loso (one run per subject)")
    # every subject's validation split (by the other subjects) is carved before the first one trains
    folds = [(subject, *carve_validation(args, splits["train"]), splits["test"])
             for subject, splits in loso_splits(all_set)]  # fmt: skip
    gathered, per_subject, selection = [], {}, {}
    for subject, train_set, validation_set, validation, test_set in folds:
        model = load_for_finetuning(args.model_name_or_path, label_names, args.ignore_mismatched_sizes)
        model.set_training_stage("peml")
        train_data = ClipDataset(train_set, processor, "visual", train=True, seed=args.seed)
        validation_data = ClipDataset(validation_set, processor, "visual") if validation_set is not None else None
        test_data = ClipDataset(test_set, processor, "visual")
        accelerator.free_memory()
        subject_args = copy.copy(args)  # Accelerate states of each subject in their own folder
        subject_args.output_dir = str(output_dir / f"subject_{subject}")
        accelerator, model, history = train(subject_args, model, train_data, validation_data,
                                            metrics_for(label_names), accelerator, test_dataset=test_data)  # fmt: skip
        predictions = history["predictions"]
        gathered.append(predictions)
        per_subject[subject] = int(len(predictions["labels"]))
        selection[subject] = _selection_results(history, validation)
    merged = {k: np.concatenate([p[k] for p in gathered]) for k in gathered[0]}
    results = {"stage": "peml", "dataset": args.dataset, "protocol": "loso", "subjects": per_subject,
               "sample_data": is_sample_data(root), "selection_per_subject": selection,
               "base_model": args.model_name_or_path, "num_processes": accelerator.num_processes, "command": _command_line()}  # fmt: skip
    model = save_trained(accelerator, model, output_dir, processor)  # the last subject's model, a usable checkpoint
    if accelerator.is_main_process:
        results = write_results(output_dir, merged, label_names, results)
        _release(model, output_dir, args, results)
    return results


def _release(model, output_dir: Path, args, results: dict) -> None:
    """Main process, after `save_trained`: the model card, the summary line, the Hub upload."""
    from .hub import push_folder_to_hub
    from .model_card import write_model_card

    write_model_card(output_dir, model, results)
    shown = get_benchmark(results["dataset"]).headline_metrics
    print(f"fine-tuned MERT saved to {output_dir}: " + "  ".join(
        f"{k.upper()} {100 * v:.2f}" for k, v in results["metrics"].items() if k in shown
    ))  # fmt: skip
    if args.push_to_hub:
        push_folder_to_hub(output_dir, args.hub_model_id, token=args.hub_token)


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation of saved checkpoints
def run_evaluate(args) -> dict:
    """Evaluate one checkpoint per fold (or one for all folds) on a benchmark: per-fold metrics and, over several
    folds, their mean ± std (the headline, `summary`) next to the metrics of the pooled predictions
    (`pooled_metrics`, labelled "pooled"); confusion-matrix PNG, results JSON and a markdown table in
    `--output_dir`. Aff-Wild2 is scored per frame (`metrics.windows_to_frames`: accuracy and macro-F1, `-1` frames
    left out, frames no window covers counted)."""
    from accelerate import Accelerator
    from transformers import AutoModelForVideoClassification

    import emvfer_hf  # noqa: F401

    args.dataset = args.dataset or "dfew"
    benchmark = get_benchmark(args.dataset)
    args.model_name_or_path = args.model_name_or_path or f"emvfer-{args.dataset}"
    folds = args.folds or [args.fold]
    if args.output_dir is None:
        args.output_dir = str(Path(args.model_name_or_path.format(fold=folds[0])) / "evaluation")
    output_dir = resolve_output_dir(args)
    accelerator = Accelerator()
    sample = is_small(args)
    root = Path(args.data_dir) if args.data_dir else ensure_sample_data(args.dataset, None, accelerator.main_process_first)
    rows, per_fold, gathered, frames_per_fold = [], [], [], []
    label_names, truth = None, None
    for fold in folds:
        args.fold = fold
        path = args.model_name_or_path.format(fold=fold)
        train_set, test_set = load_splits(args.dataset, root, args)
        if test_set is None:
            raise ValueError(
                f"{args.dataset}: evaluating a leave-one-subject-out protocol needs one checkpoint per subject; "
                "run examples/finetune_peml.py --protocol loso (it reports LOSO metrics on the concatenated "
                "predictions), or evaluate one subject with --test_subject"
            )
        evaluation_set = _limit(test_set, args.max_eval_samples)
        label_names = label_names_of(evaluation_set)
        model = AutoModelForVideoClassification.from_pretrained(path)
        align_labels(model, label_names, ignore_mismatched_sizes=False)
        processor = load_processor(path, model.config, sample)
        eye_source = args.eye_source
        (evaluation_set,) = preprocess_splits([evaluation_set], processor, eye_source == "visual", args.cache_dir,
                                              args.preprocessing_num_workers, accelerator)  # fmt: skip
        data = ClipDataset(evaluation_set, processor, eye_source)
        model = accelerator.prepare(model)
        loader = make_dataloader(data, args.per_device_eval_batch_size, False, args.seed, args.num_workers)
        predictions = predict(model, accelerator.prepare(loader), accelerator)
        metrics = metrics_for(label_names)(predictions)
        if benchmark.frame_scored:  # per frame; the window metrics are kept under "window"
            truth = truth or benchmark.frame_truth(root)
            frames_per_fold.append(benchmark.frame_predictions(evaluation_set, predictions, truth))
            metrics = {**benchmark.frame_metrics(frames_per_fold[-1], len(label_names)), "window": metrics}
        rows.append((f"fold {fold}", metrics))
        per_fold.append(metrics)
        gathered.append(predictions)
        del model
        accelerator.free_memory()
    merged = {k: np.concatenate([p[k] for p in gathered]) for k in gathered[0]}
    extra = {"dataset": args.dataset, "folds": folds, "checkpoints": args.model_name_or_path,
             "eye_source": args.eye_source, "per_fold": per_fold}  # fmt: skip
    keys = benchmark.table_metrics
    frames = pool_frames(frames_per_fold) if frames_per_fold else None
    pooled = len(folds) > 1
    if pooled:
        extra["summary"] = fold_summary([{k: m[k] for k in m if isinstance(m[k], float)} for m in per_fold])
        extra["headline"] = "summary: mean ± std over folds; pooled_metrics: every fold's predictions pooled"
        rows.append(("**mean ± std over folds**", extra["summary"]))
    if not accelerator.is_main_process:
        return extra
    results = write_results(output_dir, merged, label_names, extra, frames=frames, pooled=pooled,
                            benchmark=benchmark)
    table = format_metrics_table(rows + ([("pooled (all folds)", results["pooled_metrics"])] if pooled else []), keys)
    if frames is not None:
        table += (
            f"\n\nPer frame{' (all folds pooled)' if pooled else ''}: {len(frames['labels'])} frames evaluated, "
            f"{frames['ignored_frames']} labelled -1 left out, {frames['uncovered_frames']} labelled frames that no "
            "window covers (no face crop, or not evaluated) left out. A frame covered by several windows takes the "
            "class of the mean of their probabilities."
        )
    (output_dir / "results.md").write_text(table + "\n")
    accelerator.print(table)
    accelerator.print(f"confusion matrix: {output_dir / 'confusion_matrix.png'}")
    return results
