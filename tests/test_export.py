"""Export (issue 13): torch.export without data-dependent guards, ONNX with a dynamic batch and onnxruntime parity
(1e-4, fp32), int8 dynamic quantisation, and the CLI (`emvfer export`, `emvfer predict --runtime onnx`)."""

import json

import numpy as np
import pytest
import torch

from emvfer_hf import MERTConfig, MERTForVideoClassification
from emvfer_hf.eye_prior_mert import eye_series_features
from emvfer_hf.export import (
    ONNX_INPUT_NAMES,
    ONNXVideoClassifier,
    example_input_dict,
    example_inputs,
    export_onnx,
    quantize_onnx,
    torch_export,
)

from .conftest import TINY_MERT

pytest.importorskip("onnxruntime", reason="onnxruntime is in the [onnx] and [test] extras")


def peml_model():
    torch.manual_seed(0)
    model = MERTForVideoClassification(MERTConfig(**TINY_MERT))
    values = torch.randn(8, TINY_MERT["eye_sequence_length"], 5)
    # a prior fitted on features at the series' own rate: the graph uses the `eye_quality_features` input
    model.set_eye_prior_from_series(values, eye_quality_features=eye_series_features(values + torch.randn(values.shape),
                                                                                     torch.ones(8, values.shape[1])))
    model.set_training_stage("peml")  # prompts and the instruction weight W in the graph
    return model.eval()


def test_torch_export_has_no_data_dependent_guards():
    model = peml_model()
    program = torch_export(model)
    for batch in (1, 3):
        inputs = example_inputs(model.config, batch_size=batch, seed=batch)
        logits, weights = program.module()(*inputs)
        with torch.no_grad():
            expected = model(**dict(zip(ONNX_INPUT_NAMES, inputs)))
        torch.testing.assert_close(logits, expected.logits)
        torch.testing.assert_close(weights, expected.instruction_weights)


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    model = peml_model()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return model, path


def test_onnx_inputs_dynamic_batch_and_parity(onnx_export):
    model, path = onnx_export
    classifier = ONNXVideoClassifier(path)
    assert classifier.input_names == list(ONNX_INPUT_NAMES)
    shape = classifier.session.get_inputs()[0].shape
    assert isinstance(shape[0], str) and shape[1:] == [4, 3, 32, 32]  # symbolic batch
    for batch in (1, 2, 5):
        inputs = example_input_dict(model.config, batch_size=batch, seed=10 + batch)
        inputs["eye_movement_mask"][0, ::3] = False  # some missing steps
        with torch.no_grad():
            expected = model(**inputs)
        got = classifier(**inputs)
        assert np.abs(got["logits"] - expected.logits.numpy()).max() < 1e-4
        assert np.abs(got["instruction_weights"] - expected.instruction_weights.numpy()).max() < 1e-4


def test_int8_dynamic_quantisation_runs(onnx_export, tmp_path):
    model, path = onnx_export
    quantized = quantize_onnx(path, tmp_path / "model.int8.onnx")
    inputs = example_input_dict(model.config, 4)
    got = ONNXVideoClassifier(quantized)(**inputs)["logits"]
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    assert got.shape == expected.shape and np.isfinite(got).all()
    assert np.abs(got - expected).max() < 0.5  # int8: close, not exact (measured in benchmarks/bench_onnx.py)


def test_cli_export_and_predict_onnx(tiny_checkpoint, carphone, tmp_path, capsys):
    from emvfer_hf.cli import main

    output = tmp_path / "model.onnx"
    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--output", str(output)]) == 0
    assert output.is_file() and "max |Δlogit|" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["predict", str(carphone), "--model", str(tiny_checkpoint), "--json"]) == 0
    torch_result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["predict", str(carphone), "--model", str(tiny_checkpoint), "--json", "--runtime", "onnx",
                 "--onnx", str(output)]) == 0  # fmt: skip
    onnx_result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [p["label"] for p in onnx_result["predictions"]] == [p["label"] for p in torch_result["predictions"]]
    for a, b in zip(onnx_result["predictions"], torch_result["predictions"]):
        assert abs(a["score"] - b["score"]) < 1e-3
    assert main(["predict", str(carphone), "--model", str(tiny_checkpoint), "--runtime", "onnx",
                 "--onnx", str(tmp_path / "missing.onnx")]) == 2  # fmt: skip
