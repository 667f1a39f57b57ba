"""Where W(E', Ē) acts (issue 20): the placements of `instruction_placement`, the `instruction_weights=` override,
the prior as the `MERTEyePrior` submodule, older checkpoints, and W reaching the decision of a trained model.

- "input" (eq. [8] as written): the eye prompts are multiplied by W before the pre-norm eye encoder, whose first
  LayerNorm cancels the scale (LN(W·p) = LN(p)): after layer 1 every non-prompt eye state is the same for any W > 0.
- "context" (the default): W scales the eye stream's evidence for the video stream ([4]) and the decision ([6]):
  at W = 0 the logits no longer depend on the eye series at all.
- "attention": log W on the eye prompts' keys in every eye layer.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emvfer_hf import MERTConfig, MERTForVideoClassification
from emvfer_hf.eye_prior_mert import MERTEyePrior

from .conftest import TINY_MERT
from .test_modeling_mert import make_inputs

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoints" / "mert_before_eye_prior_module"


def peml(placement, seed=0, **overrides):
    """A tiny PEML-stage MERT with the prior set and random (non-trivial) prompts."""
    torch.manual_seed(seed)
    model = MERTForVideoClassification(MERTConfig(**TINY_MERT, instruction_placement=placement, **overrides))
    model.set_eye_prior_from_series(make_inputs(model.config, batch_size=8, seed=100)[1])
    model.set_training_stage("peml")
    with torch.no_grad():
        model.mert.prompts.eye_prompts.normal_(0.0, 1.0)
    return model.eval()


def forward(model, pixel_values, eyes, w=None, **kwargs):
    weights = None if w is None else torch.full((pixel_values.shape[0],), float(w))
    with torch.no_grad():
        return model(pixel_values=pixel_values, eye_movement_values=eyes, instruction_weights=weights, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# The placements
def test_literal_input_placement_is_cancelled_by_the_first_layernorm():
    """Eq. [8] as written: W·P_E enters a pre-norm encoder, so after eye layer 1 every non-prompt state is the same
    for W = 1 and W = 0.46 (only the prompt rows' own residual keeps W)."""
    model = peml("input")
    pixel_values, eyes = make_inputs(model.config)
    p = model.config.num_prompt_tokens
    a = forward(model, pixel_values, eyes, 1.0, output_hidden_states=True)
    b = forward(model, pixel_values, eyes, 0.46, output_hidden_states=True)
    assert not torch.allclose(a.eye_hidden_states[0][:, :p], b.eye_hidden_states[0][:, :p])  # the prompts differ
    torch.testing.assert_close(a.eye_hidden_states[1][:, p:], b.eye_hidden_states[1][:, p:], atol=1e-6, rtol=1e-5)
    # what is left of W: the prompt rows' own residual, through GAP(F_E) and the later layers
    assert (a.logits - b.logits).abs().max() < 0.01


def test_context_placement_switches_the_eye_evidence_off_at_w_zero():
    """Default placement: W scales GAP(F_E) handed to the video stream [4] and the eye term of [6] (and of F^l), so
    at W = 0 the logits and level logits do not depend on the eye series; at W = 1 they do."""
    model = peml("context")
    assert model.config.instruction_placement == MERTConfig().instruction_placement == "context"
    pixel_values, eyes = make_inputs(model.config)
    other = eyes.flip(1) + 0.5
    off_a, off_b = forward(model, pixel_values, eyes, 0.0), forward(model, pixel_values, other, 0.0)
    torch.testing.assert_close(off_a.logits, off_b.logits)
    for x, y in zip(off_a.level_logits, off_b.level_logits):
        torch.testing.assert_close(x, y)
    on_a, on_b = forward(model, pixel_values, eyes, 1.0), forward(model, pixel_values, other, 1.0)
    assert not torch.allclose(on_a.logits, on_b.logits, atol=1e-4)
    # in stage 1 too (no prompts), wherever W exists
    model.set_training_stage("pretrain")
    assert not torch.allclose(forward(model, pixel_values, eyes, 1.0).logits, forward(model, pixel_values, eyes, 0.05).logits)


def test_attention_placement_removes_the_prompts_at_w_zero():
    """log W on the eye prompts' keys: at W → 0 no eye token attends to the prompts, which then only carry their own
    rows; the non-prompt eye states equal those of a forward whose prompts are replaced by anything else."""
    model = peml("attention")
    pixel_values, eyes = make_inputs(model.config)
    p = model.config.num_prompt_tokens
    a = forward(model, pixel_values, eyes, 1e-6, output_hidden_states=True)
    with torch.no_grad():
        model.mert.prompts.eye_prompts.mul_(3.0).add_(1.0)
    b = forward(model, pixel_values, eyes, 1e-6, output_hidden_states=True)
    torch.testing.assert_close(a.eye_hidden_states[1][:, p:], b.eye_hidden_states[1][:, p:], atol=1e-3, rtol=1e-3)
    c = forward(model, pixel_values, eyes, 1.0, output_hidden_states=True)
    assert not torch.allclose(b.eye_hidden_states[1][:, p:], c.eye_hidden_states[1][:, p:], atol=1e-3)


def test_w_identity_ablation_ignores_the_override_and_the_prior():
    """`use_instruction_weights=False` (W ≡ 1): the output still reports W, the model computes with 1."""
    model = peml("context", use_instruction_weights=False)
    pixel_values, eyes = make_inputs(model.config)
    a, b = forward(model, pixel_values, eyes, 0.05), forward(model, pixel_values, eyes, 1.0)
    torch.testing.assert_close(a.logits, b.logits)
    assert torch.allclose(a.instruction_weights, torch.full((2,), 0.05))


# ---------------------------------------------------------------------------------------------------------------------
# The public override
def test_instruction_weights_override_replaces_w_and_is_returned():
    model = peml("context")
    pixel_values, eyes = make_inputs(model.config)
    computed = forward(model, pixel_values, eyes).instruction_weights
    given = torch.tensor([0.3, 0.9])
    out = model(pixel_values=pixel_values, eye_movement_values=eyes, instruction_weights=given)
    assert torch.equal(out.instruction_weights, given) and not torch.allclose(computed, given)
    # the same logits as a model whose prior happens to give exactly these W (a sample at a time)
    for i in range(2):
        one = forward(model, pixel_values[i : i + 1], eyes[i : i + 1], given[i].item()).logits
        torch.testing.assert_close(one, out.logits[i : i + 1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"instruction_weights must have shape \(2,\)"):
        model(pixel_values=pixel_values, eye_movement_values=eyes, instruction_weights=torch.ones(3))
    with pytest.raises(ValueError, match="finite and >= 0"):
        model(pixel_values=pixel_values, eye_movement_values=eyes, instruction_weights=torch.tensor([1.0, -1.0]))


def test_override_serves_a_model_without_prior():
    """Without Ē, PEML needs W: the error says how to get one, and the override is one way."""
    torch.manual_seed(0)
    model = MERTForVideoClassification(MERTConfig(**TINY_MERT, training_stage="peml")).eval()
    pixel_values, eyes = make_inputs(model.config)
    with pytest.raises(ValueError, match="no eye-movement prior.*instruction_weights="):
        forward(model, pixel_values, eyes)
    assert forward(model, pixel_values, eyes, 0.5).logits.shape == (2, TINY_MERT["num_labels"])


# ---------------------------------------------------------------------------------------------------------------------
# The prior as a module; older checkpoints
def test_prior_is_a_submodule_with_its_buffers_in_the_state_dict():
    model = peml("context")
    assert isinstance(model.mert.eye_prior, MERTEyePrior) and model.eye_prior is model.mert.eye_prior
    keys = {k for k in model.state_dict() if "eye_prior" in k}
    assert keys == {f"mert.eye_prior.{name}" for name in MERTEyePrior.LEGACY_KEYS.values()} | {
        "mert.eye_prior.features_own_rate"}
    state = model.eye_prior.state()
    other = peml("context", seed=1)
    other.eye_prior.reset()
    assert not other.has_eye_prior
    other.set_eye_prior(**state)
    assert torch.equal(other.eye_prior.feature_scale, model.eye_prior.feature_scale)


def test_checkpoint_saved_before_the_module_loads_unchanged():
    """A real checkpoint written by the code before `MERTEyePrior` (prior buffers on `MERTModel`, no
    `instruction_placement` in its config): it loads with its prior and computes exactly what it computed then."""
    expected = torch.load(FIXTURE / "expected.pt")
    config = json.loads((FIXTURE / "config.json").read_text())
    assert "instruction_placement" not in config
    model = MERTForVideoClassification.from_pretrained(FIXTURE).eval()
    assert model.config.instruction_placement == "input" and model.config.level_head_input == "video_cls"
    assert model.stored_eye_priors == ("features", "mean")
    with torch.no_grad():
        out = model(pixel_values=expected["pixel_values"], eye_movement_values=expected["eye_movement_values"])
    torch.testing.assert_close(out.logits, expected["logits"])
    torch.testing.assert_close(out.instruction_weights, expected["instruction_weights"])


# ---------------------------------------------------------------------------------------------------------------------
# W reaches the decision of a trained model
def top2_margin(logits: np.ndarray) -> np.ndarray:
    top = np.sort(logits, axis=-1)
    return top[:, -1] - top[:, -2]


@pytest.mark.timeout(900)
def test_w_moves_the_decisions_of_a_peml_model_trained_on_sample_data(tmp_path):
    """Issue 20's criterion: on a PEML checkpoint trained on the sample data (stage 1 on EMER, PEML on DFEW, default
    placement), forcing W from 1 to 0.05 moves the logits past the top-2 margin on at least 10% of its test clips."""
    from .test_training import TINY_OVERRIDES, common_args, load_example
    from emvfer_hf.data import make_sample_dataset
    from emvfer_hf.training.data import ClipDataset, collate_clips
    from emvfer_hf.training.stages import load_splits
    from transformers import AutoVideoProcessor

    options = dict(clips_per_class=4, num_frames=8, resolution=112, seed=0)
    make_sample_dataset("emer", tmp_path / "EMER", **options)
    make_sample_dataset("dfew", tmp_path / "DFEW", **options)
    emer, dfew = tmp_path / "emvfer-emer", tmp_path / "emvfer-dfew"
    load_example("pretrain_mert").main(
        ["--data_dir", str(tmp_path / "EMER"), "--config_overrides", TINY_OVERRIDES, "--max_train_steps", "40",
         "--learning_rate", "1e-3", *common_args(tmp_path, emer)]
    )  # fmt: skip
    load_example("finetune_peml").main(
        ["--dataset", "dfew", "--data_dir", str(tmp_path / "DFEW"), "--model_name_or_path", str(emer),
         "--max_train_steps", "40", "--learning_rate", "1e-3", *common_args(tmp_path, dfew)]
    )  # fmt: skip
    model = MERTForVideoClassification.from_pretrained(dfew).eval()
    assert model.config.instruction_placement == "context" and model.training_stage == "peml"
    processor = AutoVideoProcessor.from_pretrained(dfew)

    class Args:
        fold, protocol, test_subject = 1, None, None

    _, test_set = load_splits("dfew", tmp_path / "DFEW", Args)
    data = ClipDataset(test_set, processor, "visual")
    batch = collate_clips([data[i] for i in range(len(data))])
    batch.pop("index"), batch.pop("labels")
    n = batch["pixel_values"].shape[0]
    with torch.no_grad():
        full = model(**batch, instruction_weights=torch.ones(n)).logits.numpy()
        weak = model(**batch, instruction_weights=torch.full((n,), 0.05)).logits.numpy()
    moved = np.abs(full - weak).max(axis=-1) > top2_margin(full)
    assert moved.mean() >= 0.10, f"W moved {moved.sum()} of {n} test clips past their top-2 margin"
