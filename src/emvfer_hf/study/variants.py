"""The variants of the paper's study (EM-VFER Tables VI, IX, X and the PEML ablations) and the comparisons the report
draws between them.

Every variant is trained on the target dataset with the SAME budget (steps, learning rate, batch size); they differ in
where the model starts, which training stage runs and which eye input it sees:

- `init="scratch"`: a randomly initialised MERT of the pre-trained model's architecture (no EMER pre-training);
- `init="pretrained"`: the EMER pre-trained MERT (stage 1, eye-tracker input), with `config` overrides applied;
- `stage="pretrain"`: full training (everything but prompts and level heads; CE [2]) — "full fine-tuning";
- `stage="peml"`: PEML fine-tuning (encoders frozen; prompts [8]-[11], fusion, head and level heads [12] train);
- `eye_source`: "none" (no eye input: the video-only model) or "visual" (the low-quality series read from the video);
- `pretrain_overrides`: `MERTConfig` switches that change what stage 1 trains (the fusion G of eqs. [4]-[5], the final
  fusion [6]): such a variant starts from its own stage-1 model, pre-trained with the switch, not from the default one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ..configuration_mert import MERTConfig


def _no_overrides(config: MERTConfig) -> dict:
    return {}


def _equal_level_weights(config: MERTConfig) -> dict:
    """Equal w^l at every level, with the same total as the progressive default 0.5·l/L (only the shape changes)."""
    weights = config.resolved_peml_level_weights
    return {"peml_level_weights": [sum(weights) / len(weights)] * len(weights)} if weights else {}


@dataclass(frozen=True)
class Variant:
    """One trained model of the study.

    Args:
        key: short identifier (folder and figure names).
        name: row label in the report.
        init: "scratch" or "pretrained".
        stage: "pretrain" (full training) or "peml".
        eye_source: "none" or "visual" (see `emvfer_hf.training.data.ClipDataset`).
        overrides: `config -> dict` of `MERTConfig` fields changed on the pre-trained model (the ablation switch).
        pretrain_overrides: `--config_overrides` text added to stage 1 (a switch of a part stage 1 trains); "" uses
            the default pre-trained model.
        description: what the variant tests, for the report.
    """

    key: str
    name: str
    init: str
    stage: str
    eye_source: str
    description: str
    overrides: Callable[[MERTConfig], dict] = field(default=_no_overrides, compare=False)
    pretrain_overrides: str = ""


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        # Table VI: the incremental ablation
        Variant("video_only", "Video only", "scratch", "pretrain", "none",
                "MERT trained from scratch on the target data without eye input (the eye encoder sees only "
                "'missing' tokens)."),
        Variant("visual_em", "+ low-quality visual EM", "scratch", "pretrain", "visual",
                "The same, with the eye series read from the video (no EMER pre-training)."),
        Variant("emer_full_ft", "+ EMER pre-training (full fine-tuning)", "pretrained", "pretrain", "visual",
                "Start from the EMER pre-trained MERT (eye-tracker input) and fine-tune everything on the target "
                "data with the visual eye series — no PEML."),
        Variant("peml", "+ PEML fine-tuning (full EM-VFER)", "pretrained", "peml", "visual",
                "Start from the EMER pre-trained MERT and run PEML: encoders frozen, prompts, W(E', Ē) scaling the "
                "eye evidence, progressive level losses. Also the reference row of Tables IX/X and of the PEML "
                "ablations."),
        # Table IX: the prior Ē (the default is the distributional-feature prior, a deliberate difference)
        Variant("prior_mean", "Prior: mean series, Euclidean (paper-literal)", "pretrained", "peml", "visual",
                "W = 1/(dist(E', Ē)+eps) with Ē the mean tracker series and the Euclidean distance — the literal "
                "reading, which does not tell a clean series from a broken one (docs/study/prior_auc.json).",
                lambda c: {"instruction_prior": "mean", "instruction_distance": "euclidean"}),
        Variant("prior_mvn", "Prior: multivariate normal", "pretrained", "peml", "visual",
                "W from the Gaussian density of E' under N(Ē, Σ) instead of 1/(dist(E', Ē)+eps).",
                lambda c: {"instruction_prior": "multivariate_normal"}),
        # Table X: the distance in W
        Variant("distance_cosine", "Distance: cosine", "pretrained", "peml", "visual",
                "W = 1/((1 − cos) + eps) of the feature vectors instead of the robust feature distance.",
                lambda c: {"instruction_distance": "cosine"}),
        Variant("distance_one_sided", "Distance: one-sided feature z (the earlier default)", "pretrained", "peml",
                "visual", "W = 1/(mean relu(side·z) + eps) without the log penalty and the evidence share.",
                lambda c: {"instruction_distance": "one_sided"}),
        # PEML parts
        Variant("no_prompts", "PEML without prompts", "pretrained", "peml", "visual",
                "No prompt tokens (input instruction off); level losses kept.",
                lambda c: {"num_prompt_tokens": 0}),
        Variant("no_instruction_weights", "PEML without instruction weights (W ≡ 1)", "pretrained", "peml", "visual",
                "Prompts kept, but W does not scale the eye evidence (W ≡ 1 in the model, in both stages' forward).",
                lambda c: {"use_instruction_weights": False}),
        Variant("no_level_losses", "PEML without level losses", "pretrained", "peml", "visual",
                "Only the final head's CE (loss instruction [12] off).",
                lambda c: {"peml_levels": []}),
        Variant("equal_level_weights", "PEML with equal level weights", "pretrained", "peml", "visual",
                "w^l equal at every level (same total) instead of growing with depth.",
                _equal_level_weights),
        Variant("loss_weighting", "PEML + W-weighted loss", "pretrained", "peml", "visual",
                "The second reading of the paper: W also weights each sample's CE (batch-normalised).",
                lambda c: {"instruction_loss_weighting": True}),
        # The model's switches (README "Paper vs this implementation"), each under full PEML: the earlier defaults
        # against today's (which issue 20 chose from this evidence), and the paper's Transformer level heads
        Variant("bottleneck_fusion", "PEML, G = the gated bottleneck at every layer (earlier default)", "pretrained",
                "peml", "visual", "`fusion_mlp=\"bottleneck\"`, `num_fusion_levels=None`: G_V, G_E are the zero-gated "
                "bottleneck MLP after every layer instead of the paper's linear G at several levels; stage 1 is "
                "re-run with it (G trains there).",
                pretrain_overrides="fusion_mlp=bottleneck,num_fusion_levels=null"),
        Variant("cls_fusion", "PEML, eq. [6] on the CLS tokens (earlier default)", "pretrained", "peml", "visual",
                "`final_fusion=\"cls\"`: the per-frame video CLS + the eye CLS instead of the full, time-aligned token "
                "sequences; stage 1 is re-run with it.",
                pretrain_overrides="final_fusion=cls"),
        Variant("level_input_video_cls", "PEML, linear p^l on the video CLS only (earlier default)", "pretrained",
                "peml", "visual", "`level_head_input=\"video_cls\"`: the linear level heads read the frame-averaged "
                "video CLS of level l instead of the multimodal F^l of eq. [12] (level heads train in PEML only).",
                lambda c: {"level_head_input": "video_cls"}),
        Variant("paper_level_head", "PEML, level heads like eq. [7] on F^l", "pretrained", "peml", "visual",
                "`level_head=\"transformer\"`: each p^l of eq. [12] is a Transformer head like eq. [7] on the "
                "multimodal F^l, instead of a linear probe on it (level heads train in PEML only: the default "
                "stage-1 model).",
                lambda c: {"level_head": "transformer"}),
        Variant("placement_input", "PEML, W on the eye prompts before the encoder (eq. [8] as written)",
                "pretrained", "peml", "visual",
                "`instruction_placement=\"input\"`: W multiplies the eye prompts before the pre-norm eye encoder, "
                "which cancels it, instead of scaling the eye evidence; stage 1 is re-run with it.",
                pretrain_overrides="instruction_placement=input"),
        Variant("placement_attention", "PEML, log W on the eye prompts' attention keys", "pretrained", "peml",
                "visual", "`instruction_placement=\"attention\"`: log W biases every eye layer's attention to the eye "
                "prompts, instead of scaling the eye evidence; stage 1 is re-run with it.",
                pretrain_overrides="instruction_placement=attention"),
    )
}  # fmt: skip
PAPER_SWITCHES = ("bottleneck_fusion", "cls_fusion", "level_input_video_cls", "paper_level_head", "placement_input",
                  "placement_attention")

TABLE_VI = ("video_only", "visual_em", "emer_full_ft", "peml")
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "vi": ("Table VI — ablation of the two stages", TABLE_VI),
    "ix": ("Table IX — the prior Ē of the instruction weight", ("peml", "prior_mean", "prior_mvn")),
    "x": ("Table X — the distance in W(E', Ē)", ("peml", "distance_cosine", "distance_one_sided")),
    "peml": ("PEML parts — each component removed or changed",
             ("peml", "no_prompts", "no_instruction_weights", "no_level_losses", "equal_level_weights",
              "loss_weighting")),
    "switches": ("Model switches — the earlier defaults and the paper's level heads, each under full PEML",
                 ("peml", *PAPER_SWITCHES)),
}  # fmt: skip
# The row labels of the reference "peml" in Tables IX and X
REFERENCE_NAMES = {"ix": "Prior: distributional features (default)", "x": "Distance: robust (default)",
                   "peml": "Full PEML",
                   "switches": "Full PEML (defaults: linear G at 4 levels, token fusion, linear p^l on F^l, W on the "
                               "eye evidence)"}

# (claim, better, worse): "better beats worse" is what the paper claims; the report checks it seed by seed.
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("Low-quality visual eye movements help over video only (Table VI, row 2)", "visual_em", "video_only"),
    ("EMER pre-training helps over training from scratch (Table VI, row 3)", "emer_full_ft", "visual_em"),
    ("PEML fine-tuning helps over full fine-tuning (Table VI, row 4)", "peml", "emer_full_ft"),
    ("Full EM-VFER beats video only (Table VI, first vs last row)", "peml", "video_only"),
    ("The feature prior (default) beats the paper-literal mean series (Table IX)", "peml", "prior_mean"),
    ("The paper's mean prior beats the multivariate normal (Table IX)", "prior_mean", "prior_mvn"),
    ("The default distance beats the cosine one (Table X)", "peml", "distance_cosine"),
    ("The robust distance beats the one-sided one (Table X)", "peml", "distance_one_sided"),
    ("Prompts help (PEML without prompts is worse)", "peml", "no_prompts"),
    ("Instruction weights help (W ≡ 1 is worse)", "peml", "no_instruction_weights"),
    ("Level losses help (PEML without them is worse)", "peml", "no_level_losses"),
    ("Progressive level weights beat equal ones", "peml", "equal_level_weights"),
    ("Weighting the loss by W as well helps", "loss_weighting", "peml"),
    # the paper-literal switches: the paper makes no claim against our defaults; "holds" = the paper's form wins
    # the model's switches: "holds" = today's default wins (the paper's level heads: the paper's form wins)
    ("The linear G at several levels (default) beats the gated bottleneck (switch)", "peml", "bottleneck_fusion"),
    ("Token-sequence fusion [6] (default) beats CLS fusion (switch)", "peml", "cls_fusion"),
    ("Level heads on the multimodal F^l (default) beat them on the video CLS (switch)", "peml", "level_input_video_cls"),
    ("The paper's Transformer level heads beat linear ones (switch, no paper claim)", "paper_level_head", "peml"),
    ("W on the eye evidence (default) beats W on the input prompts (switch)", "peml", "placement_input"),
    ("W on the eye evidence (default) beats W on the prompts' attention (switch)", "peml", "placement_attention"),
)
# Models kept (first seed) for the figures
FIGURE_VARIANTS = ("video_only", "emer_full_ft", "peml")


def resolve_variants(keys: Optional[list[str]]) -> list[Variant]:
    """The variants named by `keys` (all by default), in the study's order; the figures' models are always added."""
    if not keys:
        return list(VARIANTS.values())
    unknown = sorted(set(keys) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    wanted = set(keys) | set(FIGURE_VARIANTS)
    return [v for k, v in VARIANTS.items() if k in wanted]
