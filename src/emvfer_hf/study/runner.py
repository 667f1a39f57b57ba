"""Running the study: data, stage-1 pre-training per seed, every variant per seed, with caching of finished runs.

Composes the public training pieces (`run_pretrain`, `load_splits`, `preprocess_splits`, `ClipDataset`, `train`,
`predict`); nothing here changes how a model trains — a variant is only a choice of initialisation, stage, eye source
and `MERTConfig` switches (see `variants.py`).

Work folder layout (`--work_dir`)::

    sample_data/<options>/{EMER,DFEW}     the generated sample data (reused)
    seed<k>/pretrain/                      the EMER pre-trained MERT of seed k (model + processor + results.json)
    seed<k>/<variant>/record.json          metrics, loss curve, confusion matrix of one variant and seed
    seed<k>/<variant>/model/               kept for the first seed's figure models only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..configuration_mert import MERTConfig
from ..data.benchmarks import benchmark_names, get_benchmark, make_sample_dataset
from ..data.sample_data import CLASS_STYLES, MANIFEST, WORLDS, load_sample_eye_series
from ..metrics import classification_metrics, confusion_matrix
from ..modeling_mert import MERTForVideoClassification
from ..training.arguments import add_training_arguments
from ..training.data import ClipDataset, preprocess_splits
from ..training.loop import make_dataloader, predict, save_json, train
from ..training.stages import align_labels, label_names_of, load_processor, load_splits, metrics_for, run_pretrain
from .variants import FIGURE_VARIANTS, Variant

logger = logging.getLogger(__name__)

# `--quick`: the tiny MERT of the test suite, 2 clips per class, a couple of steps — a smoke run of the whole study
QUICK_OVERRIDES = (
    "num_frames=4,image_size=32,patch_size=16,hidden_size=32,num_hidden_layers=2,num_attention_heads=2,"
    "intermediate_size=37,eye_sequence_length=16,fusion_bottleneck_size=8,head_hidden_size=16,num_prompt_tokens=3"
)
QUICK_SETTINGS = dict(seeds=[0], max_train_steps=2, pretrain_steps=2, batch_size=4, sample_clips_per_class=2,
                      sample_emer_clips_per_class=2, sample_test_clips_per_class=1, sample_num_frames=8,
                      sample_resolution=112, config_overrides=QUICK_OVERRIDES)  # fmt: skip

# The "gap" world's model (`--sample_world gap` without --config_overrides): ViT-S width (hidden 384, 6 heads, MLP
# 1536) in both encoders, 2 layers, 4 frames of 32 px (2×2 patches of 16 px), 16 eye steps (the visual series has
# one step per video frame: 16 frames) — the largest that fits three seeds of the study on 2 CPU cores
GAP_OVERRIDES = (
    "num_frames=4,image_size=32,patch_size=16,hidden_size=384,num_hidden_layers=2,num_attention_heads=6,"
    "intermediate_size=1536,eye_sequence_length=16,fusion_bottleneck_size=64,head_hidden_size=192,num_prompt_tokens=4"
)
# Sizes of the sample data per world when not given: (EMER clips per class, target training clips per class,
# target test clips per class — the "plain" world splits its target by the 5 folds instead)
SAMPLE_SIZES = {"plain": (None, 16, None), "gap": (40, 4, 8)}


# ----------------------------------------------------------------------------------------------------------------------
# Command-line flags
def target_benchmarks() -> tuple:
    """The benchmarks a study can target: every registered one without eye-tracker recordings (those serve stage 1)."""
    return tuple(name for name in benchmark_names() if not get_benchmark(name).eye_tracking)


def add_study_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of `examples/reproduce_study.py`."""
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="dfew", choices=target_benchmarks(),
                      help="target benchmark (layout of --data_dir; default: DFEW)")
    data.add_argument("--data_dir", default=None,
                      help="target dataset root; without it a sample dataset of --dataset is generated")
    data.add_argument("--emer_dir", default=None,
                      help="EMER root for stage-1 pre-training; without it (and without --data_dir) the sample EMER")
    data.add_argument("--fold", type=int, default=1, help="fold of 5-fold protocols")
    data.add_argument("--protocol", default=None, help="label protocol (CASME: 3class/5class/...)")
    data.add_argument("--test_subject", default=None, help="LOSO datasets: the held-out subject (required)")
    data.add_argument("--sample_world", default="gap", choices=("gap", "plain"),
                      help="generated sample data: 'gap' (default; a large lab EMER and a small target across a "
                           "domain gap, emvfer_hf.data.sample_data.WORLDS) or 'plain' (both filmed alike)")
    data.add_argument("--sample_clips_per_class", type=int, default=None,
                      help="target clips per class (gap world: labelled training clips; default 16 plain, 4 gap)")
    data.add_argument("--sample_emer_clips_per_class", type=int, default=None,
                      help="EMER clips per class (default: 40 in the gap world, as the target in the plain one)")
    data.add_argument("--sample_test_clips_per_class", type=int, default=None,
                      help="gap world: target test clips per class (default 8)")
    data.add_argument("--sample_num_frames", type=int, default=16)
    data.add_argument("--sample_resolution", type=int, default=128)
    data.add_argument("--cache_dir", default=None, help="preprocessing cache (default: the training scripts' one)")
    data.add_argument("--preprocessing_num_workers", type=int, default=None)

    model = parser.add_argument_group("model")
    model.add_argument("--model_size", choices=("small", "paper"), default=None,
                       help="default: small on sample data, the paper configuration on a real dataset")
    model.add_argument("--config_overrides", default=None, help="MERTConfig overrides of the pre-trained model")
    model.add_argument("--vision_model", default=None,
                       help="a ViT checkpoint initialising the video encoder (pre-training and the scratch variants)")
    model.add_argument("--pretrained_model", default=None,
                       help="an existing EMER pre-trained MERT: skips stage 1 (shared by every seed)")

    budget = parser.add_argument_group("budget (the same for every variant)")
    budget.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    budget.add_argument("--max_train_steps", type=int, default=300, help="training steps of every variant")
    budget.add_argument("--pretrain_steps", type=int, default=400, help="stage-1 steps (once per seed)")
    budget.add_argument("--learning_rate", type=float, default=3e-4)
    budget.add_argument("--pretrain_learning_rate", type=float, default=3e-4)
    budget.add_argument("--batch_size", type=int, default=8)
    budget.add_argument("--variants", nargs="+", default=None, help="a subset of the variants (default: all)")
    budget.add_argument("--switch_seeds", type=int, nargs="+", default=None,
                        help="the seeds (of --seeds) on which the paper-literal switch variants run (default: all)")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default="study_report", help="report.md, figures/ and results.json")
    run.add_argument("--work_dir", default=None, help="runs, models and sample data (default: <output_dir>/work)")
    run.add_argument("--overwrite", action="store_true", help="retrain even where a finished run is cached")
    run.add_argument("--cached_only", action="store_true",
                     help="train nothing: report the finished runs of the work folder (a variant and seed without "
                          "one is left out; the per-seed table shows which ran)")
    run.add_argument("--num_rollout_clips", type=int, default=4, help="faces shown in the attention-rollout figure")
    run.add_argument("--quick", action="store_true",
                     help="smoke run: tiny model, 2 clips per class, 2 steps, one seed (overrides the budget flags)")
    return parser


def finalize_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Apply `--quick`, default folders and the consistency checks (before anything runs)."""
    if args.quick:
        for key, value in QUICK_SETTINGS.items():
            setattr(args, key, value)
        args.model_size = args.model_size or "small"
    args.real_data = args.data_dir is not None
    args.model_size = args.model_size or ("paper" if args.real_data else "small")
    emer_cpc, target_cpc, test_cpc = SAMPLE_SIZES[args.sample_world]
    args.sample_clips_per_class = args.sample_clips_per_class or target_cpc
    args.sample_emer_clips_per_class = args.sample_emer_clips_per_class or emer_cpc or args.sample_clips_per_class
    args.sample_test_clips_per_class = args.sample_test_clips_per_class or test_cpc
    if args.sample_world == "gap" and not args.real_data:
        if args.dataset not in WORLDS["gap"]:
            raise ValueError(f"the gap sample world has a DFEW target only, not {args.dataset!r}")
        args.config_overrides = args.config_overrides or GAP_OVERRIDES
    if args.real_data and not (args.emer_dir or args.pretrained_model):
        raise ValueError("a real --data_dir needs --emer_dir (EMER for stage 1) or --pretrained_model (a pre-trained "
                         "MERT); the sample EMER is a synthetic world that does not match a real target")  # fmt: skip
    if get_benchmark(args.dataset).evaluation == "loso" and args.data_dir and not args.test_subject:
        raise ValueError(f"{args.dataset} is evaluated leave-one-subject-out: pass --test_subject to hold one out")
    if args.max_train_steps < 1 or args.pretrain_steps < 1 or not args.seeds:
        raise ValueError("--max_train_steps and --pretrain_steps must be >= 1 and --seeds non-empty")
    args.output_dir = Path(args.output_dir)
    args.work_dir = Path(args.work_dir) if args.work_dir else args.output_dir / "work"
    return args


PRETRAIN_SETTINGS = ("emer_dir", "data_dir", "sample_world", "sample_emer_clips_per_class", "sample_num_frames",
                     "sample_resolution", "model_size", "config_overrides", "vision_model", "pretrained_model",
                     "pretrain_steps", "pretrain_learning_rate", "batch_size")  # fmt: skip
VARIANT_SETTINGS = PRETRAIN_SETTINGS + ("sample_clips_per_class", "sample_test_clips_per_class", "dataset", "fold",
                                        "protocol", "test_subject", "max_train_steps", "learning_rate")  # fmt: skip


def settings_of(args, keys=VARIANT_SETTINGS) -> dict:
    """What a cached run depends on (stage 1: `PRETRAIN_SETTINGS`; a variant: `VARIANT_SETTINGS`): a run is reused
    only when these are unchanged."""
    return {k: str(getattr(args, k)) for k in keys}


def training_namespace(args, seed: int, output_dir: Path, **changes) -> argparse.Namespace:
    """The flags of one training run (`add_training_arguments`' defaults + the study's budget)."""
    ns = add_training_arguments(argparse.ArgumentParser()).parse_args([])
    ns.__dict__.update(
        cache_dir=args.cache_dir, preprocessing_num_workers=args.preprocessing_num_workers, model_size=args.model_size,
        config_overrides=args.config_overrides, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_train_steps=args.max_train_steps, seed=seed, output_dir=str(output_dir), fold=args.fold,
        protocol=args.protocol, test_subject=args.test_subject, dataset=args.dataset, data_dir=args.data_dir,
    )  # fmt: skip
    ns.__dict__.update(changes)
    return ns


# ----------------------------------------------------------------------------------------------------------------------
# Data
def prepare_data(args) -> tuple[Path, Optional[Path], bool]:
    """`(target_root, emer_root, is_sample)`; generates the sample data (once per option set) when no --data_dir."""
    if args.real_data:
        target = Path(args.data_dir)
        emer = Path(args.emer_dir) if args.emer_dir else None
        return target, emer, (target / MANIFEST).exists()
    common = dict(num_frames=args.sample_num_frames, resolution=args.sample_resolution, seed=0)
    per_dataset = {"emer": dict(clips_per_class=args.sample_emer_clips_per_class),
                   args.dataset: dict(clips_per_class=args.sample_clips_per_class)}  # fmt: skip
    if args.sample_world == "gap":
        per_dataset[args.dataset]["test_clips_per_class"] = args.sample_test_clips_per_class
    roots = {}
    for name, options in per_dataset.items():
        options = {**common, **options}
        if args.sample_world == "plain":  # the folder names of the earlier runs
            folder = "c{clips_per_class}_f{num_frames}_r{resolution}".format(**options)
        else:
            folder = f"{args.sample_world}_" + "_".join(f"{k}{v}" for k, v in sorted(options.items()))
        root = args.work_dir / "sample_data" / folder / get_benchmark(name).folder
        if not (root / MANIFEST).exists():
            logger.info("generating the %s sample data in %s", name, root)
            make_sample_dataset(name, root, world=args.sample_world, **options)
        roots[name] = root
    return roots[args.dataset], roots["emer"], True


def eye_only_groups(label_names) -> Optional[dict[int, set[int]]]:
    """Sample data: class index → the classes that share its face (they differ only in the eyes); None when the
    class names are not the sample generator's."""
    if not all(name.lower() in CLASS_STYLES for name in label_names):
        return None
    faces = [CLASS_STYLES[name.lower()][0] for name in label_names]
    groups = {i: {j for j, f in enumerate(faces) if f == faces[i] and j != i} for i in range(len(faces))}
    return {i: g for i, g in groups.items() if g} or None


def eye_pair_metrics(y_true: np.ndarray, y_pred: np.ndarray, groups: Optional[dict]) -> dict:
    """On the test clips of classes that have an eye-only partner: accuracy, and the share predicted as a partner
    (the confusion that only the eyes can resolve)."""
    if not groups:
        return {}
    select = np.isin(y_true, list(groups))
    if not select.any():
        return {}
    truth, pred = y_true[select], y_pred[select]
    partner = np.array([p in groups[t] for t, p in zip(truth, pred)])
    return {"eye_pair_acc": float((truth == pred).mean()), "eye_pair_confusion": float(partner.mean())}


class GroundTruthEyeClips(ClipDataset):
    """Sample data only: the clips with their GENERATED (high-quality) eye series instead of the visual one — what
    a perfect eye tracker would have recorded while the face was filmed."""

    def __init__(self, dataset, processor, sample_root: Path, **kwargs):
        super().__init__(dataset, processor, "visual", **kwargs)
        self.sample_root = Path(sample_root)

    def eye_series(self, row: dict):
        return load_sample_eye_series(self.sample_root, row["clip_id"])[0]


@dataclasses.dataclass
class StudyContext:
    """Everything the variants share: data splits (preprocessed), processor, labels, accelerator, folders."""

    args: argparse.Namespace
    target_root: Path
    emer_root: Optional[Path]
    is_sample: bool
    train_set: object
    test_set: object
    processor: object
    label_names: list
    groups: Optional[dict]
    accelerator: object
    settings: dict


def make_context(args, target_root, emer_root, is_sample, pretrained_dir: Path) -> StudyContext:
    """Load and preprocess (faces + visual eye series, cached) the target dataset's train/test split."""
    from accelerate import Accelerator

    ns = training_namespace(args, args.seeds[0], args.work_dir)
    train_set, test_set = load_splits(args.dataset, target_root, ns)
    if test_set is None:
        raise ValueError(f"{args.dataset}: the study needs a held-out split; pass --test_subject for LOSO datasets")
    label_names = label_names_of(train_set)
    config = MERTConfig.from_pretrained(pretrained_dir)
    processor = load_processor(pretrained_dir, config, args.model_size == "small")
    accelerator = Accelerator()
    train_set, test_set = preprocess_splits([train_set, test_set], processor, True, args.cache_dir,
                                            args.preprocessing_num_workers, accelerator)  # fmt: skip
    return StudyContext(args, target_root, emer_root, is_sample, train_set, test_set, processor, label_names,
                        eye_only_groups(label_names) if is_sample else None, accelerator, settings_of(args))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Stage 1
def stamp_matches(folder: Path, settings: dict) -> bool:
    """Whether the finished run in `folder` was made with `settings` (its `study_settings.json`): only then is it
    reused."""
    stamp = folder / "study_settings.json"
    return stamp.exists() and json.loads(stamp.read_text()) == settings


def pretrain_for_seed(args, seed: int, emer_root: Optional[Path], extra_overrides: str = "") -> Optional[Path]:
    """The EMER pre-trained MERT of `seed` (stage 1 with the eye-tracker signal; prior Ē stored), trained once;
    `extra_overrides` (a variant's `pretrain_overrides`) are added to --config_overrides, in a folder of their own.
    None with --cached_only when it has not been trained."""
    if args.pretrained_model:
        if extra_overrides:
            raise ValueError(f"--pretrained_model cannot be re-trained with {extra_overrides!r}: leave out the "
                             "variants with their own stage 1 (--variants)")  # fmt: skip
        return Path(args.pretrained_model)
    overrides = ",".join(o for o in (args.config_overrides, extra_overrides) if o)
    settings = {**settings_of(args, PRETRAIN_SETTINGS), "config_overrides": str(overrides or None)}
    tag = extra_overrides.replace("=", "_").replace(",", "__")
    out = args.work_dir / f"seed{seed}" / ("pretrain" + (f"_{tag}" if tag else ""))
    if not args.overwrite and (out / "model.safetensors").exists() and stamp_matches(out, settings):
        logger.info("seed %d: reusing the pre-trained model in %s", seed, out)
        return out
    if getattr(args, "cached_only", False):
        logger.info("seed %d: no finished stage 1 in %s (--cached_only: the seed is left out)", seed, out)
        return None
    ns = training_namespace(args, seed, out, dataset="emer", data_dir=str(emer_root), max_train_steps=args.pretrain_steps,
                            learning_rate=args.pretrain_learning_rate, model_name_or_path=args.vision_model,
                            config_overrides=overrides or None)  # fmt: skip
    start = time.time()
    run_pretrain(ns)
    save_json(out / "study_settings.json", settings)
    save_json(out / "study_time.json", {"seconds": time.time() - start})
    return out


def evaluate_pretrained(ctx: StudyContext, pretrained_dir: Path, emer_test) -> dict:
    """Stage-1 model on the EMER test clips with the tracker series (as trained) and with the visual series: the
    quality gap PEML is meant to bridge."""
    model = MERTForVideoClassification.from_pretrained(pretrained_dir)
    names = label_names_of(emer_test)
    out = {}
    for source in ("tracker", "visual"):
        predictions = run_predict(ctx, model, ClipDataset(emer_test, ctx.processor, source))
        out[source] = metrics_for(names)(predictions)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Variants
def build_model(variant: Variant, ctx: StudyContext, pretrained_dir: Path, seed: int) -> MERTForVideoClassification:
    """The variant's starting point, in its training stage."""
    from accelerate.utils import set_seed

    names = ctx.label_names
    labels = dict(num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    set_seed(seed)
    if variant.init == "scratch":
        config = MERTConfig.from_pretrained(pretrained_dir, **labels, training_stage="pretrain")
        if config.video_encoder_pretrained and ctx.args.vision_model:
            fields = {k: v for k, v in config.to_dict().items() if k in {f.name for f in dataclasses.fields(MERTConfig)}}
            model = MERTForVideoClassification.from_vision_pretrained(ctx.args.vision_model, **fields)
        else:
            config.video_encoder_pretrained = False  # a random video encoder must train
            model = MERTForVideoClassification(config)
    else:
        config = MERTConfig.from_pretrained(pretrained_dir)
        overrides = variant.overrides(config)
        config = MERTConfig.from_pretrained(pretrained_dir, **overrides)
        kwargs = {}
        if "level_head" in overrides:  # other level heads p^l (stage 1 never trains them): newly initialised
            kwargs["ignore_mismatched_sizes"] = True
        if config.num_labels != len(names):
            config.num_labels = len(names)
            kwargs["ignore_mismatched_sizes"] = True
        model = MERTForVideoClassification.from_pretrained(pretrained_dir, config=config, **kwargs)
        align_labels(model, names, ignore_mismatched_sizes=True)
        if variant.stage == "peml" and not model.has_eye_prior:
            raise ValueError(f"{pretrained_dir} has no eye-movement prior Ē, which PEML needs")
    model.set_training_stage(variant.stage)
    return model


def run_predict(ctx: StudyContext, model, data) -> dict:
    loader = make_dataloader(data, ctx.args.batch_size, False, 0)
    return predict(model, ctx.accelerator.prepare(loader), ctx.accelerator)


def summarize_predictions(predictions: dict, ctx: StudyContext) -> dict:
    y_true, y_pred = predictions["labels"], predictions["logits"].argmax(-1)
    metrics = classification_metrics(y_true, y_pred, num_classes=len(ctx.label_names))
    metrics.update(eye_pair_metrics(y_true, y_pred, ctx.groups))
    return metrics


def cached_record(variant: Variant, seed: int, ctx: StudyContext, keep_model: bool = False) -> Optional[dict]:
    """The finished run of `variant` and `seed` in the work folder (same settings, and its model where one is
    kept), or None."""
    run_dir = ctx.args.work_dir / f"seed{seed}" / variant.key
    record_path = run_dir / "record.json"
    if not ctx.args.overwrite and record_path.exists() and stamp_matches(run_dir, ctx.settings):
        if not keep_model or (run_dir / "model" / "model.safetensors").exists():
            logger.info("seed %d, %s: reusing %s", seed, variant.key, record_path)
            return json.loads(record_path.read_text())
    return None


def train_variant(variant: Variant, seed: int, ctx: StudyContext, pretrained_dir: Path, keep_model: bool) -> dict:
    """Train one variant for one seed (or reuse the cached run) and return its record."""
    record = cached_record(variant, seed, ctx, keep_model)
    if record is not None:
        return record
    run_dir = ctx.args.work_dir / f"seed{seed}" / variant.key
    record_path = run_dir / "record.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    model = build_model(variant, ctx, pretrained_dir, seed)
    trainable = model.num_trainable_parameters()
    train_data = ClipDataset(ctx.train_set, ctx.processor, variant.eye_source, train=True, seed=seed)
    test_data = ClipDataset(ctx.test_set, ctx.processor, variant.eye_source)
    ns = training_namespace(ctx.args, seed, run_dir)
    ctx.accelerator.free_memory()
    # evaluated once, after the last step (no per-epoch evaluation: nothing here selects on it, and with few
    # labelled clips an epoch is a handful of steps, so per-epoch test passes would cost more than the training)
    _, model, history = train(ns, model, train_data, None, None, ctx.accelerator)
    predictions = run_predict(ctx, model, test_data)
    history["eval"] = [{**metrics_for(ctx.label_names)(predictions), "step": ctx.args.max_train_steps}]
    seconds = time.time() - start
    weights = predictions["instruction_weights"]
    record = {
        "variant": variant.key, "seed": seed, "metrics": summarize_predictions(predictions, ctx),
        "confusion_matrix": confusion_matrix(predictions["labels"], predictions["logits"].argmax(-1),
                                             num_classes=len(ctx.label_names)).tolist(),
        "train_loss": history["train_loss"], "eval_history": history["eval"], "seconds": seconds,
        "trainable_parameters": trainable, "num_test": int(len(predictions["labels"])),
        "mean_instruction_weight": None if np.isnan(weights).all() else float(np.nanmean(weights)),
    }  # fmt: skip
    if ctx.is_sample and variant.eye_source != "none":  # the same model with perfect eyes at test time
        hq = run_predict(ctx, model, GroundTruthEyeClips(ctx.test_set, ctx.processor, ctx.target_root))
        record["metrics_hq_eyes"] = summarize_predictions(hq, ctx)
    if keep_model:
        model.save_pretrained(run_dir / "model")
    save_json(record_path, record)
    save_json(run_dir / "study_settings.json", ctx.settings)
    logger.info("seed %d, %s: WAR %.3f UAR %.3f (%.0f s)", seed, variant.key, record["metrics"]["war"],
                record["metrics"]["uar"], seconds)  # fmt: skip
    return record


def figure_model_dirs(args, pretrained_dir: Path) -> dict[str, Path]:
    """The first seed's kept models (+ "pretrained") for the figures."""
    dirs = {key: args.work_dir / f"seed{args.seeds[0]}" / key / "model" for key in FIGURE_VARIANTS}
    dirs["pretrained"] = pretrained_dir
    return dirs


def load_model(path: Path) -> MERTForVideoClassification:
    model = MERTForVideoClassification.from_pretrained(path)
    model.eval()
    return model
