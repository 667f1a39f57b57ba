"""Media helpers of the sample-data generator and the preprocessing cache: mp4 via PyAV, jpg frame folders via
OpenCV, and decoding of either back to frames. (Tobii TSVs are written by ``emvfer_hf.eyetracking.write_tobii_tsv``.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


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


