"""Training step: the PEML stage against full fine-tuning, batch 2 — time per step and peak memory.

Both run the same PEML-stage forward and loss (prompts on, final CE + the level losses [12]); they differ only in what
trains: "peml" trains what `set_training_stage("peml")` unfreezes (prompts, fusion, α, heads); "full" trains every
parameter. A step is forward + backward + AdamW step + zero_grad. Each mode runs in its own Python process so that
its peak RSS (`ru_maxrss`) is its own; on CUDA the peak allocated GPU memory is reported too.

    python benchmarks/bench_train_step.py --worker --mode peml   # one mode, prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import common

MODES = ("peml", "full")
BATCH_SIZE = 2


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


def worker(mode: str, size: str, device: str, warmup: int, reps: int) -> dict:
    import torch

    model = common.build_mert(size, stage="peml").to(device).train()
    if mode == "full":
        model.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    inputs = common.mert_inputs(model.config, BATCH_SIZE, device)
    labels = torch.arange(BATCH_SIZE, device=device) % common.NUM_LABELS
    rss_before = _rss_mib()
    sync = common.synchronizer(device)

    def step():
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for index in range(warmup + reps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    result = {
        "mode": mode,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "step": common.summarize(times),
        "rss_after_model_mib": round(rss_before, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
    }
    if device == "cuda":
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return result


def run(size: str = "paper", quick: bool = False, device: str = "cpu") -> dict:
    warmup, reps = (1, 1) if quick else (1, 3)
    modes = {}
    for mode in MODES:
        args = [sys.executable, str(Path(__file__).resolve()), "--worker", "--mode", mode, "--size", size,
                "--device", device, "--warmup", str(warmup), "--reps", str(reps)]  # fmt: skip
        modes[mode] = common.run_subprocess_json(args, timeout=1800)
    return {
        "benchmark": "train_step",
        "size": size,
        "device": device,
        "quick": quick,
        "batch_size": BATCH_SIZE,
        "dtype": "fp32",
        "warmup_steps": warmup,
        "timed_steps": reps,
        "modes": modes,
        "full_over_peml_time": round(modes["full"]["step"]["median_ms"] / modes["peml"]["step"]["median_ms"], 3),
        "machine": common.machine_info(device),
    }


def markdown(result: dict) -> str:
    lines = [
        f"Batch {result['batch_size']}, {result['dtype']}, {result['device']}; forward + backward + AdamW step.",
        "",
        "| mode | trainable params | s/step (median) | min–max s | peak RSS GiB | RSS after model build GiB |"
        + (" peak GPU GiB |" if result["device"] == "cuda" else ""),
        "|---|---|---|---|---|---|" + ("---|" if result["device"] == "cuda" else ""),
    ]
    for mode, r in result["modes"].items():
        s = r["step"]
        row = (
            f"| {'PEML stage' if mode == 'peml' else 'full fine-tuning'} | {r['trainable_parameters'] / 1e6:.2f}M | "
            f"{s['median_ms'] / 1000:.2f} | {s['min_ms'] / 1000:.2f}–{s['max_ms'] / 1000:.2f} | "
            f"{r['peak_rss_mib'] / 1024:.2f} | {r['rss_after_model_mib'] / 1024:.2f} |"
        )
        if "peak_gpu_memory_gib" in r:
            row += f" {r['peak_gpu_memory_gib']:.2f} |"
        lines.append(row)
    lines += ["", f"Full fine-tuning / PEML step time: {result['full_over_peml_time']:.2f}x."]
    return "\n".join(lines)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--size", choices=common.SIZES, default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(worker(args.mode, args.size, args.device, args.warmup, args.reps)))


if __name__ == "__main__":
    _main()
