"""The study's figures (paper Figs. 5–14) and the numbers that go with them.

Every `figure_*` function writes one PNG and returns a dict of scalar findings that the report quotes next to it, so
that a figure is never the only evidence of a claim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..training.data import collate_clips
from ..training.loop import make_dataloader


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _class_colors(n: int):
    return _pyplot().get_cmap("tab10" if n <= 10 else "tab20")(np.arange(n) % (10 if n <= 10 else 20))


# ----------------------------------------------------------------------------------------------------------------------
# Features
def num_active_prompts(model) -> int:
    return model.config.num_prompt_tokens if model.mert.prompts_active else 0


@torch.no_grad()
def clip_features(model, data, batch_size: int = 8) -> dict:
    """Per clip: `fused` — the final fusion F_V^L [6] averaged over frames (B, H); `eye` — the eye encoder's CLS of
    F_E^L (B, D_e); `weights` — W(E', Ē) (NaN without a prior); `labels`; `logits`."""
    model.eval()
    prompts = num_active_prompts(model)
    out = {"fused": [], "eye": [], "weights": [], "labels": [], "logits": []}
    for batch in make_dataloader(data, batch_size, False, 0):
        labels = batch.pop("labels")
        batch.pop("index")
        outputs = model.mert(**batch, return_dict=True)
        out["fused"].append(outputs.frame_features.mean(1))
        out["eye"].append(outputs.eye_last_hidden_state[:, prompts])
        weights = outputs.instruction_weights
        out["weights"].append(weights if weights is not None else torch.full(labels.shape, float("nan")))
        out["labels"].append(labels)
        out["logits"].append(model.classifier(outputs.pooler_output))
    return {k: torch.cat(v).float().numpy() for k, v in out.items()}


@torch.no_grad()
def attention_rollout(model, item: dict) -> tuple[np.ndarray, np.ndarray]:
    """Attention rollout (Abnar & Zuidema, 2020) of the video encoder for one clip's middle frame.

    Per layer the head-averaged attention A is mixed with the residual path (½A + ½I), rows renormalised, and the
    layers multiplied; the CLS row over the patch tokens (prompt tokens excluded) is the map. Returns
    `(map (g, g) summing to 1, face image (H, W, 3) in [0, 1])`.
    """
    model.eval()
    batch = collate_clips([item])
    batch.pop("labels")
    batch.pop("index")
    outputs = model(**batch, output_attentions=True)
    prompts = num_active_prompts(model)
    frames = batch["pixel_values"].shape[1]
    t = frames // 2
    rollout = None
    for attention in outputs.attentions:  # (T, heads, N, N)
        a = attention[t].float().mean(0)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1])
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    cls_row = rollout[prompts, prompts + 1:]
    grid = int(round(cls_row.numel() ** 0.5))
    heat = (cls_row / cls_row.sum()).reshape(grid, grid).numpy()
    image = batch["pixel_values"][0, t].permute(1, 2, 0).numpy() * 0.5 + 0.5  # the processor's mean = std = 0.5
    return heat, np.clip(image, 0, 1)


# ----------------------------------------------------------------------------------------------------------------------
# Scalar helpers
def _silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    try:
        return float(silhouette_score(features, labels))
    except ValueError:
        return float("nan")


def linear_probe(train_x, train_y, test_x, test_y) -> float:
    """Accuracy on the test clips of an LDA classifier fitted on the training clips' features (NaN if not fittable)."""
    import warnings

    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    try:
        with warnings.catch_warnings():  # classes with a single training clip (tiny runs) warn on every fit
            warnings.simplefilter("ignore", UserWarning)
            lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(train_x, train_y)
        return float((lda.predict(test_x) == test_y).mean())
    except (ValueError, np.linalg.LinAlgError):
        return float("nan")


def _project(kind: str, features: np.ndarray, labels: Optional[np.ndarray] = None) -> np.ndarray:
    """2-D projection: "pca", or "lda" (falls back to PCA when there are fewer than 3 classes)."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    if kind == "lda" and labels is not None and len(np.unique(labels)) >= 3:
        try:
            return LinearDiscriminantAnalysis(n_components=2, solver="svd").fit_transform(features, labels)
        except (ValueError, np.linalg.LinAlgError):  # degenerate (e.g. fewer clips than dimensions): PCA
            pass
    n = min(2, features.shape[0], features.shape[1])
    projected = PCA(n_components=n).fit_transform(features)
    return np.pad(projected, ((0, 0), (0, 2 - n)))


def _scatter_by_class(ax, points, labels, names, title):
    colors = _class_colors(len(names))
    for c, name in enumerate(names):
        sel = labels == c
        if sel.any():
            ax.scatter(points[sel, 0], points[sel, 1], s=18, color=colors[c], label=name, alpha=0.85)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------------------------------------
# Figures
def figure_feature_projection(
    panels: Sequence[tuple[str, dict]], names: Sequence[str], key: str, kind: str, path: Path, split: np.ndarray
) -> dict:
    """Figs. 11 / 12: one 2-D projection (PCA or LDA) per model of the per-clip features `key` ("fused" or "eye"),
    coloured by class. Findings per panel: silhouette (full dimension, all clips) and a linear probe (train → test)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    findings = {}
    for ax, (title, features) in zip(axes[0], panels):
        x, y = features[key], features["labels"].astype(int)
        silhouette = _silhouette(x, y)
        probe = linear_probe(x[split == 0], y[split == 0], x[split == 1], y[split == 1])
        findings[title] = {"silhouette": silhouette, "linear_probe_acc": probe}
        _scatter_by_class(ax, _project(kind, x, y), y, names,
                          f"{title}\nsilhouette {silhouette:.2f} · probe acc {probe:.2f}")  # fmt: skip
    axes[0][-1].legend(fontsize=7, loc="best")
    _save(fig, path)
    return findings


def figure_eye_distribution(panels: Sequence[tuple[str, dict, dict]], path: Path, source_note: str,
                            prior_auc: Optional[dict] = None) -> dict:  # fmt: skip
    """Fig. 13: per model, the eye features of the SAME clips fed the high-quality series and the visual one, in a
    shared PCA plane; last panel: W(E', Ē) of both inputs under the PEML model. Findings per panel: the paired gap
    mean‖f_hq(i) − f_vis(i)‖ / mean‖f_hq(i) − f_hq(j)‖ (lower = the visual features land closer to the
    high-quality ones), and for W the mean of each input and the AUC of W separating high-quality from visual.
    `prior_auc` (`emvfer_hf.study.prior_quality.prior_auc_table`): does W measure quality, per prior variant — ROC AUC
    of real clean eye series against noisy / constant / shuffled / missing / pupil-failed copies; passed through to
    the findings (`"prior_auc"`) for the report's Fig. 13 section."""
    from sklearn.metrics import roc_auc_score

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.0 * (len(panels) + 1), 3.9), squeeze=False)
    findings = {}
    for ax, (title, hq, visual) in zip(axes[0], panels):
        a, b = hq["eye"], visual["eye"]
        spread = np.linalg.norm(a[:, None] - a[None], axis=-1)
        off_diagonal = spread[~np.eye(len(a), dtype=bool)]
        gap = float(np.linalg.norm(a - b, axis=1).mean() / max(off_diagonal.mean() if off_diagonal.size else 0, 1e-8))
        findings[title] = {"paired_gap": gap}
        points = _project("pca", np.concatenate([a, b]))
        ax.scatter(points[: len(a), 0], points[: len(a), 1], s=16, label="high-quality", color="tab:blue", alpha=0.8)
        ax.scatter(points[len(a):, 0], points[len(a):, 1], s=16, label="visual", color="tab:orange", alpha=0.8)
        ax.set_title(f"{title}\npaired gap {gap:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7)
    ax = axes[0][-1]
    _, hq, visual = panels[-1]
    w_hq, w_vis = hq["weights"], visual["weights"]
    if np.isfinite(w_hq).all() and np.isfinite(w_vis).all():
        bins = np.linspace(min(w_hq.min(), w_vis.min()), max(w_hq.max(), w_vis.max()) + 1e-6, 20)
        ax.hist(w_hq, bins=bins, alpha=0.6, label="high-quality", color="tab:blue")
        ax.hist(w_vis, bins=bins, alpha=0.6, label="visual", color="tab:orange")
        auc = float(roc_auc_score(np.r_[np.ones(len(w_hq)), np.zeros(len(w_vis))], np.r_[w_hq, w_vis]))
        findings["instruction_weight"] = {"mean_hq": float(w_hq.mean()), "mean_visual": float(w_vis.mean()), "auc": auc}
        ax.set_title(f"W(E', Ē) of the last model ({panels[-1][0]})\nAUC(hq > visual) {auc:.2f}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(source_note, fontsize=8)
    _save(fig, path)
    if prior_auc is not None:
        findings["prior_auc"] = prior_auc
    return findings


def figure_loss_curves(curves: dict[str, list[list[float]]], labels: dict[str, str], path: Path) -> dict:
    """Fig. 14: training loss per step (moving average), mean over seeds with a ±1 std band. Findings: the mean
    loss over the last 10% of steps per variant."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    findings = {}
    for key, runs in curves.items():
        length = min(len(r) for r in runs)
        if length == 0:
            continue
        losses = np.array([r[:length] for r in runs])
        window = max(1, length // 20)
        kernel = np.ones(window) / window
        smooth = np.array([np.convolve(r, kernel, mode="valid") for r in losses])
        steps = np.arange(smooth.shape[1]) + window
        mean, std = smooth.mean(0), smooth.std(0)
        line = ax.plot(steps, mean, label=labels[key])[0]
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        findings[key] = float(losses[:, -max(1, length // 10):].mean())
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (moving average, mean ± std over {len(next(iter(curves.values())))} seed(s))")
    ax.legend(fontsize=8)
    _save(fig, path)
    return findings


def figure_attention_rollout(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, np.ndarray]]]], path: Path,
                             eye_band: tuple[float, float] = (0.2, 0.55)) -> dict:  # fmt: skip
    """Fig. 10: per clip (row) the face and the rollout map of each model (columns), over the middle frame.

    Findings: per model, the mean share of the rollout mass on the patch rows whose centre lies in `eye_band` of the
    face height (where the eyes of an aligned face sit — approximate, the crop is a detector box)."""
    import cv2

    plt = _pyplot()
    columns = 1 + len(rows[0][1])
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.3 * columns, 2.3 * len(rows)), squeeze=False)
    shares: dict[str, list[float]] = {}
    uniform = 0.0
    for r, (clip_title, maps) in enumerate(rows):
        image = maps[0][2]
        axes[r][0].imshow(image)
        axes[r][0].set_title(clip_title, fontsize=8)
        for c, (model_title, heat, face) in enumerate(maps, start=1):
            size = face.shape[:2]
            up = cv2.resize(heat.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
            axes[r][c].imshow(face)
            axes[r][c].imshow(up, cmap="jet", alpha=0.45)
            if r == 0:
                axes[r][c].set_title(model_title, fontsize=8)
            centres = (np.arange(heat.shape[0]) + 0.5) / heat.shape[0]
            band = (centres >= eye_band[0]) & (centres <= eye_band[1])
            shares.setdefault(model_title, []).append(float(heat[band].sum()))
            uniform = float(band.mean())
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    _save(fig, path)
    findings = {title: {"eye_band_share": float(np.mean(values))} for title, values in shares.items()}
    findings["uniform"] = {"eye_band_share": uniform}  # the share of a flat map, for reference
    return findings
