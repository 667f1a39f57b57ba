"""MERT configuration: the Multimodal Emotion Recognition Transformer of EM-VFER (Liu et al.)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .eye_prior_mert import (
    INSTRUCTION_DISTANCES,
    INSTRUCTION_PRIORS,
    check_instruction_options,
)

TRAINING_STAGES = ("pretrain", "peml")
# The paper-literal variants (README, "Paper vs this implementation"): the first value of each is the default.
FUSION_MLPS = ("linear", "bottleneck")
FINAL_FUSIONS = ("tokens", "cls")
LEVEL_HEADS = ("linear", "transformer")
LEVEL_HEAD_INPUTS = ("multimodal", "video_cls")
#: where W(E', Ē) acts (README, "Paper vs this implementation", rows [8]-[11]); the first is the default
INSTRUCTION_PLACEMENTS = ("context", "attention", "input")


@strict(accept_kwargs=True)
class MERTConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MERTModel`] / [`MERTForVideoClassification`]. The defaults are the paper configuration
    (EM-VFER section III, Table XI): 16 frames of 224x224, a ViT-B/16 video encoder, a ViT-B eye encoder over 256
    eye-movement steps of 5 channels, multi-level fusion with the paper's linear G at 4 levels (3, 6, 9, 12), the
    token-sequence fusion of eq. [6], a 1-layer 512-d Transformer head, and 6 PEML prompt tokens per modality; W acts
    on the eye stream's evidence (`instruction_placement="context"`). README, "Paper vs this implementation", gives
    each choice and its evidence.

    Video encoder (paper eq. [3], φ_V; transformers' ViT layers, so any `ViTModel` checkpoint initialises it):
        num_frames (`int`, defaults to 16): frames T per clip.
        image_size, patch_size, num_channels, hidden_size, num_hidden_layers, num_attention_heads,
        intermediate_size, hidden_act, hidden_dropout_prob, attention_probs_dropout_prob, layer_norm_eps,
        qkv_bias: as in `ViTConfig`.
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal initialisation.
    Eye encoder (eq. [3], φ_E):
        eye_sequence_length (`int`, defaults to 256): steps L of the canonical eye-movement series.
        eye_num_channels (`int`, defaults to 5): channels of a step (pupil left/right, gaze x/y, behaviour).
        eye_hidden_size, eye_num_hidden_layers, eye_num_attention_heads, eye_intermediate_size
            (`int`, *optional*): sizes of the eye encoder; `None` means the same as the video encoder.
    Multi-level fusion (eqs. [4]-[5]):
        fusion_levels (`list[int]`, *optional*): 1-based video-encoder layers after which the two streams are fused;
            `None` means `num_fusion_levels` evenly spaced levels.
        num_fusion_levels (`int`, *optional*, defaults to 4): with `fusion_levels=None`, fuse at this many evenly
            spaced layers ending at the last (12 layers: 3, 6, 9, 12; at most one per layer) — the paper's "several
            levels", sized so that the PEML stage's trainable parameters stay near Table XI (7.31M against 7.62M
            with the linear G); `None` fuses after every layer.
        fusion_bottleneck_size (`int`, defaults to 128): width of the bottleneck MLPs G_V, G_E.
        fusion_mlp (`str`, defaults to "linear"): what G_V, G_E are. "linear" — the paper's one linear layer
            dim → dim with an activation (GELU), no gate; "bottleneck" — dim → bottleneck → dim with GELU, its output
            through a per-channel gate initialised to zero (an untrained fusion leaves the encoders untouched).
    Final fusion and head (eqs. [6]-[7]):
        final_fusion (`str`, defaults to "tokens"): what eq. [6] adds before the projection to the head width. "cls" —
            each frame's video CLS of F_V^L plus the eye CLS of F_E^L; "tokens" — the paper's full token sequences:
            the eye step tokens are linearly interpolated along time to the clip's video tokens (frame after frame,
            so frame t gets the t-th of T equal time segments of the series), added to them, projected token-wise,
            and each frame's tokens averaged into the head's frame token (computed as average-then-project: the
            projection is linear, so it is the same function).
        head_hidden_size (`int`, defaults to 512), head_num_layers (`int`, defaults to 1),
        head_num_attention_heads (`int`, *optional*): `None` picks the largest divisor of `head_hidden_size` that is
            at most `num_attention_heads`.
        head_intermediate_size (`int`, *optional*): `None` means `2 * head_hidden_size`.
    PEML (eqs. [8]-[12]):
        num_prompt_tokens (`int`, defaults to 6): learnable prompt tokens per modality, prepended before CLS.
        peml_levels (`list[int]`, *optional*): 1-based layers with an auxiliary level head p^l; `None` means every layer.
        peml_level_weights (`list[float]`, *optional*): loss weight w^l of each level head (one per level);
            `None` means progressive weights `0.5 * l / num_hidden_layers` (the final head has weight 1).
        level_head (`str`, defaults to "linear"): what each level head p^l is. "linear" — a linear probe on the
            frame average of the multimodal F^l of level l (`level_head_input`); "transformer" — the paper's
            "similar to Eq. 7": the multimodal F^l of
            level l built as eq. [6] builds it from the last layer (same `final_fusion`), its own projection to the
            head width and its own Transformer head of the sizes of eq. [7] (`head_*`), then a linear classifier.
        level_head_input (`str`, defaults to "multimodal"): what a linear p^l reads: "multimodal" — eq. [12]'s F^l,
            the sum of eq. [6] at level l (video plus the time-aligned, W-scaled eye features), averaged over frames;
            "video_cls" — the frame-averaged video CLS of level l alone (the earlier default).
        instruction_placement (`str`, defaults to "context"): where W(E', Ē) acts. "context" — W scales the eye
            stream's evidence for the video stream and the decision: the eye context GAP(F_E) of eq. [4] at every
            fusion level and the eye term of eq. [6] (and of the level features F^l), in both stages, whenever W
            exists (a stored prior or `instruction_weights=`); "attention" — log W is added to the attention logits
            of every eye layer on the eye prompts' keys (each query's attention to the prompts is multiplied by W);
            "input" — eq. [8] as written, the eye prompts multiplied by W before the eye encoder, whose pre-norm
            layers cancel the scale (LN(W·p) = LN(p)): W then barely reaches the output.
        instruction_prior (`str`, defaults to "features"): what Ē is (`emvfer_hf.eye_prior_mert`):
            "features" — the distribution of quality features (temporal roughness and spread of each channel, pupil
            left/right correlation, behaviour-change rate, valid fraction) over the tracker series of pre-training;
            W = 1 / (dist + eps). A deliberate difference from the paper-literal reading, which cannot see noise,
            constant, shuffled or missing series (README, "instruction weight"; docs/study/prior_auc.json);
            "mean" — the paper-literal per-step mean series, W = 1 / (dist(E', Ē) + eps);
            "multivariate_normal" — W = the normalised Gaussian density of the steps under N(Ē, Σ) (Table IX).
        instruction_distance (`str`, defaults to "robust"): dist in W(E', Ē). With "features": "robust" (the
            default: ROC AUC ≥ 0.9 against every degradation on real tracker AND real video windows, README "Eye
            movements") — W = s / (mean_k log(1 + relu(side_k·z_k)) + eps), a log penalty per feature in the
            direction in which it degrades, times the evidence share s = min(1, valid fraction / Ē's); "one_sided" —
            the mean over features of the robust z-score counted only in the direction in which a feature degrades;
            "mahalanobis" — sqrt(zᵀ P z / F) with the shrunk
            inverse feature correlation P; "euclidean" — the RMS z-score; "cosine" — 1 − cos of the scaled feature
            vectors. With "mean": "euclidean" (RMS over valid steps) or "cosine" (of the flattened series).
            "multivariate_normal" ignores it.
        instruction_eps (`float`, defaults to 1.0): eps of W = 1 / (dist + eps); bounds W by 1 / eps.
        use_instruction_weights (`bool`, defaults to True): scale the eye prompts by W; False fixes W ≡ 1 (the
            "without instruction weights" ablation).
        instruction_loss_weighting (`bool`, defaults to False): additionally weight the per-sample CE loss by the
            batch-normalised W (the paper's "reduce the impact of noisy samples" reading), PEML stage only.
    Stages (docs/design.md §Stages):
        training_stage (`str`, defaults to "pretrain"): "pretrain" (no prompts) or "peml" (prompts on, encoders frozen).
        train_video_encoder (`bool`, *optional*): whether the video encoder trains in the pre-training stage; `None`
            means "only if it was not initialised from a pretrained ViT".
        video_encoder_pretrained (`bool`, defaults to False): set by `from_vision_pretrained`.
    """

    model_type = "mert"

    num_frames: int = 16
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True

    eye_sequence_length: int = 256
    eye_num_channels: int = 5
    eye_hidden_size: int | None = None
    eye_num_hidden_layers: int | None = None
    eye_num_attention_heads: int | None = None
    eye_intermediate_size: int | None = None

    fusion_levels: list[int] | None = None
    num_fusion_levels: int | None = 4
    fusion_bottleneck_size: int = 128
    fusion_mlp: str = "linear"

    final_fusion: str = "tokens"
    head_hidden_size: int = 512
    head_num_layers: int = 1
    head_num_attention_heads: int | None = None
    head_intermediate_size: int | None = None

    num_prompt_tokens: int = 6
    peml_levels: list[int] | None = None
    peml_level_weights: list[float] | None = None
    level_head: str = "linear"
    level_head_input: str = "multimodal"
    instruction_placement: str = "context"
    instruction_distance: str = "robust"
    instruction_prior: str = "features"
    instruction_eps: float = 1.0
    use_instruction_weights: bool = True
    instruction_loss_weighting: bool = False

    training_stage: str = "pretrain"
    train_video_encoder: bool | None = None
    video_encoder_pretrained: bool = False

    #: options added after checkpoints were published, with the value that reproduces those checkpoints: a saved
    #: config without the key loads with it (`from_dict`), so that an older model computes what it computed
    LEGACY_DEFAULTS = {"instruction_placement": "input", "level_head_input": "video_cls", "num_fusion_levels": None}

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_options()

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """`PreTrainedConfig.from_dict`; a saved config that predates an option in :attr:`LEGACY_DEFAULTS` gets the
        value its model was trained with."""
        if config_dict.get("model_type", cls.model_type) == cls.model_type:
            config_dict = {**{k: v for k, v in cls.LEGACY_DEFAULTS.items() if k not in config_dict}, **config_dict}
        return super().from_dict(config_dict, **kwargs)

    # ----------------------------------------------------------------------------------------------------------------
    # Sizes derived from the config (never stored, so that a tiny config stays consistent)
    @property
    def resolved_eye_hidden_size(self) -> int:
        return self.eye_hidden_size or self.hidden_size

    @property
    def resolved_eye_num_hidden_layers(self) -> int:
        return self.eye_num_hidden_layers or self.num_hidden_layers

    @property
    def resolved_eye_num_attention_heads(self) -> int:
        return self.eye_num_attention_heads or self.num_attention_heads

    @property
    def resolved_eye_intermediate_size(self) -> int:
        return self.eye_intermediate_size or self.intermediate_size

    @property
    def resolved_fusion_levels(self) -> list[int]:
        """`fusion_levels`, else `num_fusion_levels` evenly spaced layers ending at the last, else every layer."""
        if self.fusion_levels is not None:
            return list(self.fusion_levels)
        layers = self.num_hidden_layers
        if self.num_fusion_levels is None or self.num_fusion_levels >= layers:
            return list(range(1, layers + 1))
        count = self.num_fusion_levels
        return [(k + 1) * layers // count for k in range(count)]

    @property
    def resolved_peml_levels(self) -> list[int]:
        return list(self.peml_levels) if self.peml_levels is not None else list(range(1, self.num_hidden_layers + 1))

    @property
    def resolved_peml_level_weights(self) -> list[float]:
        if self.peml_level_weights is not None:
            return [float(w) for w in self.peml_level_weights]
        return [0.5 * level / self.num_hidden_layers for level in self.resolved_peml_levels]

    @property
    def resolved_head_num_attention_heads(self) -> int:
        if self.head_num_attention_heads:
            return self.head_num_attention_heads
        return max(h for h in range(1, max(self.num_attention_heads, 1) + 1) if self.head_hidden_size % h == 0)

    @property
    def resolved_head_intermediate_size(self) -> int:
        return self.head_intermediate_size or 2 * self.head_hidden_size

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    # ----------------------------------------------------------------------------------------------------------------
    def _check_options(self):
        """At construction: the named options (distance, prior, stage, eps, the paper-literal switches) must be known
        values. Sizes are free here,
        as in transformers (a config may be built with any sizes and edited afterwards); `check_sizes` checks them when
        a model is built from the config."""
        check_instruction_options(self.instruction_prior, self.instruction_distance)
        if not self.instruction_eps > 0:
            raise ValueError(f"MERTConfig.instruction_eps must be > 0, got {self.instruction_eps}")
        if self.training_stage not in TRAINING_STAGES:
            raise ValueError(f"MERTConfig.training_stage must be one of {TRAINING_STAGES}, got {self.training_stage!r}")
        for name, allowed in (("fusion_mlp", FUSION_MLPS), ("final_fusion", FINAL_FUSIONS), ("level_head", LEVEL_HEADS),
                              ("level_head_input", LEVEL_HEAD_INPUTS),
                              ("instruction_placement", INSTRUCTION_PLACEMENTS)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"MERTConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def check_sizes(self):
        """On use (`MERTModel.__init__`): raise a `ValueError` that names the field for any inconsistent size."""
        self._check_options()

        def positive(name):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"MERTConfig.{name} must be a positive integer, got {value!r}")

        for name in (
            "num_frames", "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "eye_sequence_length", "eye_num_channels", "eye_hidden_size",
            "eye_num_hidden_layers", "eye_num_attention_heads", "eye_intermediate_size", "fusion_bottleneck_size",
            "num_fusion_levels",
            "head_hidden_size", "head_num_layers", "head_num_attention_heads", "head_intermediate_size",
        ):  # fmt: skip
            positive(name)
        if self.num_prompt_tokens < 0:
            raise ValueError(f"MERTConfig.num_prompt_tokens must be >= 0, got {self.num_prompt_tokens}")
        pairs = [
            ("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads),
            ("eye_hidden_size", self.resolved_eye_hidden_size, "eye_num_attention_heads",
             self.resolved_eye_num_attention_heads),
            ("head_hidden_size", self.head_hidden_size, "head_num_attention_heads",
             self.resolved_head_num_attention_heads),
        ]  # fmt: skip
        for size_name, size, heads_name, heads in pairs:
            if size % heads != 0:
                raise ValueError(f"MERTConfig.{size_name} ({size}) must be divisible by {heads_name} ({heads})")
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"MERTConfig.image_size ({self.image_size}) must be divisible by patch_size ({self.patch_size})"
            )
        for name, levels in (("fusion_levels", self.fusion_levels), ("peml_levels", self.peml_levels)):
            if levels is None:
                continue
            bad = [lv for lv in levels if not isinstance(lv, int) or not 1 <= lv <= self.num_hidden_layers]
            if bad or len(set(levels)) != len(levels):
                raise ValueError(
                    f"MERTConfig.{name} must be distinct layer numbers in 1..{self.num_hidden_layers}, got {levels}"
                )
        if self.peml_level_weights is not None and len(self.peml_level_weights) != len(self.resolved_peml_levels):
            raise ValueError(
                f"MERTConfig.peml_level_weights has {len(self.peml_level_weights)} entries but there are "
                f"{len(self.resolved_peml_levels)} PEML levels {self.resolved_peml_levels}"
            )


__all__ = ["FINAL_FUSIONS", "FUSION_MLPS", "INSTRUCTION_DISTANCES", "INSTRUCTION_PLACEMENTS", "INSTRUCTION_PRIORS",
           "LEVEL_HEADS", "LEVEL_HEAD_INPUTS", "MERTConfig"]
