"""Plots a person can look at: the five canonical eye-movement channels over time."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .eye_movement_mert import BLINK, EYE_MOVEMENT_CHANNELS, SACCADE, EyeMovementSeries, runs
from .outputs import atomic_output


def write_eye_movements_csv(series: EyeMovementSeries, path) -> Path:
    """One row per time step: `time_s`, the five channels, `valid` (written under a partial name and renamed when
    complete: `path` is never a half-written file)."""
    path = Path(path)
    with atomic_output(path) as target, target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time_s", *EYE_MOVEMENT_CHANNELS, "valid"])
        for t, row, ok in zip(series.times_s, series.values, series.valid):
            writer.writerow([f"{t:.4f}", *(f"{v:.5f}" for v in row), int(ok)])
    return path


def plot_eye_movements(series: EyeMovementSeries, path, title: str | None = None) -> Path:
    """A PNG of the five channels over time, blinks shaded red, saccades shaded orange, invalid steps grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    t = series.times_s
    behaviour = series.behaviour_codes()
    shades = [
        (behaviour == BLINK, "tab:red", "blink"),
        (behaviour == SACCADE, "tab:orange", "saccade"),
        (~series.valid, "0.6", "no face / invalid"),
    ]
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    fig, axes = plt.subplots(5, 1, figsize=(10, 8), sharex=True)
    for channel, ax in enumerate(axes):
        ax.plot(t, series.values[:, channel], lw=1.0, color="tab:blue")
        ax.set_ylabel(EYE_MOVEMENT_CHANNELS[channel], rotation=0, ha="right", fontsize=9)
        for mask, color, label in shades:
            for k, (a, b) in enumerate(runs(mask)):
                ax.axvspan(t[a] - step / 2, t[b] + step / 2, color=color, alpha=0.25, lw=0,
                           label=label if channel == 0 and k == 0 else None)  # fmt: skip
    axes[-1].set_xlabel("time (s)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, loc="upper right", fontsize=8, ncol=3)
    fig.suptitle(title or "eye movements (canonical series)")
    fig.tight_layout()
    with atomic_output(path) as target:
        fig.savefig(target, dpi=100)
    plt.close(fig)
    return path
