"""The study's markdown report: tables (mean ± std over seeds), the claim-by-claim verdicts, and the figures with the
numbers behind them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..metrics import fold_summary
from .variants import CLAIMS, REFERENCE_NAMES, TABLES, VARIANTS

METRIC_COLUMNS = (("war", "WAR"), ("uar", "UAR"))
SAMPLE_COLUMNS = (("eye_pair_acc", "eye-pair acc."), ("eye_pair_confusion", "pair confusion ↓"))


def summarize(records: list[dict], key: str = "metrics") -> Optional[dict]:
    """Mean and std over seeds of every metric of `record[key]` (None when no record has it)."""
    values = [r[key] for r in records if r.get(key)]
    return fold_summary(values) if values else None


def paired_differences(records: dict, better: str, worse: str, metric: str = "war") -> np.ndarray:
    """`better − worse` per seed present in both."""
    seeds = sorted(set(records.get(better, {})) & set(records.get(worse, {})))
    return np.array([records[better][s]["metrics"][metric] - records[worse][s]["metrics"][metric] for s in seeds])


def verdict(differences: np.ndarray) -> str:
    """"holds" when the claimed winner is better in every seed, "does not hold" when it is never better, else
    "inconclusive (k/n seeds)"; a single seed says so."""
    n = len(differences)
    if n == 0:
        return "not run"
    wins, losses = int((differences > 0).sum()), int((differences < 0).sum())
    suffix = " (1 seed only)" if n == 1 else ""
    if wins == n:
        return "holds" + suffix
    if wins == 0:
        return ("tie" if losses == 0 else "does not hold") + suffix
    return f"inconclusive ({wins}/{n} seeds better)"


def _pm(summary: Optional[dict], key: str) -> str:
    if not summary or key not in summary:
        return "—"
    return f"{100 * summary[key]['mean']:.1f} ± {100 * summary[key]['std']:.1f}"


def _delta(records: dict, key: str, reference: Optional[str]) -> str:
    if reference is None or key == reference:
        return "—"
    d = paired_differences(records, key, reference)
    return f"{100 * d.mean():+.1f}" if len(d) else "—"


def variant_table(records: dict, keys, is_sample: bool, reference: Optional[str], previous: bool,
                  reference_name: Optional[str] = None) -> str:  # fmt: skip
    """A markdown table of `keys`: metrics mean ± std over seeds, Δ WAR (vs the row above when `previous`, else vs
    `reference`), trainable parameters."""
    columns = list(METRIC_COLUMNS) + (list(SAMPLE_COLUMNS) if is_sample else [])
    header = ["Variant"] + [title for _, title in columns]
    if is_sample:
        header.append("WAR, HQ eyes at test")
    header += ["Δ WAR" + (" vs row above" if previous else " vs reference"), "trainable params"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, key in enumerate(keys):
        if key not in records:
            continue
        runs = list(records[key].values())
        summary = summarize(runs)
        name = reference_name if key == reference and reference_name else VARIANTS[key].name
        cells = [name] + [_pm(summary, m) for m, _ in columns]
        if is_sample:
            cells.append(_pm(summarize(runs, "metrics_hq_eyes"), "war"))
        against = (keys[i - 1] if i > 0 else None) if previous else reference
        cells.append(_delta(records, key, against))
        cells.append(f"{runs[0]['trainable_parameters']:,}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_table(records: dict) -> tuple[str, list[dict]]:
    """The paper's claims, checked seed by seed on WAR (UAR shown alongside)."""
    lines = ["| Claim (paper) | Δ WAR (mean ± std) | Δ UAR (mean ± std) | Verdict on WAR |", "|---|---|---|---|"]
    rows = []
    for claim, better, worse in CLAIMS:
        d_war = paired_differences(records, better, worse, "war")
        d_uar = paired_differences(records, better, worse, "uar")
        if not len(d_war):
            continue
        row = {"claim": claim, "better": better, "worse": worse, "delta_war": d_war.tolist(),
               "delta_uar": d_uar.tolist(), "verdict": verdict(d_war)}  # fmt: skip
        rows.append(row)
        lines.append(f"| {claim} | {100 * d_war.mean():+.1f} ± {100 * d_war.std():.1f} | "
                     f"{100 * d_uar.mean():+.1f} ± {100 * d_uar.std():.1f} | **{row['verdict']}** |")  # fmt: skip
    return "\n".join(lines), rows


def per_seed_table(records: dict) -> str:
    seeds = sorted({s for runs in records.values() for s in runs})
    lines = ["| Variant | " + " | ".join(f"seed {s} WAR / UAR" for s in seeds) + " | time per run (s) |",
             "|---" * (len(seeds) + 2) + "|"]  # fmt: skip
    for key, runs in records.items():
        cells = []
        for s in seeds:
            m = runs[s]["metrics"] if s in runs else None
            cells.append(f"{100 * m['war']:.1f} / {100 * m['uar']:.1f}" if m else "—")
        seconds = np.mean([r["seconds"] for r in runs.values()])
        lines.append(f"| {VARIANTS[key].name} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    return "\n".join(lines)


# The "gap" world (emvfer_hf.data.sample_data.WORLDS), written down from the paper's description before any run of it
GAP_WORLD_DESIGN = (
    "## The sample world: the paper's gap, fixed before the run",
    "",
    "**What the paper describes.** EM-VFER pre-trains MERT on EMER, recorded in a lab: its participants watch "
    "stimuli while an eye tracker records their eyes, so stage 1 learns from a high-quality eye signal. The model is "
    "then adapted to video benchmarks filmed elsewhere (DFEW, MAFW: film scenes; Aff-Wild2: videos from the web; "
    "CASME: micro-expressions) — other people, other light and cameras, and no eye tracker: the eye movements "
    "must be read from the video, a low-quality signal. PEML is the paper's answer to that gap: the pre-trained "
    "encoders are frozen so that what they learnt from EMER is kept instead of being overwritten by full "
    "fine-tuning, prompts scaled by W(E', Ē) tell the model how far the visual eye signal is from the "
    "high-quality ones, and level losses guide the frozen hierarchy. Its advantage over full fine-tuning is claimed "
    "for exactly that situation: a large pre-trained model, a target across a domain gap, a worse eye signal.",
    "",
    "**What this world does** (`make_sample_dataset(..., world=\"gap\")`, parameters in "
    "`emvfer_hf.data.sample_data.DOMAINS`; fixed from the description above before the first run and not changed "
    "after it):",
    "",
    "| | stage 1: EMER, *lab* domain | target: DFEW, *wild* domain |",
    "|---|---|---|",
    "| clips | {emer} per class (16 participants, each shows every class; 5 folds, fold 1 held out) | "
    "{train} labelled training + {test} test clips per class |",
    "| identities | pool A: 16 persons (skin tone 0–0.7 of the plain world's range) | pool B: 10 other persons "
    "(tone 0.3–1.0), none shared with A |",
    "| light | white, as rendered | warm colour cast (B ×0.75, G ×0.95, R ×1.2), 15 grey levels darker |",
    "| camera | sharp, face 80% of the frame height, centred (±2%), light noise (σ 2), little head motion | "
    "Gaussian blur (σ 1.1 px at 128 px), sensor noise (σ 9 + 6), 3× the head motion, face 60% of the frame "
    "height, off centre by up to 8% |",
    "| eye signal | the eye tracker's series (Tobii TSV of the generated ground truth + tracker noise) | only the "
    "visual series the extractor reads from these blurred, noisy, smaller eyes |",
    "",
    "The classes, their expressions and eye behaviours (including the pairs that differ only in the eyes) are the "
    "plain world's in both domains: what transfers from stage 1 is the task, not the look. The real DFEW has ~12k "
    "clips; the few labelled clips here are the issue's reading of the paper's argument (the regime where full "
    "fine-tuning has the most to forget and the least to learn from), not the benchmark's size.",
    "",
)


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.2f}"


def write_report(path: Path, info: dict, records: dict, pretrain_eval: dict, findings: dict) -> str:
    """Write `report.md` and return its text. `info`: setup facts; `records[variant][seed]`: run records;
    `pretrain_eval[seed]`: stage-1 model on the EMER test clips; `findings`: the figures' numbers."""
    is_sample = info["is_sample"]
    n_test = info["num_test"]
    out = [f"# EM-VFER study — {info['title']}", ""]
    if info.get("cached_only"):
        out += [f"Written by `{info['command']}` from the finished runs of its work folder, which took "
                f"{info.get('run_minutes', 0.0):.1f} min of run time together ({info['device']}).", ""]
    else:
        out += [f"Generated by `{info['command']}` in {info['minutes']:.1f} min ({info['device']}).", ""]
    out += ["## Setup", ""]
    out += [f"- **Target**: {info['target']} — {info['num_train']} training / {n_test} test clips, classes "
            f"{', '.join(info['label_names'])}."]  # fmt: skip
    out += [f"- **Stage 1**: {info['stage1']}."]
    out += [f"- **Model**: {info['model']}."]
    out += [f"- **Budget, identical for every variant**: {info['budget']}; seeds {info['seeds']} (mean ± std over "
            "seeds; std is the population std). Each seed re-runs stage 1 and every variant."]  # fmt: skip
    out += [f"- **Resolution of the numbers**: one test clip = {100 / max(n_test, 1):.1f} points of WAR."]
    if is_sample:
        out += ["", "> **Read this first.** This run uses the bundled *sample data*: a small synthetic world of rendered "
                "faces (docs/design.md §Sample data) where the class shows in the expression AND in the eye behaviour, "
                "some class "
                f"pairs differ ONLY in the eyes ({info['eye_pairs']}), and the eye tracker's series of EMER is the "
                "high-quality signal while the visual extractor reads a noisy version from the pixels. It tests "
                "whether the *mechanisms* behave as the paper claims in a world built to need them — not the paper's "
                "numbers, which come from real data, ViT-B encoders and far longer training. Columns specific to "
                "it: *eye-pair acc.* (accuracy on the test clips of classes with an eye-only partner), *pair "
                "confusion* (their share predicted as that partner — only the eyes can avoid it) and *WAR, HQ eyes at "
                "test* (the same trained model fed the generated ground-truth series instead of the visual one)."]  # fmt: skip
    out += [""]
    if info.get("world") == "gap":
        sizes = {k: info["world_sizes"][k] for k in ("emer", "train", "test")}
        out += [line.format(**sizes) if "{" in line else line for line in GAP_WORLD_DESIGN]
        if info.get("world_quality"):
            out += [info["world_quality"], ""]

    claims_md, _ = claims_table(records)
    out += ["## Verdicts: what holds and what does not", "",
            "Each claim compares two variants trained with the same budget and seed; a claim *holds* when it is "
            "true in every seed, *does not hold* when it is true in none, otherwise it is *inconclusive*.", "",
            claims_md, ""]  # fmt: skip
    if info.get("notes"):
        out += [f"- {note}" for note in info["notes"]] + [""]

    titles = {k: v for k, v in TABLES.items()}
    out += [f"## {titles['vi'][0]}", "",
            variant_table(records, titles["vi"][1], is_sample, None, previous=True), ""]  # fmt: skip
    for key in ("ix", "x", "peml", "switches"):
        title, keys = titles[key]
        out += [f"## {title}", "",
                variant_table(records, keys, is_sample, "peml", previous=False, reference_name=REFERENCE_NAMES[key]),
                ""]  # fmt: skip
    out += ["**Variants.**", ""] + [f"- *{VARIANTS[k].name}*: {VARIANTS[k].description}" for k in records] + [""]

    if pretrain_eval:
        tracker = fold_summary([e["tracker"] for e in pretrain_eval.values()])
        visual = fold_summary([e["visual"] for e in pretrain_eval.values()])
        out += ["## Stage 1 (EMER pre-training) and the quality gap", "",
                "The pre-trained model on the EMER test clips, fed the eye-tracker series it was trained on, and the "
                "visual series read from the same videos:", "",
                "| EMER test input | WAR | UAR |", "|---|---|---|",
                f"| eye tracker (high quality) | {_pm(tracker, 'war')} | {_pm(tracker, 'uar')} |",
                f"| visual extraction (low quality) | {_pm(visual, 'war')} | {_pm(visual, 'uar')} |", ""]  # fmt: skip

    out += ["## Figures", ""]
    out += ["### Confusion matrices (paper Figs. 5–9)", "",
            f"Test split, seed {info['seeds'][0]}, the four Table VI variants.", ""]  # fmt: skip
    out += [f"![{VARIANTS[k].name}](figures/confusion_{k}.png)" for k in TABLES["vi"][1] if k in records] + [""]
    f = findings
    if "fig10" in f:
        shares = ", ".join(f"{k}: {_fmt(v['eye_band_share'])}" for k, v in f["fig10"].items())
        out += ["### Attention rollout over the face (Fig. 10)", "",
                "Rollout of the video encoder's attention (middle frame) for the video-only and the PEML model. "
                f"Share of the rollout mass on the eye band (patch rows at 20–55% of the face height): {shares}.",
                "", "![attention rollout](figures/fig10_attention_rollout.png)", ""]  # fmt: skip
    projections = (
        ("fig11", "Fused features F_V^L per class, with and without PEML (Fig. 11)",
         "PCA of the final fused features [6] (averaged over frames) of all target clips.",
         "PCA of fused features", "fig11_pca_fused_features.png"),
        ("fig12", "Eye features per class (Fig. 12)",
         "LDA of the eye encoder's CLS (F_E^L) on the visual series of all target clips.",
         "LDA of eye features", "fig12_lda_eye_features.png"),
    )  # fmt: skip
    for key, title, text, alt, file in projections:
        if key in f:
            numbers = "; ".join(f"{k}: silhouette {_fmt(v['silhouette'])}, linear-probe test acc. "
                                f"{_fmt(v['linear_probe_acc'])}" for k, v in f[key].items())  # fmt: skip
            out += [f"### {title}", "", f"{text} {numbers}.", "", f"![{alt}](figures/{file})", ""]
    if "fig13" in f:
        gaps = "; ".join(f"{k}: {_fmt(v['paired_gap'])}" for k, v in f["fig13"].items()
                         if isinstance(v, dict) and "paired_gap" in v)  # fmt: skip
        w = f["fig13"].get("instruction_weight")
        w_text = (f" Instruction weight W under the PEML model: mean {_fmt(w['mean_hq'])} on high-quality input vs "
                  f"{_fmt(w['mean_visual'])} on visual input; AUC of W separating them {_fmt(w['auc'])} (0.5 = W "
                  "cannot tell them apart).") if w else ""  # fmt: skip
        out += ["### Visual vs high-quality eye features, with and without PEML (Fig. 13)", "",
                f"{info['fig13_source']} Paired gap (mean distance between a clip's high-quality and visual eye "
                f"features, relative to the spread of the high-quality ones; lower = closer): {gaps}.{w_text}",
                "", "![eye feature distributions](figures/fig13_eye_feature_distribution.png)", ""]  # fmt: skip
        if f["fig13"].get("prior_auc"):
            from .prior_quality import markdown_table

            out += ["#### Does W measure quality? ROC AUC per prior variant", "",
                    "W of real clean eye series (held-out windows) against degraded copies of them; 1.0 = W ranks every "
                    "clean series above every degraded one, 0.5 = chance, 0 = W prefers the broken series. The "
                    "default (bold) is the distributional-feature prior, a deliberate difference from the paper's "
                    "mean series.", "", markdown_table(f["fig13"]["prior_auc"]), ""]  # fmt: skip
    if "fig14" in f:
        out += ["### Training loss of the Table VI variants (Fig. 14)", "",
                "Mean loss over the last 10% of steps: "
                + ", ".join(f"{VARIANTS[k].name} {v:.3f}" for k, v in f["fig14"].items())
                + ". The PEML loss also contains the level losses [12], so its level is not directly comparable.",
                "", "![training loss](figures/fig14_training_loss.png)", ""]  # fmt: skip
    out += ["## Per seed", "", per_seed_table(records), ""]
    out += ["Raw records (metrics, confusion matrices, loss curves, per-epoch evaluation): `results.json`.", ""]
    text = "\n".join(out)
    path.write_text(text, encoding="utf-8")
    return text
