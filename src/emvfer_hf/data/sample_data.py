"""Sample data: small datasets in the EXACT on-disk layouts of the six benchmarks (docs/design.md §Sample data).

Real benchmarks cannot be shipped, so :func:`make_sample_dataset` writes rendered face clips where the class sets BOTH
the facial expression (mouth, brows) and the eye behaviour (gaze pattern, pupil dynamics, blink and saccade rates).
Each clip is driven by a generated canonical eye series (docs/design.md §Eye-movement format: pupils in mm, gaze in
[-1, 1], behaviour codes fixation 0 / saccade 1 / blink 2, at ``TRACKER_HZ``); the renderer places the irises and
pupils from it, and for EMER the same series is written as a Tobii Pro Lab TSV — the high-quality signal — while the
visual extractor has to recover a noisier version from the pixels.

Some classes share the face and differ ONLY in the eyes (:data:`EYE_ONLY_PAIRS`: sadness/disgust, surprise/fear,
happiness/contempt, neutral/anxiety ...), so a model that ignores eye movements cannot separate them.

Per clip the ground-truth series is kept beside the layout in ``<root>/sample_eye_series/<clip key>.npz``
(read it with :func:`load_sample_eye_series`); ``<root>/sample_manifest.json`` records the generation options and
the clip list. Both are outside the benchmark layouts, which the real loaders read unchanged.

Two worlds (``world=``): ``"plain"`` (the default, every dataset filmed the same way, a fresh look per clip) and
``"gap"`` (:data:`WORLDS`): the situation of the paper's two stages — a large EMER-like pre-training set filmed in the
lab (:data:`DOMAINS` ``"lab"``: identities A, even light, a sharp camera, the eye tracker's series) and a small
downstream set across a domain gap (``"wild"``: other identities, a colour cast and other brightness, a blurred,
noisier camera with the face smaller and off centre — so the visual eye series read from it is of lower quality —
and few labelled clips per class). Only EMER and DFEW have a ``"gap"`` version.

Generation is deterministic in ``seed``. Default size (4 clips per class, 16 frames, 128 px) writes the EMER or
DFEW sample set in a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..eye_movement_mert import BLINK, FIXATION, SACCADE, EyeMovementSeries
from ..eyetracking import write_tobii_tsv
from ._media import write_jpgs, write_mp4
from ._utils import PathLike
from .labels import LABELS

logger = logging.getLogger(__name__)

SAMPLE_DATASETS = ("emer", "dfew", "mafw", "affwild2", "casme2", "casme3")
TRACKER_HZ = 120.0
VIDEO_FPS = 15.0
DISPLAY_RESOLUTION = (1920, 1080)
SERIES_DIR = "sample_eye_series"
MANIFEST = "sample_manifest.json"
#: The EMER eye tracker's measurement noise (σ per canonical channel: pupils mm, gaze in [-1, 1], behaviour): what
#: the sample EMER recordings add to the ground truth (`tracker_quality_series` gives any clip such a recording)
TRACKER_NOISE_STD = (0.03, 0.03, 0.004, 0.004, 0.0)


# ----------------------------------------------------------------------------------------------- class styles
@dataclass(frozen=True)
class FaceStyle:
    """Expression at full intensity: mouth curvature (+ smile, - frown), mouth opening, brow raise (+ up), brow
    tilt (+ inner ends up, as in sadness; - inner ends down, as in anger)."""

    mouth_curve: float = 0.0
    mouth_open: float = 0.0
    brow_raise: float = 0.0
    brow_tilt: float = 0.0


@dataclass(frozen=True)
class EyeStyle:
    """Eye behaviour: pupil baseline (mm) and change over the clip (mm), blink and saccade rates (per s), the
    centre and spread of the fixation targets (display coordinates in [-1, 1], y down) and the horizontal bias of
    the spread (1 = isotropic, > 1 horizontal scanning)."""

    pupil_mm: float = 3.4
    pupil_trend_mm: float = 0.0
    blink_hz: float = 0.3
    saccade_hz: float = 0.8
    gaze_center: Tuple[float, float] = (0.0, 0.0)
    gaze_spread: float = 0.25
    horizontal_bias: float = 1.0


FACES: Dict[str, FaceStyle] = {
    "smile": FaceStyle(mouth_curve=1.0, brow_raise=0.1),
    "frown": FaceStyle(mouth_curve=-0.8, brow_tilt=0.8),
    "flat": FaceStyle(),
    "open": FaceStyle(mouth_open=0.6, brow_raise=0.6),
    "tense": FaceStyle(mouth_curve=-0.2, brow_raise=-0.6, brow_tilt=-1.0),
}
EYES: Dict[str, EyeStyle] = {
    "calm": EyeStyle(pupil_mm=3.2, pupil_trend_mm=0.0, blink_hz=0.3, saccade_hz=0.8, gaze_spread=0.25),
    "downcast": EyeStyle(pupil_mm=3.0, pupil_trend_mm=-0.6, blink_hz=0.9, saccade_hz=0.4, gaze_center=(0.0, 0.55),
                         gaze_spread=0.15),
    "stare": EyeStyle(pupil_mm=4.2, pupil_trend_mm=0.3, blink_hz=0.05, saccade_hz=0.15, gaze_spread=0.05),
    "wide": EyeStyle(pupil_mm=5.0, pupil_trend_mm=1.0, blink_hz=0.0, saccade_hz=0.3, gaze_center=(0.0, -0.25),
                     gaze_spread=0.1),
    "darting": EyeStyle(pupil_mm=4.8, pupil_trend_mm=0.6, blink_hz=1.5, saccade_hz=3.0, gaze_spread=0.7),
    "averted": EyeStyle(pupil_mm=2.8, pupil_trend_mm=-0.3, blink_hz=0.4, saccade_hz=0.8, gaze_center=(0.65, 0.1),
                        gaze_spread=0.15),
    "scan": EyeStyle(pupil_mm=3.6, pupil_trend_mm=0.0, blink_hz=0.3, saccade_hz=1.8, gaze_spread=0.6,
                     horizontal_bias=3.0),
}
# class name → (face, eyes). Pairs sharing the face differ only in the eyes.
CLASS_STYLES: Dict[str, Tuple[str, str]] = {
    "happiness": ("smile", "calm"), "happy": ("smile", "calm"), "positive": ("smile", "calm"),
    "sadness": ("frown", "downcast"), "sad": ("frown", "downcast"),
    "disgust": ("frown", "averted"), "negative": ("frown", "averted"),
    "neutral": ("flat", "calm"),
    "anger": ("tense", "stare"),
    "surprise": ("open", "wide"),
    "fear": ("open", "darting"),
    "contempt": ("smile", "averted"),
    "anxiety": ("flat", "darting"),
    "helplessness": ("frown", "scan"),
    "disappointment": ("flat", "downcast"),
    "other": ("flat", "scan"), "others": ("flat", "scan"),
    "repression": ("tense", "downcast"),
}


def class_style(name: str) -> Tuple[FaceStyle, EyeStyle]:
    """The (face, eye) style rendered for class ``name``."""
    face, eyes = CLASS_STYLES[name.lower()]
    return FACES[face], EYES[eyes]


def eye_only_pairs(names: Sequence[str]) -> List[Tuple[str, str]]:
    """Pairs of classes of ``names`` that share the face and differ only in eye behaviour."""
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if CLASS_STYLES[a][0] == CLASS_STYLES[b][0] and CLASS_STYLES[a][1] != CLASS_STYLES[b][1]:
                pairs.append((a, b))
    return pairs


EYE_ONLY_PAIRS = {key: eye_only_pairs(names) for key, names in LABELS.items()}


# ------------------------------------------------------------------------------------------- eye series model
def generate_eye_series(
    eye: EyeStyle, duration_s: float, rng: np.random.Generator, rate_hz: float = TRACKER_HZ
) -> EyeMovementSeries:
    """A canonical eye series (NOT normalised: pupils in mm, gaze in [-1, 1], behaviour codes) for one clip.

    Fixations at targets around ``eye.gaze_center``; saccades (~30 ms, linear) at ``eye.saccade_hz``; blinks
    (100–200 ms) at ``eye.blink_hz``; pupils follow the baseline + linear trend + a slow oscillation + noise. The
    ground truth is valid everywhere (a blink is a behaviour, the eye state under the lid is still known).
    """
    n = max(2, int(round(duration_s * rate_hz)) + 1)
    t = np.arange(n) / rate_hz
    behaviour = np.full(n, FIXATION, dtype=np.float64)
    gaze = np.zeros((n, 2))

    def target():
        spread = np.array([eye.gaze_spread * math.sqrt(eye.horizontal_bias), eye.gaze_spread])
        return np.clip(np.array(eye.gaze_center) + rng.normal(0, 1, 2) * spread, -0.95, 0.95)

    cur = target()
    i = 0
    sacc_len = max(2, int(round(0.03 * rate_hz)))
    while i < n:
        dwell = int(rng.exponential(1.0 / max(eye.saccade_hz, 1e-3)) * rate_hz) + 1
        end = min(n, i + dwell)
        gaze[i:end] = cur + rng.normal(0, 0.005, (end - i, 2))  # fixational jitter
        i = end
        if i >= n:
            break
        nxt = target()
        end = min(n, i + sacc_len)
        frac = (np.arange(end - i) + 1) / sacc_len
        gaze[i:end] = cur + frac[:, None] * (nxt - cur)
        behaviour[i:end] = SACCADE
        cur, i = nxt, end
    # blinks: Poisson onsets
    n_blinks = rng.poisson(eye.blink_hz * duration_s)
    for _ in range(n_blinks):
        start = int(rng.uniform(0, max(1, n - 2)))
        length = int(rng.uniform(0.1, 0.2) * rate_hz)
        behaviour[start:start + length] = BLINK
    base = eye.pupil_mm + rng.normal(0, 0.15)
    phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 3.0)
    pupil = (base + eye.pupil_trend_mm * (t / max(duration_s, 1e-6)) + 0.08 * np.sin(2 * np.pi * t / period + phase)
             + rng.normal(0, 0.02, n))
    pupil = np.clip(pupil, 1.5, 8.0)
    values = np.stack([pupil, pupil + rng.normal(0, 0.03) + rng.normal(0, 0.01, n), gaze[:, 0], gaze[:, 1],
                       behaviour], axis=1)
    return EyeMovementSeries(values.astype(np.float32), np.ones(n, bool), t, normalized=False,
                             metadata={"source": "sample_data", "rate_hz": rate_hz})


def tracker_quality_series(series: EyeMovementSeries, rng: np.random.Generator) -> EyeMovementSeries:
    """What the sample EMER eye tracker records of a raw ground-truth series (the recipe of the EMER TSVs):
    ``TRACKER_NOISE_STD`` added to every sample, and blink rows invalid (the tracker loses the pupil under the lid).
    Raw units, like the input; normalise it (or let the processor) before comparing with an extractor."""
    values = np.asarray(series.values, np.float64)
    noisy = values + rng.normal(0, 1, values.shape) * np.array(TRACKER_NOISE_STD)
    valid = np.asarray(series.valid, bool) & (values[:, 4] != BLINK)
    return EyeMovementSeries(noisy.astype(np.float32), valid, series.times_s, normalized=False,
                             metadata={**(series.metadata or {}), "recorded_by": "sample tracker"})


def _sample_series_at(series: EyeMovementSeries, times_s: np.ndarray) -> np.ndarray:
    """Values at frame times: continuous channels interpolated, behaviour 'blink' if any blink sample falls in the
    frame's exposure (so short blinks are not lost between frames)."""
    out = series.resample_to_times(times_s).values.astype(np.float64)
    half = 0.5 * (times_s[1] - times_s[0]) if len(times_s) > 1 else 0.0
    beh = series.values[:, 4]
    for k, t in enumerate(times_s):
        win = (series.times_s >= t - half) & (series.times_s < t + half)
        if win.any() and (beh[win] == BLINK).any():
            out[k, 4] = BLINK
    return out


# ---------------------------------------------------------------------------------------------------- renderer
@dataclass
class ClipLook:
    """Per-clip appearance drawn from the seed (skin, iris, background, placement, motion, noise)."""

    skin: Tuple[int, int, int]
    iris: Tuple[int, int, int]
    background: Tuple[int, int, int]
    center: Tuple[float, float]
    scale: float
    intensity: float
    motion_phase: float
    noise: float


def _random_look(rng: np.random.Generator, noise: float, face_scale: float) -> ClipLook:
    tone = rng.uniform(0, 1)
    skin = (int(120 + 70 * tone + rng.integers(-10, 10)), int(150 + 55 * tone), int(185 + 50 * tone))  # BGR
    iris = tuple(int(c) for c in rng.choice([(40, 60, 90), (110, 80, 40), (60, 90, 60), (30, 40, 60)]))
    bg = tuple(int(c) for c in rng.integers(30, 120, 3))
    return ClipLook(
        skin=skin, iris=iris, background=bg,
        center=(0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03)),
        scale=face_scale * rng.uniform(0.95, 1.05), intensity=rng.uniform(0.7, 1.0),
        motion_phase=rng.uniform(0, 2 * np.pi), noise=noise,
    )


@dataclass(frozen=True)
class Domain:
    """Who is filmed and how, in one domain of the ``"gap"`` world (:data:`WORLDS`).

    Identities: a clip shows one of ``identities`` persons; a person keeps its skin (tone drawn in ``skin_tone``, a
    0..1 range of the plain world's tones), iris colour and face size for every clip, and the pools of two domains
    are disjoint (different ``pool`` names seed them). Camera and light: each frame of a clip is multiplied by
    ``colour_gain`` (B, G, R; a colour cast) and shifted by ``brightness`` grey levels, blurred (Gaussian σ
    ``blur_sigma`` px at 128 px, scaled with the frame size), and gets sensor noise (σ ``noise_sigma`` grey levels);
    the face fills ``face_scale`` of the frame height at an offset of up to ``center_offset`` (share of the frame)
    from the centre, and ``motion`` scales the head motion (the plain world's ``noise``)."""

    pool: str
    identities: int
    skin_tone: Tuple[float, float]
    face_scale: float
    center_offset: float
    colour_gain: Tuple[float, float, float]
    brightness: float
    blur_sigma: float
    noise_sigma: float
    motion: float
    background: Tuple[int, int]


DOMAINS: Dict[str, Domain] = {
    # EMER: participants in a lab, even white light, a sharp camera close to the face
    "lab": Domain(pool="A", identities=16, skin_tone=(0.0, 0.7), face_scale=0.8, center_offset=0.02,
                  colour_gain=(1.0, 1.0, 1.0), brightness=0.0, blur_sigma=0.0, noise_sigma=0.0, motion=0.1,
                  background=(40, 90)),
    # DFEW: film scenes — other people, warm tungsten light, a softer camera further away, more noise and motion
    "wild": Domain(pool="B", identities=10, skin_tone=(0.3, 1.0), face_scale=0.6, center_offset=0.08,
                   colour_gain=(0.75, 0.95, 1.2), brightness=-15.0, blur_sigma=1.1, noise_sigma=9.0, motion=0.3,
                   background=(20, 160)),
}
#: world → dataset → its domain; the "plain" world has none (every clip a fresh look, the same camera)
WORLDS: Dict[str, Dict[str, Domain]] = {"plain": {}, "gap": {"emer": DOMAINS["lab"], "dfew": DOMAINS["wild"]}}


def identity_name(domain: Domain, identity: int) -> str:
    """The person's id in the manifest (``A07``): pools of different domains never share one."""
    return f"{domain.pool}{identity + 1:02d}"


def _identity_rng(domain: Domain, identity: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([sum(map(ord, domain.pool)), 1000 + identity]))


def _domain_look(rng: np.random.Generator, domain: Domain, identity: int) -> ClipLook:
    """A clip of ``identity``: the person's skin, iris and face size, with this clip's background, placement,
    intensity and motion phase."""
    person = _identity_rng(domain, identity)
    lo, hi = domain.skin_tone
    tone = person.uniform(lo, hi)
    skin = (int(120 + 70 * tone + person.integers(-10, 10)), int(150 + 55 * tone), int(185 + 50 * tone))  # BGR
    iris = tuple(int(c) for c in person.choice([(40, 60, 90), (110, 80, 40), (60, 90, 60), (30, 40, 60)]))
    size = person.uniform(0.93, 1.07)
    bg = tuple(int(c) for c in rng.integers(domain.background[0], domain.background[1], 3))
    offset = rng.uniform(-domain.center_offset, domain.center_offset, 2)
    return ClipLook(
        skin=skin, iris=iris, background=bg, center=(0.5 + offset[0], 0.5 + offset[1]),
        scale=domain.face_scale * size * rng.uniform(0.97, 1.03), intensity=rng.uniform(0.7, 1.0),
        motion_phase=rng.uniform(0, 2 * np.pi), noise=domain.motion,
    )


def apply_camera(img: np.ndarray, domain: Domain, rng: np.random.Generator) -> np.ndarray:
    """The domain's light and camera on one rendered BGR uint8 frame: colour cast and brightness, blur, noise."""
    import cv2

    out = img.astype(np.float32) * np.asarray(domain.colour_gain, np.float32) + domain.brightness
    if domain.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), domain.blur_sigma * min(img.shape[:2]) / 128.0)
    if domain.noise_sigma > 0:
        out = out + rng.normal(0, domain.noise_sigma, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


_SHIFT = 4
_ONE = 1 << _SHIFT


def _pt(x: float, y: float) -> Tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def render_frame(
    size: Tuple[int, int],
    look: ClipLook,
    face: FaceStyle,
    eye_state: np.ndarray,
    expression: float,
    t: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw one BGR uint8 frame of size ``(W, H)``.

    Args:
        eye_state: (5,) raw canonical values at this frame (pupil mm ×2, gaze x/y in [-1, 1], behaviour code).
        expression: envelope in [0, 1] multiplying the face style (onset → apex → offset).
        t: time (s) for the head motion.
    """
    import cv2

    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = look.background
    s = min(w, h) * look.scale
    cx, cy = look.center[0] * w, look.center[1] * h
    a, b = 0.36 * s, 0.46 * s  # face half-axes
    e = expression * look.intensity
    aa = cv2.LINE_AA
    cv2.ellipse(img, _pt(cx, cy), _pt(a, b), 0, 0, 360, look.skin, -1, aa, _SHIFT)
    cv2.ellipse(img, _pt(cx, cy), _pt(a, b), 0, 0, 360, tuple(int(c * 0.7) for c in look.skin), 2, aa, _SHIFT)
    # eyes
    ew, eh = 0.26 * a, 0.15 * b * (1.0 + 0.25 * max(face.brow_raise, 0.0) * e)
    ey = cy - 0.12 * b
    ir = 0.62 * 0.15 * b
    blink = int(round(eye_state[4])) == BLINK
    # a camera facing the subject (not mirrored): their left eye is on the image right, and a look to their right
    # (tracker gaze x > 0) moves the irises towards the image left
    for side, pupil_mm in ((-1, eye_state[1]), (1, eye_state[0])):
        ex = cx + side * 0.4 * a
        if blink:
            cv2.ellipse(img, _pt(ex, ey), _pt(ew, eh), 0, 0, 360, tuple(int(c * 0.92) for c in look.skin), -1, aa,
                        _SHIFT)
            cv2.line(img, _pt(ex - ew, ey), _pt(ex + ew, ey), (40, 40, 60), 2, aa, _SHIFT)
        else:
            cv2.ellipse(img, _pt(ex, ey), _pt(ew, eh), 0, 0, 360, (245, 245, 245), -1, aa, _SHIFT)
            ix = ex - float(eye_state[2]) * (ew - ir) * 0.95
            iy = ey + float(eye_state[3]) * max(eh - ir, 0.2 * ir) * 0.95
            cv2.circle(img, _pt(ix, iy), int(ir * _ONE), look.iris, -1, aa, _SHIFT)
            pr = ir * float(np.clip(pupil_mm, 1.5, 8.0)) / 11.0
            cv2.circle(img, _pt(ix, iy), int(pr * _ONE), (10, 10, 10), -1, aa, _SHIFT)
            cv2.ellipse(img, _pt(ex, ey), _pt(ew, eh), 0, 0, 360, (50, 50, 70), 1, aa, _SHIFT)
        # brow: inner end near the nose
        by = ey - eh - 0.1 * b - face.brow_raise * e * 0.08 * b
        inner = (ex - side * 0.8 * ew, by - face.brow_tilt * e * 0.07 * b)
        outer = (ex + side * 1.0 * ew, by + face.brow_tilt * e * 0.03 * b)
        cv2.line(img, _pt(*inner), _pt(*outer), (35, 35, 50), max(2, int(0.035 * b)), aa, _SHIFT)
    # nose
    cv2.line(img, _pt(cx, cy - 0.02 * b), _pt(cx - 0.04 * a, cy + 0.2 * b), tuple(int(c * 0.6) for c in look.skin),
             2, aa, _SHIFT)
    # mouth
    my, mw = cy + 0.45 * b, 0.36 * a * (1.0 - 0.15 * face.mouth_open * e)
    xs = np.linspace(-1, 1, 15)
    ys = my + face.mouth_curve * e * 0.12 * b * (1 - xs ** 2) - face.mouth_curve * e * 0.04 * b
    pts = np.array([_pt(cx + x * mw, y) for x, y in zip(xs, ys)], np.int32)
    if face.mouth_open * e > 0.05:
        cv2.ellipse(img, _pt(cx, my), _pt(mw * 0.85, face.mouth_open * e * 0.14 * b), 0, 0, 360, (50, 40, 110), -1,
                    aa, _SHIFT)
    cv2.polylines(img, [pts], False, (40, 30, 110), 2, aa, _SHIFT)
    # head motion (small rotation + translation), blur, sensor noise
    ang = 3.0 * look.noise * math.sin(1.3 * t + look.motion_phase)
    dx = 0.02 * s * look.noise * math.sin(0.9 * t + 2 * look.motion_phase)
    dy = 0.02 * s * look.noise * math.cos(0.7 * t + look.motion_phase)
    m = cv2.getRotationMatrix2D((cx, cy), ang, 1.0)
    m[:, 2] += (dx, dy)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=look.background)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    if look.noise > 0:
        img = np.clip(img + rng.normal(0, 20.0 * look.noise, img.shape), 0, 255).astype(np.uint8)
    return img


def _envelope(num_frames: int, kind: str, apex: Optional[int] = None) -> np.ndarray:
    """Expression intensity per frame: ``"macro"`` ramps up over the first third and holds; ``"micro"`` rises from
    the first frame to ``apex`` and falls back by the last (a subtle, brief expression)."""
    k = np.arange(num_frames, dtype=np.float64)
    if kind == "macro":
        return np.clip((k + 1) / max(1, num_frames / 3), 0, 1)
    apex = num_frames // 2 if apex is None else apex
    up = k / max(apex, 1)
    down = (num_frames - 1 - k) / max(num_frames - 1 - apex, 1)
    return 0.5 * np.clip(np.where(k <= apex, up, down), 0, 1)


@dataclass
class RenderedClip:
    frames: List[np.ndarray]
    series: EyeMovementSeries  # raw ground truth at TRACKER_HZ
    frame_times_s: np.ndarray
    frame_values: np.ndarray  # (T, 5) raw values used for each frame


def render_clip(
    label_name: str,
    rng: np.random.Generator,
    num_frames: int,
    size: Tuple[int, int],
    noise: float,
    fps: float = VIDEO_FPS,
    kind: str = "macro",
    face_scale: float = 0.8,
    apex: Optional[int] = None,
    domain: Optional[Domain] = None,
    identity: int = 0,
) -> RenderedClip:
    """Generate the eye series of one clip of class ``label_name`` and render its frames; with a ``domain`` (the
    ``"gap"`` world) the clip shows person ``identity`` of its pool through its camera (``noise`` and
    ``face_scale`` then come from the domain)."""
    face, eye = class_style(label_name)
    duration = num_frames / fps
    series = generate_eye_series(eye, duration, rng)
    times = np.arange(num_frames) / fps
    vals = _sample_series_at(series, times)
    look = _random_look(rng, noise, face_scale) if domain is None else _domain_look(rng, domain, identity)
    env = _envelope(num_frames, kind, apex)
    frames = [render_frame(size, look, face, vals[k], env[k], times[k], rng) for k in range(num_frames)]
    if domain is not None:
        frames = [apply_camera(frame, domain, rng) for frame in frames]
    return RenderedClip(frames, series, times, vals)


# ------------------------------------------------------------------------------------------------ bookkeeping
def _series_key(clip_id: str) -> str:
    return clip_id.replace("/", "__").replace("\\", "__")


def sample_eye_series_path(root: PathLike, clip_id: str) -> Path:
    """Where :func:`make_sample_dataset` stored the ground-truth eye series of ``clip_id`` (a loader's
    ``clip_id``; for Aff-Wild2 the annotated video name)."""
    return Path(root) / SERIES_DIR / f"{_series_key(clip_id)}.npz"


def load_sample_eye_series(root: PathLike, clip_id: str) -> Tuple[EyeMovementSeries, dict]:
    """The ground truth of a sample clip: ``(series, info)``.

    ``series`` is the raw canonical series at ``TRACKER_HZ`` (pupils mm, gaze [-1, 1], behaviour codes; call
    ``.normalize()`` to compare with an extractor); ``info`` holds ``frame_times_s`` and ``frame_values`` (the raw
    values each video frame was rendered from), ``label_name``, ``face`` and ``eyes`` (style names).
    """
    path = sample_eye_series_path(root, clip_id)
    if not path.is_file():
        raise FileNotFoundError(f"no sample eye series for clip {clip_id!r} at {path}")
    with np.load(path, allow_pickle=False) as z:
        series = EyeMovementSeries(z["values"], z["valid"], z["times_s"], normalized=False,
                                   metadata={"source": "sample_data", "clip_id": clip_id})
        info = {"frame_times_s": z["frame_times_s"], "frame_values": z["frame_values"],
                "label_name": str(z["label_name"]), "face": str(z["face"]), "eyes": str(z["eyes"])}
    return series, info


class _Writer:
    """Accumulates the per-clip ground truth and the manifest of one sample dataset."""

    def __init__(self, name: str, root: Path, options: dict):
        self.name, self.root, self.options = name, root, options
        self.clips: List[dict] = []
        (root / SERIES_DIR).mkdir(parents=True, exist_ok=True)

    def add(self, clip_id: str, label_name: str, clip: RenderedClip, **extra) -> None:
        face, eyes = CLASS_STYLES[label_name]
        np.savez_compressed(
            sample_eye_series_path(self.root, clip_id), values=clip.series.values, valid=clip.series.valid,
            times_s=clip.series.times_s, frame_times_s=clip.frame_times_s,
            frame_values=clip.frame_values.astype(np.float32), label_name=label_name, face=face, eyes=eyes,
        )
        self.clips.append({"clip_id": clip_id, "label_name": label_name, "face": face, "eyes": eyes, **extra})

    def close(self) -> None:
        manifest = {"dataset": self.name, "options": self.options, "tracker_hz": TRACKER_HZ, "clips": self.clips}
        (self.root / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _rng_for(seed: int, dataset: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SAMPLE_DATASETS.index(dataset), index]))


def _size(resolution: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    w, h = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if w < 48 or h < 48:
        raise ValueError(f"resolution must be at least 48 px, got {resolution}")
    return int(w) // 2 * 2, int(h) // 2 * 2  # yuv420p needs even sizes


def _class_plan(names: Sequence[str], clips_per_class: int) -> List[Tuple[int, str]]:
    """(k, name) for every clip: class-interleaved so that any prefix covers all classes."""
    return [(k, n) for k in range(clips_per_class) for n in names]


def _fold_of(k: int, class_index: int, num_folds: int = 5) -> int:
    """1-based fold of the k-th clip of a class: stratified round robin."""
    return (k + class_index) % num_folds + 1


# -------------------------------------------------------------------------------------------- per-dataset writers
def _make_emer(root, w: _Writer, cpc, num_frames, size, noise, seed, domain: Optional[Domain] = None):
    names = LABELS["emer_7class"]
    short = {"happiness": "happy", "sadness": "sad", "anger": "anger", "fear": "fear", "surprise": "surprise",
             "disgust": "disgust", "neutral": "neutral"}
    valence = {"happiness": 0.7, "surprise": 0.3, "neutral": 0.0, "sadness": -0.6, "fear": -0.6, "disgust": -0.5,
               "anger": -0.7}
    arousal = {"happiness": 0.5, "surprise": 0.8, "neutral": -0.2, "sadness": -0.3, "fear": 0.7, "disgust": 0.3,
               "anger": 0.7}
    rows, split_lines = [], []
    for i, (k, name) in enumerate(_class_plan(names, cpc)):
        rng = _rng_for(seed, "emer", i)
        clip_id = f"{k + 1}_{'film' if k % 2 == 0 else 'sport'}_{short[name]}"
        person = k % domain.identities if domain else k  # a participant shows every class
        clip = render_clip(name, rng, num_frames, size, noise, domain=domain, identity=person)
        write_mp4(root / "face video" / f"{clip_id}.mp4", clip.frames)
        s = clip.series
        blink = s.values[:, 4] == BLINK
        noisy = s.values + rng.normal(0, 1, s.values.shape) * np.array(TRACKER_NOISE_STD)
        write_tobii_tsv(
            root / "eye_movement data" / f"{clip_id}.tsv", s.times_s * 1000.0,
            (noisy[:, 2] + 1) / 2 * DISPLAY_RESOLUTION[0], (noisy[:, 3] + 1) / 2 * DISPLAY_RESOLUTION[1],
            noisy[:, 0], noisy[:, 1], ~blink, ~blink, eye_movement_type=s.values[:, 4].astype(int),
            participant=f"P{person + 1:02d}", resolution=DISPLAY_RESOLUTION,
        )
        fold = _fold_of(k, names.index(name))
        rows.append({"ID": clip_id, "Participant": person + 1, "ER": name, "FER": name,
                     "Valence": valence[name], "Arousal": arousal[name], "Intensity": round(float(rng.uniform(1, 3)), 1)})
        split_lines.append(f"{clip_id}\tset{fold}")
        w.add(clip_id, name, clip, fold=fold, **({"identity": identity_name(domain, person)} if domain else {}))
    pd.DataFrame(rows).to_excel(root / "EMER_label.xlsx", index=False)
    (root / "emer_set.txt").write_text("\n".join(split_lines) + "\n", encoding="utf-8")


def _make_dfew(root, w: _Writer, cpc, num_frames, size, noise, seed, domain: Optional[Domain] = None,
               test_cpc: int = 0):
    """DFEW; with a ``domain`` (the "gap" world) ``cpc`` labelled training clips and ``test_cpc`` test clips per
    class, the same split written as every fold."""
    names = LABELS["dfew"]
    split_rows = {f: {"train": [], "test": []} for f in range(1, 6)}
    ann = []
    vid = 0
    for i, (k, name) in enumerate(_class_plan(names, cpc + (test_cpc if domain else 0))):
        vid += 1 if i % 6 else 2  # ids have gaps, as in the release (clips without a detected face are gone)
        rng = _rng_for(seed, "dfew", i)
        person = i % domain.identities if domain else 0
        clip = render_clip(name, rng, num_frames, size, noise, domain=domain, identity=person)
        cid = f"{vid:05d}"
        write_jpgs(root / "Clip" / "clip_224x224" / cid, clip.frames,
                   [f"{cid}_{n + 1:05d}.jpg" for n in range(num_frames)])
        pick = np.linspace(0, num_frames - 1, 16).round().astype(int)  # TIM stand-in: 16 frames
        write_jpgs(root / "Clip" / "clip_224x224_16f" / cid, [clip.frames[j] for j in pick],
                   [f"{cid}_{n + 1}.jpg" for n in range(16)])
        label = names.index(name) + 1
        test_fold = _fold_of(k, label - 1) if domain is None else None
        for f in range(1, 6):
            is_test = f == test_fold if domain is None else k >= cpc
            split_rows[f]["test" if is_test else "train"].append((vid, label))
        votes = {n: 0 for n in names}
        votes[name] = 8
        ann.append({"order": vid, **{f"{j + 1}{n}": votes[m] for j, (n, m) in
                                     enumerate(zip(("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"),
                                                   names))},
                    "clip_name": cid, "annotation": label})
        if domain is None:
            w.add(cid, name, clip, test_fold=test_fold)
        else:
            w.add(cid, name, clip, split="test" if k >= cpc else "train", identity=identity_name(domain, person))
    for f, parts in split_rows.items():
        for part, pairs in parts.items():
            d = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)"
            d.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(pairs, columns=["video_name", "label"]).to_csv(d / f"set_{f}.csv", index=False)
    (root / "Annotation").mkdir(exist_ok=True)
    pd.DataFrame(ann).to_excel(root / "Annotation" / "annotation.xlsx", index=False)
    (root / "README.md").write_text("DFEW sample data (synthetic) in the layout of the official release.\n")


def _make_mafw(root, w: _Writer, cpc, num_frames, size, noise, seed):
    names = LABELS["mafw"]
    splits = {f: {"train": [], "test": []} for f in range(1, 6)}
    single = []
    for i, (k, name) in enumerate(_class_plan(names, cpc)):
        rng = _rng_for(seed, "mafw", i)
        clip = render_clip(name, rng, num_frames, size, noise, face_scale=0.7)  # frames are not face-cropped
        cid = f"{19 + 3 * i:05d}"
        write_mp4(root / "data" / "clips" / f"{cid}.mp4", clip.frames)
        test_fold = _fold_of(k, names.index(name))
        for f in range(1, 6):
            splits[f]["test" if f == test_fold else "train"].append(f"{cid}.mp4 {name}")
        single.append({"clip": cid, **{n: int(n == name) * 11 for n in names}, "single_label": names.index(name) + 1})
        w.add(cid, name, clip, test_fold=test_fold)
    for f, parts in splits.items():
        d = root / "Train & Test Set" / "single" / "no_caption" / f"set_{f}"
        d.mkdir(parents=True, exist_ok=True)
        for part, lines in parts.items():
            (d / f"{part}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "Labels").mkdir(exist_ok=True)
    pd.DataFrame(single).to_excel(root / "Labels" / "single-set.xlsx", index=False)


def _make_affwild2(root, w: _Writer, cpc, num_frames, size, noise, seed):
    names = LABELS["affwild2"]
    ann_root = root / "6th ABAW Annotations" / "EXPR_Recognition_Challenge"
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    segs_per_video = 4
    video_names = iter(["1-30-1280x720", "video10_1", "10-60-1280x720_right", "118-30-640x480", "video49",
                        "135-24-1920x1080", "video2", "21-24-1920x1080", "video73", "45-30-1270x720"]
                       + [f"video{200 + j}" for j in range(1000)])
    idx = 0
    for split, per_class in (("Train_Set", cpc), ("Validation_Set", max(1, cpc // 2))):
        plan = [n for _, n in _class_plan(names, per_class)]
        order = np.random.default_rng([seed, 7, len(split)]).permutation(len(plan))
        plan = [plan[j] for j in order]
        for v in range(0, len(plan), segs_per_video):
            name = next(video_names)
            frames, crops, labels, series_vals = [], [], [], []
            for j, cls in enumerate(plan[v:v + segs_per_video]):
                idx += 1
                rng = _rng_for(seed, "affwild2", idx)
                clip = render_clip(cls, rng, num_frames, size, noise, face_scale=0.6)
                crop = render_clip(cls, _rng_for(seed, "affwild2", idx), num_frames, (112, 112), noise)
                frames += clip.frames
                crops += crop.frames
                lab = [names.index(cls)] * num_frames
                if j == 1:
                    lab[:3] = [-1] * 3  # unannotated frames at a transition
                labels += lab
                series_vals.append(clip)
            base = name.replace("_right", "").replace("_left", "")
            write_mp4(root / "batch1" / f"{base}.mp4", frames)
            keep = [n for n in range(len(crops)) if n % 17 != 5]  # some frames have no detected face
            write_jpgs(root / "cropped_aligned" / name, [crops[n] for n in keep], [f"{n + 1:05d}.jpg" for n in keep])
            (ann_root / split).mkdir(parents=True, exist_ok=True)
            (ann_root / split / f"{name}.txt").write_text(header + "\n" + "\n".join(map(str, labels)) + "\n")
            # ground truth: the segments' series back to back
            offset, parts = 0.0, []
            for c in series_vals:
                parts.append((c.series.times_s + offset, c.series.values, c.frame_times_s + offset, c.frame_values))
                offset += num_frames / VIDEO_FPS
            joined = RenderedClip([], EyeMovementSeries(np.concatenate([p[1] for p in parts]),
                                                        np.ones(sum(len(p[1]) for p in parts), bool),
                                                        np.concatenate([p[0] for p in parts]), normalized=False),
                                  np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]))
            w.add(name, plan[v], joined, split=split, segments=plan[v:v + segs_per_video])
    test_list = root / "Expression_Recognition_Challenge_test_set_release.txt"
    test_list.write_text("video_test_1\n", encoding="utf-8")


def _micro_onsets(rng, num_frames, start_range=(20, 400)):
    onset = int(rng.integers(*start_range))
    apex_pos = int(rng.integers(num_frames // 3, max(num_frames // 3 + 1, 2 * num_frames // 3)))
    return onset, onset + apex_pos, onset + num_frames - 1, apex_pos


def _make_casme2(root, w: _Writer, cpc, num_frames, size, noise, seed):
    emotions = ["happiness", "disgust", "repression", "surprise", "others"]
    plan = _class_plan(emotions, cpc) + [(cpc, "fear"), (cpc, "sadness")]  # excluded by both protocols
    subjects = [1, 2, 3, 5]  # sub04 absent, as sub10/sub18 in the 3-class list
    rows = []
    for i, (k, emo) in enumerate(plan):
        rng = _rng_for(seed, "casme2", i)
        onset, apex, offset, apex_pos = _micro_onsets(rng, num_frames)
        clip = render_clip(emo, rng, num_frames, size, noise, fps=30.0, kind="micro", apex=apex_pos)
        sub = subjects[i % len(subjects)]
        ep = f"EP{i + 1:02d}_{k + 1:02d}" + ("f" if i % 3 == 0 else "")
        write_jpgs(root / "CASME2_RAW_selected" / f"sub{sub:02d}" / ep, clip.frames,
                   [f"img{onset + n}.jpg" for n in range(num_frames)])
        rows.append([sub, ep, None, onset, "/" if i == 2 else apex, offset, None,
                     ["12", "4+7", "R12", "L10", "1+2"][i % 5], emo])
        w.add(f"sub{sub:02d}/{ep}", emo, clip, onset=onset, apex=apex, offset=offset)
    cols = ["Subject", "Filename", "", "OnsetFrame", "ApexFrame", "OffsetFrame", " ", "Action Units",
            "Estimated Emotion"]
    pd.DataFrame(rows, columns=cols).to_excel(root / "CASME2-coding-20140508.xlsx", index=False)


def _make_casme3(root, w: _Writer, cpc, num_frames, size, noise, seed):
    emotions = ["disgust", "surprise", "others", "fear", "anger", "sad", "happy"]
    subjects = ["spNO.1", "spNO.2", "spNO.10", "spNO.149"]
    on_disk = {"spNO.2": "spNo.2"}  # folder case differs from the sheet
    letters = "abcdefghijklm"
    rows = []
    for i, (k, emo) in enumerate(_class_plan(emotions, cpc)):
        rng = _rng_for(seed, "casme3", i)
        onset, apex, offset, apex_pos = _micro_onsets(rng, num_frames)
        clip = render_clip(emo, rng, num_frames, size, noise, fps=30.0, kind="micro", apex=apex_pos)
        sub = subjects[i % len(subjects)]
        fn = letters[(i // len(subjects)) % len(letters)]
        fn = "J" if i == 5 else fn
        folder = f"{on_disk.get(sub, sub)}_{fn}_{onset}"
        write_jpgs(root / "Part_A_ME_clip" / "frame" / folder, clip.frames, [f"{onset + n}.jpg" for n in range(num_frames)])
        sheet_apex = onset - 5 if i == 3 else apex  # apex outside [onset, offset], as in 4 official rows
        sheet_offset = 0 if i == 4 else offset  # unknown offset
        emo_cell = "Others" if (emo == "others" and k == 0) else emo
        rows.append({"Subject": sub, "Filename": fn, "Onset": str(onset), "Apex": str(sheet_apex),
                     "Offset": str(sheet_offset), "AU": ["4", "R12", "5", "1+2"][i % 4],
                     "Objective class": ["I", "II", "III", "IV"][i % 4], "emotion": emo_cell})
        w.add(f"{sub}_{fn}_{onset}", emo, clip, onset=onset, apex=apex, offset=offset)
    path = root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
    with pd.ExcelWriter(path) as xw:
        pd.DataFrame(rows).astype(str).to_excel(xw, sheet_name="label", index=False)
        pd.DataFrame().to_excel(xw, sheet_name="Sheet1", index=False)
        pd.DataFrame().to_excel(xw, sheet_name="Sheet3", index=False)


_MAKERS = {"emer": _make_emer, "dfew": _make_dfew, "mafw": _make_mafw, "affwild2": _make_affwild2,
           "casme2": _make_casme2, "casme3": _make_casme3}


def make_sample_dataset(
    name: str,
    root: PathLike,
    clips_per_class: int = 4,
    num_frames: int = 16,
    resolution: Union[int, Tuple[int, int]] = 128,
    noise: float = 0.1,
    seed: int = 0,
    world: str = "plain",
    test_clips_per_class: Optional[int] = None,
) -> Path:
    """Write a small sample dataset in the exact layout of benchmark ``name`` under ``root``.

    Args:
        name: one of ``emer``, ``dfew``, ``mafw``, ``affwild2``, ``casme2``, ``casme3``.
        root: output folder (created; existing files of the same names are overwritten).
        clips_per_class: clips of every class (Aff-Wild2: segments per class in the train set, half in validation;
            CASME II also writes one fear and one sadness clip, excluded by its protocols).
        num_frames: frames per clip (DFEW also writes the 16-frame ``clip_224x224_16f`` variant).
        resolution: frame size, an int (square) or ``(width, height)``; faces fill ~75% of the height (60–70% for
            the not face-cropped MAFW / Aff-Wild2 raw videos; Aff-Wild2 crops are 112×112).
        noise: 0 = clean; scales pixel noise (σ = 20·noise grey levels) and head motion.
        seed: the generation is deterministic in it.
        world: ``"plain"`` (default) or ``"gap"`` (:data:`WORLDS`: EMER in the lab domain, DFEW across the domain
            gap; ``noise`` is then the domain's own).
        test_clips_per_class: ``"gap"`` DFEW only: test clips per class (default ``2 * clips_per_class``), beside
            the ``clips_per_class`` labelled training clips.
    Returns:
        ``root`` as a Path; load it with the dataset's loader (e.g. ``load_emer(root, fold=1)``).
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _MAKERS:
        raise ValueError(f"unknown sample dataset {name!r}; expected one of {list(SAMPLE_DATASETS)}")
    if clips_per_class < 1 or num_frames < 4:
        raise ValueError(f"need clips_per_class >= 1 and num_frames >= 4, got {clips_per_class}, {num_frames}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    if world not in WORLDS:
        raise ValueError(f"unknown sample world {world!r}; expected one of {list(WORLDS)}")
    if world != "plain" and key not in WORLDS[world]:
        raise ValueError(f"the {world!r} sample world has only {list(WORLDS[world])}, not {name!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    size = _size(resolution)
    options = {"clips_per_class": clips_per_class, "num_frames": num_frames, "resolution": list(size),
               "noise": noise, "seed": seed, "video_fps": VIDEO_FPS,
               "styles": {k: {"face": asdict(FACES[f]), "eyes": asdict(EYES[e])} for k, (f, e) in CLASS_STYLES.items()}}
    extra = {}
    if world != "plain":  # recorded only outside the plain world, whose manifests stay as they were
        domain = WORLDS[world][key]
        extra["domain"] = domain
        options.update(world=world, domain=asdict(domain))
        if key == "dfew":
            extra["test_cpc"] = 2 * clips_per_class if test_clips_per_class is None else test_clips_per_class
            options["test_clips_per_class"] = extra["test_cpc"]
    writer = _Writer(key, root, options)
    _MAKERS[key](root, writer, clips_per_class, num_frames, size, noise, seed, **extra)
    writer.close()
    logger.info("wrote %s sample data (%d clips) to %s", key, len(writer.clips), root)
    return root


# ------------------------------------------------------------------------------------------------------- CLI
def add_sample_data_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``emvfer sample-data`` (wire with ``parser.set_defaults(func=run_sample_data)``)."""
    parser.add_argument("--dataset", "-d", nargs="+", default=["emer", "dfew"],
                        choices=list(SAMPLE_DATASETS) + ["all"], help="which layouts to write (default: emer dfew)")
    parser.add_argument("--output", "-o", default="sample_data",
                        help="output folder; each dataset goes to <output>/<NAME> (EMER, DFEW, MAFW, ...)")
    parser.add_argument("--clips-per-class", type=int, default=4)
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    return parser


FOLDER_NAMES = {"emer": "EMER", "dfew": "DFEW", "mafw": "MAFW", "affwild2": "Aff-Wild2", "casme2": "CASME2",
                "casme3": "CASME3"}


def run_sample_data(args: argparse.Namespace) -> int:
    """Entry point of ``emvfer sample-data``: writes each requested dataset to ``<output>/<NAME>``."""
    names = SAMPLE_DATASETS if "all" in args.dataset else args.dataset
    for name in names:
        root = make_sample_dataset(name, Path(args.output) / FOLDER_NAMES[name], clips_per_class=args.clips_per_class,
                                   num_frames=args.num_frames, resolution=args.resolution, noise=args.noise,
                                   seed=args.seed)
        print(f"{name}: {root}")
    return 0
