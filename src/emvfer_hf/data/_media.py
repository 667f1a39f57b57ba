"""Media writers of the sample-data generator: mp4 via PyAV, jpg frame folders via OpenCV, and the Tobii Pro Lab
TSV export of a recording.

The TSV writer prefers the project's one writer ``emvfer_hf.eyetracking.write_tobii_tsv`` and falls back to a
minimal private writer of the same (newer, unit-suffixed) Pro Lab style (DATASETS.md §7) while that is absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

EYE_MOVEMENT_TYPE_NAMES = {0: "Fixation", 1: "Saccade", 2: "EyesNotFound"}


def write_mp4(path: os.PathLike, frames: Sequence[np.ndarray], fps: float = 15.0, crf: int = 17) -> Path:
    """Encode BGR uint8 frames (H, W, 3; even H and W) as H.264 mp4 (mpeg4 if libx264 is unavailable)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        try:
            stream = container.add_stream("libx264", rate=int(round(fps)))
            stream.options = {"crf": str(crf), "preset": "ultrafast"}
        except Exception:  # pragma: no cover - PyAV builds without libx264
            stream = container.add_stream("mpeg4", rate=int(round(fps)))
            stream.bit_rate = 4_000_000
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_jpgs(folder: os.PathLike, frames: Sequence[np.ndarray], names: Sequence[str], quality: int = 95) -> Path:
    """Write BGR frames as ``folder/<name>`` jpgs."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(frames, names):
        if not cv2.imwrite(str(folder / name), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"could not write {folder / name}")
    return folder


def _write_tobii_tsv_private(
    path, timestamps_ms, gaze_x_px, gaze_y_px, pupil_left_mm, pupil_right_mm, valid_left, valid_right,
    eye_movement_type=None, participant: str = "P01", resolution: Tuple[int, int] = (1920, 1080),
) -> Path:
    """Minimal Tobii Pro Lab "Data export" TSV (newer header style); invalid eyes leave gaze/pupil cells empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [
        "Recording timestamp [ms]", "Sensor", "Participant name", "Recording resolution width",
        "Recording resolution height", "Gaze point X [DACS px]", "Gaze point Y [DACS px]",
        "Pupil diameter left [mm]", "Pupil diameter right [mm]", "Validity left", "Validity right",
        "Eye movement type",
    ]
    n = len(timestamps_ms)
    types = eye_movement_type if eye_movement_type is not None else ["Unclassified"] * n
    lines = ["\t".join(header)]
    for i in range(n):
        vl, vr = bool(valid_left[i]), bool(valid_right[i])
        any_valid = vl or vr
        lines.append("\t".join([
            f"{timestamps_ms[i]:.3f}", "Eye Tracker", participant, str(resolution[0]), str(resolution[1]),
            f"{gaze_x_px[i]:.1f}" if any_valid else "", f"{gaze_y_px[i]:.1f}" if any_valid else "",
            f"{pupil_left_mm[i]:.3f}" if vl else "", f"{pupil_right_mm[i]:.3f}" if vr else "",
            "Valid" if vl else "Invalid", "Valid" if vr else "Invalid", str(types[i]),
        ]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_tobii_tsv(path, *args, **kwargs) -> Path:
    """Write a Tobii Pro Lab TSV with the project's writer when present, else with the private fallback."""
    try:
        from emvfer_hf.eyetracking import write_tobii_tsv as project_writer
    except ImportError:
        project_writer = None
    if project_writer is not None:
        project_writer(path, *args, **kwargs)
        return Path(path)
    return _write_tobii_tsv_private(path, *args, **kwargs)


def behaviour_to_tobii(codes: np.ndarray) -> list:
    """Canonical behaviour codes (fixation 0 / saccade 1 / blink 2) → Pro Lab ``Eye movement type`` values."""
    return [EYE_MOVEMENT_TYPE_NAMES[int(c)] for c in np.asarray(codes).round().astype(int)]


def read_video_frames(path: os.PathLike, indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """Decode a video file or a frame folder to RGB uint8 (T, H, W, 3) (all frames, or those at ``indices``,
    0-based positions in natural frame order)."""
    import cv2

    from ._utils import list_frames

    path = Path(path)
    if path.is_dir():
        files = list_frames(path)
        pick = files if indices is None else [files[i] for i in indices]
        return np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in pick])
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if indices is not None:
        frames = [frames[i] for i in indices]
    return np.stack(frames)
