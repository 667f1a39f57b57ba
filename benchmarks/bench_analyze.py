"""`emvfer analyze` on a 720p recording: the real-time factor, fp32 and bf16, at the tiny and the paper size.

    python benchmarks/bench_analyze.py            # → results/analyze_cpu.json
    python benchmarks/bench_analyze.py --quick    # 4 s of video, tiny model only (smoke test)

The video is the real face clip upscaled to 1280x720 and looped (as in bench_end_to_end.py), one face, 30 fps: 10 s
for the tiny model, 6 s for the paper size in fp32 and 4 s in bf16 (bf16 is slow on CPUs without native bf16). The
analysis runs with the defaults (2 s windows every 1 s, batch 8) and random weights. The real-time factor is
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
from common import RESULTS_DIR, machine_info, mert_config, write_result  # noqa: E402


def run_one(video: Path, seconds: float, size: str, dtype: str) -> dict:
    import torch

    from emvfer_hf import MERTForVideoClassification, MERTVideoProcessor
    from emvfer_hf.analysis import analyze_video

    torch.manual_seed(0)
    config = mert_config(size)
    model = MERTForVideoClassification(config).eval()
    model.set_eye_prior_from_series(torch.randn(8, config.eye_sequence_length, 5))
    if size == "tiny":
        processor = MERTVideoProcessor(num_frames=config.num_frames, size={"height": config.image_size,
                                       "width": config.image_size}, eye_sequence_length=config.eye_sequence_length)  # fmt: skip
    else:
        processor = MERTVideoProcessor()
    in_model = []
    forward = model.forward

    def timed_forward(*args, **kwargs):
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        in_model.append(time.perf_counter() - start)
        return out

    model.forward = timed_forward
    start = time.perf_counter()
    timeline = analyze_video(video, model, processor, dtype=dtype, progress=False)
    wall = time.perf_counter() - start
    windows = int((timeline.track_id >= 0).sum())
    return {
        "size": size, "dtype": dtype, "video_s": seconds, "wall_s": round(wall, 2), "model_s": round(sum(in_model), 2),
        "pipeline_s": round(wall - sum(in_model), 2), "windows": windows, "model_calls": len(in_model),
        "model_s_per_window": round(sum(in_model) / max(1, windows), 3),
        "real_time_factor": round(seconds / wall, 3),
        "pipeline_real_time_factor": round(seconds / max(1e-9, wall - sum(in_model)), 2),
    }  # fmt: skip


def markdown(result: dict) -> str:
    lines = ["| size | dtype | video (s) | wall (s) | in the model (s) | model s / window | face + eyes + decode (s) | "
             "real-time factor |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["runs"]:
        lines.append(f"| {r['size']} | {r['dtype']} | {r['video_s']:.0f} | {r['wall_s']:.1f} | {r['model_s']:.1f} | "
                     f"{r['model_s_per_window']:.2f} | {r['pipeline_s']:.1f} | **{r['real_time_factor']:.2f}x** |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 s of video, tiny model (smoke test)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 720p video")
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    seconds = 4.0 if args.quick else args.seconds
    # (size, dtype, seconds of video): the paper size runs on shorter cuts, bf16 shortest (slow without native bf16)
    runs = [("tiny", "fp32", seconds)] if args.quick else [
        ("tiny", "fp32", seconds), ("tiny", "bf16", seconds), ("paper", "fp32", min(seconds, 6.0)),
        ("paper", "bf16", min(seconds, 4.0))]  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, dtype, length in runs:
            video = make_720p_clip(Path(tmp) / f"clip_720p_{length:g}s.mp4", seconds=length)
            results.append(run_one(video, length, size, dtype))
            print(results[-1], flush=True)
    payload = {"benchmark": "analyze", "quick": args.quick, "video": "carphone upscaled to 1280x720, 30 fps, looped",
               "window_s": 2.0, "stride_s": 1.0, "batch_size": 8, "runs": results, "machine": machine_info("cpu")}  # fmt: skip
    if not args.quick:
        write_result(args.out_dir, "analyze_cpu", payload)
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
