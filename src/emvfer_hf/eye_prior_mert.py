"""The prior Ē of high-quality eye movements and the instruction weight W(E', Ē) (EM-VFER, eqs. [9]-[11]).

The paper scales the eye prompts of PEML by

    W(E', Ē) = 1 / dist(E', Ē)                                                        [9]-[11]

where Ē are "the distributional features of high-quality eye-movement signals" (computed from the eye-tracker
recordings of pre-training) and E' is the (low-quality, visual) series of a sample. Three forms of Ē live here:

- ``"features"`` (the default, a deliberate difference from the literal reading): Ē is the distribution of
  :data:`FEATURE_NAMES` — statistics of a series that tell a trustworthy eye signal from a broken one — over the
  tracker series of pre-training: a robust centre (median), a robust scale (1.4826·MAD, floored per feature) and a
  shrunk inverse correlation. With z the robust z-scores of E''s features, ``instruction_distance``:
  ``"robust"`` (default) — W = s / (mean_k log(1 + relu(side_k·z_k)) + eps) over every feature but the valid
  fraction, s = min(1, valid fraction / Ē's median valid fraction): a log penalty per feature in the direction in
  which it degrades (:data:`FEATURE_SIDES`: rougher, flatter, decorrelated, more event changes), so that a feature
  that is off in every visual series (the pupils' left/right correlation) cannot drown the evidence of the others,
  times the share of the evidence that is there; ``"one_sided"`` — W = 1 / (mean_k relu(side_k·z_k) + eps) over all
  features (the earlier default); ``"mahalanobis"`` — sqrt(zᵀ P z / F), the two-sided distributional distance;
  ``"euclidean"`` — sqrt(mean z²); ``"cosine"`` — 1 − cos of the scaled feature vectors. ROC AUCs of every variant on
  real tracker and real video windows: docs/study/prior_auc.json.

  The features are computed from each series at its own samples, brought near :data:`QUALITY_FEATURE_RATE_HZ` by
  averaging blocks of consecutive samples (:func:`series_quality_features`; the processor returns them as
  ``eye_quality_features``), never from the L-step resampling: interpolating a 60-frame video window up to 256
  steps smooths exactly the roughness the features measure.
- ``"mean"`` (paper-literal): Ē is the per-step mean series (L, 5) of the training series, dist the Euclidean (RMS)
  or cosine distance of E' to it, W = 1 / (dist + eps).
- ``"multivariate_normal"`` (the paper's Table IX alternative): each step under N(Ē_t, Σ), W the density relative to
  its peak.

Why features. The model's input is normalised per recording (docs/design.md §Eye-movement format): the pupils are
z-scored — a pupil channel that is pure noise is ALSO z-scored to unit variance — gaze lies in [-1, 1], behaviour
is 0 / 0.5 / 1. A distance on levels (the mean series) therefore cannot see noise, and a constant (failed) series sits
nearer to the mean series than any real one. What distinguishes a real eye signal is its temporal structure and its
validity, so the features are scale-free temporal statistics, computed over the valid steps (and valid pairs/triples
of consecutive steps) only:

per continuous channel (pupil left/right, gaze x/y):
    ``log_std``   log(std + 1e-3): a constant channel (failed extraction, a dead pupil chain) is far below;
    ``log_vel``   log of the step-to-step change energy relative to the variance, log(E[Δx²] / Var x) = log 2(1 − ρ₁):
                  smooth real signals are low, added noise raises it, shuffled rows reach log 2;
    ``log_hf``    log(E[(Δ²x)²] / E[(Δx)²]): the high-frequency share of the velocity spectrum (white noise → log 3,
                  real fixation/saccade gaze and slow pupils lower);
pupils:
    ``pupil_lr_corr`` correlation of the two pupils (one physiology drives both; independent noise decorrelates them);
behaviour:
    ``log_event_rate`` log of the rate of behaviour changes (fixation / saccade / blink) per step: shuffling
                  multiplies the changes;
validity:
    ``valid_fraction`` the share of valid steps (a mostly missing series is far below).

Everything is torch, batched over (B, L, 5), and free of data-dependent Python control flow, so that W can run
inside ``MERTModel.forward`` (and be exported). This module is flat (single-dot sibling imports only) so that it ships
as remote code with a checkpoint.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

INSTRUCTION_PRIORS = ("features", "mean", "multivariate_normal")
INSTRUCTION_DISTANCES = ("robust", "one_sided", "mahalanobis", "euclidean", "cosine")
#: the distances each prior accepts ("multivariate_normal" has its own density and ignores the distance)
PRIOR_DISTANCES = {
    "features": ("robust", "one_sided", "mahalanobis", "euclidean", "cosine"),
    "mean": ("euclidean", "cosine"),
    "multivariate_normal": INSTRUCTION_DISTANCES,
}

_CONTINUOUS = ("pupil_left", "pupil_right", "gaze_x", "gaze_y")
FEATURE_NAMES = tuple(
    [f"{stat}_{ch}" for ch in _CONTINUOUS for stat in ("log_std", "log_vel", "log_hf")]
    + ["pupil_lr_corr", "log_event_rate", "valid_fraction"]
)
NUM_FEATURES = len(FEATURE_NAMES)

#: smallest robust scale per feature: a feature that barely varies over the (few, clean) training series would
#: otherwise make a tiny, harmless deviation look like a failure
_FLOOR = {"log_std": 0.25, "log_vel": 0.25, "log_hf": 0.25, "pupil_lr_corr": 0.1, "log_event_rate": 0.3,
          "valid_fraction": 0.05}  # fmt: skip
#: the direction in which a feature degrades: +1 larger is worse (rougher, more event changes), -1 smaller is worse
#: (flatter, decorrelated pupils, fewer valid steps); the "one_sided" distance counts only deviations that way
_SIDE = {"log_std": -1.0, "log_vel": 1.0, "log_hf": 1.0, "pupil_lr_corr": -1.0, "log_event_rate": 1.0,
         "valid_fraction": -1.0}  # fmt: skip


def _per_feature(table: dict) -> tuple:
    return tuple(next(v for k, v in table.items() if name.startswith(k)) for name in FEATURE_NAMES)


FEATURE_SCALE_FLOORS = _per_feature(_FLOOR)
FEATURE_SIDES = _per_feature(_SIDE)
#: the feature that "robust" turns into the evidence share instead of a distance term
VALID_FEATURE = FEATURE_NAMES.index("valid_fraction")
#: shrinkage of the feature correlation towards the identity (few training series, many features)
CORRELATION_SHRINKAGE = 0.5
#: robust z-scores are clipped to this magnitude before the distance (keeps W finite and smooth for absurd inputs)
Z_CLIP = 50.0


def check_instruction_options(prior: str, distance: str) -> None:
    """Raise a `ValueError` naming the option for an unknown prior/distance or a pair that does not go together."""
    if prior not in INSTRUCTION_PRIORS:
        raise ValueError(f"MERTConfig.instruction_prior must be one of {INSTRUCTION_PRIORS}, got {prior!r}")
    if distance not in INSTRUCTION_DISTANCES:
        raise ValueError(f"MERTConfig.instruction_distance must be one of {INSTRUCTION_DISTANCES}, got {distance!r}")
    if distance not in PRIOR_DISTANCES[prior]:
        raise ValueError(
            f"MERTConfig.instruction_distance={distance!r} does not apply to instruction_prior={prior!r}; "
            f"choose one of {PRIOR_DISTANCES[prior]}"
        )


# ----------------------------------------------------------------------------------------------------------------------
# Features
def _masked_mean(x: torch.Tensor, w: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return (x * w).sum(dim) / w.sum(dim).clamp_min(1.0)


def eye_series_features(eye_movement_values: torch.Tensor, eye_movement_mask: torch.Tensor) -> torch.Tensor:
    """The distributional features of a batch of normalised canonical series (see the module docstring).

    Args:
        eye_movement_values: (B, L, 5) normalised canonical series.
        eye_movement_mask: (B, L) validity (bool or 0/1).
    Returns:
        (B, NUM_FEATURES) float32, finite, in the order of :data:`FEATURE_NAMES`.
    """
    x = eye_movement_values.float()
    m = eye_movement_mask.to(x.dtype)
    cont = x[..., :4]
    m1 = m[..., None]  # (B, L, 1)
    pair = (m[:, 1:] * m[:, :-1])[..., None]  # both steps valid
    triple = pair[:, 1:] * m1[:, :-2]

    mu = _masked_mean(cont, m1)  # (B, 4)
    xc = (cont - mu[:, None]) * m1
    var = _masked_mean(xc**2, m1)
    d1 = cont[:, 1:] - cont[:, :-1]
    d2 = d1[:, 1:] - d1[:, :-1]
    e1 = _masked_mean(d1**2, pair)
    e1_hf = _masked_mean(d1[:, 1:] ** 2, triple)
    e2 = _masked_mean(d2**2, triple)
    log_std = torch.log(var.sqrt() + 1e-3)
    log_vel = torch.log((e1 + 1e-6) / (var + 1e-6))
    log_hf = torch.log((e2 + 1e-6) / (e1_hf + 1e-6))
    per_channel = torch.stack([log_std, log_vel, log_hf], dim=-1).flatten(1)  # (B, 12): channel-major

    cov_lr = _masked_mean(xc[..., 0:1] * xc[..., 1:2], m1)[:, 0]
    lr_corr = cov_lr / (var[:, 0].sqrt() * var[:, 1].sqrt() + 1e-6)

    b = x[..., 4]
    changes = _masked_mean(((b[:, 1:] - b[:, :-1]).abs() > 0.25).to(x.dtype), pair[..., 0])
    log_rate = torch.log(changes + 0.01)
    valid = m.mean(dim=1)

    scalars = torch.stack([lr_corr, log_rate, valid], dim=-1)
    return torch.cat([per_channel, scalars], dim=-1)


#: the rate at which the quality features of a series are computed (Hz). The temporal features (step-to-step change,
#: high-frequency share, event-change rate) depend on the sampling rate, and an interpolation up to the model's L
#: steps smooths exactly what they measure (a 2-s window of a 30 fps video is 60 samples, L is 256). So every series
#: is brought near this rate from its own samples, never by interpolation: blocks of consecutive samples are averaged
#: (a 1000 Hz tracker: 33 a block, 200 Hz: 7, a 25–30 fps video: its own frames, a 60 fps video: 2). The rate is
#: that of ordinary video, the slower of the two sources, where W is used.
QUALITY_FEATURE_RATE_HZ = 30.0


def block_average_series(values, valid, rate_hz: float, target_hz: float = QUALITY_FEATURE_RATE_HZ):
    """A series (N, 5) + mask (N,) at `rate_hz` brought near `target_hz` by averaging blocks of
    k = max(1, round(rate_hz / target_hz)) consecutive samples (the last, partial block is dropped when there is
    more than one block). A block is valid when at least half its samples are; its continuous channels are the mean
    of its valid samples, its behaviour the most marked code among them (blink > saccade > fixation: a 20–50 ms
    saccade must not vanish into the block). Returns numpy arrays (M, 5) float32 and (M,) bool."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    k = max(1, int(round(float(rate_hz) / target_hz))) if rate_hz and np.isfinite(rate_hz) else 1
    if k == 1 or len(values) < 2 * k:
        return values.astype(np.float32), valid.copy()
    m = len(values) // k
    blocks = values[: m * k].reshape(m, k, -1)
    ok = valid[: m * k].reshape(m, k)
    count = ok.sum(axis=1)
    weights = ok[..., None].astype(np.float64)
    mean = (blocks * weights).sum(axis=1) / np.maximum(count, 1)[:, None]
    mean[:, 4] = np.where(ok, blocks[..., 4], -np.inf).max(axis=1)
    mean[count == 0] = blocks[count == 0].mean(axis=1)
    return mean.astype(np.float32), count >= (k + 1) // 2


def series_quality_features(values, valid, rate_hz: float) -> torch.Tensor:
    """The features (F,) of one NORMALISED series (N, 5) with mask (N,) sampled at `rate_hz`, computed at its own
    samples brought near :data:`QUALITY_FEATURE_RATE_HZ` (:func:`block_average_series`), never resampled to L."""
    import numpy as np

    v, m = block_average_series(values, valid, rate_hz)
    if len(v) == 0:
        return torch.zeros(NUM_FEATURES)
    return eye_series_features(torch.from_numpy(np.ascontiguousarray(v))[None], torch.from_numpy(m)[None])[0]


def fit_feature_prior(
    eye_movement_values: torch.Tensor,
    eye_movement_mask: Optional[torch.Tensor] = None,
    features: Optional[torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """Ē as the distribution of the features over high-quality series (N, L, 5) (+ mask (N, L)); `features` (N, F),
    when given, are the series' features computed elsewhere (at each series' own rate) instead of from the L steps.

    Returns:
        ``{"mean": (F,), "scale": (F,), "precision": (F, F), "own_rate": bool}``: the median of each feature, its robust scale
        (1.4826·MAD, at least the std when the MAD vanishes, at least :data:`FEATURE_SCALE_FLOORS`), and the inverse
        of the feature correlation of the robust z-scores shrunk by :data:`CORRELATION_SHRINKAGE` towards the identity.
    """
    values = torch.as_tensor(eye_movement_values, dtype=torch.float32)
    if values.ndim != 3:
        raise ValueError(f"expected eye-movement values of shape (N, L, 5), got {tuple(values.shape)}")
    mask = torch.ones(values.shape[:2]) if eye_movement_mask is None else torch.as_tensor(eye_movement_mask)
    keep = mask.float().sum(dim=1) > 0
    if not bool(keep.any()):
        raise ValueError("cannot compute an eye-movement prior: no valid step in any series")
    if features is None:
        feats = eye_series_features(values[keep], mask[keep]).double()  # (N, F)
    else:
        feats = torch.as_tensor(features, dtype=torch.float64)[keep]
    center = feats.median(dim=0).values
    mad = 1.4826 * (feats - center).abs().median(dim=0).values
    std = feats.std(dim=0, unbiased=False) if len(feats) > 1 else torch.zeros_like(center)
    scale = torch.where(mad > 1e-6, mad, std)
    scale = torch.maximum(scale, torch.tensor(FEATURE_SCALE_FLOORS, dtype=scale.dtype))
    z = ((feats - center) / scale).clamp(-5.0, 5.0)
    if len(z) > 2:
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / (len(z) - 1)
        sd = cov.diagonal().clamp_min(1e-6).sqrt()
        corr = cov / (sd[:, None] * sd[None, :])
    else:
        corr = torch.eye(NUM_FEATURES, dtype=z.dtype)
    corr = (1 - CORRELATION_SHRINKAGE) * corr + CORRELATION_SHRINKAGE * torch.eye(NUM_FEATURES, dtype=z.dtype)
    precision = torch.linalg.inv(corr)
    precision = 0.5 * (precision + precision.T)
    return {"mean": center.float(), "scale": scale.float(), "precision": precision.float(),
            "own_rate": features is not None}  # fmt: skip


def feature_instruction_weight(
    eye_movement_values: torch.Tensor,
    eye_movement_mask: torch.Tensor,
    feature_mean: torch.Tensor,
    feature_scale: torch.Tensor,
    feature_precision: Optional[torch.Tensor] = None,
    distance: str = "one_sided",
    eps: float = 1.0,
    features: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """W = 1 / (dist(f(E'), Ē) + eps) ∈ (0, 1/eps] with the feature prior; W = 0 for a series with no valid step.
    `features` (B, F), when given, are f(E') computed elsewhere (at the series' own rate) instead of from the
    (B, L, 5) values.

    With z = (f(E') − centre) / scale the robust z-scores of the features (clipped to ±:data:`Z_CLIP`), distance:
    "robust" (the default) — W = s / (mean_k log(1 + relu(side_k · z_k)) + eps) over every feature but the valid
    fraction, with s = min(1, valid fraction / Ē's median valid fraction) the share of the evidence that is there: a
    log penalty per feature in its degrading direction (a feature that is off in every visual series, such as the
    pupils' left/right correlation, cannot outweigh the evidence of the others) times the evidence share (a series
    70% missing carries 30% of the information, whatever the rest looks like);
    "one_sided" — mean_k relu(side_k · z_k) (:data:`FEATURE_SIDES`); "mahalanobis" — sqrt(zᵀ P z / F) with P the
    shrunk inverse correlation; "euclidean" — sqrt(mean z²); "cosine" — 1 − cos(f / scale, centre / scale).
    """
    feats = eye_series_features(eye_movement_values, eye_movement_mask) if features is None else features.float()
    z = ((feats - feature_mean.float()) / feature_scale.float()).clamp(-Z_CLIP, Z_CLIP)
    share = torch.ones_like(z[:, 0])
    if distance == "robust":
        sides = torch.tensor(FEATURE_SIDES, dtype=z.dtype, device=z.device)
        penalty = torch.log1p(torch.relu(sides * z))
        signal = torch.cat([penalty[:, :VALID_FEATURE], penalty[:, VALID_FEATURE + 1 :]], dim=-1)
        dist = signal.mean(dim=-1)
        share = (feats[:, VALID_FEATURE] / feature_mean[VALID_FEATURE].float().clamp_min(1e-3)).clamp(0.0, 1.0)
    elif distance == "one_sided":
        sides = torch.tensor(FEATURE_SIDES, dtype=z.dtype, device=z.device)
        dist = torch.relu(sides * z).mean(dim=-1)
    elif distance == "mahalanobis":
        precision = feature_precision.float()
        dist = torch.sqrt(torch.einsum("bf,fg,bg->b", z, precision, z).clamp_min(0.0) / z.shape[-1])
    elif distance == "euclidean":
        dist = torch.sqrt((z**2).mean(dim=-1))
    elif distance == "cosine":
        # cosine of the feature vector to Ē's, both standardised by the scale only (not centred): 1 − cos ∈ [0, 2]
        f = feats / feature_scale.float()
        c = feature_mean.float() / feature_scale.float()
        dist = 1.0 - torch.nn.functional.cosine_similarity(f, c.expand_as(f), dim=-1, eps=1e-8)
    else:
        raise ValueError(f"unknown distance {distance!r} for the feature prior; choose one of {PRIOR_DISTANCES['features']}")
    weights = share / (dist + eps)
    has_steps = eye_movement_mask.to(torch.float32).sum(dim=1) > 0
    return torch.where(has_steps, weights, torch.zeros_like(weights))


def series_instruction_weight(
    eye_movement_values: torch.Tensor,
    eye_movement_mask: torch.Tensor,
    prior_mean: torch.Tensor,
    prior_covariance: Optional[torch.Tensor] = None,
    distance: str = "euclidean",
    prior: str = "mean",
    eps: float = 1.0,
) -> torch.Tensor:
    """The step-wise priors: "mean" (paper-literal) and "multivariate_normal" (Table IX); see `instruction_weight`."""
    values = eye_movement_values.float()
    mask = eye_movement_mask.to(values.dtype)[..., None]  # (B, L, 1)
    mean = prior_mean.float()[None]  # (1, L, C)
    counts = mask.sum(dim=(1, 2))  # (B,)
    has_steps = counts > 0
    counts = counts.clamp_min(1.0)
    residual = (values - mean) * mask
    if prior == "multivariate_normal":
        precision = torch.linalg.inv(prior_covariance.float())
        mahalanobis = torch.einsum("blc,cd,bld->bl", residual, precision, residual)  # zero on masked steps
        weights = torch.exp(-0.5 * mahalanobis.sum(dim=1) / counts / values.shape[-1])
    elif distance == "euclidean":
        dist = torch.sqrt((residual**2).sum(dim=(1, 2)) / counts)
        weights = 1.0 / (dist + eps)
    elif distance == "cosine":
        cos = torch.nn.functional.cosine_similarity(
            (values * mask).flatten(1), (mean * mask).flatten(1), dim=1, eps=1e-8
        )
        weights = 1.0 / ((1.0 - cos) + eps)
    else:
        raise ValueError(f"unknown distance {distance!r} for the mean prior; choose one of {PRIOR_DISTANCES['mean']}")
    return torch.where(has_steps, weights, torch.zeros_like(weights))


def instruction_weight(
    eye_movement_values: torch.Tensor,
    eye_movement_mask: torch.Tensor,
    prior_mean: Optional[torch.Tensor] = None,
    prior_covariance: Optional[torch.Tensor] = None,
    distance: str = "euclidean",
    prior: str = "mean",
    eps: float = 1.0,
    feature_mean: Optional[torch.Tensor] = None,
    feature_scale: Optional[torch.Tensor] = None,
    feature_precision: Optional[torch.Tensor] = None,
    features: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """W(E', Ē): larger for a series closer to the prior of high-quality signals, bounded for one equal to it.

    Args:
        eye_movement_values: E', (B, L, C) normalised canonical series.
        eye_movement_mask: (B, L) bool; only valid steps count. A sample with no valid step gets W = 0.
        prior_mean: Ē of the "mean"/"multivariate_normal" priors, the mean series (L, C).
        prior_covariance: Σ, (C, C), for `prior="multivariate_normal"`.
        distance: "mahalanobis" (feature prior only) — sqrt(zᵀ P z / F) of the features' robust z-scores;
            "euclidean" — the RMS distance (of the feature z-scores, or over valid steps to the mean series);
            "cosine" — 1 − cos (of the scaled feature vectors, or of the masked, flattened series).
        prior: "features" — W = 1 / (dist(f(E'), Ē) + eps) with Ē the distribution of the quality features of
            `emvfer_hf.eye_prior_mert` (`feature_mean`, `feature_scale`, `feature_precision`);
            "mean" — W = 1 / (dist(E', Ē) + eps) ∈ (0, 1/eps] with Ē the mean series (paper-literal);
            "multivariate_normal" — W = exp(−½ · mean_t (e_t − Ē_t)ᵀ Σ⁻¹ (e_t − Ē_t) / C) ∈ (0, 1], the Gaussian
            density of the steps under N(Ē, Σ) relative to its peak, per channel (Table IX); `distance` is unused.
        eps: the bound of W = 1 / (dist + eps).
        feature_mean, feature_scale, feature_precision: the feature prior (`eye_prior_mert.fit_feature_prior`).
        features: (B, F) the series' quality features computed at their own rate (`EyeMovementSeries.quality_features`)
            for the feature prior; default: from the L steps.
    Returns:
        (B,) float32 weights.
    """
    if prior == "features":
        if feature_mean is None or feature_scale is None:
            raise ValueError("instruction_weight(prior='features') needs feature_mean and feature_scale")
        return feature_instruction_weight(
            eye_movement_values, eye_movement_mask, feature_mean, feature_scale, feature_precision,
            distance=distance, eps=eps, features=features,
        )  # fmt: skip
    if prior not in INSTRUCTION_PRIORS:
        raise ValueError(f"unknown instruction prior {prior!r}; choose one of {INSTRUCTION_PRIORS}")
    if prior_mean is None:
        raise ValueError(f"instruction_weight(prior={prior!r}) needs prior_mean")
    return series_instruction_weight(
        eye_movement_values, eye_movement_mask, prior_mean, prior_covariance, distance=distance, prior=prior, eps=eps
    )


# ----------------------------------------------------------------------------------------------------------------------
# The prior as a module of the model
class MERTEyePrior(nn.Module):
    """The prior Ē of high-quality eye movements and the instruction weight W(E', Ē) of eqs. [9]-[11], as a submodule
    of `MERTModel` (like its encoders): it owns the prior buffers, saved with the checkpoint, and computes W with the
    config's `instruction_prior`, `instruction_distance` and `instruction_eps`.

    Buffers (every kind is stored, so that `config.instruction_prior` can be switched after fitting):
        mean (L, C), covariance (C, C), mean_initialized (): the paper-literal mean series and Σ ("mean",
            "multivariate_normal");
        feature_mean (F,), feature_scale (F,), feature_precision (F, F), features_initialized (): the
            distribution of the quality features (:func:`fit_feature_prior`, "features").

    Checkpoints saved before this module existed kept the same buffers on `MERTModel` as `eye_prior_mean`,
    `eye_prior_feature_scale`, ...; `MERTPreTrainedModel.from_pretrained` reads them (:meth:`load_legacy`, :data:`LEGACY_KEYS`).
    """

    #: old (flat, on MERTModel) buffer name → name in this module
    LEGACY_KEYS = {
        "eye_prior_mean": "mean",
        "eye_prior_covariance": "covariance",
        "eye_prior_initialized": "mean_initialized",
        "eye_prior_feature_mean": "feature_mean",
        "eye_prior_feature_scale": "feature_scale",
        "eye_prior_feature_precision": "feature_precision",
        "eye_prior_features_initialized": "features_initialized",
    }

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.eye_sequence_length, config.eye_num_channels))
        self.register_buffer("covariance", torch.eye(config.eye_num_channels))
        self.register_buffer("mean_initialized", torch.zeros(()))
        self.register_buffer("feature_mean", torch.zeros(NUM_FEATURES))
        self.register_buffer("feature_scale", torch.ones(NUM_FEATURES))
        self.register_buffer("feature_precision", torch.eye(NUM_FEATURES))
        self.register_buffer("features_initialized", torch.zeros(()))
        # 1 when the feature prior was fitted on features at each series' own rate (the processor's
        # `eye_quality_features` are then used); 0 for a prior fitted on the L steps (checkpoints before issue 20)
        self.register_buffer("features_own_rate", torch.zeros(()))

    @torch.no_grad()
    def reset(self) -> None:
        """No prior (the state of an untrained model)."""
        self.mean.zero_()
        self.covariance.copy_(torch.eye(self.covariance.shape[0]))
        self.mean_initialized.zero_()
        self.feature_mean.zero_()
        self.feature_scale.fill_(1.0)
        self.feature_precision.copy_(torch.eye(NUM_FEATURES))
        self.features_initialized.zero_()
        self.features_own_rate.zero_()

    # -- what is stored ------------------------------------------------------------------------------------------------
    def flag(self) -> torch.Tensor:
        """The 0-d buffer that says whether the prior `config.instruction_prior` asks for is stored."""
        return self.features_initialized if self.config.instruction_prior == "features" else self.mean_initialized

    @property
    def is_set(self) -> bool:
        """Whether the prior that `config.instruction_prior` asks for is stored."""
        return bool(self.flag().item() > 0)

    @property
    def stored(self) -> tuple[str, ...]:
        """The kinds of prior stored: "features" and/or "mean" (which also serves the multivariate normal)."""
        kinds = []
        if self.features_initialized.item() > 0:
            kinds.append("features")
        if self.mean_initialized.item() > 0:
            kinds.append("mean")
        return tuple(kinds)

    def state(self) -> dict:
        """Every stored prior as keyword arguments of :meth:`set` (copies), e.g. to move Ē to another model."""
        features = None
        if self.features_initialized.item() > 0:
            features = {"mean": self.feature_mean.clone(), "scale": self.feature_scale.clone(),
                        "precision": self.feature_precision.clone(), "own_rate": bool(self.features_own_rate > 0)}
        mean_ok = self.mean_initialized.item() > 0
        return {"mean": self.mean.clone() if mean_ok else None,
                "covariance": self.covariance.clone() if mean_ok else None, "features": features}  # fmt: skip

    # -- setting it ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def set(self, mean=None, covariance=None, features=None) -> None:
        """Store the mean series (L, C) (and Σ (C, C)) and/or the feature prior
        ``{"mean": (F,), "scale": (F,), "precision": (F, F)}`` of :func:`fit_feature_prior` (with ``"own_rate": True``
        when it was fitted on features at each series' own rate, :func:`series_quality_features`)."""
        if mean is None and features is None:
            raise ValueError("set_eye_prior needs the mean series `mean` and/or the feature prior `features`")
        if mean is not None:
            self._copy("eye prior mean", self.mean, mean)
            if covariance is not None:
                self._copy("eye prior covariance", self.covariance, covariance)
            self.mean_initialized.fill_(1.0)
        if features is not None:
            for key, buffer in (("mean", self.feature_mean), ("scale", self.feature_scale),
                                ("precision", self.feature_precision)):  # fmt: skip
                if key not in features:
                    raise ValueError(f"the feature prior needs {key!r} (got keys {sorted(features)})")
                value = torch.as_tensor(features[key], dtype=torch.float32)
                if key == "scale" and not bool((value > 0).all()):
                    raise ValueError("eye feature prior 'scale' must be positive")
                self._copy(f"eye feature prior {key!r}", buffer, value)
            self.features_initialized.fill_(1.0)
            self.features_own_rate.fill_(1.0 if features.get("own_rate") else 0.0)

    @staticmethod
    def _copy(name: str, buffer: torch.Tensor, value) -> None:
        value = torch.as_tensor(value, dtype=torch.float32)
        if tuple(value.shape) != tuple(buffer.shape):
            raise ValueError(f"{name} must have shape {tuple(buffer.shape)}, got {tuple(value.shape)}")
        buffer.copy_(value.to(buffer))

    @torch.no_grad()
    def load_legacy(self, checkpoint, **hub_kwargs) -> bool:
        """Read the prior from a checkpoint saved before this module existed (buffers named by
        :data:`LEGACY_KEYS` on `MERTModel`, any prefix). Returns whether one was found. `checkpoint` is a folder or
        a Hub id (its files are found as `from_pretrained` finds them)."""
        from safetensors import safe_open
        from transformers.utils import cached_file

        files = []
        for name in ("model.safetensors", "model.safetensors.index.json"):
            path = cached_file(str(checkpoint), name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
            if path is not None:
                files.append(path)
                break
        if files and files[0].endswith(".json"):
            import json

            index = json.loads(open(files[0], encoding="utf-8").read())
            shards = {f for k, f in index.get("weight_map", {}).items() if k.rsplit(".", 1)[-1] in self.LEGACY_KEYS}
            files = [cached_file(str(checkpoint), shard, **hub_kwargs) for shard in sorted(shards)]
        found = {}
        for path in files:
            with safe_open(path, framework="pt") as f:
                for key in f.keys():
                    if key.rsplit(".", 1)[-1] in self.LEGACY_KEYS:
                        found[self.LEGACY_KEYS[key.rsplit(".", 1)[-1]]] = f.get_tensor(key)
        if not found:
            return False
        for name, value in found.items():
            self._copy(f"the checkpoint's {name}", getattr(self, name), value)
        return True

    # -- W ---------------------------------------------------------------------------------------------------------------
    def forward(
        self,
        eye_movement_values: torch.Tensor,
        eye_movement_mask: torch.Tensor,
        eye_quality_features: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """W(E', Ē) (B,) of a batch of normalised series (B, L, C) with mask (B, L); with the feature prior,
        `eye_quality_features` (B, F) (computed from each series at its own sampling rate,
        `EyeMovementSeries.quality_features`) replace the features of the resampled L steps. No gradient flows:
        W is a property of the input. Raises when the prior `config.instruction_prior` asks for is not stored."""
        if not torch.compiler.is_compiling() and not self.is_set:
            raise ValueError(self.missing_message())
        config = self.config
        values, mask = eye_movement_values.detach(), eye_movement_mask.detach()
        features = None  # the features of the L steps: what an older prior was fitted on
        if config.instruction_prior == "features" and eye_quality_features is not None:
            given = eye_quality_features.detach().float().to(values.device)  # at each series' own rate
            if torch.compiler.is_compiling():  # no data-dependent branch on the flag
                features = torch.where(self.features_own_rate > 0, given, eye_series_features(values, mask))
            elif self.features_own_rate.item() > 0:
                features = given
        return instruction_weight(
            values, mask, self.mean, self.covariance, distance=config.instruction_distance,
            prior=config.instruction_prior, eps=config.instruction_eps, feature_mean=self.feature_mean,
            feature_scale=self.feature_scale, feature_precision=self.feature_precision, features=features,
        )  # fmt: skip

    def missing_message(self) -> str:
        prior, stored = self.config.instruction_prior, self.stored
        detail = f" (this model stores only the {stored[0]!r} prior)" if stored else ""
        return (
            f"this MERT model has no eye-movement prior Ē for instruction_prior={prior!r}{detail}: run the "
            "pre-training stage (which stores it) or call `model.set_eye_prior_from_series(high_quality_series)` "
            "before using PEML prompts (or pass `instruction_weights=` to the forward)"
        )

    def reconcile_loaded(self, source: str = "the checkpoint") -> None:
        """After loading: warn (and fall back) where the stored prior differs from what the config asks for.

        - the config asks for "features" but the checkpoint carries only the mean series (saved before the feature
          prior existed, or a changed config): W falls back to the stored "mean" prior (Euclidean), with a warning
          that says how to refit;
        - the config asks for "mean"/"multivariate_normal" and no feature prior is stored: a warning that this W does
          not measure quality;
        - the config asks for "mean"/"multivariate_normal" but only the feature prior is stored: a warning.
        """
        stored, config = self.stored, self.config
        prior = config.instruction_prior
        refit = ("refit it with `model.set_eye_prior_from_series(tracker_series)` (stores the feature prior) and set "
                 "`model.config.instruction_prior = 'features'`")  # fmt: skip
        message = None
        if prior == "features" and "features" not in stored and "mean" in stored:
            config.instruction_prior = "mean"
            if config.instruction_distance not in PRIOR_DISTANCES["mean"]:
                config.instruction_distance = "euclidean"
            message = ("its config asks for instruction_prior='features' but its eye-movement prior is the "
                       "paper-literal mean series (instruction_prior='mean'; saved before the distributional-feature "
                       f"prior existed, or without it). W uses the stored 'mean' prior with the "
                       f"{config.instruction_distance!r} distance, which does not measure quality; {refit}.")
        elif prior != "features" and "features" not in stored and "mean" in stored:
            message = (f"its eye-movement prior is the paper-literal mean series (instruction_prior={prior!r}), saved "
                       "before the distributional-feature prior became the default; this W does not tell a clean eye "
                       f"series from a broken one (README, 'instruction weight'). To use the feature prior, {refit}.")
        elif prior != "features" and "mean" not in stored and "features" in stored:
            message = (f"its config asks for instruction_prior={prior!r} but it stores only the feature prior; set "
                       "`model.config.instruction_prior = 'features'` or call `model.set_eye_prior_from_series(...)`.")
        if message:
            warnings.warn(f"{source}: {message}", UserWarning, stacklevel=4)


__all__ = [
    "MERTEyePrior",
    "instruction_weight",
    "QUALITY_FEATURE_RATE_HZ",
    "block_average_series",
    "series_quality_features",
    "FEATURE_NAMES",
    "FEATURE_SIDES",
    "INSTRUCTION_DISTANCES",
    "INSTRUCTION_PRIORS",
    "NUM_FEATURES",
    "check_instruction_options",
    "eye_series_features",
    "feature_instruction_weight",
    "fit_feature_prior",
    "series_instruction_weight",
]
