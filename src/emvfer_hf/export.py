"""Export of MERT: `torch.export` and ONNX (with a dynamic batch), an onnxruntime classifier and int8 dynamic
quantisation. Used by `emvfer export` and benchmarks/bench_onnx.py; the onnxruntime classifier lives in `inference.py`
(`Classifier.from_onnx`, which `emvfer predict --runtime onnx` uses) and is importable from here.

The ONNX graph takes `pixel_values` (B, T, C, H, W) float32, `eye_movement_values` (B, L, 5) float32,
`eye_movement_mask` (B, L) bool and `eye_quality_features` (B, F) float32 (the processor's outputs), and returns
`logits` (B, num_labels) (and `instruction_weights` (B,)); B is dynamic, T, H, W and L are those of the config.
onnx / onnxruntime come with the `[onnx]` extra.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .inference import MODEL_INPUT_NAMES
from .inference import ONNXVideoClassifier  # noqa: F401  (README: `from emvfer_hf.export import ONNXVideoClassifier`)

ONNX_INPUT_NAMES = MODEL_INPUT_NAMES
ONNX_OUTPUT_NAMES = ("logits", "instruction_weights")


class MERTExportWrapper(nn.Module):
    """MERTForVideoClassification with positional tensor inputs and a (logits, W) output, for export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, eye_movement_values, eye_movement_mask, eye_quality_features):
        out = self.model(pixel_values=pixel_values, eye_movement_values=eye_movement_values,
                         eye_movement_mask=eye_movement_mask, eye_quality_features=eye_quality_features,
                         return_dict=True)  # fmt: skip
        weights = out.instruction_weights
        if weights is None:  # a model without the prior Ē (pre-training stage): W is undefined, exported as 0
            weights = out.logits.new_zeros(out.logits.shape[0])
        return out.logits, weights


def example_inputs(config, batch_size: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random model inputs in the order of :data:`ONNX_INPUT_NAMES` (the quality features from a noisier copy of
    the series, so that they differ from those of the L steps)."""
    from .eye_prior_mert import eye_series_features

    g = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch_size, config.num_frames, config.num_channels, config.image_size,
                               config.image_size, generator=g)  # fmt: skip
    eyes = torch.randn(batch_size, config.eye_sequence_length, config.eye_num_channels, generator=g)
    mask = torch.ones(batch_size, config.eye_sequence_length, dtype=torch.bool)
    features = eye_series_features(eyes + torch.randn(eyes.shape, generator=g), mask)
    return pixel_values, eyes, mask, features


def example_input_dict(config, batch_size: int = 2, seed: int = 0) -> dict:
    """:func:`example_inputs` as keyword arguments of the model (and of `ONNXVideoClassifier`)."""
    return dict(zip(ONNX_INPUT_NAMES, example_inputs(config, batch_size, seed)))


def _dynamic_batch():
    batch = torch.export.Dim("batch", min=1, max=4096)
    return tuple({0: batch} for _ in ONNX_INPUT_NAMES)


def torch_export(model, batch_size: int = 2):
    """`torch.export.export` of the classifier with a dynamic batch (no data-dependent guards). The caller's model
    is left as it was (a copy is put in eval mode)."""
    import copy

    wrapper = MERTExportWrapper(copy.deepcopy(model).eval()).eval()
    return torch.export.export(wrapper, example_inputs(model.config, batch_size), dynamic_shapes=_dynamic_batch(),
                               strict=False)  # fmt: skip


def export_onnx(model, output, opset: int = 18) -> Path:
    """Write `model` (a MERTForVideoClassification, fp32) as an ONNX graph with a dynamic batch to `output`."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    import copy

    model = copy.deepcopy(model).float().eval()  # the caller's model keeps its dtype and mode
    wrapper = MERTExportWrapper(model).eval()
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper, example_inputs(model.config), dynamo=True, opset_version=opset,
            input_names=list(ONNX_INPUT_NAMES), output_names=list(ONNX_OUTPUT_NAMES),
            dynamic_shapes=_dynamic_batch(), verbose=False,
        )  # fmt: skip
    program.save(str(output), external_data=False)
    return output


def quantize_onnx(source, output) -> Path:
    """int8 dynamic quantisation (weights int8, activations quantised on the fly) of an ONNX graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(output), weight_type=QuantType.QInt8)
    return Path(output)


__all__ = ["ONNX_INPUT_NAMES", "MERTExportWrapper", "ONNXVideoClassifier", "example_input_dict", "export_onnx",
           "quantize_onnx", "torch_export"]
