"""Media helpers of the sample-data generator and the preprocessing cache: mp4 via PyAV, jpg frame folders via
OpenCV, and decoding of either back to frames. (Tobii TSVs are written by ``emvfer_hf.eyetracking.write_tobii_tsv``.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def write_mp4(path: os.PathLike, frames: Sequence[np.ndarray], fps: float = 15.0, crf: int = 17) -> Path:
    """Encode BGR uint8 frames (H, W, 3; even H and W) as H.264 mp4 at quality ``crf`` (the package's one encoder,
    :class:`~emvfer_hf.video_io_mert.VideoWriter`: MPEG-4 part 2 at 4 Mbit/s where FFmpeg lacks libx264)."""
    from ..video_io_mert import VideoWriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps, pixel_format="bgr24", x264_options={"crf": str(crf), "preset": "ultrafast"},
                     fallback_bit_rate=4_000_000) as writer:  # fmt: skip
        for frame in frames:
            writer.write(frame)
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


