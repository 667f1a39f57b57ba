"""Live expression recognition: a camera, a stream or a file, predicted every stride over a rolling buffer.

``emvfer live --source 0|URL|FILE --model DIR`` reads frames as they come, keeps the last ``window`` seconds per face
(:class:`~emvfer_hf.analysis.TimelineAnalyzer` holds only what the pending windows need), and every ``stride``
seconds prints each face's label, its eye-signal weight W and the latency from the window's last frame to its
prediction (or draws them on the picture with ``--show``). A file source is paced at the file's own frame rate, as
a camera would deliver it.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Callable, Iterator, Optional

import numpy as np

from .analysis import TimelineAnalyzer
from .video_io_mert import DEFAULT_FPS, check_frame_size, open_stream


def open_source(source: str, default_fps: float = DEFAULT_FPS) -> tuple[Iterator[np.ndarray], float, str]:
    """``(frames, fps, kind)`` of a live source: a camera index ("0"), a stream URL or a video file.

    Frames are RGB uint8 (H, W, 3), upright (a phone clip's rotation applied); files and streams are read by the
    package's decoder (:func:`~emvfer_hf.video_io_mert.open_stream`). ``kind`` is "camera", "stream" or "file".

    Raises:
        FileNotFoundError / ValueError naming the source when it cannot be opened or has no video.
    """
    from pathlib import Path

    source = str(source)
    if source.isdigit():
        return _open_camera(int(source), default_fps)
    if "://" not in source and not Path(source).exists():
        raise FileNotFoundError(f"{source}: no such file (and not a camera index or a URL)")
    frames, fps = open_stream(source, default_fps)
    return frames, fps, "stream" if "://" in source else "file"


def _open_camera(index: int, default_fps: float):
    import cv2

    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise ValueError(f"camera {index}: cannot be opened (no such device, or it is in use)")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or default_fps)

    def frames():
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return frames(), fps, "camera"


def format_row(row: dict) -> str:
    """One printed line per prediction: time span, track, label and score, W, latency."""
    span = f"[{row['start_s']:7.2f} – {row['end_s']:7.2f} s]"
    if row.get("reason"):
        return f"{span} {row['reason']}"
    w = row.get("instruction_weight")
    w = "" if w is None or (isinstance(w, float) and np.isnan(w)) else f"  W={w:.3f}"
    return (f"{span} face {row['track_id']}: {row['label']} {row['score']:.3f}{w}  "
            f"blinks {row['blinks']}  latency {row['latency_s']:.3f} s")  # fmt: skip


def _check_gui() -> None:
    import re

    import cv2

    if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        raise ValueError("--show needs an OpenCV with a GUI (pip install opencv-python); this one is headless")


def run_live(
    source: str,
    model,
    processor,
    window: float = 2.0,
    stride: float = 1.0,
    max_faces: Optional[int] = None,
    device: str = "cpu",
    dtype: str = "auto",
    pace: Optional[bool] = None,
    show: bool = False,
    max_seconds: Optional[float] = None,
    on_row: Optional[Callable[[dict], None]] = None,
) -> list[dict]:
    """Predict a live source every ``stride`` seconds; returns every row (as :func:`~emvfer_hf.analysis.analyze_video`
    rows, with ``latency_s``).

    Args:
        source: a camera index ("0"), a stream URL or a video file.
        pace: deliver a file's frames at its own rate (default: True for files; cameras and streams pace
            themselves).
        show: draw boxes, labels and W on the picture in a window (needs an OpenCV with a GUI).
        max_seconds: stop after this much video.
        on_row: called with each row as it is predicted (default: print it).

    Ctrl-C (or SIGTERM under the CLI) stops it: the windows done are kept and a last row's ``reason`` says
    ``interrupted at ... s``; q in the ``show`` window ends it normally.
    """
    frames, fps, kind = open_source(source, float(processor.default_fps))
    pace = (kind == "file") if pace is None else bool(pace)
    if show:
        _check_gui()
    on_row = on_row or (lambda row: print(format_row(row), flush=True))
    analyzer = TimelineAnalyzer(model, processor, fps, window, stride, 0.0, max_faces, 1, device, dtype,
                                box_history_s=2.0)
    rows: list[dict] = []
    latest: dict[int, dict] = {}
    started = time.perf_counter()
    count = 0

    def emit(new_rows):
        for row in new_rows:
            rows.append(row)
            if row["track_id"] >= 0:
                latest[int(row["track_id"])] = row
            on_row(row)

    interrupted = None
    try:
        for frame in frames:
            t = count / fps
            if max_seconds is not None and t >= max_seconds:
                break
            if count == 0:
                check_frame_size(frame, str(source))
            if pace:
                delay = started + t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            emit(analyzer.feed([frame]))
            count += 1
            if show and _show(frame, analyzer, latest, count - 1):
                break  # q pressed: the user's way to end
    except (ValueError, OSError, RuntimeError) as error:
        if count == 0:
            raise
        warnings.warn(f"{source}: the stream ended early at {count / fps:.2f} s: {error} (the rows before it are kept)",
                      stacklevel=2)  # fmt: skip
    except KeyboardInterrupt:
        interrupted = f"interrupted at {count / fps:.2f} s (the rows before it are kept)"
        print(f"stopped: {interrupted}", file=sys.stderr)
    if count == 0:
        raise ValueError(f"{source}: delivered no frames")
    emit(analyzer.finish())
    if interrupted:
        emit([{"track_id": -1, "start_s": round(count / fps, 3), "end_s": round(count / fps, 3), "label": "",
               "reason": interrupted}])  # fmt: skip
    return rows


def _show(frame: np.ndarray, analyzer: TimelineAnalyzer, latest: dict, index: int) -> bool:
    """Draw the boxes and labels in the window; whether q was pressed."""
    import cv2

    canvas = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    for track, boxes in analyzer.track_boxes().items():
        box = boxes.get(index)
        if box is None:
            continue
        x1, y1, x2, y2 = [int(round(v)) for v in box]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), 2)
        row = latest.get(track)
        text = f"#{track}" + ("" if row is None else f" {row['label']} {row['score']:.2f} W={row['instruction_weight']}")
        cv2.putText(canvas, text, (x1, max(14, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 200, 0), 2, cv2.LINE_AA)
    cv2.imshow("emvfer live", canvas)
    return cv2.waitKey(1) & 0xFF == ord("q")


__all__ = ["format_row", "open_source", "run_live"]
