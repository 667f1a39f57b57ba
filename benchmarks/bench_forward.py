"""Model forward (inference) speed: MERT against its peers, side by side in one process.

Compared, all with random weights and SDPA attention, under `torch.inference_mode()`:
- `mert`: MERT at the configured size in the PEML stage (prompts on, prior set), `MERTForVideoClassification`;
- (a) `bare_encoders`: MERT's own video + eye encoders alone (no prompts, fusion or head) — our lower bound;
- (b) `videomae`: transformers' `VideoMAEForVideoClassification`, ViT-B, 16 frames (what a user would pick instead);
- (c) `frame_vit_meanpool`: transformers' `ViTModel` over the 16 frames + mean pooling + linear classifier.

CPU: batch 1 in fp32, bf16 autocast ("bf16") and bf16 weights ("bf16w": every model cast to bfloat16, MERT as
`emvfer_hf.precision.inference_model` casts it, the default where the CPU has native bf16); batch 4 in bf16 weights.
CUDA: batch 1, 8 and 32 in bf16 autocast, with peak memory and MFU
(model FLOPs utilisation: counted FLOPs per second / the GPU's dense bf16 peak). Rounds are interleaved (see
`common.time_interleaved`).
"""

from __future__ import annotations

import contextlib
import copy

import torch

import common

MODELS = ("mert", "bare_encoders", "videomae", "frame_vit_meanpool")


def _autocast(device: str, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: the labels of the dtypes compared
DTYPE_LABELS = {"fp32": "fp32", "bf16": "bf16 autocast", "bf16w": "bf16 weights"}


def _plan(device: str, quick: bool) -> dict:
    """Batch sizes, the dtypes measured at each, warm-up and timed rounds."""
    if device == "cuda":
        batches = (1, 8) if quick else (1, 8, 32)
        return {"batches": batches, "dtypes": {b: ("bf16",) for b in batches}, "warmup": 2 if quick else 3,
                "reps": 3 if quick else 10}  # fmt: skip
    dtypes = {1: ("fp32", "bf16", "bf16w")} | ({} if quick else {4: ("bf16w",)})
    return {"batches": tuple(dtypes), "dtypes": dtypes, "warmup": 1, "reps": 1 if quick else 4}


def _bf16_weight_calls(models: dict, calls: dict, inputs: dict) -> dict:
    """The four forwards with bfloat16 weights: MERT as `precision.inference_model` casts it (eye prior fp32; it
    casts its fp32 inputs itself), the peers cast whole and given bf16 frames."""
    from emvfer_hf.precision import inference_model

    mert = inference_model(models["mert"], "bf16")
    videomae = copy.deepcopy(models["videomae"]).to(torch.bfloat16)
    frame_vit = copy.deepcopy(models["frame_vit_meanpool"]).to(torch.bfloat16)
    bare = common.BareEncoders(mert)
    pixels = inputs["pixel_values"].to(torch.bfloat16)
    bf16_inputs = dict(inputs, pixel_values=pixels, eye_movement_values=inputs["eye_movement_values"].to(torch.bfloat16))
    return {
        "mert": lambda: mert(**inputs).logits,
        "bare_encoders": lambda: bare(**bf16_inputs),
        "videomae": lambda: videomae(pixel_values=pixels).logits,
        "frame_vit_meanpool": lambda: frame_vit(pixels),
    }


def _agreement(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """How far bf16 logits are from fp32 ones: top-1 agreement and the largest difference relative to the spread."""
    reference, other = reference.float(), other.float()
    return {
        "top1_agree": int((reference.argmax(-1) == other.argmax(-1)).sum()),
        "samples": int(reference.shape[0]),
        "max_abs_logit_diff": float((reference - other).abs().max()),
        "logit_std": float(reference.std()),
    }


def run(size: str = "paper", quick: bool = False, device: str = "cpu") -> dict:
    plan = _plan(device, quick)
    flops = common.clip_flops(size)["models"]
    runs = []
    for batch_size in plan["batches"]:
        models, fp32_calls = common.forward_fns(size, batch_size, device)
        logits = {}
        for dtype in plan["dtypes"][batch_size]:
            if dtype == "bf16w":
                inputs = common.mert_inputs(models["mert"].config, batch_size, device)
                calls = _bf16_weight_calls(models, fp32_calls, inputs)
            else:
                calls = fp32_calls
            with torch.inference_mode(), _autocast(device, dtype):
                logits[dtype] = calls["mert"]()
                stats = common.time_interleaved(calls, plan["warmup"], plan["reps"], device)
                memory = _peak_memory(calls, device)
            entry = {"batch_size": batch_size, "dtype": dtype, "models": {}}
            for name in MODELS:
                seconds = stats[name]["median_ms"] / 1000.0
                model_stats = dict(stats[name])
                model_stats["ms_per_clip"] = round(stats[name]["median_ms"] / batch_size, 3)
                model_stats["clips_per_s"] = round(batch_size / seconds, 3)
                model_stats["gflop_per_s"] = round(flops[name] * batch_size / seconds / 1e9, 2)
                if memory:
                    model_stats["peak_memory_gib"] = memory[name]
                peak = common.gpu_peak_bf16_tflops(torch.cuda.get_device_name(0)) if device == "cuda" else None
                if peak:
                    model_stats["mfu"] = round(flops[name] * batch_size / seconds / (peak * 1e12), 4)
                entry["models"][name] = model_stats
            entry["ratios"] = _ratios(entry["models"], "median_ms", flops)
            entry["ratios_of_min"] = _ratios(entry["models"], "min_ms", flops)  # robust to load from other work
            runs.append(entry)
        for dtype in ("bf16", "bf16w"):
            if "fp32" in logits and dtype in logits:
                key = "bf16_vs_fp32_mert_logits" if dtype == "bf16" else "bf16w_vs_fp32_mert_logits"
                runs[-1][key] = _agreement(logits["fp32"], logits[dtype])
        del models, calls, fp32_calls
    return {
        "benchmark": "forward",
        "size": size,
        "device": device,
        "quick": quick,
        "warmup_rounds": plan["warmup"],
        "timed_rounds": plan["reps"],
        "gflop_per_clip": {name: flops[name] / 1e9 for name in MODELS},
        "runs": runs,
        "bf16_speedup": _bf16_speedups(runs),
        "bf16_speedup_of_min": _bf16_speedups(runs, "min_ms"),
        "machine": common.machine_info(device),
    }


def _ratios(models: dict, statistic: str, flops: dict) -> dict:
    m = {name: models[name][statistic] for name in MODELS}
    return {
        "mert_over_bare_encoders": round(m["mert"] / m["bare_encoders"], 3),
        "mert_over_videomae": round(m["mert"] / m["videomae"], 3),
        "mert_over_frame_vit": round(m["mert"] / m["frame_vit_meanpool"], 3),
        "mac_ratio_mert_over_videomae": round(flops["mert"] / flops["videomae"], 3),
        "mac_ratio_mert_over_bare_encoders": round(flops["mert"] / flops["bare_encoders"], 3),
    }


def _peak_memory(calls: dict, device: str) -> dict | None:
    """Peak allocated GPU memory of one forward of each model, GiB (None on CPU)."""
    if device != "cuda":
        return None
    peaks = {}
    for name, call in calls.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        peaks[name] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return peaks


def _bf16_speedups(runs: list[dict], statistic: str = "median_ms") -> dict:
    """fp32 time / bf16 time per model, batch size and bf16 kind (when both were measured): keys "batch_1" (bf16
    autocast) and "batch_1_bf16w" (bf16 weights)."""
    by_key = {(r["batch_size"], r["dtype"]): r for r in runs}
    speedups = {}
    for (batch_size, dtype), r in by_key.items():
        if dtype in ("bf16", "bf16w") and (batch_size, "fp32") in by_key:
            fp32 = by_key[(batch_size, "fp32")]["models"]
            speedups[f"batch_{batch_size}" + ("_bf16w" if dtype == "bf16w" else "")] = {
                name: round(fp32[name][statistic] / r["models"][name][statistic], 3) for name in MODELS
            }
    return speedups


def markdown(result: dict) -> str:
    labels = {
        "mert": "MERT (PEML stage)",
        "bare_encoders": "(a) its bare encoders",
        "videomae": "(b) VideoMAE-B",
        "frame_vit_meanpool": "(c) ViT-B frames + mean pool",
    }
    gpu = result["device"] == "cuda"
    head = "| batch | dtype | model | GFLOP/clip | ms/clip (median) | min–max ms/batch | clips/s | GFLOP/s |"
    rule = "|---|---|---|---|---|---|---|---|"
    if gpu:
        head, rule = head + " peak GiB | MFU |", rule + "---|---|"
    lines = [head, rule]
    for r in result["runs"]:
        for name in MODELS:
            s = r["models"][name]
            row = (
                f"| {r['batch_size']} | {DTYPE_LABELS.get(r['dtype'], r['dtype'])} | {labels[name]} | "
                f"{result['gflop_per_clip'][name]:.1f} | "
                f"{s['ms_per_clip']:.0f} | {s['min_ms']:.0f}–{s['max_ms']:.0f} | {s['clips_per_s']:.2f} | "
                f"{s['gflop_per_s']:.0f} |"
            )
            if gpu:
                mfu = f"{100 * s['mfu']:.1f}%" if "mfu" in s else "n/a"
                row += f" {s.get('peak_memory_gib', 0):.2f} | {mfu} |"
            lines.append(row)
    lines += [
        "",
        "Time ratios of medians (of minimums in brackets: robust to load from other processes), and MAC ratios:",
        "",
        "| batch | dtype | MERT/(a) time | MERT/(a) MACs | MERT/(b) time | MERT/(b) MACs | MERT/(c) time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        q, n = r["ratios"], r["ratios_of_min"]
        lines.append(
            f"| {r['batch_size']} | {DTYPE_LABELS.get(r['dtype'], r['dtype'])} | {q['mert_over_bare_encoders']:.3f} ({n['mert_over_bare_encoders']:.3f}) | "
            f"{q['mac_ratio_mert_over_bare_encoders']:.3f} | {q['mert_over_videomae']:.3f} ({n['mert_over_videomae']:.3f}) | "
            f"{q['mac_ratio_mert_over_videomae']:.3f} | {q['mert_over_frame_vit']:.3f} ({n['mert_over_frame_vit']:.3f}) |"
        )
    for key, speedups in result["bf16_speedup"].items():
        of_min = result.get("bf16_speedup_of_min", {}).get(key, {})
        kind = "bf16 weights" if key.endswith("_bf16w") else "bf16 autocast"
        batch = key.removesuffix("_bf16w").replace("_", " ")
        lines += ["", f"{kind} speed-up over fp32, {batch} (medians; of minimums): "
                  + ", ".join(f"{labels[n]} {v:.2f}x ({of_min.get(n, float('nan')):.2f}x)"
                              for n, v in speedups.items()) + "."]  # fmt: skip
    for r in result["runs"]:
        for key, kind in (("bf16_vs_fp32_mert_logits", "bf16 autocast"), ("bf16w_vs_fp32_mert_logits", "bf16 weights")):
            if key not in r:
                continue
            a = r[key]
            lines += ["", f"MERT predictions (random inputs), {kind} vs fp32 at batch {r['batch_size']}: top-1 agrees on "
                      f"{a['top1_agree']}/{a['samples']} clips; largest logit difference {a['max_abs_logit_diff']:.4f} "
                      f"(logit std {a['logit_std']:.4f})."]  # fmt: skip
    return "\n".join(lines)
