"""`emvfer analyze` on a 720p recording: the real-time factor at the paper size, one and two faces, by dtype.

    python benchmarks/bench_analyze.py            # → results/analyze_cpu.json
    python benchmarks/bench_analyze.py --quick    # 4 s of video, tiny model only (smoke test)

The one-face video is the real face clip upscaled to 1280x720 and looped (as in bench_end_to_end.py), 30 fps; the
two-face video puts two copies of it side by side (each 640 wide, the right one mirrored and played backwards). At
the paper size: `--dtype auto` (the default: bf16 weights where the CPU has native bf16) on 10 s with one face and
with two faces, then one face on 4 s in bf16 autocast and in fp32. The analysis runs with the defaults (2 s windows
every 1 s, one window per model call on the CPU) and random weights, the model in the PEML stage (prompts on, as deployed). The real-time factor is
seconds of video per second of wall time (>= 1: faster than real time). The time inside the model's forward is
measured apart, so that the face + eye pipeline's share can be read off: `pipeline_s = wall_s - model_s`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_end_to_end import make_720p_clip  # noqa: E402
from common import RESULTS_DIR, carphone_path, machine_info, mert_config, write_result  # noqa: E402


def make_two_face_clip(path: Path, seconds: float = 10.0, fps: int = 30) -> Path:
    """A 1280x720 clip with two faces: the real face clip, aspect kept, in each half (the right one mirrored and
    running backwards, so the two differ), looped back and forth."""
    import cv2
    import numpy as np

    from emvfer_hf.data._media import write_mp4
    from emvfer_hf.video_io_mert import decode_video

    decoded = decode_video(carphone_path())
    frames = [decoded.frames[i] for i in sorted(decoded.frames)]
    loop = frames + frames[::-1]
    height = round(640 * frames[0].shape[0] / frames[0].shape[1])
    top = (720 - height) // 2
    out = []
    for i in range(int(seconds * fps)):
        canvas = np.zeros((720, 1280, 3), np.uint8)
        left = cv2.resize(loop[i % len(loop)], (640, height), interpolation=cv2.INTER_CUBIC)
        right = cv2.resize(loop[(len(loop) - 1 - i) % len(loop)], (640, height), interpolation=cv2.INTER_CUBIC)
        canvas[top : top + height, :640], canvas[top : top + height, 640:] = left, right[:, ::-1]
        out.append(canvas[..., ::-1])
    return write_mp4(path, out, fps=fps)


def run_one(video: Path, seconds: float, size: str, dtype: str, faces: int = 1) -> dict:
    import torch

    from emvfer_hf import MERTForVideoClassification, MERTVideoProcessor
    from emvfer_hf.analysis import analyze_video

    torch.manual_seed(0)
    config = mert_config(size)
    model = MERTForVideoClassification(config).eval()
    model.set_eye_prior_from_series(torch.randn(8, config.eye_sequence_length, 5))
    model.set_training_stage("peml")  # as deployed after fine-tuning: the prompts on
    if size == "tiny":
        processor = MERTVideoProcessor(num_frames=config.num_frames, size={"height": config.image_size,
                                       "width": config.image_size}, eye_sequence_length=config.eye_sequence_length)  # fmt: skip
    else:
        processor = MERTVideoProcessor()
    import os

    load_before = round(os.getloadavg()[0], 2)
    in_model, started = [], []
    # forward hooks time each model call; they travel with the bf16 / int8 copy the analysis makes of the model
    model.register_forward_pre_hook(lambda module, args: started.append(time.perf_counter()))
    model.register_forward_hook(lambda module, args, output: in_model.append(time.perf_counter() - started.pop()))
    start = time.perf_counter()
    timeline = analyze_video(video, model, processor, dtype=dtype, max_faces=faces, progress=False)
    wall = time.perf_counter() - start
    windows = int((timeline.track_id >= 0).sum())
    from emvfer_hf.precision import resolve_dtype

    return {
        "size": size, "dtype": dtype, "resolved_dtype": resolve_dtype(dtype), "faces": faces,
        "tracks": int(timeline.attrs.get("num_tracks", 0)), "load_1min_before": load_before, "video_s": seconds, "wall_s": round(wall, 2), "model_s": round(sum(in_model), 2),
        "pipeline_s": round(wall - sum(in_model), 2), "windows": windows, "model_calls": len(in_model),
        "model_s_per_window": round(sum(in_model) / max(1, windows), 3),
        "real_time_factor": round(seconds / wall, 3),
        "pipeline_real_time_factor": round(seconds / max(1e-9, wall - sum(in_model)), 2),
    }  # fmt: skip


def markdown(result: dict) -> str:
    lines = ["| size | dtype | faces | video (s) | face windows | wall (s) | in the model (s) | model s / window | "
             "face + eyes + decode (s) | real-time factor |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["runs"]:
        dtype = r["dtype"] + (f" → {r['resolved_dtype']}" if r.get("resolved_dtype", r["dtype"]) != r["dtype"] else "")
        lines.append(f"| {r['size']} | {dtype} | {r.get('faces', 1)} | {r['video_s']:.0f} | {r['windows']} | "
                     f"{r['wall_s']:.1f} | {r['model_s']:.1f} | {r['model_s_per_window']:.2f} | {r['pipeline_s']:.1f} | "
                     f"**{r['real_time_factor']:.2f}x** |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 s of video, tiny model (smoke test)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 720p video")
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    from emvfer_hf.inference import default_batch_size

    seconds = 4.0 if args.quick else args.seconds
    # (size, dtype, faces, seconds of video): the slower dtypes on a shorter cut
    runs = [("tiny", "auto", 1, seconds), ("tiny", "auto", 2, seconds)] if args.quick else [
        ("paper", "auto", 1, seconds), ("paper", "auto", 2, seconds), ("paper", "bf16-autocast", 1, min(seconds, 4.0)),
        ("paper", "fp32", 1, min(seconds, 4.0))]  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, dtype, faces, length in runs:
            make = make_720p_clip if faces == 1 else make_two_face_clip
            video = Path(tmp) / f"clip_720p_{faces}faces_{length:g}s.mp4"
            if not video.exists():
                make(video, seconds=length)
            results.append(run_one(video, length, size, dtype, faces))
            print(results[-1], flush=True)
    payload = {"benchmark": "analyze", "quick": args.quick, "video": "carphone upscaled to 1280x720, 30 fps, looped",
               "window_s": 2.0, "stride_s": 1.0, "batch_size": default_batch_size("cpu"), "runs": results, "machine": machine_info("cpu")}  # fmt: skip
    if not args.quick:
        write_result(args.out_dir, "analyze_cpu", payload)
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
