"""Eye-movement event detectors against human coders (issue 21).

Data: IRF `lookAtPoint_EL` (Zemblys et al. 2018; tests/fixtures/eye_tracking/irf_lookAtPoint_EL): five EyeLink 1000
recordings at 1000 Hz, every sample coded by hand as fixation, saccade, PSO or blink. S3 is left out (its source
says its saccade and blink codes are only approximate). Gaze is stored in degrees; it is turned into the pixels of
the screen it was recorded on (db_config.json: 533 x 301 mm, 1920 x 1080 px, 565 mm) and every detector gets those
pixels and that geometry, each in its own way.

Detectors, all with their defaults, run side by side in one process:
- `ours`: `emvfer_hf.eyetracking.detect_events`, `pixels_per_degree` from the geometry;
- `remodnav`: REMoDNaV 1.1.2 (Dar, Wagner & Hanke 2021) from PyPI, `px2deg` from the geometry;
- `pymovements_ivt`, `pymovements_idt`: pymovements' I-VT (20 °/s, fixations of ≥ 100 ms) and I-DT (1°, 100 ms)
  (Salvucci & Goldberg 2000) on pymovements' own pix2deg and default velocity (five-point difference). They
  detect fixations only; as Salvucci & Goldberg define them, I-VT's saccade samples are those above its velocity
  threshold, I-DT's every valid sample outside a fixation;
- `pymovements_ivt_sg`: the same I-VT on a Savitzky–Golay velocity (order 2, 21 samples), the filter of Nyström
  & Holmqvist (2010): at 1000 Hz the five-point difference leaves EyeLink noise of several °/s, which breaks
  fixations into pieces shorter than I-VT's 100 ms minimum.

Scores (emvfer_hf.eyetracking.agreement): per-sample Cohen's kappa, fixation vs not and saccade vs not, pooled over
the recordings (Andersson et al. 2017); event-level F1 and onset/offset differences of matched events (Hooge et
al. 2018), for fixations, saccades and PSOs. Samples the coders left undefined are left out.

    python benchmarks/bench_events.py

Writes benchmarks/results/events.json and benchmarks/results/events.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from emvfer_hf.eyetracking import EyeTrackingRecording, detect_events  # noqa: E402
from emvfer_hf.eyetracking.agreement import (  # noqa: E402
    event_agreement,
    events_from_sample_labels,
    labels_from_events,
    sample_kappa,
)

DATA = HERE.parent / "tests" / "fixtures" / "eye_tracking" / "irf_lookAtPoint_EL"
RECORDINGS = ("S1", "S2", "S4", "S5", "S6")  # S3 left out: approximate codes
IRF_CODES = {0: "undefined", 1: "fixation", 2: "saccade", 3: "pso", 4: "pursuit", 5: "blink"}
PAINT_ORDER = ("fixation", "pursuit", "saccade", "pso", "blink")  # where events overlap, the later wins
DETECTORS = ("ours", "remodnav", "pymovements_ivt", "pymovements_ivt_sg", "pymovements_idt")


def geometry() -> dict:
    return json.loads((DATA / "db_config.json").read_text())["geom"]


def deg_per_px(geom: dict) -> float:
    """Degrees per pixel at the screen centre, as REMoDNaV's documentation computes ``px2deg``."""
    half_deg = np.degrees(np.arctan2(0.5 * geom["screen_width"], geom["eye_distance"]))
    return float(half_deg / (0.5 * geom["display_width_pix"]))


def load_irf(name: str, geom: dict) -> dict:
    """One recording: time (ms), gaze in screen pixels (NaN where lost), the coders' per-sample labels."""
    d = np.load(DATA / f"lookAtPoint_EL_{name}.npy")
    px_per_mm = geom["display_width_pix"] / geom["screen_width"]
    lost = ~d["status"] | ~np.isfinite(d["x"]) | ~np.isfinite(d["y"])
    x = np.where(lost, np.nan, geom["display_width_pix"] / 2 + np.tan(np.radians(d["x"].astype(float)))
                 * geom["eye_distance"] * px_per_mm)
    y = np.where(lost, np.nan, geom["display_height_pix"] / 2 + np.tan(np.radians(d["y"].astype(float)))
                 * geom["eye_distance"] * px_per_mm)
    t = (d["t"] - d["t"][0]) * 1000.0
    labels = np.array([IRF_CODES[int(e)] for e in d["evt"]], dtype=object)
    return {"name": name, "t": np.round(t, 3), "x": x, "y": y, "valid": ~lost, "labels": labels}


# ---------------------------------------------------------------------------------------------------- detectors
def run_ours(rec: dict, geom: dict) -> pd.DataFrame:
    pupil = np.where(rec["valid"], 1.0, np.nan)
    r = EyeTrackingRecording(rec["t"], pupil, pupil, rec["x"], rec["y"], rec["valid"],
                             resolution=(geom["display_width_pix"], geom["display_height_pix"]),
                             source=f"IRF {rec['name']}", metadata={"pixels_per_degree": 1.0 / deg_per_px(geom)})
    return detect_events(r)


REMODNAV_LABELS = {"FIXA": "fixation", "PURS": "pursuit", "SACC": "saccade", "ISAC": "saccade", "HPSO": "pso",
                   "IHPS": "pso", "LPSO": "pso", "ILPS": "pso"}


def run_remodnav(rec: dict, geom: dict) -> pd.DataFrame:
    import logging

    from remodnav.clf import EyegazeClassifier

    logging.getLogger("remodnav").setLevel(logging.ERROR)
    clf = EyegazeClassifier(px2deg=deg_per_px(geom), sampling_rate=1000.0)
    data = np.rec.fromarrays([rec["x"], rec["y"]], names="x,y")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = clf(clf.preproc(data))
    step = 1.0  # ms per sample: REMoDNaV reports times as sample index / rate, end exclusive
    rows = [(REMODNAV_LABELS.get(e["label"], "undefined"), e["start_time"] * 1000.0,
             e["end_time"] * 1000.0 - step) for e in events]
    return pd.DataFrame(rows, columns=["event", "onset_ms", "offset_ms"])


def run_pymovements(rec: dict, geom: dict, method: str, smooth: bool = False) -> pd.DataFrame:
    import pymovements as pm

    exp = pm.gaze.Experiment(
        screen_width_px=int(geom["display_width_pix"]), screen_height_px=int(geom["display_height_pix"]),
        screen_width_cm=geom["screen_width"] / 10, screen_height_cm=geom["screen_height"] / 10,
        distance_cm=geom["eye_distance"] / 10, origin="upper left", sampling_rate=1000.0)
    frame = pd.DataFrame({"time": np.round(rec["t"]).astype(np.int64), "x": rec["x"], "y": rec["y"]})
    gaze = pm.gaze.from_pandas(frame, experiment=exp, time_column="time", time_unit="ms",
                               pixel_columns=["x", "y"])
    gaze.pix2deg()
    if smooth:  # the velocity filter of Nyström & Holmqvist (2010): Savitzky–Golay, order 2, 21 ms at 1000 Hz
        gaze.pos2vel(method="savitzky_golay", window_length=21, degree=2)
    else:  # pymovements' default: the five-point difference
        gaze.pos2vel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gaze.detect(method)
    ev = gaze.events.frame.to_pandas()
    fix = pd.DataFrame({"event": "fixation", "onset_ms": ev["onset"].astype(float),
                        "offset_ms": ev["offset"].astype(float) - 1.0})  # pymovements: offset exclusive
    # saccade samples as Salvucci & Goldberg define them for each algorithm
    t = rec["t"]
    in_fix = labels_from_events(t, fix) == "fixation"
    if method == "ivt":
        vel = np.stack(gaze.samples["velocity"].to_numpy())
        saccade = rec["valid"] & (np.hypot(vel[:, 0], vel[:, 1]) > 20.0) & ~in_fix
    else:
        saccade = rec["valid"] & ~in_fix
    sac = events_from_sample_labels(t, np.where(saccade, "saccade", "undefined"))
    return pd.concat([fix, sac], ignore_index=True).sort_values("onset_ms", kind="stable").reset_index(drop=True)


def detect(name: str, rec: dict, geom: dict) -> pd.DataFrame:
    if name == "ours":
        return run_ours(rec, geom)
    if name == "remodnav":
        return run_remodnav(rec, geom)
    return run_pymovements(rec, geom, name.split("_")[1], smooth=name.endswith("_sg"))


# ---------------------------------------------------------------------------------------------------- scoring
def score(recs: list[dict], tables: dict[str, list[pd.DataFrame]]) -> dict:
    truth_labels = [r["labels"] for r in recs]
    truth_events = [events_from_sample_labels(r["t"], r["labels"]) for r in recs]
    out = {}
    for det, per_rec in tables.items():
        labels = [labels_from_events(r["t"], ev, PAINT_ORDER) for r, ev in zip(recs, per_rec)]
        # event tables rebuilt from the painted labels: one label per sample, as the coders' are
        events = [events_from_sample_labels(r["t"], lab) for r, lab in zip(recs, labels)]
        res = {"kappa": {c: round(sample_kappa(truth_labels, labels, c), 4) for c in ("fixation", "saccade", "pso")},
               "events": {c: {k: round(v, 4) for k, v in event_agreement(truth_events, events, c).items()}
                          for c in ("fixation", "saccade", "pso")},
               "per_recording_kappa": {
                   r["name"]: {c: round(sample_kappa([r["labels"]], [lab], c), 4) for c in ("fixation", "saccade")}
                   for r, lab in zip(recs, labels)},
               "samples_labelled": {c: int(sum((lab == c).sum() for lab in labels))
                                    for c in ("fixation", "saccade", "pso", "pursuit", "blink", "undefined")}}
        out[det] = res
    out["coders"] = {"samples_labelled": {c: int(sum((lab == c).sum() for lab in truth_labels))
                                          for c in ("fixation", "saccade", "pso", "pursuit", "blink", "undefined")},
                     "events": {c: int(sum((ev["event"] == c).sum() for ev in truth_events))
                                for c in ("fixation", "saccade", "pso", "blink")}}
    return out


def figure(path: Path, scores: dict, rec: dict, tables: dict, window_ms=(21_000.0, 23_000.0)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"fixation": "#4c72b0", "saccade": "#dd8452", "pso": "#55a868", "pursuit": "#8172b3",
               "blink": "#333333", "undefined": "#ffffff"}
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    dets = list(tables)
    xs = np.arange(len(dets))
    for k, (cls, off) in enumerate((("fixation", -0.2), ("saccade", 0.2))):
        vals = [scores[d]["kappa"][cls] for d in dets]
        ax0.bar(xs + off, vals, width=0.38, label=f"{cls} kappa", color=colours[cls])
        for x, v in zip(xs + off, vals):
            ax0.text(x, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax0.set_xticks(xs, [d.replace("pymovements_", "pm ").replace("_", " ") for d in dets], fontsize=8)
    ax0.set_ylim(0, 1.05)
    ax0.set_ylabel("Cohen's kappa vs coders (pooled, S1 S2 S4 S5 S6)")
    ax0.legend(fontsize=8, loc="upper right")
    ax0.set_title("IRF lookAtPoint_EL, EyeLink 1000 Hz")

    t = rec["t"]
    sel = (t >= window_ms[0]) & (t <= window_ms[1])
    speed = np.hypot(np.gradient(rec["x"]), np.gradient(rec["y"])) * 1000.0 * deg_per_px(geometry())
    ax1.plot(t[sel] / 1000, speed[sel], color="k", lw=0.6)
    top = np.nanmax(speed[sel]) if sel.any() else 1.0
    ax1.set_yticks(np.arange(0, top, 200))
    ax1.set_ylabel("speed (°/s, central difference)")
    ax1.set_xlabel(f"time in {rec['name']} (s)")
    rows = [("coders", rec["labels"])] + [(d, labels_from_events(t, tables[d][0], PAINT_ORDER)) for d in dets]
    for i, (name, lab) in enumerate(rows):
        y0 = top * (1.05 + 0.09 * i)
        for ev in events_from_sample_labels(t[sel], lab[sel]).itertuples():
            ax1.fill_between([ev.onset_ms / 1000, (ev.offset_ms + 1) / 1000], y0, y0 + top * 0.07,
                             color=colours[ev.event], lw=0)
        ax1.text(t[sel][0] / 1000, y0 + top * 0.01, name.replace("pymovements_", "pm ").replace("_", " ") + " ",
                 ha="right", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in ("fixation", "saccade", "pso", "pursuit",
                                                                           "blink")]
    ax1.legend(handles, ["fixation", "saccade", "PSO", "pursuit", "blink"], fontsize=7, ncol=5, loc="upper center",
               bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "pandas", "remodnav", "pymovements", "polars"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--repeats", type=int, default=1, help="accepted for run_all.py; the scores are exact")
    args = parser.parse_args(argv)
    geom = geometry()
    recs = [load_irf(n, geom) for n in RECORDINGS]
    tables: dict[str, list[pd.DataFrame]] = {d: [] for d in args.detectors}
    seconds: dict[str, float] = {d: 0.0 for d in args.detectors}
    for rec in recs:
        for d in args.detectors:
            start = time.perf_counter()
            tables[d].append(detect(d, rec, geom))
            seconds[d] += time.perf_counter() - start
    scores = score(recs, tables)
    payload = {
        "benchmark": "events",
        "data": {"set": "IRF lookAtPoint_EL (Zemblys et al. 2018)", "recordings": list(RECORDINGS),
                 "left_out": {"S3": "approximate saccade and blink codes (per the source)"},
                 "sampling_rate_hz": 1000.0, "geometry_mm_px": geom, "deg_per_px_centre": round(deg_per_px(geom), 5),
                 "samples": int(sum(len(r["t"]) for r in recs))},
        "scoring": {"kappa": "per-sample Cohen's kappa, class vs rest, pooled over recordings (Andersson et al. "
                             "2017); samples coded undefined left out",
                    "events": "one-to-one match by largest overlap; F1 = 2 matched / (reference + detected); "
                              "onset/offset differences detected - reference in ms (Hooge et al. 2018)"},
        "results": scores,
        "detector_seconds_total": {d: round(s, 2) for d, s in seconds.items()},
        "versions": versions(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()]},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "events.json").write_text(json.dumps(payload, indent=2) + "\n")
    figure(args.out / "events.png", scores, recs[0], {d: tables[d][:1] for d in args.detectors})
    for d in args.detectors:
        k = scores[d]["kappa"]
        e = scores[d]["events"]["saccade"]
        print(f"{d:18s} kappa fix {k['fixation']:.3f} sacc {k['saccade']:.3f} pso {k['pso']:.3f} | sacc F1 "
              f"{e['f1']:.3f} on {e['onset_median_abs_ms']} off {e['offset_median_abs_ms']} | "
              f"{seconds[d]:.1f} s")
    return payload


if __name__ == "__main__":
    main()
