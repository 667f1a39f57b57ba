"""The precision a model runs in for inference (``--dtype``), and whether the hardware computes bf16 natively.

``--dtype`` of ``emvfer analyze`` / ``emvfer live`` and the ``dtype`` of :class:`~emvfer_hf.analysis.TimelineAnalyzer`:

- ``"auto"`` (the default): ``"bf16"`` where the hardware computes bf16 natively (a CUDA GPU that supports it; a CPU
  with AVX512-BF16 or AMX-BF16, or an Arm CPU with the BF16 extension), else ``"fp32"``;
- ``"fp32"``: the model as it is;
- ``"bf16"``: a copy of the model with bfloat16 weights (the eye prior Ē, which only computes W, stays fp32). This is
  faster than bf16 autocast: no per-call casts of the weights, and the residual stream is bf16 too;
- ``"bf16-autocast"``: fp32 weights under ``torch.autocast(bfloat16)`` (the residual stream stays fp32);
- ``"fp16"``: ``torch.autocast(float16)`` (GPU);
- ``"int8"`` (CPU): a copy of the model with the encoders' linear layers dynamically quantised to int8
  (``torch.ao.quantization.quantize_dynamic``); the rest stays fp32.

Agreement with fp32 on real clips and the speed of each are measured in ``benchmarks/`` (README *Benchmarks*).
"""

from __future__ import annotations

import copy
import functools
import platform
import subprocess
from pathlib import Path
from typing import Iterable, Optional

#: the ``dtype`` values accepted by the analysis (``--dtype``)
DTYPES = ("auto", "fp32", "bf16", "bf16-autocast", "fp16", "int8")
#: /proc/cpuinfo flags that mean native bf16 arithmetic: x86 (AVX512-BF16, AMX-BF16), Arm (FEAT_BF16)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@functools.lru_cache(maxsize=8)
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as the operating system reports them: the ``flags`` (x86) or ``Features`` (Arm)
    line of ``/proc/cpuinfo``; on macOS, ``bf16`` when ``sysctl hw.optional.arm.FEAT_BF16`` says 1. An empty set
    where neither can be read. Read once per file and process (the flags do not change while it runs)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                  timeout=5)  # fmt: skip
            return frozenset({"bf16"} if done.stdout.strip() == "1" else ())
        except (OSError, subprocess.SubprocessError):
            pass
    return frozenset()


def native_cpu_bf16(flags: Optional[Iterable[str]] = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16, AMX-BF16 or Arm BF16), where bf16 runs several times
    faster than fp32; without it bf16 is emulated and slower than fp32. ``flags`` default: :func:`cpu_flags`."""
    flags = cpu_flags() if flags is None else set(flags)
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports bf16, or a CPU per :func:`native_cpu_bf16`."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return kind == "cpu" and native_cpu_bf16()


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``dtype`` with ``"auto"`` replaced by what it chooses on ``device``: ``"bf16"`` (bf16 weights) where the
    device computes bf16 natively, else ``"fp32"``. Raises ValueError for an unknown dtype, and for ``"int8"`` off
    the CPU."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if dtype == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"dtype 'int8' (dynamic quantisation) runs on the CPU only, not on {device}")
    return dtype


def autocast_dtype(dtype: str):
    """The ``torch.autocast`` dtype of a resolved ``dtype`` (None: no autocast)."""
    import torch

    return {"bf16-autocast": torch.bfloat16, "fp16": torch.float16}.get(dtype)


def inference_model(model, dtype: str, device: str = "cpu"):
    """``model`` on ``device`` in eval mode, in the precision of the resolved ``dtype``: for ``"bf16"`` a copy with
    bfloat16 weights (its eye prior kept in fp32), for ``"int8"`` a copy with the encoders' linear layers dynamically
    quantised; otherwise the model itself (moved to ``device``, as before). A model already in that precision is
    returned as it is (no second copy). The caller's model keeps its weights' dtype. Inputs stay fp32: the model casts
    them to its weights' dtype."""
    import torch

    model = model.to(device).eval()
    if dtype == "bf16":
        first = next(model.parameters(), None)
        if first is not None and first.dtype == torch.bfloat16:
            return model
        converted = copy.deepcopy(model).to(torch.bfloat16)
        prior = getattr(getattr(converted, "mert", converted), "eye_prior", None)
        if prior is not None:  # W is computed from the fp32 statistics, exactly as in fp32
            source = getattr(model, "mert", model).eye_prior
            originals = dict(source.named_parameters()) | dict(source.named_buffers())
            for name, tensor in [*prior.named_parameters(), *prior.named_buffers()]:
                tensor.data = originals[name].detach().clone()
        return converted
    if dtype == "int8":
        from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        if any(isinstance(module, DynamicInt8Linear) for module in model.modules()):
            return model

        base = getattr(model, "mert", model)
        names = [f"{prefix}.{name}" for prefix in ("video_encoder", "eye_encoder")
                 for name, module in getattr(base, prefix).named_modules() if isinstance(module, torch.nn.Linear)]  # fmt: skip
        if base is not model:
            names = [f"mert.{name}" for name in names]
        return quantize_dynamic(copy.deepcopy(model), {name: default_dynamic_qconfig for name in names}, torch.qint8)
    return model
