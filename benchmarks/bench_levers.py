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

`run_bf16` (→ `results/levers_bf16_cpu.json`) measures the inference levers against the default where the CPU has
native bf16, MERT with bf16 weights (`precision.inference_model(model, "bf16")`), batch 1:
- `unfused_qkv`: `MERTLayer` with three query/key/value GEMMs (`FUSED_QKV` off);
- `previous_layer`: the `MERTLayer` before issue 23 (the whole block per chunk of frames sized by the MLP state,
  then concatenated);
- `whole_layers`: no chunks at all (`CPU_LAYER_CHUNK_BYTES` huge);
- `eager_attention`: transformers' eager attention;
- `bf16_autocast`: fp32 weights under `torch.autocast(bfloat16)`;
- `int8_dynamic`: `precision.inference_model(model, "int8")` (the encoders' linear layers dynamically quantised);
- `fp32`: the model in fp32, for the scale;
- `torch_compile` with inductor's `freezing` (not in quick mode), in its own rounds against eager bf16 weights.
Each with its largest logit difference from fp32.
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
    """Swap in the literal fusion formulas (the pre-optimisation code) for the duration of the block: G as
    gate ⊙ up(GELU(down(α·F ⊕ c))) (bottleneck) or GELU(W(α·F ⊕ c) + b) (linear), every (N, S, D) intermediate
    materialised, the residual added apart."""
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
            eye_context = eye_context * eye_scale.to(eye_context.dtype)[:, None]
        new_video = video + self.video_gate(video, eye_context.repeat_interleave(num_frames, dim=0))
        new_eye = eye + self.eye_gate(eye, video_context)
        return new_video, new_eye

    classes = (MERTCrossModalGate, MERTCrossModalLinear, MERTFusionLayer)
    saved = [c.forward for c in classes]
    for c, forward in zip(classes, (gate_forward, linear_forward, fusion_forward)):
        c.forward = forward
    try:
        yield
    finally:
        for c, forward in zip(classes, saved):
            c.forward = forward


@contextlib.contextmanager
def modeling_switch(name: str, value):
    """Set one of `modeling_mert`'s module-level switches (`CPU_LAYER_CHUNK_BYTES`, `FUSED_QKV`) for the duration of
    the block."""
    from emvfer_hf import modeling_mert

    saved = getattr(modeling_mert, name)
    setattr(modeling_mert, name, value)
    try:
        yield
    finally:
        setattr(modeling_mert, name, saved)


def layer_chunk_bytes(limit: int):
    """Set MERTLayer's CPU chunk limit (`CPU_LAYER_CHUNK_BYTES`) for the duration of the block."""
    return modeling_switch("CPU_LAYER_CHUNK_BYTES", limit)


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
    compiled = None if quick else _compiled(model, inputs, reference, warmup, reps, device)
    del bf16_model, channels_last
    layer_chunks = chunked_vs_whole(size, 4, warmup, reps, device) if device == "cpu" else None
    allocator = allocator_comparison(size, warmup, reps) if device == "cpu" and not quick else None
    base = stats["baseline"]["median_ms"]
    return {
        **_header("levers", size, device, quick, warmup, reps, stats),
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


def fused_qkv(enabled: bool):
    """Set MERTLayer's `FUSED_QKV` for the duration of the block."""
    return modeling_switch("FUSED_QKV", enabled)


@contextlib.contextmanager
def previous_layer():
    """MERTLayer as before issue 23: the whole ViT block per chunk of frames (chunks sized by the MLP state), the
    chunks concatenated."""
    from transformers.models.vit.modeling_vit import ViTLayer

    from emvfer_hf import modeling_mert

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        if self.run_whole or attention_mask is not None:
            return ViTLayer.forward(self, hidden_states, attention_mask, **kwargs)
        num_sequences, seq_len = hidden_states.shape[:2]
        compute_dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden_states.dtype
        sequence_bytes = seq_len * self.intermediate_size * compute_dtype.itemsize
        num_chunks = -(-num_sequences // max(1, modeling_mert.CPU_LAYER_CHUNK_BYTES // sequence_bytes))
        if num_chunks == 1:
            return ViTLayer.forward(self, hidden_states, **kwargs)
        chunk = -(-num_sequences // num_chunks)
        return torch.cat([ViTLayer.forward(self, part, **kwargs) for part in hidden_states.split(chunk)])

    saved = modeling_mert.MERTLayer.forward
    modeling_mert.MERTLayer.forward = forward
    try:
        yield
    finally:
        modeling_mert.MERTLayer.forward = saved


def _header(benchmark: str, size: str, device: str, quick: bool, warmup: int, reps: int, stats: dict) -> dict:
    """The fields every levers result starts with (batch 1, interleaved rounds)."""
    return {"benchmark": benchmark, "size": size, "device": device, "quick": quick, "batch_size": 1,
            "warmup_rounds": warmup, "timed_rounds": reps, "variants": stats}  # fmt: skip


def run_bf16(size: str = "paper", quick: bool = False, device: str = "cpu") -> dict:
    """The inference levers against MERT with bf16 weights (the default where bf16 is native), batch 1, interleaved
    rounds; with each variant's largest logit difference from fp32 (see the module docstring)."""
    from emvfer_hf.precision import inference_model

    warmup, reps = (1, 1) if quick else (1, 3)
    model = common.build_mert(size).to(device)
    inputs = common.mert_inputs(model.config, 1, device)
    bf16 = inference_model(model, "bf16", device)
    int8 = inference_model(model, "int8", device) if device == "cpu" else None

    def call(m, *contexts):
        def run():
            with contextlib.ExitStack() as stack:
                stack.enter_context(torch.inference_mode())
                for make_context in contexts:
                    stack.enter_context(make_context())
                return m(**inputs).logits

        return run

    variants = {
        "bf16_weights": call(bf16),
        "unfused_qkv": call(bf16, lambda: fused_qkv(False)),
        "previous_layer": call(bf16, previous_layer),
        "whole_layers": call(bf16, whole_layers),
        "eager_attention": call(bf16, lambda: attention(bf16, "eager")),
        "bf16_autocast": call(model, lambda: torch.autocast(device, dtype=torch.bfloat16)),
        "fp32": call(model),
    }
    if int8 is not None:
        variants["int8_dynamic"] = call(int8)
    reference = variants["fp32"]().float()
    deviation = {name: float((fn().float() - reference).abs().max()) for name, fn in variants.items()}
    stats = common.time_interleaved(variants, warmup, reps, device)
    base = stats["bf16_weights"]["median_ms"]
    compiled = None if quick else _compiled_frozen(bf16, inputs, reference, warmup, reps, device)
    return {
        **_header("levers_bf16", size, device, quick, warmup, reps, stats),
        "torch_compile_freezing": compiled,
        "speedup_over_bf16_weights": {name: round(base / s["median_ms"], 3) for name, s in stats.items()},
        "max_abs_logit_diff_vs_fp32": deviation,
        "logit_std_fp32": float(reference.std()),
        "machine": common.machine_info(device),
    }


def _compiled_frozen(model, inputs, reference, warmup, reps, device) -> dict:
    """`torch.compile` of the bf16 model with inductor's `freezing` (weights folded in as constants and prepacked for
    oneDNN, element-wise epilogues fused), against fp32 logits: see `_compiled`."""
    import torch._inductor.config as inductor_config

    saved = inductor_config.freezing
    inductor_config.freezing = True
    try:
        return _compiled(model, inputs, reference, warmup, reps, device, reference_name="fp32")
    finally:
        inductor_config.freezing = saved


def markdown_bf16(result: dict) -> str:
    """The table of `run_bf16`'s result."""
    v, base = result["variants"], result["variants"]["bf16_weights"]["median_ms"]
    lines = [
        f"MERT forward, batch {result['batch_size']}, {result['device']}; baseline: bf16 weights (the default where "
        f"bf16 is native); median of {result['timed_rounds']} interleaved rounds; logit std (fp32) "
        f"{result['logit_std_fp32']:.3f}.",
        "",
        "| variant | median ms | min–max ms | speed-up vs bf16 weights | max logit diff vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for name, s in v.items():
        lines.append(f"| {name} | {s['median_ms']:.0f} | {s['min_ms']:.0f}–{s['max_ms']:.0f} | "
                     f"{base / s['median_ms']:.2f}x | {result['max_abs_logit_diff_vs_fp32'][name]:.2e} |")  # fmt: skip
    c = result.get("torch_compile_freezing")
    if c and c["ok"]:
        lines.append(f"| torch_compile, freezing (own rounds vs eager bf16 weights {c['eager']['median_ms']:.0f} ms) | "
                     f"{c['compiled']['median_ms']:.0f} | {c['compiled']['min_ms']:.0f}–{c['compiled']['max_ms']:.0f} | "
                     f"{c['speedup']:.2f}x | {c['max_abs_logit_diff_vs_fp32']:.2e} |")  # fmt: skip
        lines += ["", f"torch.compile with freezing: compilation + first call {c['compile_and_first_call_s']:.0f} s "
                  f"(once per process and per new input shape)."]  # fmt: skip
    elif c:
        lines += ["", f"torch.compile with freezing failed: {c['error']}"]
    return "\n".join(lines)


def _compiled(model, inputs, reference, warmup, reps, device, reference_name: str = "baseline") -> dict:
    """torch.compile(model): compilation time, then eager and compiled timed in their own interleaved rounds; the
    compiled logits' largest difference from `reference` (`max_abs_logit_diff_vs_<reference_name>`)."""
    try:
        compiled = torch.compile(model)
        start = time.perf_counter()
        with torch.inference_mode():
            logits = compiled(**inputs).logits
        compile_s = time.perf_counter() - start

        def run(m):
            def call():
                with torch.inference_mode():
                    return m(**inputs).logits

            return call

        timed = common.time_interleaved({"eager": run(model), "compiled": run(compiled)}, warmup, reps, device)
        return {
            "ok": True,
            "compile_and_first_call_s": round(compile_s, 1),
            f"max_abs_logit_diff_vs_{reference_name}": float((logits.float() - reference).abs().max()),
            "eager": timed["eager"],
            "compiled": timed["compiled"],
            "speedup": round(timed["eager"]["median_ms"] / timed["compiled"]["median_ms"], 3),
            "speedup_of_min": round(timed["eager"]["min_ms"] / timed["compiled"]["min_ms"], 3),
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
