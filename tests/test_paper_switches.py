"""The variants of MERT as `MERTConfig` switches (issues 15, 20). The paper's forms are now the defaults where the
evidence chose them: `fusion_mlp="linear"` (G of eqs. [4]-[5] as one linear layer with an activation) and
`final_fusion="tokens"` (eq. [6] over the full, time-aligned token sequences); the switches are the other forms:
`fusion_mlp="bottleneck"` (the zero-gated bottleneck), `final_fusion="cls"`, `level_head="transformer"` (each p^l of
eq. [12] a Transformer head like eq. [7] on the multimodal F^l) and `level_head_input="video_cls"` (linear p^l on the
video CLS alone).

Each switch: an unknown value is refused, the defaults are the documented ones, the switch changes the model
(parameters and/or outputs), the formula is the one documented, the PEML stage trains a sensible set, and save/load
and torch.export keep working. Tiny configurations (docs/design.md §Rules)."""

import pytest
import torch

from emvfer_hf import MERTConfig, MERTForVideoClassification, MERTModel
from emvfer_hf.configuration_mert import FINAL_FUSIONS, FUSION_MLPS, LEVEL_HEAD_INPUTS, LEVEL_HEADS
from emvfer_hf.modeling_mert import MERTCrossModalLinear, MERTFusionLayer

from .conftest import TINY_MERT
from .test_modeling_mert import make_inputs

ALL_SWITCHES = dict(fusion_mlp="bottleneck", final_fusion="cls", level_head="transformer")
SWITCHES = [dict(fusion_mlp="bottleneck"), dict(final_fusion="cls"), dict(level_head="transformer"),
            dict(level_head_input="video_cls"), ALL_SWITCHES]


def build(stage="peml", seed=0, **switches):
    """A tiny MERT with the prior Ē set, in `stage`; the zero-initialised fusion gates of the default G get small
    random values, so that the fusion path really changes the features."""
    torch.manual_seed(seed)
    model = MERTForVideoClassification(MERTConfig(**TINY_MERT, **switches))
    model.set_eye_prior_from_series(make_inputs(model.config, batch_size=8, seed=100)[1])
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".gate"):
                parameter.normal_(0.0, 0.5)
    model.set_training_stage(stage)
    return model.eval()


def parameter_shapes(model):
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
def test_defaults_are_the_documented_ones():
    config = MERTConfig()
    assert (config.fusion_mlp, config.final_fusion, config.level_head, config.level_head_input) == (
        "linear", "tokens", "linear", "multimodal")
    assert (FUSION_MLPS[0], FINAL_FUSIONS[0], LEVEL_HEADS[0], LEVEL_HEAD_INPUTS[0]) == (
        "linear", "tokens", "linear", "multimodal")
    assert config.resolved_fusion_levels == [3, 6, 9, 12]  # "several levels", sized to Table XI


@pytest.mark.parametrize("field, allowed", [("fusion_mlp", FUSION_MLPS), ("final_fusion", FINAL_FUSIONS),
                                            ("level_head", LEVEL_HEADS), ("level_head_input", LEVEL_HEAD_INPUTS)])
def test_unknown_value_names_the_field_and_the_allowed_values(field, allowed):
    with pytest.raises(ValueError, match=rf"MERTConfig\.{field} must be one of .*{allowed[1]}.*got 'paper'"):
        MERTConfig(**{field: "paper"})


# ---------------------------------------------------------------------------------------------------------------------
# Each switch changes the model
@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_switch_changes_the_outputs(switches):
    default, switched = build(), build(**switches)
    pixel_values, eyes = make_inputs(default.config)
    with torch.no_grad():
        a = default(pixel_values=pixel_values, eye_movement_values=eyes)
        b = switched(pixel_values=pixel_values, eye_movement_values=eyes)
    only_levels = switches == dict(level_head_input="video_cls")  # what the level heads read, not the final head
    assert torch.allclose(a.logits, b.logits, atol=1e-4) == only_levels
    assert len(b.level_logits) == len(a.level_logits) == 2
    assert all(x.shape == y.shape for x, y in zip(a.level_logits, b.level_logits))
    assert not any(torch.allclose(x, y, atol=1e-4) for x, y in zip(a.level_logits, b.level_logits))


def test_linear_fusion_replaces_the_gated_bottleneck():
    linear, default = parameter_shapes(build()), parameter_shapes(build(fusion_mlp="bottleneck"))
    d = TINY_MERT["hidden_size"]
    assert linear["mert.fusion.1.video_gate.linear.weight"] == (d, d)  # one layer dim → dim
    assert "mert.fusion.1.video_gate.gate" in default and not any(n.endswith(".gate") for n in linear)
    assert not any(".down." in n or ".up." in n for n in linear)
    assert sum(map(_numel, linear.values())) != sum(map(_numel, default.values()))


def test_tokens_fusion_has_the_same_parameters_but_another_function():
    """`final_fusion="tokens"` adds no parameter over "cls": with the very same weights the outputs differ."""
    tokens, default = build(), build(final_fusion="cls")
    assert parameter_shapes(default) == parameter_shapes(tokens)
    tokens.load_state_dict(default.state_dict())
    pixel_values, eyes = make_inputs(default.config)
    with torch.no_grad():
        a = default.mert(pixel_values, eyes)
        b = tokens.mert(pixel_values, eyes)
        logits_a = default(pixel_values=pixel_values, eye_movement_values=eyes).logits
        logits_b = tokens(pixel_values=pixel_values, eye_movement_values=eyes).logits
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)  # same encoders and fusion
    assert not torch.allclose(a.frame_features, b.frame_features, atol=1e-4)  # another eq. [6]
    assert not torch.allclose(logits_a, logits_b, atol=1e-4)


def test_transformer_level_heads_add_a_head_per_level():
    default, transformer = parameter_shapes(build()), parameter_shapes(build(level_head="transformer"))
    head = {n.split(".", 2)[2]: s for n, s in transformer.items() if n.startswith("level_transformers.1.head.")}
    assert head == {n.split(".", 1)[1]: s for n, s in transformer.items() if n.startswith("mert.head.")}  # eq. [7]
    assert {n.split(".")[1] for n in transformer if n.startswith("level_transformers.")} == {"1", "2"}
    num_labels, head_width = TINY_MERT["num_labels"], TINY_MERT["head_hidden_size"]
    assert transformer["level_transformers.1.classifier.weight"] == (num_labels, head_width)
    assert default["level_head_1.weight"] == (TINY_MERT["num_labels"], TINY_MERT["hidden_size"])
    assert not any(n.startswith("level_transformers.") for n in default)
    assert not any(n.startswith("level_head_") for n in transformer)  # no clash of shapes with the linear probes


def _numel(shape):
    return int(torch.tensor(shape).prod())


# ---------------------------------------------------------------------------------------------------------------------
# The formulas
@pytest.mark.parametrize("context_dim", [4, 6])
def test_linear_fusion_is_the_literal_formula(context_dim):
    """G of [4]/[5] as the paper writes it: F + GELU(W(α·F ⊕ c) + b), values and gradients."""
    torch.manual_seed(0)
    layer = MERTCrossModalLinear(dim=4, context_dim=context_dim)
    with torch.no_grad():
        layer.alpha.fill_(0.7)
    hidden = torch.randn(2, 5, 4, requires_grad=True)
    context = torch.randn(2, context_dim)
    fused_input = layer.alpha * hidden + layer.context_projection(context)[:, None, :]
    reference = hidden + torch.nn.functional.gelu(layer.linear(fused_input))
    ours = layer(hidden, context)
    assert torch.allclose(ours, reference, atol=1e-6)
    grads = torch.autograd.grad(ours.square().sum(), [hidden, *layer.parameters()])
    reference_grads = torch.autograd.grad(reference.square().sum(), [hidden, *layer.parameters()])
    for ours_grad, reference_grad in zip(grads, reference_grads):
        assert torch.allclose(ours_grad, reference_grad, atol=1e-5)


def test_linear_fusion_changes_the_features_from_the_start():
    """No zero gate: unlike the default G, an untrained linear G already moves both streams."""
    fusion = MERTFusionLayer(MERTConfig(**TINY_MERT, fusion_mlp="linear"))
    video, eye = torch.randn(2 * 4, 5, 32), torch.randn(2, 17, 32)
    new_video, new_eye = fusion(video, eye, num_frames=4)
    assert not torch.allclose(new_video, video) and not torch.allclose(new_eye, eye)


def test_tokens_fusion_is_add_then_project_then_average():
    """Eq. [6] with `final_fusion="tokens"`, written out: interpolate the eye step tokens onto the T·S_v video
    tokens, add, project every token, average each frame; equal to what the model computes (average first)."""
    model = MERTModel(MERTConfig(**TINY_MERT, final_fusion="tokens")).eval()
    batch, frames, tokens, dim, prompts = 2, 4, 5, 32, 3
    video, eye = torch.randn(batch * frames, prompts + tokens, dim), torch.randn(batch, prompts + 1 + 16, dim)
    steps = eye[:, prompts + 1 :].transpose(1, 2)
    aligned = torch.nn.functional.interpolate(steps, size=frames * tokens, mode="linear").transpose(1, 2)
    summed = video[:, prompts:].reshape(batch, frames * tokens, dim) + aligned  # full sequences, aligned
    projected = model.final_fusion(summed)  # every token
    reference = projected.reshape(batch, frames, tokens, -1).mean(dim=2)
    with torch.no_grad():
        ours = model.final_fusion(model._fuse_modalities(video, eye, frames, prompts))
    assert torch.allclose(ours, reference, atol=1e-5)


def test_tokens_fusion_gives_each_frame_its_time_segment_of_the_eye_series():
    """Frame t receives the t-th of T equal time segments: changing the first quarter of the eye steps changes the
    first frame's features and leaves the last frame's alone (with "cls" every frame sees the same eye CLS)."""
    model = MERTModel(MERTConfig(**TINY_MERT, final_fusion="tokens")).eval()
    video, eye = torch.randn(2 * 4, 5, 32), torch.randn(2, 1 + 16, 32)
    changed = eye.clone()
    changed[:, 1:5] += 3.0  # steps 0-3 of 16
    with torch.no_grad():
        a, b = model._fuse_modalities(video, eye, 4, 0), model._fuse_modalities(video, changed, 4, 0)
    assert not torch.allclose(a[:, 0], b[:, 0]) and torch.equal(a[:, -1], b[:, -1])
    changed_cls = eye.clone()
    changed_cls[:, 0] += 3.0  # the eye CLS has no time: "tokens" leaves it out
    with torch.no_grad():
        assert torch.equal(model._fuse_modalities(video, changed_cls, 4, 0), a)


def test_other_frame_counts_work_with_tokens_fusion():
    model = build(final_fusion="tokens", level_head="transformer")
    pixel_values, eyes = make_inputs(model.config)
    with torch.no_grad():
        out = model(pixel_values=torch.cat([pixel_values, pixel_values[:, :2]], dim=1), eye_movement_values=eyes)
    assert out.logits.shape == (2, TINY_MERT["num_labels"])


def test_level_heads_see_the_eye_stream():
    """p^l on the multimodal F^l (eq. [12]): with an untrained (zero-gated, identity) fusion, linear probes on the
    video CLS alone ignore the eye input; the default linear probes on F^l and the Transformer level heads do not."""
    pixel_values, eyes = make_inputs(MERTConfig(**TINY_MERT))
    cases = ((dict(level_head_input="video_cls"), False), (dict(), True), (dict(level_head="transformer"), True))
    for switches, sees_eyes in cases:
        torch.manual_seed(0)
        config = MERTConfig(**TINY_MERT, fusion_mlp="bottleneck", **switches)  # gates at zero
        model = MERTForVideoClassification(config).eval()
        with torch.no_grad():
            a = model(pixel_values=pixel_values, eye_movement_values=eyes).level_logits
            b = model(pixel_values=pixel_values, eye_movement_values=eyes.flip(1)).level_logits
        assert any(not torch.allclose(x, y) for x, y in zip(a, b)) == sees_eyes, switches
    out = model.mert(pixel_values, eyes)
    assert all(f.shape == (2, TINY_MERT["num_frames"], TINY_MERT["hidden_size"]) for f in out.level_features)


# ---------------------------------------------------------------------------------------------------------------------
# Stages, saving, export
@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_peml_trains_the_same_parts_with_every_switch(switches):
    """PEML: both encoders frozen; prompts, fusion, final fusion, head, classifier and level heads (with their
    Transformer heads) train and receive gradients. Pre-training: level heads frozen, as with the defaults."""
    model = build(stage="peml", **switches).train()
    pixel_values, eyes = make_inputs(model.config)
    model(pixel_values=pixel_values, eye_movement_values=eyes, labels=torch.tensor([0, 2])).loss.backward()
    for name, parameter in model.named_parameters():
        frozen = name.startswith(("mert.video_encoder.", "mert.eye_encoder."))
        assert parameter.requires_grad != frozen, name
        assert (parameter.grad is None) == frozen, name
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    levels = {"level_transformers"} if switches.get("level_head") == "transformer" else {"level_head_1", "level_head_2"}
    assert trained == {"mert", "classifier"} | levels
    model.set_training_stage("pretrain")
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(("level_", "mert.prompts.")))


def test_save_load_round_trip_keeps_the_switches(tmp_path):
    model = build(**ALL_SWITCHES)
    model.save_pretrained(tmp_path)
    loaded = MERTForVideoClassification.from_pretrained(tmp_path).eval()
    assert {k: getattr(loaded.config, k) for k in ALL_SWITCHES} == ALL_SWITCHES
    pixel_values, eyes = make_inputs(model.config)
    with torch.no_grad():
        a = model(pixel_values=pixel_values, eye_movement_values=eyes)
        b = loaded(pixel_values=pixel_values, eye_movement_values=eyes)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(x, y) for x, y in zip(a.level_logits, b.level_logits))


def test_torch_export_with_every_switch():
    from emvfer_hf.export import example_inputs, torch_export

    model = build(**ALL_SWITCHES)
    program = torch_export(model)
    for batch in (1, 3):
        inputs = example_inputs(model.config, batch_size=batch, seed=batch)
        logits, _ = program.module()(*inputs)
        with torch.no_grad():
            expected = model(inputs[0], eye_movement_values=inputs[1], eye_movement_mask=inputs[2],
                             eye_quality_features=inputs[3]).logits
        torch.testing.assert_close(logits, expected)


def test_onnx_export_with_every_switch(tmp_path):
    """The ONNX graph of a model with all three switches (interpolation of [6] included) matches PyTorch."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the [onnx] and [test] extras")
    from emvfer_hf.export import ONNXVideoClassifier, example_input_dict, export_onnx

    model = build(**ALL_SWITCHES)
    classifier = ONNXVideoClassifier(export_onnx(model, tmp_path / "model.onnx"))
    for batch in (1, 3):
        inputs = example_input_dict(model.config, batch_size=batch, seed=batch)
        with torch.no_grad():
            expected = model(**inputs).logits
        got = classifier(**inputs)["logits"]
        assert abs(got - expected.numpy()).max() < 1e-4


@pytest.mark.parametrize("level_head", ["linear", "transformer"])
def test_a_checkpoint_loads_with_the_other_level_head(level_head, tmp_path):
    """Level heads train only in PEML, so a checkpoint pre-trained with either kind of p^l starts PEML with the other:
    the new level heads are initialised, everything else loads unchanged; changing the labels re-initialises them."""
    other = "transformer" if level_head == "linear" else "linear"
    build(stage="pretrain", level_head=level_head).save_pretrained(tmp_path)
    config = MERTConfig.from_pretrained(tmp_path, level_head=other, training_stage="peml")
    model = MERTForVideoClassification.from_pretrained(tmp_path, config=config)
    source = MERTForVideoClassification.from_pretrained(tmp_path)
    assert torch.equal(model.mert.fusion["1"].video_gate.linear.weight, source.mert.fusion["1"].video_gate.linear.weight)
    assert model.has_eye_prior and len(model.level_heads()) == 2
    relabelled = MERTForVideoClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert all(head.out_features == 5 for head in [relabelled.classifier, *relabelled.level_heads()])
