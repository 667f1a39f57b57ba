"""Agreement of an event detector with human coders, scored as the field scores it.

- **Sample level** (Andersson, Larsson, Holmqvist, Stridh & Nyström 2017, "One algorithm to rule them all?",
  *Behavior Research Methods* 49, 616–637): Cohen's kappa per event class, the class against everything else
  ("fixation vs not", "saccade vs not"), over the samples of all recordings pooled.
- **Event level** (Hooge, Niehorster, Nyström, Andersson & Hessels 2018, "Is human classification by experienced
  untrained observers a gold standard in fixation detection?", *Behavior Research Methods* 50, 1864–1881): events of
  one class in the reference and in the detection are matched one to one by overlap; F1 = 2·matches / (reference
  events + detected events), and the onset and offset differences (detected − reference, ms) of matched events.

Event tables have the columns ``event``, ``onset_ms``, ``offset_ms`` (times of the first and last sample of the
event), as :func:`~emvfer_hf.eyetracking.detect_events` returns them.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..eye_movement_mert import label_runs
from .events import EVENT_COLUMNS

UNDEFINED = "undefined"


def labels_from_events(timestamps_ms: np.ndarray, events: pd.DataFrame, order: Sequence[str] = ()) -> np.ndarray:
    """Per-sample labels (object array of event names, ``"undefined"`` where no event covers a sample).

    A sample belongs to an event when ``onset_ms <= t <= offset_ms``. Where events overlap, the later one in
    ``order`` wins (events of classes not in ``order`` are painted first, in table order).
    """
    t = np.asarray(timestamps_ms, dtype=np.float64)
    out = np.full(len(t), UNDEFINED, dtype=object)
    if events is None or len(events) == 0:
        return out
    rank = {name: i + 1 for i, name in enumerate(order)}
    table = events.assign(_rank=events["event"].map(lambda e: rank.get(e, 0))).sort_values("_rank", kind="stable")
    for name, on, off in zip(table["event"], table["onset_ms"], table["offset_ms"]):
        a, b = np.searchsorted(t, on, "left"), np.searchsorted(t, off, "right")
        out[a:b] = name
    return out


def events_from_sample_labels(timestamps_ms: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """The runs of equal per-sample labels as an event table (``undefined`` runs left out)."""
    t = np.asarray(timestamps_ms, dtype=np.float64)
    if len(labels) == 0:
        return pd.DataFrame({"event": [], "onset_ms": [], "offset_ms": []})
    rows = [(label, t[a], t[b]) for label, a, b in label_runs(labels) if label != UNDEFINED]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def cohen_kappa(reference: np.ndarray, detected: np.ndarray) -> float:
    """Cohen's kappa of two boolean codings of the same samples: (p_o − p_e) / (1 − p_e).

    p_o is the fraction of samples on which they agree, p_e the agreement expected by chance from each coding's
    base rate. NaN when p_e = 1 (both codings constant and equal).
    """
    r = np.asarray(reference, dtype=bool)
    d = np.asarray(detected, dtype=bool)
    if r.shape != d.shape:
        raise ValueError(f"cohen_kappa: reference has {r.shape} samples, detected {d.shape}")
    if r.size == 0:
        return float("nan")
    po = float(np.mean(r == d))
    pr, pd_ = float(r.mean()), float(d.mean())
    pe = pr * pd_ + (1.0 - pr) * (1.0 - pd_)
    return float("nan") if pe >= 1.0 else (po - pe) / (1.0 - pe)


def sample_kappa(reference: Iterable[np.ndarray], detected: Iterable[np.ndarray], event: str) -> float:
    """Cohen's kappa of ``event`` vs everything else over per-sample label arrays pooled over recordings
    (Andersson et al. 2017). Samples the reference leaves ``undefined`` are left out."""
    ref = np.concatenate([np.asarray(r, dtype=object) for r in reference])
    det = np.concatenate([np.asarray(d, dtype=object) for d in detected])
    keep = ref != UNDEFINED
    return cohen_kappa(ref[keep] == event, det[keep] == event)


def match_events(reference: pd.DataFrame, detected: pd.DataFrame) -> list[tuple[int, int]]:
    """One-to-one matches (row in reference, row in detected) of overlapping events, by largest overlap first.

    Both tables hold one event class. Every overlapping pair is a candidate; pairs are taken in order of decreasing
    overlap (ms; ties by the earlier reference onset), skipping events already matched (Hooge et al. 2018 match each
    event to the one it overlaps most).
    """
    r_on, r_off = reference["onset_ms"].to_numpy(float), reference["offset_ms"].to_numpy(float)
    d_on, d_off = detected["onset_ms"].to_numpy(float), detected["offset_ms"].to_numpy(float)
    pairs = []
    order = np.argsort(d_on, kind="stable")
    d_on_sorted = d_on[order]
    for i in range(len(r_on)):
        # candidates: detected events starting before this reference event ends and ending after it starts
        stop = np.searchsorted(d_on_sorted, r_off[i], "right")
        for j in order[:stop]:
            if d_off[j] >= r_on[i]:
                overlap = min(r_off[i], d_off[j]) - max(r_on[i], d_on[j])
                pairs.append((-overlap, r_on[i], i, int(j)))
    pairs.sort()
    used_r, used_d, out = set(), set(), []
    for _, _, i, j in pairs:
        if i not in used_r and j not in used_d:
            used_r.add(i)
            used_d.add(j)
            out.append((i, j))
    return sorted(out)


def event_agreement(reference: Iterable[pd.DataFrame], detected: Iterable[pd.DataFrame], event: str) -> dict:
    """Event-level agreement for one class, pooled over recordings (pairs of event tables of the same recording).

    Returns:
        dict with ``n_reference``, ``n_detected``, ``n_matched``, ``f1`` = 2·matched / (reference + detected),
        and for matched events the median and median absolute onset and offset differences (detected − reference,
        ms): ``onset_median_ms``, ``onset_median_abs_ms``, ``offset_median_ms``, ``offset_median_abs_ms``.
    """
    n_ref = n_det = 0
    d_on, d_off = [], []
    for ref, det in zip(reference, detected):
        ref = ref[ref["event"] == event].reset_index(drop=True)
        det = det[det["event"] == event].reset_index(drop=True)
        n_ref += len(ref)
        n_det += len(det)
        for i, j in match_events(ref, det):
            d_on.append(det["onset_ms"][j] - ref["onset_ms"][i])
            d_off.append(det["offset_ms"][j] - ref["offset_ms"][i])
    m = len(d_on)

    def med(x):
        return round(float(np.median(x)), 2) if len(x) else float("nan")

    return {
        "n_reference": n_ref, "n_detected": n_det, "n_matched": m,
        "f1": 2.0 * m / (n_ref + n_det) if n_ref + n_det else float("nan"),
        "onset_median_ms": med(d_on), "onset_median_abs_ms": med(np.abs(d_on)),
        "offset_median_ms": med(d_off), "offset_median_abs_ms": med(np.abs(d_off)),
    }
