"""Smoke test of the benchmark suite (benchmarks/run_all.py) in quick mode on a tiny model, so the code can't rot.
Asserts only that the results are produced with the expected keys — never timings."""

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def run_all():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("run_all")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_quick_tiny_run_writes_results_and_readme(run_all, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## Eye extraction\n\nkept as is\n")
    assert run_all.main(["--size", "tiny", "--quick", "--out-dir", str(tmp_path), "--readme", str(readme)]) == 0

    cost = json.loads((tmp_path / "model_cost.json").read_text())
    assert set(cost["parameters"]) >= {"total", "trainable_peml", "trainable_pretrain_random_video_encoder"}
    assert {"mert_peml", "bare_encoders", "videomae", "frame_vit_meanpool"} <= set(cost["gmacs_per_clip"])
    assert all(v > 0 for v in cost["gmacs_per_clip"].values())
    assert cost["machine"]["cpu"] and cost["machine"]["torch"] == torch.__version__

    forward = json.loads((tmp_path / "forward_cpu.json").read_text())
    assert {(r["batch_size"], r["dtype"]) for r in forward["runs"]} == {(1, "fp32"), (1, "bf16"), (1, "bf16w")}
    for r in forward["runs"]:
        assert set(r["models"]) == {"mert", "bare_encoders", "videomae", "frame_vit_meanpool"}
        assert {"median_ms", "min_ms", "max_ms", "ms_per_clip", "gflop_per_s"} <= set(r["models"]["mert"])
        assert {"mert_over_bare_encoders", "mert_over_videomae", "mac_ratio_mert_over_videomae"} <= set(r["ratios"])
    assert "top1_agree" in forward["runs"][-1]["bf16_vs_fp32_mert_logits"]
    assert "top1_agree" in forward["runs"][-1]["bf16w_vs_fp32_mert_logits"]
    assert set(forward["bf16_speedup"]) == {"batch_1", "batch_1_bf16w"}

    levers_bf16 = json.loads((tmp_path / "levers_bf16_cpu.json").read_text())
    assert {"bf16_weights", "unfused_qkv", "previous_layer", "bf16_autocast", "int8_dynamic", "fp32"} <= set(
        levers_bf16["variants"])  # fmt: skip
    assert levers_bf16["max_abs_logit_diff_vs_fp32"]["fp32"] == 0.0

    levers = json.loads((tmp_path / "levers_cpu.json").read_text())
    assert {"baseline", "eager_attention", "literal_fusion", "bf16_autocast", "channels_last"} <= set(levers["variants"])
    assert levers["max_abs_logit_diff_vs_baseline"]["literal_fusion"] < 1e-4  # same function, rewritten

    train = json.loads((tmp_path / "train_step_cpu.json").read_text())
    assert set(train["modes"]) == {"peml", "full"}
    assert train["modes"]["peml"]["trainable_parameters"] < train["modes"]["full"]["trainable_parameters"]
    assert train["modes"]["full"]["peak_rss_mib"] > 0 and "median_ms" in train["modes"]["full"]["step"]

    text = readme.read_text()
    assert "kept as is" in text and run_all.BEGIN in text and run_all.END in text
    assert "### Model forward, CPU" in text and "MERT/(a)" in text and "### Inference levers in bf16, CPU" in text
    run_all.update_readme(readme, tmp_path)  # regenerating replaces the section instead of appending another
    assert readme.read_text().count(run_all.BEGIN) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU skip path")
def test_cuda_run_skips_cleanly_without_a_gpu(run_all, tmp_path):
    assert run_all.main(["--device", "cuda", "--size", "tiny", "--quick", "--out-dir", str(tmp_path),
                         "--readme", str(tmp_path / "README.md")]) == 0  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_gpu_peak_table():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        common = importlib.import_module("common")
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert common.gpu_peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert common.gpu_peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert common.gpu_peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert common.gpu_peak_bf16_tflops("Some Unknown GPU") is None


def test_end_to_end_quick_run(tmp_path):
    """bench_end_to_end.py in quick mode (tiny model, the real clip): the stages the processor runs, with the
    default face backend, produce a result with every stage."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_end_to_end.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "end_to_end_quick.json").read_text())
    clip = next(iter(result["clips"].values()))
    assert {"decode", "face", "eyes", "model", "pipeline_total"} <= set(clip)


def test_analyze_and_onnx_quick_runs(tmp_path):
    """bench_analyze.py --quick (tiny model, one and two faces at 720p, dtype auto) and bench_onnx.py on the small
    model with two real clips: every path gives a result, with its agreement with PyTorch fp32."""
    import subprocess

    analyze = subprocess.run([sys.executable, str(BENCHMARKS / "bench_analyze.py"), "--quick", "--out_dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=900)  # fmt: skip
    assert analyze.returncode == 0, analyze.stderr[-3000:]
    assert "| tiny | auto" in analyze.stdout and "| 2 |" in analyze.stdout  # the two-face run
    out = tmp_path / "onnx.json"
    onnx = subprocess.run([sys.executable, str(BENCHMARKS / "bench_onnx.py"), "--reps", "1", "--real", "2", "--random",
                           "1", "--output", str(out)], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert onnx.returncode == 0, onnx.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["accuracy_vs_torch_fp32"]) == {"torch_bf16_weights", "torch_bf16_autocast", "torch_int8_dynamic",
                                                     "onnx_fp32", "onnx_int8"}  # fmt: skip
    assert result["accuracy_vs_torch_fp32"]["onnx_fp32"]["max_abs_logit_diff"] < 1e-4
