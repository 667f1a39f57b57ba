"""The synthetic world of the sample data and its renderer (docs/design.md §Sample data).

Real benchmarks cannot be shipped, so each benchmark of :mod:`emvfer_hf.data.benchmarks` has a sample writer that
renders face clips in its exact on-disk layout (:func:`emvfer_hf.data.make_sample_dataset` picks the writer). This
module is the world they film: the class sets BOTH the facial expression (mouth, brows) and the eye behaviour (gaze
pattern, pupil dynamics, blink and saccade rates). Each clip is driven by a generated canonical eye series
(docs/design.md §Eye-movement format: pupils in mm, gaze in [-1, 1], behaviour codes fixation 0 / saccade 1 / blink
2, at ``TRACKER_HZ``); the renderer places the irises and pupils from it, and the EMER writer stores the same series
as a Tobii Pro Lab TSV — the high-quality signal — while the visual extractor has to recover a noisier version from
the pixels.

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

Generation is deterministic in ``seed`` (:func:`clip_rng`). Default size (4 clips per class, 16 frames, 128 px) writes the EMER or
DFEW sample set in a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..eye_movement_mert import BLINK, FIXATION, SACCADE, EyeMovementSeries
from ._utils import PathLike
from .labels import LABELS

logger = logging.getLogger(__name__)

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


class SampleWriter:
    """Accumulates the per-clip ground truth and the manifest of one sample dataset: a benchmark's sample writer
    records each clip it renders with :meth:`add`; :meth:`close` writes ``sample_manifest.json``."""

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


def clip_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The random numbers of clip ``index`` of the sample set whose benchmark owns ``stream``
    (``Benchmark.sample_stream``): deterministic in ``seed``, independent between clips and benchmarks."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def frame_size(resolution: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    """``(W, H)`` of ``resolution`` (an int: square), rounded down to even sizes; at least 48 px."""
    w, h = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if w < 48 or h < 48:
        raise ValueError(f"resolution must be at least 48 px, got {resolution}")
    return int(w) // 2 * 2, int(h) // 2 * 2  # yuv420p needs even sizes


def class_plan(names: Sequence[str], clips_per_class: int) -> List[Tuple[int, str]]:
    """(k, name) for every clip: class-interleaved so that any prefix covers all classes."""
    return [(k, n) for k in range(clips_per_class) for n in names]


def fold_of(k: int, class_index: int, num_folds: int = 5) -> int:
    """1-based fold of the k-th clip of a class: stratified round robin."""
    return (k + class_index) % num_folds + 1
