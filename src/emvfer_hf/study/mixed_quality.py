"""The mixed-quality study (issue 20, item 5): does W(E', Ē) help where it should?

The design is fixed in `docs/study/mixed_quality_design.md` (committed before the first run); this module runs it
as written and nothing here changes it:

- the world: the gap world's DFEW sample data (8 training and 16 test clips per class), each clip tagged good or
  bad (`quality_tags`: 50/50 within every class and split, independent of the label); a good clip carries a
  tracker-quality series (its generated ground truth + the EMER tracker's noise, `good_eye_series`), a bad one its
  own visual reading (`MixedQualityClips`);
- the seven arms (`ARMS`), each PEML-fine-tuned from the same stage-1 model of its seed (`runner.pretrain_for_seed`,
  the main study's stage 1 and its cache) with the same budget; `w_shuffled` and `w_oracle` give the model their W
  through `instruction_weights=` at training and at test (`MixedQualityClips(weights=...)`);
- the manipulation checks (a) W separates the tags, (b) W moves the stage-1 model, (c) the world needs W;
- the endpoints: ΔWAR against `w_one`, paired by seed, with the Student-t 95% CI, and the rule (`rule`);
- the report: `<output_dir>/mixed_quality.md` and `mixed_quality.json` (per-seed numbers of every arm).

Work folder: the main study's layout (`runner`), with `seed<k>/mq_<arm>/record.json` for this study's runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.labels import LABELS
from ..data.sample_data import MANIFEST, load_sample_eye_series, tracker_quality_series
from ..metrics import classification_metrics
from ..modeling_mert import MERTForVideoClassification
from ..training.data import ClipDataset
from ..training.loop import save_json, train
from .prior_quality import roc_auc
from .runner import (
    QUICK_OVERRIDES, add_study_arguments, build_model, finalize_arguments, make_context, prepare_data,
    pretrain_for_seed, run_predict, settings_of, stamp_matches, training_namespace,
)  # fmt: skip
from .variants import Variant

logger = logging.getLogger(__name__)

DESIGN = "docs/study/mixed_quality_design.md"
WORLD_SEED = 0  # the tags and the good clips' tracker noise: the same for every seed and arm
ORACLE_BAD_W = 0.05  # W of a bad clip in `w_oracle` (good clips: 1)
TRAIN_CLIPS_PER_CLASS, TEST_CLIPS_PER_CLASS = 8, 16
SPLITS = ("train", "test")
# the thresholds of the manipulation checks and the CI level, as designed
CHECK_A_MIN_AUC, CHECK_B_MIN_SHARE, CHECK_C_MIN_WAR_POINTS, CI_LEVEL = 0.8, 0.10, 2.0, 0.95


# ----------------------------------------------------------------------------------------------------------------------
# The arms
def _peml(key: str, name: str, description: str, overrides=None) -> Variant:
    return Variant(key, name, "pretrained", "peml", "visual", description,
                   **({"overrides": overrides} if overrides else {}))  # fmt: skip


ARMS: dict[str, Variant] = {a.key: a for a in (
    _peml("w_one", "W ≡ 1 (reference)", "`use_instruction_weights=False`", lambda c: {"use_instruction_weights": False}),
    _peml("w_default", "default W", "feature prior, `robust` distance, quality features at each series' own rate"),
    _peml("w_shuffled", "W shuffled", "each clip's default W permuted across the clips of its split (a fixed "
          "permutation per seed), through `instruction_weights=`"),
    _peml("w_oracle", "oracle W", f"W = 1 for good clips, {ORACLE_BAD_W} for bad ones, through `instruction_weights=`"),
    _peml("w_paper", "paper-literal W", "mean-series prior, Euclidean distance",
          lambda c: {"instruction_prior": "mean", "instruction_distance": "euclidean"}),
    _peml("w_loss", "default W + W-weighted CE", "`instruction_loss_weighting=True`",
          lambda c: {"instruction_loss_weighting": True}),
    _peml("w_input", "default W, input placement", "`instruction_placement=\"input\"` (eq. [8] as written)",
          lambda c: {"instruction_placement": "input"}),
)}  # fmt: skip
OVERRIDE_ARMS = ("w_shuffled", "w_oracle")
REFERENCE = "w_one"
PRIMARY = "w_default"


# ----------------------------------------------------------------------------------------------------------------------
# The world
def quality_tags(sample_root, world_seed: int = WORLD_SEED) -> dict[str, str]:
    """clip id → "good" / "bad": within each (class, split) of the sample manifest the clips are ordered by identity
    and then clip id and tagged good, bad, good, … starting from a coin flip drawn with `world_seed` for that
    (class, split). Needs an even number of clips in every (class, split)."""
    manifest = json.loads((Path(sample_root) / MANIFEST).read_text())
    names = LABELS["dfew"] if manifest["dataset"] == "dfew" else sorted({c["label_name"] for c in manifest["clips"]})
    groups: dict[tuple[str, str], list[dict]] = {}
    for clip in manifest["clips"]:
        groups.setdefault((clip["label_name"], clip.get("split", "train")), []).append(clip)
    tags = {}
    for (name, split), clips in sorted(groups.items()):
        if len(clips) % 2:
            raise ValueError(f"class {name!r}, split {split!r}: {len(clips)} clips, not an even number to tag 50/50")
        rng = np.random.default_rng(np.random.SeedSequence([world_seed, names.index(name), SPLITS.index(split)]))
        first = int(rng.integers(2))  # 0: the first clip is good
        order = sorted(clips, key=lambda c: (str(c.get("identity", "")), c["clip_id"]))
        for i, clip in enumerate(order):
            tags[clip["clip_id"]] = "good" if (i + first) % 2 == 0 else "bad"
    return tags


def good_eye_series(sample_root, clip_id: str, world_seed: int = WORLD_SEED):
    """A good clip's eye signal: its generated ground-truth series (120 Hz) as the EMER eye tracker would have
    recorded it (`sample_data.tracker_quality_series`), with noise drawn from `world_seed` and the clip id."""
    truth, _ = load_sample_eye_series(sample_root, clip_id)
    rng = np.random.default_rng(np.random.SeedSequence([world_seed, zlib.crc32(str(clip_id).encode())]))
    return tracker_quality_series(truth, rng)


class MixedQualityClips(ClipDataset):
    """Target clips with the eye signal of their tag: good → `good_eye_series`, bad → the clip's own visual reading
    (the preprocessed `eye_movements`, as `ClipDataset(eye_source="visual")`). With `weights` (one W per row) every
    item carries `instruction_weights` (a scalar; `collate_clips` stacks them to (B,)), which `train`/`predict` hand
    to the model by name: the model then uses that W instead of W(E', Ē)."""

    def __init__(self, dataset, processor, sample_root, tags: dict, weights: Sequence[float] | None = None,
                 train: bool = False, seed: int = 0):  # fmt: skip
        super().__init__(dataset, processor, "visual", train=train, seed=seed)
        self.sample_root = Path(sample_root)
        self.clip_ids = list(dataset["clip_id"])
        missing = [c for c in self.clip_ids if c not in tags]
        if missing:
            raise ValueError(f"no quality tag for clip(s) {missing[:5]}")
        self.tags = [tags[c] for c in self.clip_ids]
        if weights is not None and len(weights) != len(dataset):
            raise ValueError(f"{len(weights)} instruction weights for {len(dataset)} clips")
        self.weights = None if weights is None else np.asarray(weights, np.float32)
        self._good: dict[str, object] = {}

    @property
    def is_bad(self) -> np.ndarray:
        return np.array([t == "bad" for t in self.tags])

    def eye_series(self, row: dict):
        clip_id = row["clip_id"]
        if self.tags[self.clip_ids.index(clip_id)] == "good":
            if clip_id not in self._good:
                self._good[clip_id] = good_eye_series(self.sample_root, clip_id)
            return self._good[clip_id]
        return super().eye_series(row)

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        if self.weights is not None:
            item["instruction_weights"] = torch.tensor(self.weights[index], dtype=torch.float32)
        return item


@torch.no_grad()
def default_weights(model: MERTForVideoClassification, data: ClipDataset) -> np.ndarray:
    """The default W(E', Ē) of every clip of `data` under `model`'s prior (the processor's inputs of each clip)."""
    weights = []
    for i in range(len(data)):
        item = data[i]
        w = model.eye_prior(item["eye_movement_values"][None], item["eye_movement_mask"][None],
                            item["eye_quality_features"][None])  # fmt: skip
        weights.append(float(w[0]))
    return np.array(weights)


def arm_weights(arm: str, seed: int, tags_train, tags_test, w_train, w_test):
    """(train W, test W) that arm `arm` feeds through `instruction_weights=`, or (None, None) where the model
    computes its own."""
    if arm == "w_oracle":
        return tuple(np.where(np.asarray(t) == "good", 1.0, ORACLE_BAD_W) for t in (tags_train, tags_test))
    if arm == "w_shuffled":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 20]))  # fixed per seed
        return np.asarray(w_train)[rng.permutation(len(w_train))], np.asarray(w_test)[rng.permutation(len(w_test))]
    return None, None


# ----------------------------------------------------------------------------------------------------------------------
# Statistics and the rule
def paired_ci(differences: Sequence[float], level: float = CI_LEVEL) -> dict:
    """Mean of paired differences with its Student-t CI (n − 1 degrees of freedom); lo/hi are None below 2 seeds."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else None, "lo": None, "hi": None, "df": n - 1 if n else None}
    if n >= 2:
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
        out.update(lo=out["mean"] - half, hi=out["mean"] + half)
    return out


def rule(ci: dict) -> str:
    """The design's rule: "holds" if the CI's lower bound is > 0, "fails" if its upper bound is < 0, otherwise
    "inconclusive" (also without a CI)."""
    if ci.get("lo") is not None and ci["lo"] > 0:
        return "holds"
    if ci.get("hi") is not None and ci["hi"] < 0:
        return "fails"
    return "inconclusive"


def subset_metrics(y_true, y_pred, select, num_classes: int) -> dict:
    select = np.asarray(select, bool)
    return classification_metrics(np.asarray(y_true)[select], np.asarray(y_pred)[select], num_classes=num_classes)


# ----------------------------------------------------------------------------------------------------------------------
# One seed
@dataclass
class World:
    sample_root: Path
    tags: dict
    train: MixedQualityClips  # no weights: the tag's eye signal
    test: MixedQualityClips

    def split_tags(self, split: str) -> list:
        return (self.train if split == "train" else self.test).tags


def make_world(ctx) -> World:
    tags = quality_tags(ctx.target_root)
    return World(ctx.target_root, tags, MixedQualityClips(ctx.train_set, ctx.processor, ctx.target_root, tags),
                 MixedQualityClips(ctx.test_set, ctx.processor, ctx.target_root, tags))  # fmt: skip


def seed_checks(ctx, world: World, pretrained_dir: Path, seed: int) -> dict:
    """Checks (a) and (b) on the stage-1 model of one seed (cached beside it), with the default W of every clip."""
    path = ctx.args.work_dir / f"seed{seed}" / "mq_checks.json"
    if not ctx.args.overwrite and path.exists() and stamp_matches(path.parent / "mq_checks_stamp", ctx.settings):
        return json.loads(path.read_text())
    model = MERTForVideoClassification.from_pretrained(pretrained_dir)
    model.eval()
    w_train, w_test = default_weights(model, world.train), default_weights(model, world.test)
    bad_train = world.train.is_bad
    auc = roc_auc(w_train[~bad_train], w_train[bad_train])
    w_bad = float(np.median(w_train[bad_train]))
    make = lambda w: MixedQualityClips(ctx.test_set, ctx.processor, world.sample_root, world.tags,
                                       weights=np.full(len(ctx.test_set), w))  # fmt: skip
    logits_one = run_predict(ctx, model, make(1.0))["logits"]
    logits_bad = run_predict(ctx, model, make(w_bad))["logits"]
    top2 = np.sort(logits_one, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    moved = np.abs(logits_bad - logits_one).max(-1) > margin
    out = {"seed": seed, "auc": auc, "w_bad_median": w_bad, "share_moved": float(moved.mean()),
           "decisions_changed": float((logits_bad.argmax(-1) != logits_one.argmax(-1)).mean()),
           "max_abs_dlogit_median": float(np.median(np.abs(logits_bad - logits_one).max(-1))),
           "w_train": w_train.tolist(), "w_test": w_test.tolist(),
           "w_median": {f"{s}_{t}": float(np.median(np.asarray(w)[np.asarray(world.split_tags(s)) == t]))
                        for s, w in (("train", w_train), ("test", w_test)) for t in ("good", "bad")}}  # fmt: skip
    save_json(path, out)
    (path.parent / "mq_checks_stamp").mkdir(exist_ok=True)
    save_json(path.parent / "mq_checks_stamp" / "study_settings.json", ctx.settings)
    return out


def train_arm(arm: str, seed: int, ctx, world: World, pretrained_dir: Path, checks: dict) -> dict:
    """PEML of one arm from the seed's stage-1 model (or its cached run): record with the test metrics overall and
    on the bad-eye and good-eye clips, and the per-clip predictions."""
    run_dir = ctx.args.work_dir / f"seed{seed}" / f"mq_{arm}"
    record_path = run_dir / "record.json"
    if not ctx.args.overwrite and record_path.exists() and stamp_matches(run_dir, ctx.settings):
        logger.info("seed %d, %s: reusing %s", seed, arm, record_path)
        return json.loads(record_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    w_train, w_test = arm_weights(arm, seed, world.train.tags, world.test.tags, checks["w_train"], checks["w_test"])
    model = build_model(ARMS[arm], ctx, pretrained_dir, seed)
    common = dict(processor=ctx.processor, sample_root=world.sample_root, tags=world.tags)
    train_data = MixedQualityClips(ctx.train_set, weights=w_train, train=True, seed=seed, **common)
    test_data = MixedQualityClips(ctx.test_set, weights=w_test, **common)
    ctx.accelerator.free_memory()
    _, model, history = train(training_namespace(ctx.args, seed, run_dir), model, train_data, None, None,
                              ctx.accelerator)  # fmt: skip
    predictions = run_predict(ctx, model, test_data)
    y_true, y_pred = predictions["labels"], predictions["logits"].argmax(-1)
    bad = test_data.is_bad[predictions["indices"]]
    k = len(ctx.label_names)
    record = {
        "arm": arm, "seed": seed, "seconds": time.time() - start,
        "metrics": classification_metrics(y_true, y_pred, num_classes=k),
        "metrics_bad": subset_metrics(y_true, y_pred, bad, k), "metrics_good": subset_metrics(y_true, y_pred, ~bad, k),
        "indices": predictions["indices"].tolist(), "labels": y_true.tolist(), "predictions": y_pred.tolist(),
        "test_weights": predictions["instruction_weights"].tolist(),
        "train_weights_given": None if w_train is None else np.asarray(w_train).tolist(),
        "test_weights_given": None if w_test is None else np.asarray(w_test).tolist(),
        "train_loss_last10": float(np.mean(history["train_loss"][-10:])),
    }  # fmt: skip
    save_json(record_path, record)
    save_json(run_dir / "study_settings.json", ctx.settings)
    logger.info("seed %d, %s: WAR %.3f (bad %.3f, good %.3f) UAR %.3f (%.0f s)", seed, arm, record["metrics"]["war"],
                record["metrics_bad"]["war"], record["metrics_good"]["war"], record["metrics"]["uar"],
                record["seconds"])  # fmt: skip
    return record


# ----------------------------------------------------------------------------------------------------------------------
# The study
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--max_train_steps", type=int, default=200, help="PEML steps of every arm (design: 200)")
    parser.add_argument("--pretrain_steps", type=int, default=400, help="stage-1 steps per seed (design: 400)")
    parser.add_argument("--output_dir", default="mixed_quality_report",
                        help="mixed_quality.md and mixed_quality.json (the study's own: docs/study)")
    parser.add_argument("--work_dir", default=None, help="runs and sample data (default <output_dir>/work); shares "
                        "its stage-1 models with examples/reproduce_study.py's work folder of the same settings")
    parser.add_argument("--cache_dir", default=None, help="preprocessing cache (default: the training scripts' one)")
    parser.add_argument("--overwrite", action="store_true", help="retrain even where a finished run is cached")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: report the seeds whose every arm is finished in the work folder")
    parser.add_argument("--note", default=None, help="a sentence for the report's Run section (e.g. why fewer "
                        "seeds than designed ran)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny model, 2 + 2 clips per class, 2 steps, one seed — the numbers mean "
                             "nothing")  # fmt: skip
    return parser


def study_namespace(args) -> argparse.Namespace:
    """The main study's flags (`runner.add_study_arguments`) for this design: the gap world, 8 + 16 clips per class,
    the default stage 1 (so that its cached stage-1 models are shared)."""
    flags = ["--seeds", *map(str, args.seeds), "--max_train_steps", str(args.max_train_steps),
             "--pretrain_steps", str(args.pretrain_steps), "--output_dir", str(args.output_dir)]  # fmt: skip
    if args.work_dir:
        flags += ["--work_dir", str(args.work_dir)]
    if args.cache_dir:
        flags += ["--cache_dir", str(args.cache_dir)]
    if args.quick:
        flags += ["--config_overrides", QUICK_OVERRIDES, "--model_size", "small", "--sample_emer_clips_per_class", "2",
                  "--sample_num_frames", "8", "--sample_resolution", "112", "--batch_size", "4",
                  "--sample_clips_per_class", "2", "--sample_test_clips_per_class", "2"]  # fmt: skip
    else:
        flags += ["--sample_clips_per_class", str(TRAIN_CLIPS_PER_CLASS),
                  "--sample_test_clips_per_class", str(TEST_CLIPS_PER_CLASS)]  # fmt: skip
    ns = add_study_arguments(argparse.ArgumentParser()).parse_args(flags)
    ns.overwrite, ns.cached_only = args.overwrite, args.report_only
    return finalize_arguments(ns)


def run_mixed_quality(args) -> dict:
    """Run the design (every seed of `args.seeds` in order, every arm; finished runs are reused) and write the
    report. A seed counts only when all its arms finished."""
    if args.quick:
        args.seeds, args.max_train_steps, args.pretrain_steps = args.seeds[:1], 2, 2
    sargs = study_namespace(args)
    sargs.output_dir.mkdir(parents=True, exist_ok=True)
    target_root, emer_root, is_sample = prepare_data(sargs)
    ctx, world, seeds = None, None, {}
    for seed in sargs.seeds:
        pretrained = pretrain_for_seed(sargs, seed, emer_root)
        if pretrained is None:
            continue
        if ctx is None:
            ctx = make_context(sargs, target_root, emer_root, is_sample, pretrained)
            ctx.settings = {**settings_of(sargs), "design": DESIGN}
            world = make_world(ctx)
        if args.report_only:
            done = [ctx.args.work_dir / f"seed{seed}" / f"mq_{a}" / "record.json" for a in ARMS]
            if not all(p.exists() for p in done):
                continue
        checks = seed_checks(ctx, world, pretrained, seed)
        records = {arm: train_arm(arm, seed, ctx, world, pretrained, checks) for arm in ARMS}
        seeds[seed] = {"checks": checks, "records": records}
        payload = write_outputs(args, sargs, world, seeds)  # after every seed
    if not seeds:
        raise RuntimeError("no seed finished")
    return payload


# ----------------------------------------------------------------------------------------------------------------------
# Analysis and report
def analyse(seeds: dict) -> dict:
    order = sorted(seeds)
    checks = [seeds[s]["checks"] for s in order]
    war = lambda arm, key="metrics": np.array([seeds[s]["records"][arm][key]["war"] for s in order])
    uar = lambda arm: np.array([seeds[s]["records"][arm]["metrics"]["uar"] for s in order])
    aucs = np.array([c["auc"] for c in checks])
    moved = np.array([c["share_moved"] for c in checks])
    oracle_gain = 100 * (war("w_oracle") - war(REFERENCE))
    result = {"seeds": order, "checks": {
        "a": {"auc_mean": float(aucs.mean()), "auc_min": float(aucs.min()), "per_seed": aucs.tolist(),
              "passed": bool(aucs.mean() >= CHECK_A_MIN_AUC)},
        "b": {"share_mean": float(moved.mean()), "share_min": float(moved.min()), "per_seed": moved.tolist(),
              "w_bad_median_per_seed": [c["w_bad_median"] for c in checks],
              "passed": bool(moved.mean() >= CHECK_B_MIN_SHARE)},
        "c": {"delta_war_mean": float(oracle_gain.mean()), "ci": paired_ci(oracle_gain), "per_seed": oracle_gain.tolist(),
              "passed": bool(oracle_gain.mean() >= CHECK_C_MIN_WAR_POINTS)},
    }, "arms": {}}  # fmt: skip
    for arm in ARMS:
        row = {"war": war(arm).tolist(), "war_bad": war(arm, "metrics_bad").tolist(),
               "war_good": war(arm, "metrics_good").tolist(), "uar": uar(arm).tolist()}  # fmt: skip
        if arm != REFERENCE:
            for key, values in (("war", war(arm) - war(REFERENCE)),
                                ("war_bad", war(arm, "metrics_bad") - war(REFERENCE, "metrics_bad")),
                                ("war_good", war(arm, "metrics_good") - war(REFERENCE, "metrics_good")),
                                ("uar", uar(arm) - uar(REFERENCE))):  # fmt: skip
                ci = {k: (100 * v if isinstance(v, float) else v) for k, v in paired_ci(values).items()}
                row[f"delta_{key}"] = {**ci, "verdict": rule(ci), "per_seed": (100 * values).tolist()}
        result["arms"][arm] = row
    result["w_medians"] = {k: float(np.mean([c["w_median"][k] for c in checks])) for k in checks[0]["w_median"]}
    result["all_checks_passed"] = all(c["passed"] for c in result["checks"].values())
    return result


def _ci_text(d: dict) -> str:
    if d["lo"] is None:
        return f"{d['mean']:+.1f} (no CI: {d['n']} seed)"
    return f"{d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]"


def _mean(values) -> str:
    return f"{100 * np.mean(values):.1f}"


def write_outputs(args, sargs, world: World, seeds: dict) -> dict:
    analysis = analyse(seeds)
    n, designed = len(analysis["seeds"]), 10
    info = {"design": DESIGN, "seeds_run": analysis["seeds"], "seeds_designed": list(range(designed)),
            "peml_steps": sargs.max_train_steps, "pretrain_steps": sargs.pretrain_steps, "batch_size": sargs.batch_size,
            "learning_rate": sargs.learning_rate, "config_overrides": sargs.config_overrides, "quick": bool(args.quick),
            "note": getattr(args, "note", None), "num_train": len(world.train), "num_test": len(world.test),
            "num_test_bad": int(world.test.is_bad.sum()),
            "stage1_minutes_per_seed": _stage1_minutes(sargs, analysis["seeds"]),
            "arm_minutes_per_seed": {s: sum(r["seconds"] for r in seeds[s]["records"].values()) / 60
                                     for s in analysis["seeds"]}}  # fmt: skip
    test_clips = [{"clip_id": c, "label": int(y), "tag": t}
                  for c, y, t in zip(world.test.clip_ids, world.test.dataset["label"], world.test.tags)]  # fmt: skip
    slim = lambda r: {k: v for k, v in r.items() if k not in ("indices", "labels")}
    for s in analysis["seeds"]:
        for r in seeds[s]["records"].values():
            if r["indices"] != list(range(len(test_clips))) or r["labels"] != [c["label"] for c in test_clips]:
                raise ValueError(f"seed {s}, {r['arm']}: the predictions are not in the test split's row order")
    payload = {"info": info, "analysis": analysis, "test_clips": test_clips,
               "train_tags": dict(zip(world.train.clip_ids, world.train.tags)),
               "per_seed": {s: {"checks": seeds[s]["checks"],
                                "records": {a: slim(r) for a, r in seeds[s]["records"].items()}}
                            for s in analysis["seeds"]}}  # fmt: skip
    out = Path(sargs.output_dir)
    (out / "mixed_quality.json").write_text(compact_json(payload), encoding="utf-8")
    (out / "mixed_quality.md").write_text(report_markdown(info, analysis), encoding="utf-8")
    logger.info("report: %s (%d seed(s))", out / "mixed_quality.md", n)
    return payload


def compact_json(payload, digits: int = 6) -> str:
    """JSON with floats rounded to `digits` and every list of numbers or strings on one line (the per-clip lists
    of the per-seed records stay readable and small)."""
    import re

    def rounded(o):
        if isinstance(o, float):
            return round(o, digits)
        if isinstance(o, dict):
            return {str(k): rounded(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [rounded(v) for v in o]
        return o.tolist() if hasattr(o, "tolist") else o

    text = json.dumps(rounded(payload), indent=1, ensure_ascii=False)
    flat = re.compile(r'\[\s*((?:-?[0-9.eE+-]+|"[^",\n]*"|null|true|false)(?:,\s*(?:-?[0-9.eE+-]+|"[^",\n]*"|null|true|false))*)\s*\]')
    return flat.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def _stage1_minutes(sargs, seeds) -> dict:
    out = {}
    for s in seeds:
        path = sargs.work_dir / f"seed{s}" / "pretrain" / "study_time.json"
        if path.exists():
            out[s] = json.loads(path.read_text())["seconds"] / 60
    return out


def _claim(verdict: str) -> str:
    return "is inconclusive" if verdict == "inconclusive" else verdict


def report_markdown(info: dict, a: dict) -> str:
    checks, arms, n = a["checks"], a["arms"], len(a["seeds"])
    ok = lambda c: "**passed**" if c["passed"] else "**FAILED**"
    lines = ["# Does W help where it should? The mixed-quality study — report", "",
             "Design, fixed before the first run: [`mixed_quality_design.md`](mixed_quality_design.md). Written by "
             "`examples/mixed_quality_study.py` (`emvfer_hf.study.mixed_quality`).", ""]  # fmt: skip
    if info["quick"]:
        lines += ["> `--quick`: a smoke run (tiny model, 2 steps, one seed) — the numbers mean nothing.", ""]
    if n < len(info["seeds_designed"]):
        lines += [f"> **Fewer seeds than designed**: {n} of {len(info['seeds_designed'])} (seeds "
                  f"{', '.join(map(str, a['seeds']))}) — see *Run* below for why. The CIs have {max(n - 1, 0)} "
                  "degrees of freedom instead of 9.", ""]  # fmt: skip
    lines += ["## Manipulation checks (before any accuracy)", "",
              "| check | required | measured | per seed | result |", "|---|---|---|---|---|",
              f"| (a) W separates the tags: ROC AUC of the default W, good vs bad training clips | mean ≥ "
              f"{CHECK_A_MIN_AUC} | mean {checks['a']['auc_mean']:.3f}, min {checks['a']['auc_min']:.3f} | "
              f"{', '.join(f'{v:.2f}' for v in checks['a']['per_seed'])} | {ok(checks['a'])} |",
              f"| (b) W moves the stage-1 model: share of test clips whose largest \\|Δlogit\\| (W = 1 → median W of "
              f"the bad training clips) exceeds the top-2 margin | mean ≥ {100 * CHECK_B_MIN_SHARE:.0f}% | mean "
              f"{100 * checks['b']['share_mean']:.1f}%, min {100 * checks['b']['share_min']:.1f}% | "
              f"{', '.join(f'{100 * v:.0f}%' for v in checks['b']['per_seed'])} | {ok(checks['b'])} |",
              f"| (c) the world needs W: WAR(`w_oracle`) − WAR(`w_one`), points | mean ≥ +{CHECK_C_MIN_WAR_POINTS:.0f} "
              f"| {_ci_text(checks['c']['ci'])} | {', '.join(f'{v:+.1f}' for v in checks['c']['per_seed'])} | "
              f"{ok(checks['c'])} |", ""]  # fmt: skip
    failed = [k for k, c in checks.items() if not c["passed"]]
    if failed:
        lines += [f"**Check(s) {', '.join(f'({k})' for k in failed)} failed: in this world the primary endpoint "
                  "cannot show the claim** (it is still reported below, as designed).", ""]  # fmt: skip
    else:
        lines += ["All three checks passed: the world can show the claim.", ""]
    lines += ["Median default W per split and tag (the seeds' medians, averaged): " + ", ".join(
        f"{k.replace('_', ' ')} {v:.3f}" for k, v in a["w_medians"].items()) + ".", ""]
    p = arms[PRIMARY]
    lines += ["## Primary endpoint: ΔWAR = WAR(`w_default`) − WAR(`w_one`)", "",
              f"Paired by seed, mean over {n} seed(s), Student-t 95% CI ({max(n - 1, 0)} df), in WAR points:", "",
              "| test clips | ΔWAR [95% CI] | rule |", "|---|---|---|",
              f"| all {info['num_test']} | {_ci_text(p['delta_war'])} | **{p['delta_war']['verdict']}** |",
              f"| the {info['num_test_bad']} bad-eye clips | {_ci_text(p['delta_war_bad'])} | "
              f"{p['delta_war_bad']['verdict']} |",
              f"| the {info['num_test'] - info['num_test_bad']} good-eye clips (not an endpoint) | "
              f"{_ci_text(p['delta_war_good'])} | — |", "",
              f"**Verdict (the rule, on all test clips): the claim {_claim(p['delta_war']['verdict'])}.**" + (
                  " The checks above failed, so this verdict cannot show the claim either way." if failed else ""), "",
              "## Secondary: every arm against `w_one`", "",
              "No correction for multiplicity; no claim from a secondary comparison alone. Means over seeds (%); Δ in "
              "points with the paired 95% CI and the rule.", "",
              "| arm | W | WAR | WAR bad | WAR good | UAR | ΔWAR [CI] | rule | ΔWAR bad [CI] | rule | ΔUAR [CI] |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, arm in ARMS.items():
        r = arms[key]
        cells = [f"`{key}`", arm.description, _mean(r["war"]), _mean(r["war_bad"]), _mean(r["war_good"]), _mean(r["uar"])]
        if key == REFERENCE:
            cells += ["—"] * 5
        else:
            cells += [_ci_text(r["delta_war"]), r["delta_war"]["verdict"], _ci_text(r["delta_war_bad"]),
                      r["delta_war_bad"]["verdict"], _ci_text(r["delta_uar"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Per seed (WAR %, all / bad-eye test clips)", "",
              "| seed | AUC (a) | moved (b) | " + " | ".join(f"`{k}`" for k in ARMS) + " |",
              "|---|---|---|" + "---|" * len(ARMS)]  # fmt: skip
    for i, s in enumerate(a["seeds"]):
        cells = [str(s), f"{checks['a']['per_seed'][i]:.2f}", f"{100 * checks['b']['per_seed'][i]:.0f}%"]
        cells += [f"{100 * arms[k]['war'][i]:.1f} / {100 * arms[k]['war_bad'][i]:.1f}" for k in ARMS]
        lines.append("| " + " | ".join(cells) + " |")
    stage1 = info["stage1_minutes_per_seed"]
    lines += ["", "## Run", "",
              f"- Stage 1: the gap world's EMER sample data (40 clips per class, tracker series), {info['pretrain_steps']} "
              f"steps, batch {info['batch_size']}, `GAP_OVERRIDES`; one stage-1 model per seed, shared with the "
              "main study's cache.",
              f"- PEML: {info['peml_steps']} steps, batch {info['batch_size']}, AdamW lr {info['learning_rate']} "
              f"(cosine), the same for every arm; {info['num_train']} training and {info['num_test']} test clips "
              f"({info['num_test_bad']} bad-eye).",
              f"- Seeds run: {', '.join(map(str, a['seeds']))} (designed: 0–9)."
              + (f" {info['note']}" if info.get("note") else ""),
              f"- Time (2 shared CPU cores): {sum(stage1.values()) + sum(info['arm_minutes_per_seed'].values()):.0f} "
              "min of training and testing in all; per seed, stage 1 "
              + (", ".join(f"{v:.1f}" for v in stage1.values()) or "n/a") + " min and the seven arms (with checks "
              "(a)–(b) not counted) " + ", ".join(f"{v:.1f}" for v in info["arm_minutes_per_seed"].values())
              + " min.", ""]  # fmt: skip
    lines = [line for line in lines if line is not None]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"
