"""End to end: `pipeline("video-classification")` on a 10 s 720p clip and on the real 176x144 clip, split into
decode / face / eyes / model, at the paper configuration (random weights), on the CPU.

    python benchmarks/bench_end_to_end.py            # → results/end_to_end.json
    python benchmarks/bench_end_to_end.py --quick    # one timed round, tiny model (smoke test)

The stages are timed as the processor runs them (the same calls, one after the other): decoding the frames the
processor keeps (T model frames + the eye frames), the face backend on those frames (MTCNN + face mesh), the visual eye
extractor on the eye frames with the detections reused, and the model forward. The whole pipeline call is timed too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, carphone_path, machine_info, write_result  # noqa: E402


def make_720p_clip(path: Path, seconds: float = 10.0, fps: int = 30) -> Path:
    """A 10 s 1280x720 clip made of the real face clip, upscaled and looped back and forth."""
    import cv2

    from emvfer_hf.data._media import write_mp4
    from emvfer_hf.video_io_mert import decode_video

    decoded = decode_video(carphone_path())
    frames = [decoded.frames[i] for i in sorted(decoded.frames)]
    loop = frames + frames[::-1]
    count = int(seconds * fps)
    big = [cv2.resize(loop[i % len(loop)], (1280, 720), interpolation=cv2.INTER_CUBIC)[..., ::-1] for i in range(count)]
    return write_mp4(path, big, fps=fps)


def time_stages(video: Path, processor, model, reps: int) -> dict:
    import torch

    from emvfer_hf.faces_mert import run_face_backend
    from emvfer_hf.video_io_mert import decode_video
    from emvfer_hf.video_processing_mert import (
        eye_frame_indices,
        sample_segment_indices,
    )

    stages = {"decode": [], "face": [], "eyes": [], "model": [], "pipeline_total": []}
    from transformers import pipeline

    classifier = pipeline("video-classification", model=model, video_processor=processor)
    for rep in range(reps + 1):  # the first round warms up (MTCNN and model load, allocator)
        plan = {}

        def indices_fn(total):
            plan["model"] = sample_segment_indices(total, processor.num_frames)
            plan["eyes"] = eye_frame_indices(total, processor.eye_frames)
            return np.union1d(plan["model"], plan["eyes"])

        t0 = time.perf_counter()
        decoded = decode_video(str(video), indices_fn=indices_fn)
        t1 = time.perf_counter()
        needed = np.union1d(plan["model"], plan["eyes"])
        track = run_face_backend(processor.face_backend, [decoded.frames[i] for i in needed])
        t2 = time.perf_counter()
        where = {int(i): k for k, i in enumerate(needed)}
        eye_rows = [where[int(i)] for i in plan["eyes"]]
        processor.eye_extractor([decoded.frames[int(i)] for i in plan["eyes"]], fps=decoded.fps,
                                faces=track.select(eye_rows))  # fmt: skip
        t3 = time.perf_counter()
        inputs = processor(str(video), return_tensors="pt")
        t4 = time.perf_counter()
        with torch.inference_mode():
            model(**inputs)
        t5 = time.perf_counter()
        classifier(str(video))
        t6 = time.perf_counter()
        if rep:
            for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t5 - t4, t6 - t5)):
                stages[name].append(seconds)
        del t4  # the processor call above only prepares the model input

    def summary(values):
        return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}

    result = {name: summary(values) for name, values in stages.items()}
    pre = sum(result[k]["median_s"] for k in ("decode", "face", "eyes"))
    result["decode_face_eyes_s"] = pre
    result["preprocessing_over_model"] = pre / result["model"]["median_s"]
    result["eye_frames"] = int(processor.eye_frames or 0)
    result["model_frames"] = int(processor.num_frames)
    return result


def markdown(result: dict) -> str:
    """The README table of one end-to-end result (seconds, medians)."""
    lines = [
        "| clip | decode | face | eyes | model | decode+face+eyes / model | whole pipeline call |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["clips"].items():
        lines.append(
            f"| {name} | {r['decode']['median_s']:.2f} s | {r['face']['median_s']:.2f} s | {r['eyes']['median_s']:.2f} s "
            f"| {r['model']['median_s']:.2f} s | {r['preprocessing_over_model']:.2f} | "
            f"{r['pipeline_total']['median_s']:.2f} s |"
        )
    first = next(iter(result["clips"].values()))
    lines.append("")
    lines.append(
        f"{result['size']} configuration, {first['model_frames']} model frames, {first['eye_frames']} eye frames, "
        f"median of {result['reps']} rounds after a warm-up round."
    )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, one timed round, only the real clip")
    parser.add_argument("--reps", "--repeats", dest="reps", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)

    import torch

    from emvfer_hf import MERTConfig, MERTForVideoClassification, MERTVideoProcessor

    torch.manual_seed(0)
    if args.quick:
        config = MERTConfig(num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, eye_sequence_length=16, head_hidden_size=16, num_labels=7)  # fmt: skip
        processor = MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, eye_sequence_length=16,
                                       eye_frames=16)  # fmt: skip
    else:
        config = MERTConfig(num_labels=7)  # the paper configuration
        processor = MERTVideoProcessor()  # its defaults: 16 frames of 224x224, 64 eye frames, L = 256
    model = MERTForVideoClassification(config).eval()
    model.set_eye_prior_from_series(torch.randn(8, config.eye_sequence_length, 5))  # every prior (features, mean, MVN)
    model.set_training_stage("peml")
    reps = 1 if args.quick else args.reps

    clips = {"176x144 real clip (4 s)": carphone_path()}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.quick:
            clips["1280x720 clip (10 s)"] = make_720p_clip(Path(tmp) / "clip720.mp4")
        results = {name: time_stages(path, processor, model, reps) for name, path in clips.items()}
    payload = {"machine": machine_info("cpu"), "size": "tiny" if args.quick else "paper", "reps": reps,
               "clips": results}  # fmt: skip
    path = write_result(Path(args.out), "end_to_end_quick" if args.quick else "end_to_end", payload)
    for name, r in results.items():
        print(f"{name}: decode {r['decode']['median_s']:.2f}s  face {r['face']['median_s']:.2f}s  "
              f"eyes {r['eyes']['median_s']:.2f}s  model {r['model']['median_s']:.2f}s  "
              f"pipeline {r['pipeline_total']['median_s']:.2f}s  (decode+face+eyes)/model "
              f"{r['preprocessing_over_model']:.2f}")  # fmt: skip
    print(f"written {path}")
    return payload


if __name__ == "__main__":
    main()
