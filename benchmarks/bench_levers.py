"""Speed levers for MERT's forward, each measured against the same baseline in interleaved rounds.

Baseline: MERT (PEML stage) at batch 1, fp32, SDPA attention, `torch.inference_mode()`, the current fusion code.
Each variant changes one thing:
- `no_grad`: `torch.no_grad()` instead of `torch.inference_mode()`;
- `eager_attention`: transformers' eager attention instead of SDPA;
- `literal_fusion`: the fusion written literally, gate ⊙ up(GELU(down(α·F ⊕ c))) with every (N, S, D) intermediate
  materialised (the code before the fusion was rewritten; same function);
- `whole_layers`: every `MERTLayer` run whole instead of in chunks of frames on CPU (`CPU_LAYER_CHUNK_BYTES`);
  also compared at batch 4 (`layer_chunks_batch4`), with the MiB of fresh pages faulted in per call;
- `allocator` (not in quick mode; one fresh process each): glibc malloc's defaults without and with MERT's one-off
  heap preparation (`_prepare_cpu_heap`), and glibc told never to hand memory back to the system
  (`MALLOC_MMAP_MAX_=0`, `MALLOC_TRIM_THRESHOLD_` huge); MERT at batch 1 with and without layer chunks;
- `channels_last`: patch-embedding convolution weights and input frames in channels_last memory format;
- `bf16_autocast`: `torch.autocast(bfloat16)`; `bf16_weights`: the model cast to bfloat16;
- `frame_loop` (on the frame-wise ViT peer (c)): its 16 frames one at a time instead of one batch of B·T frames;
- `torch_compile` (not in quick mode): `torch.compile(model)` (default inductor), steady state after compilation,
  with the compilation time.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import time

import torch
from torch import nn

import common


@contextlib.contextmanager
def literal_fusion():
    """Swap in the literal fusion formula (the pre-optimisation code) for the duration of the block."""
    from emvfer_hf.modeling_mert import MERTCrossModalGate, MERTCrossModalLinear, MERTFusionLayer

    def gate_forward(self, hidden_states, context):
        fused = self.alpha * hidden_states + self.context_projection(context)[:, None, :]
        return self.gate * self.up(self.act(self.down(fused)))

    def linear_forward(self, hidden_states, context):
        fused = self.alpha * hidden_states + self.context_projection(context)[:, None, :]
        return self.act(self.linear(fused))

    def fusion_forward(self, video, eye, num_frames, eye_scale=None):
        batch_size = eye.shape[0]
        video_context = video.reshape(batch_size, -1, video.shape[-1]).mean(dim=1)
        eye_context = eye.mean(dim=1)
        if eye_scale is not None:
            eye_context = eye_context * eye_scale[:, None]
        new_video = video + self.video_gate(video, eye_context.repeat_interleave(num_frames, dim=0))
        new_eye = eye + self.eye_gate(eye, video_context)
        return new_video, new_eye

    saved = MERTCrossModalGate.forward, MERTCrossModalLinear.forward, MERTFusionLayer.forward
    MERTCrossModalGate.forward, MERTCrossModalLinear.forward, MERTFusionLayer.forward = (
        gate_forward, linear_forward, fusion_forward)
    try:
        yield
    finally:
        MERTCrossModalGate.forward, MERTCrossModalLinear.forward, MERTFusionLayer.forward = saved


@contextlib.contextmanager
def layer_chunk_bytes(limit: int):
    """Set MERTLayer's CPU chunk limit (`CPU_LAYER_CHUNK_BYTES`) for the duration of the block."""
    from emvfer_hf import modeling_mert

    saved = modeling_mert.CPU_LAYER_CHUNK_BYTES
    modeling_mert.CPU_LAYER_CHUNK_BYTES = limit
    try:
        yield
    finally:
        modeling_mert.CPU_LAYER_CHUNK_BYTES = saved


def whole_layers():
    """Run every MERTLayer whole (no chunks of frames) for the duration of the block."""
    return layer_chunk_bytes(2**62)


# glibc malloc told to keep freed memory instead of handing it back to the system (mmap'd blocks are returned on free)
KEEP_MEMORY_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}


def chunked_vs_whole(size: str, batch_size: int, warmup: int, reps: int, device: str = "cpu") -> dict:
    """MERT with its layers in chunks of frames vs whole, interleaved rounds; plus MiB faulted in per call. At the
    tiny size, whose activations are all far below the limit, the chunks are single frames (the code path runs)."""
    model = common.build_mert(size).to(device)
    inputs = common.mert_inputs(model.config, batch_size, device)
    from emvfer_hf import modeling_mert

    limit = modeling_mert.CPU_LAYER_CHUNK_BYTES if size == "paper" else 1

    def chunked():
        with torch.inference_mode(), layer_chunk_bytes(limit):
            return model(**inputs).logits

    def whole():
        with torch.inference_mode(), whole_layers():
            return model(**inputs).logits

    stats = common.time_interleaved({"chunked": chunked, "whole": whole}, warmup, reps, device)
    return {
        "batch_size": batch_size,
        "chunked": stats["chunked"],
        "whole": stats["whole"],
        "speedup": round(stats["whole"]["median_ms"] / stats["chunked"]["median_ms"], 3),
        "page_faults_mib_per_call": {"chunked": common.page_faults_mib(chunked), "whole": common.page_faults_mib(whole)},
        "max_abs_logit_diff": float((chunked() - whole()).abs().max()),
    }


# (name, environment added, whether MERT's one-off heap preparation `_prepare_cpu_heap` is skipped)
ALLOCATOR_SETUPS = (
    ("glibc defaults, heap not prepared", {}, True),
    ("glibc defaults, heap prepared (MERT's default)", {}, False),
    ("glibc keeping freed memory (env)", KEEP_MEMORY_ENV, False),
)


def allocator_comparison(size: str, warmup: int, reps: int) -> dict:
    """`chunked_vs_whole` at batch 1 in one fresh process per ALLOCATOR_SETUPS entry."""
    command = [sys.executable, __file__, "--allocator-worker", "--size", size, "--warmup", str(warmup), "--reps", str(reps)]
    runs = {}
    for name, extra_env, skip_heap_preparation in ALLOCATOR_SETUPS:
        env = {k: v for k, v in os.environ.items() if k not in KEEP_MEMORY_ENV} | extra_env
        args = command + (["--skip-heap-preparation"] if skip_heap_preparation else [])
        runs[name] = common.run_subprocess_json(args, timeout=1800, env=env)
    return {"env": KEEP_MEMORY_ENV, "runs": runs}


@contextlib.contextmanager
def attention(model, implementation: str):
    saved = model.config._attn_implementation
    model.config._attn_implementation = implementation
    try:
        yield
    finally:
        model.config._attn_implementation = saved


def _channels_last_copy(model):
    model = copy.deepcopy(model)
    projection = model.mert.video_encoder.embeddings.patch_embeddings.projection
    projection.to(memory_format=torch.channels_last)
    return model


class _ChannelsLastInput(nn.Module):
    """Feeds the frames to MERT in channels_last memory format (per frame: (C, H, W) strides of NHWC)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, **inputs):
        b, t = pixel_values.shape[:2]
        frames = pixel_values.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        return self.model(pixel_values=frames.unflatten(0, (b, t)), **inputs)


def _frame_loop(frame_vit, pixel_values):
    """Peer (c) with its frames one at a time: (B, T, C, H, W) → logits."""
    cls = torch.stack(
        [frame_vit.vit(pixel_values[:, t]).last_hidden_state[:, 0] for t in range(pixel_values.shape[1])], dim=1
    )
    return frame_vit.classifier(cls.mean(dim=1))


def run(size: str = "paper", quick: bool = False, device: str = "cpu") -> dict:
    warmup, reps = (1, 1) if quick else (1, 3)
    model = common.build_mert(size).to(device)
    inputs = common.mert_inputs(model.config, 1, device)
    pixels = inputs["pixel_values"]
    rest = {k: v for k, v in inputs.items() if k != "pixel_values"}
    channels_last = _ChannelsLastInput(_channels_last_copy(model))
    bf16_model = copy.deepcopy(model).to(torch.bfloat16)
    bf16_inputs = dict(inputs, eye_movement_values=inputs["eye_movement_values"].to(torch.bfloat16))
    frame_vit = common.build_frame_vit(size).to(device)

    def under(fn, *contexts):
        """Call fn inside fresh instances of the given context-manager factories."""
        with contextlib.ExitStack() as stack:
            for make_context in contexts:
                stack.enter_context(make_context())
            return fn()

    def mert():
        return model(**inputs).logits

    inference = torch.inference_mode
    variants = {
        "baseline": lambda: under(mert, inference),
        "no_grad": lambda: under(mert, torch.no_grad),
        "eager_attention": lambda: under(mert, inference, lambda: attention(model, "eager")),
        "literal_fusion": lambda: under(mert, inference, literal_fusion),
        "whole_layers": lambda: under(mert, inference, whole_layers),
        "channels_last": lambda: under(lambda: channels_last(pixels, **rest).logits, inference),
        "bf16_autocast": lambda: under(mert, inference, lambda: torch.autocast(device, dtype=torch.bfloat16)),
        "bf16_weights": lambda: under(lambda: bf16_model(**bf16_inputs).logits, inference),
        "frame_vit_batched": lambda: under(lambda: frame_vit(pixels), inference),
        "frame_vit_frame_loop": lambda: under(lambda: _frame_loop(frame_vit, pixels), inference),
    }
    reference = variants["baseline"]().float()
    deviation = {
        name: float((variants[name]().float() - reference).abs().max())
        for name in ("no_grad", "eager_attention", "literal_fusion", "whole_layers", "channels_last", "bf16_autocast",
                     "bf16_weights")  # fmt: skip
    }
    stats = common.time_interleaved(variants, warmup, reps, device)
    compiled = None if quick else _compiled(model, inputs, reference, warmup, reps, device, stats)
    del bf16_model, channels_last
    layer_chunks = chunked_vs_whole(size, 4, warmup, reps, device) if device == "cpu" else None
    allocator = allocator_comparison(size, warmup, reps) if device == "cpu" and not quick else None
    base = stats["baseline"]["median_ms"]
    return {
        "benchmark": "levers",
        "size": size,
        "device": device,
        "quick": quick,
        "batch_size": 1,
        "warmup_rounds": warmup,
        "timed_rounds": reps,
        "variants": stats,
        "speedup_over_baseline": {
            name: round(base / s["median_ms"], 3) for name, s in stats.items() if not name.startswith("frame_vit")
        },
        "frame_loop_over_batched": round(
            stats["frame_vit_frame_loop"]["median_ms"] / stats["frame_vit_batched"]["median_ms"], 3
        ),
        "max_abs_logit_diff_vs_baseline": deviation,
        "torch_compile": compiled,
        "layer_chunks_batch4": layer_chunks,
        "allocator": allocator,
        "machine": common.machine_info(device),
    }


def _compiled(model, inputs, reference, warmup, reps, device, stats) -> dict:
    """torch.compile(model): compilation time, then baseline and compiled timed in interleaved rounds."""
    try:
        compiled = torch.compile(model)
        start = time.perf_counter()
        with torch.inference_mode():
            logits = compiled(**inputs).logits
        compile_s = time.perf_counter() - start

        def run_compiled():
            with torch.inference_mode():
                return compiled(**inputs).logits

        def run_eager():
            with torch.inference_mode():
                return model(**inputs).logits

        timed = common.time_interleaved({"eager": run_eager, "compiled": run_compiled}, warmup, reps, device)
        return {
            "ok": True,
            "compile_and_first_call_s": round(compile_s, 1),
            "max_abs_logit_diff_vs_baseline": float((logits.float() - reference).abs().max()),
            "eager": timed["eager"],
            "compiled": timed["compiled"],
            "speedup": round(timed["eager"]["median_ms"] / timed["compiled"]["median_ms"], 3),
        }
    except Exception as error:  # a compiler toolchain problem is a result too
        return {"ok": False, "error": f"{type(error).__name__}: {str(error)[:300]}"}


def markdown(result: dict) -> str:
    v, base = result["variants"], result["variants"]["baseline"]["median_ms"]
    lines = [
        f"MERT forward, batch {result['batch_size']}, {result['device']}; median of {result['timed_rounds']} "
        "interleaved rounds.",
        "",
        "| variant | median ms | min–max ms | speed-up vs baseline | max logit diff vs baseline |",
        "|---|---|---|---|---|",
    ]
    for name, s in v.items():
        if name.startswith("frame_vit"):
            continue
        diff = result["max_abs_logit_diff_vs_baseline"].get(name)
        lines.append(
            f"| {name} | {s['median_ms']:.0f} | {s['min_ms']:.0f}–{s['max_ms']:.0f} | "
            f"{base / s['median_ms']:.2f}x | {'—' if diff is None else f'{diff:.2e}'} |"
        )
    c = result["torch_compile"]
    if c and c["ok"]:
        lines.append(
            f"| torch_compile (own rounds vs eager {c['eager']['median_ms']:.0f} ms) | {c['compiled']['median_ms']:.0f} | "
            f"{c['compiled']['min_ms']:.0f}–{c['compiled']['max_ms']:.0f} | {c['speedup']:.2f}x | "
            f"{c['max_abs_logit_diff_vs_baseline']:.2e} |"
        )
        lines += ["", f"torch.compile: compilation + first call {c['compile_and_first_call_s']:.0f} s."]
    elif c:
        lines += ["", f"torch.compile failed: {c['error']}"]
    else:
        lines += ["", "torch.compile: not run (quick mode)."]
    lines += [
        "",
        f"Frames as one batch vs one at a time (peer (c)): batched {v['frame_vit_batched']['median_ms']:.0f} ms, "
        f"frame loop {v['frame_vit_frame_loop']['median_ms']:.0f} ms ({result['frame_loop_over_batched']:.2f}x).",
    ]
    chunks = result.get("layer_chunks_batch4")
    if chunks:
        faults = chunks["page_faults_mib_per_call"]
        lines += [
            "",
            f"Layers in chunks of frames vs whole, batch 4: {chunks['chunked']['median_ms']:.0f} vs "
            f"{chunks['whole']['median_ms']:.0f} ms per batch ({chunks['speedup']:.2f}x); fresh pages faulted in per "
            f"call {faults['chunked']:.0f} vs {faults['whole']:.0f} MiB; logits within {chunks['max_abs_logit_diff']:.1e}.",
        ]
    allocator = result.get("allocator")
    if allocator:
        env = " ".join(f"{k}={v}" for k, v in allocator["env"].items())
        lines += [
            "",
            f"C allocator setups, batch 1, one fresh process each (the env setup: `{env}`):",
            "",
            "| allocator | layers in chunks: ms | MiB faulted in | layers whole: ms | MiB faulted in |",
            "|---|---|---|---|---|",
        ]
        for name, run in allocator["runs"].items():
            faults = run["page_faults_mib_per_call"]
            lines.append(
                f"| {name} | {run['chunked']['median_ms']:.0f} | {faults['chunked']:.0f} | "
                f"{run['whole']['median_ms']:.0f} | {faults['whole']:.0f} |"
            )
    return "\n".join(lines)


def _main() -> None:
    parser = argparse.ArgumentParser(description="Worker: MERT layers in chunks vs whole, batch 1 (prints JSON).")
    parser.add_argument("--allocator-worker", action="store_true", required=True)
    parser.add_argument("--size", choices=common.SIZES, default="paper")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-heap-preparation", action="store_true", help="leave glibc's mmap threshold alone")
    args = parser.parse_args()
    if args.skip_heap_preparation:
        from emvfer_hf import modeling_mert

        modeling_mert._cpu_heap_prepared = True  # as if done: the forward will not prepare the heap
    print(json.dumps(chunked_vs_whole(args.size, 1, args.warmup, args.reps)))


if __name__ == "__main__":
    _main()
