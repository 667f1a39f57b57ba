"""The inference precision (`emvfer_hf.precision`, `--dtype`): the native-bf16 check on both kinds of CPU (the flag
source monkeypatched), what "auto" chooses, the warning only where bf16 is slow, and the bf16-weights and int8
paths against fp32 on a tiny model and real clips."""

import warnings

import numpy as np
import pytest
import torch

from emvfer_hf import MERTForVideoClassification, precision
from emvfer_hf.analysis import TimelineAnalyzer

XEON_AMX = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN5 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n"
AVX2_ONLY = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx avx2 fma\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [(XEON_AMX, True), (ZEN5, True), (AVX2_ONLY, False), (ARM_BF16, True)])
def test_native_bf16_from_the_cpu_flags(tmp_path, cpuinfo, native):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    flags = precision.cpu_flags(path)
    assert flags and precision.native_cpu_bf16(flags) is native


def test_unreadable_cpuinfo_means_no_native_bf16_on_linux(tmp_path, monkeypatch):
    monkeypatch.setattr(precision.platform, "system", lambda: "Linux")
    assert precision.cpu_flags(tmp_path / "missing") == set()
    monkeypatch.setattr(precision, "cpu_flags", lambda: set())
    assert precision.native_cpu_bf16() is False


def test_the_check_reads_this_machine():
    """The default flag source is this machine's /proc/cpuinfo (where it exists): the answer follows its flags."""
    flags = precision.cpu_flags()
    assert precision.native_cpu_bf16() is any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16"))


@pytest.mark.parametrize("native, chosen", [(True, "bf16"), (False, "fp32")])
def test_auto_chooses_bf16_weights_only_where_bf16_is_native(monkeypatch, native, chosen):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"} if native else {"avx2"})
    assert precision.resolve_dtype("auto", "cpu") == chosen
    assert precision.resolve_dtype("fp32", "cpu") == "fp32" and precision.resolve_dtype("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        precision.resolve_dtype("bfloat16", "cpu")
    with pytest.raises(ValueError, match="CPU only"):
        precision.resolve_dtype("int8", "cuda")


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return MERTForVideoClassification.from_pretrained(tiny_checkpoint).eval()


@pytest.mark.parametrize("native", [True, False])
def test_analyzer_warns_only_where_bf16_is_slow(monkeypatch, tiny_model, tiny_processor, native):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"} if native else {"avx2"})
    monkeypatch.setattr("emvfer_hf.inference.native_cpu_bf16", precision.native_cpu_bf16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto = TimelineAnalyzer(tiny_model, tiny_processor, fps=30.0)
        forced = TimelineAnalyzer(tiny_model, tiny_processor, fps=30.0, dtype="bf16")
    slow = [w for w in caught if "no native bf16" in str(w.message)]
    assert len(slow) == (0 if native else 1)  # only the explicit bf16 on a CPU without it
    assert auto.dtype == ("bf16" if native else "fp32") and forced.dtype == "bf16"
    assert next(forced.model.parameters()).dtype == torch.bfloat16
    assert next(tiny_model.parameters()).dtype == torch.float32  # the caller's model is left as it was
    assert (auto.model is tiny_model) is (not native)


def _real_clips(processor, count: int = 4) -> list[dict]:
    """Model inputs of `count` windows of the real face clip carphone_pristine.mp4 (40 frames each)."""
    from emvfer_hf.video_io_mert import decode_video

    from .conftest import carphone_video_path

    frames = decode_video(str(carphone_video_path())).frames
    video = np.stack([frames[i] for i in sorted(frames)])
    names = ("pixel_values", "eye_movement_values", "eye_movement_mask")
    return [{k: v for k, v in processor(video[s : s + 40], return_tensors="pt").items() if k in names}
            for s in range(0, 20 * count, 20)]  # fmt: skip


@pytest.mark.parametrize("dtype, tolerance", [("bf16", 0.05), ("int8", 0.05)])
def test_bf16_weights_and_int8_agree_with_fp32_on_real_clips(tiny_model, tiny_processor, dtype, tolerance):
    """The bf16-weights copy (prior kept fp32, so W is unchanged) and the int8 copy give fp32's top-1 on real clips."""
    converted = precision.inference_model(tiny_model, dtype)
    assert converted is not tiny_model
    if dtype == "bf16":
        assert converted.mert.eye_prior.mean.dtype == torch.float32
        assert converted.mert.video_encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    for inputs in _real_clips(tiny_processor):
        with torch.inference_mode():
            reference, out = tiny_model(**inputs), converted(**inputs)
        assert torch.equal(out.logits.float().argmax(-1), reference.logits.argmax(-1))
        assert (out.logits.float() - reference.logits).abs().max() < tolerance
        assert torch.allclose(out.instruction_weights.float(), reference.instruction_weights)


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_a_model_already_in_the_precision_is_not_copied_again(tiny_model, dtype):
    """One converted copy serves many callers (a corpus's videos and threads): converting it again returns it."""
    converted = precision.inference_model(tiny_model, dtype)
    assert converted is not tiny_model
    assert precision.inference_model(converted, dtype) is converted
