"""`run_study(args)`: data → stage 1 per seed → every variant per seed → figures → `report.md`."""

from __future__ import annotations

import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from ..metrics import save_confusion_matrix
from ..training.data import ClipDataset, preprocess_splits
from ..training.loop import save_json
from ..training.stages import load_splits
from . import figures as F
from .report import claims_table, write_report
from .runner import (
    FIGURE_VARIANTS, GroundTruthEyeClips, cached_record, evaluate_pretrained, figure_model_dirs, finalize_arguments,
    load_model, make_context, prepare_data, pretrain_for_seed, train_variant, training_namespace,
)  # fmt: skip
from .variants import PAPER_SWITCHES, TABLE_VI, VARIANTS, resolve_variants

logger = logging.getLogger(__name__)

FIGURE_FILES = (
    *(f"confusion_{k}.png" for k in TABLE_VI),
    "fig10_attention_rollout.png", "fig11_pca_fused_features.png", "fig12_lda_eye_features.png",
    "fig13_eye_feature_distribution.png", "fig14_training_loss.png",
)  # fmt: skip


def run_study(args) -> dict:
    """Run the whole study described by the flags of `add_study_arguments`; returns the results dict (also written to
    `<output_dir>/results.json`, next to `report.md` and `figures/`)."""
    start = time.time()
    args = finalize_arguments(args)
    variants = resolve_variants(args.variants)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    figures_dir = args.output_dir / "figures"
    target_root, emer_root, is_sample = prepare_data(args)

    records: dict[str, dict[int, dict]] = {v.key: {} for v in variants}
    pretrain_eval, pretrained_dirs, ctx, emer_test = {}, {}, None, None
    for seed in args.seeds:
        pretrained_dirs[seed] = pretrain_for_seed(args, seed, emer_root)
        if pretrained_dirs[seed] is None:  # --cached_only, and this seed has no stage 1 yet
            continue
        if ctx is None:
            ctx = make_context(args, target_root, emer_root, is_sample, pretrained_dirs[seed])
            emer_test = _emer_test(args, ctx, emer_root)
        if emer_test is not None:
            pretrain_eval[seed] = evaluate_pretrained(ctx, pretrained_dirs[seed], emer_test)
        for variant in variants:
            if variant.key in PAPER_SWITCHES and args.switch_seeds is not None and seed not in args.switch_seeds:
                continue
            keep = seed == args.seeds[0] and variant.key in FIGURE_VARIANTS
            if args.cached_only:
                record = cached_record(variant, seed, ctx, keep)
                if record is not None:
                    records[variant.key][seed] = record
                continue
            start_dir = (pretrain_for_seed(args, seed, emer_root, variant.pretrain_overrides)
                         if variant.pretrain_overrides else pretrained_dirs[seed])  # fmt: skip
            records[variant.key][seed] = train_variant(variant, seed, ctx, start_dir, keep)

    records = {key: runs for key, runs in records.items() if runs}  # (switch variants outside --switch_seeds)
    findings = make_figures(args, ctx, records, pretrained_dirs[args.seeds[0]], emer_test, figures_dir)
    info = _report_info(args, ctx, records, start)
    info["fig13_source"] = findings.pop("fig13_source")
    if ctx.is_sample and info.get("world") == "gap":
        findings["world_quality"] = world_quality(ctx, emer_test)
        info["world_quality"] = world_quality_text(findings["world_quality"])
    write_report(args.output_dir / "report.md", info, records, pretrain_eval, findings)
    _, claims = claims_table(records)
    results = {"info": info, "claims": claims, "findings": findings, "pretrain_eval": pretrain_eval,
               "records": records}  # fmt: skip
    save_json(args.output_dir / "results.json", results)
    print(f"report: {args.output_dir / 'report.md'}")
    for row in claims:
        print(f"  {row['verdict']:>28}  {row['claim']}")
    return results


def world_quality(ctx, emer_test) -> dict:
    """The visual eye signal of each domain against its generated ground truth (`sources.visual_vs_truth`): the EMER
    test clips (lab) and every target clip (wild)."""
    from .sources import visual_vs_truth

    every = datasets.concatenate_datasets([ctx.train_set, ctx.test_set])
    out = {"wild (target, all clips)": visual_vs_truth(every, ctx.target_root)}
    if emer_test is not None and ctx.emer_root is not None:
        out = {"lab (EMER test clips)": visual_vs_truth(emer_test, ctx.emer_root), **out}
    return out


def world_quality_text(quality: dict) -> str:
    """One paragraph with the table of `world_quality`."""
    channels = ("gaze_x", "gaze_y", "pupil_left", "behaviour")
    lines = ["**The eye-signal gap, measured** (in this run): Pearson r between the visual series read from the video "
             "and the ground truth the clip was rendered from (mean over clips / rows of all clips pooled):", "",
             "| domain | clips | " + " | ".join(channels) + " |", "|---|---|" + "---|" * len(channels)]  # fmt: skip
    for name, q in quality.items():
        cells = [f"{_r(q['mean_per_clip'].get(c))} / {_r(q['pooled'].get(c))}" for c in channels]
        lines.append(f"| {name} | {q['num_clips']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _r(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _emer_test(args, ctx, emer_root):
    """The EMER test split, preprocessed with the visual eye series (for the stage-1 quality gap and Fig. 13)."""
    if emer_root is None:
        return None
    _, test = load_splits("emer", emer_root, training_namespace(args, args.seeds[0], args.work_dir, dataset="emer"))
    if test is None or not len(test):
        return None
    (test,) = preprocess_splits([test], ctx.processor, True, args.cache_dir, args.preprocessing_num_workers,
                                ctx.accelerator)  # fmt: skip
    return test


def study_prior_auc(args):
    """The AUC table of every W variant (`prior_quality.prior_auc_table`) for the Fig. 13 section, computed once per
    work folder (`<work_dir>/prior_auc.json`; delete it to recompute). `--quick` skips the visual windows and uses
    fewer tracker windows (a smoke run). None, with a warning, where it cannot be computed."""
    import json

    from .prior_quality import prior_auc_table

    path = Path(args.work_dir) / ("prior_auc_quick.json" if getattr(args, "quick", False) else "prior_auc.json")
    if path.is_file():
        return json.loads(path.read_text())
    options = {"visual": False, "hop_s": 2.0} if getattr(args, "quick", False) else {}
    try:
        table = prior_auc_table(sample_root=Path(args.work_dir) / "prior_auc_sample", **options)
    except Exception as error:  # optional real recordings and videos are skipped inside; anything else is reported
        logger.warning("the prior AUC table of Fig. 13 could not be computed: %s", error)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
    return table


# ----------------------------------------------------------------------------------------------------------------------
# Figures
def make_figures(args, ctx, records, pretrained_dir: Path, emer_test, figures_dir: Path) -> dict:
    """Every figure of the study; returns the findings quoted in the report."""
    first = args.seeds[0]
    findings = {}
    for key in TABLE_VI:
        if key in records:
            save_confusion_matrix(np.array(records[key][first]["confusion_matrix"]), ctx.label_names,
                                  figures_dir / f"confusion_{key}.png", title=f"{VARIANTS[key].name} (seed {first})")  # fmt: skip
    dirs = figure_model_dirs(args, pretrained_dir)
    models = {key: load_model(path) for key, path in dirs.items()}
    every = datasets.concatenate_datasets([ctx.train_set, ctx.test_set])
    split = np.r_[np.zeros(len(ctx.train_set), int), np.ones(len(ctx.test_set), int)]
    bs = args.batch_size

    visual = ClipDataset(every, ctx.processor, "visual")
    feats = {key: F.clip_features(models[key], visual, bs) for key in ("emer_full_ft", "peml")}
    feats["video_only"] = F.clip_features(models["video_only"], ClipDataset(every, ctx.processor, "none"), bs)
    without, with_peml = "without PEML (full fine-tuning)", "with PEML"
    findings["fig11"] = F.figure_feature_projection(
        [("video only", feats["video_only"]), (without, feats["emer_full_ft"]), (with_peml, feats["peml"])],
        ctx.label_names, "fused", "pca", figures_dir / "fig11_pca_fused_features.png", split,
    )
    findings["fig12"] = F.figure_feature_projection(
        [(without, feats["emer_full_ft"]), (with_peml, feats["peml"])],
        ctx.label_names, "eye", "lda", figures_dir / "fig12_lda_eye_features.png", split,
    )

    # Fig. 13: the same clips with high-quality and visual eye series
    if ctx.is_sample:
        hq_data, vis_data = GroundTruthEyeClips(every, ctx.processor, ctx.target_root), visual
        source = "Clips of the target sample set with their generated (high-quality) series vs the visual one."
    elif emer_test is not None:
        hq_data, vis_data = ClipDataset(emer_test, ctx.processor, "tracker"), ClipDataset(emer_test, ctx.processor, "visual")
        source = "EMER test clips with the eye-tracker series vs the visual one."
    else:
        hq_data = vis_data = None
        source = ""
    if hq_data is not None:
        panels = [(title, F.clip_features(models[key], hq_data, bs), F.clip_features(models[key], vis_data, bs))
                  for title, key in (("pre-trained (EMER)", "pretrained"), (without, "emer_full_ft"),
                                     (with_peml, "peml"))]  # fmt: skip
        findings["fig13"] = F.figure_eye_distribution(panels, figures_dir / "fig13_eye_feature_distribution.png",
                                                      source, prior_auc=study_prior_auc(args))  # fmt: skip
    findings["fig13_source"] = source

    curves = {key: [r["train_loss"] for r in records[key].values()] for key in TABLE_VI if key in records}
    findings["fig14"] = F.figure_loss_curves(curves, {k: VARIANTS[k].name for k in curves},
                                             figures_dir / "fig14_training_loss.png")  # fmt: skip

    # Fig. 10: rollout on a few test clips (classes with an eye-only partner first)
    test_video = ClipDataset(ctx.test_set, ctx.processor, "none")
    test_visual = ClipDataset(ctx.test_set, ctx.processor, "visual")
    labels = np.array(ctx.test_set["label"])
    order = sorted(range(len(labels)), key=lambda i: (ctx.groups is None or labels[i] not in ctx.groups, i))
    rows = []
    for i in order[: args.num_rollout_clips]:
        maps = []
        for title, key, data in (("video only", "video_only", test_video), ("PEML", "peml", test_visual)):
            heat, face = F.attention_rollout(models[key], data[i])
            maps.append((title, heat, face))
        rows.append((f"{ctx.label_names[labels[i]]} (test clip {i})", maps))
    findings["fig10"] = F.figure_attention_rollout(rows, figures_dir / "fig10_attention_rollout.png")
    return findings


# ----------------------------------------------------------------------------------------------------------------------
def _report_info(args, ctx, records, start: float) -> dict:
    from ..configuration_mert import MERTConfig
    from ..data.sample_data import eye_only_pairs

    first = args.seeds[0]
    config = MERTConfig.from_pretrained(figure_model_dirs(args, Path("."))["peml"])
    if args.real_data:
        target = f"{args.dataset.upper()} at {args.data_dir}, fold {args.fold}"
    elif args.sample_world == "gap":
        target = (f"{args.dataset.upper()} sample data of the gap world (wild domain: {args.sample_clips_per_class} "
                  f"labelled training and {args.sample_test_clips_per_class} test clips per class, generated)")  # fmt: skip
    else:
        target = f"{args.dataset.upper()} sample data ({args.sample_clips_per_class} clips per class, generated), fold {args.fold}"
    if not args.real_data and args.sample_world == "gap":
        stage1_data = f"EMER sample data of the gap world (lab domain, {args.sample_emer_clips_per_class} clips per class)"
    else:
        stage1_data = f"EMER {'sample data' if not args.real_data else 'at ' + str(args.emer_dir)}"
    stage1 = ("an existing pre-trained MERT: " + str(args.pretrained_model) if args.pretrained_model else
              f"{stage1_data} with the eye-tracker series, {args.pretrain_steps} steps at lr "
              f"{args.pretrain_learning_rate}")  # fmt: skip
    model = (f"{args.model_size} preset{' + --config_overrides' if args.config_overrides else ''} — {config.num_hidden_layers} layers × {config.hidden_size} hidden "
             f"({config.num_attention_heads} heads), {config.num_frames} frames of {config.image_size} px, "
             f"{config.eye_sequence_length} eye steps, {config.num_prompt_tokens} prompt tokens, head "
             f"{config.head_hidden_size}")  # fmt: skip
    pairs = eye_only_pairs([n.lower() for n in ctx.label_names]) if ctx.groups else []
    first_record = next(iter(records.values()))[first]
    notes = []
    if args.quick:
        notes.append("`--quick`: a smoke run (tiny model, 2 steps) — the numbers mean nothing.")
    notes += identical_prediction_notes(records)
    fewer = [f"{VARIANTS[k].name} ({len(runs)} of {len(args.seeds)})" for k, runs in records.items()
             if len(runs) < len(args.seeds)]  # fmt: skip
    missing = [v.name for v in resolve_variants(args.variants) if v.key not in records]
    if fewer or missing:
        notes.append("Not every variant ran on every seed (the per-seed table shows which): "
                     + "; ".join(filter(None, [", ".join(fewer) and "fewer seeds: " + ", ".join(fewer),
                                               ", ".join(missing) and "not run: " + ", ".join(missing)]))
                     + ". Verdicts compare only the seeds both variants ran.")  # fmt: skip
    if getattr(args, "cached_only", False):
        notes.append("Assembled with `--cached_only` from the finished runs of the work folder, trained by earlier "
                     "invocations of this script with the same settings (e.g. one per seed with `--variants`).")
    return {
        "title": f"{args.dataset.upper()} {'sample data' if ctx.is_sample else ''}".strip(),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]),
        "minutes": (time.time() - start) / 60, "cached_only": bool(getattr(args, "cached_only", False)),
        "run_minutes": sum(run.get("seconds", 0.0) for runs in records.values() for run in runs.values()) / 60,
        "device": f"{os.cpu_count()} CPU cores, {platform.machine()}, torch {torch.__version__}",
        "is_sample": ctx.is_sample, "num_train": len(ctx.train_set), "num_test": first_record["num_test"],
        "label_names": list(ctx.label_names), "target": target, "stage1": stage1, "model": model,
        "budget": f"{args.max_train_steps} steps, batch {args.batch_size}, AdamW lr {args.learning_rate} (cosine)",
        "seeds": list(args.seeds), "eye_pairs": ", ".join(f"{a}/{b}" for a, b in pairs) or "none",
        "notes": notes, "world": None if args.real_data else args.sample_world,
        "world_sizes": {"emer": args.sample_emer_clips_per_class, "train": args.sample_clips_per_class,
                        "test": args.sample_test_clips_per_class},
    }  # fmt: skip


def identical_prediction_notes(records: dict) -> list[str]:
    """A note for every variant whose test predictions (confusion matrix) equal the reference PEML run's in every
    seed: its switch changed no decision at this budget, so a "tie" there says nothing about the component."""
    if "peml" not in records:
        return []
    same = [
        VARIANTS[key].name for key, runs in records.items()
        if key != "peml" and VARIANTS[key].stage == "peml" and all(
            seed in records["peml"] and run["confusion_matrix"] == records["peml"][seed]["confusion_matrix"]
            for seed, run in runs.items()
        )
    ]  # fmt: skip
    if not same:
        return []
    return [f"Identical test predictions to the full PEML run in every seed: {', '.join(same)}. These switches changed "
            "no test decision, so their ties are no evidence either way. (Before issue 20 every W switch tied by "
            "construction: W scaled the eye prompts before a pre-norm encoder, whose first LayerNorm cancels it, so "
            "no budget could open a path; W now scales the eye evidence, and a tie means W's differences between "
            "these variants are too small to flip a decision on these clips.)"]  # fmt: skip
