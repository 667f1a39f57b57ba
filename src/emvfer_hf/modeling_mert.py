"""MERT: the Multimodal Emotion Recognition Transformer of EM-VFER (Liu et al., "Leveraging Eye Movement for
Instructing Robust Video-based Facial Expression Recognition"), section III.

Read top to bottom, a forward pass is:

1. encoders [3]          φ_V: ViT patch embedding + ViT layers on every frame (batch B·T);
                         φ_E: a linear embedding of each 5-d eye-movement step + CLS + positions, then ViT layers;
2. PEML prompts [8]      (PEML stage only) learnable prompt tokens prepended before CLS of both streams;
3. W(E', Ē) [9]-[11]     the instruction weight from the prior Ē (`MERTEyePrior`, eye_prior_mert.py) or the caller's
                         `instruction_weights`; with the default placement it scales the eye stream's evidence
                         (the context of [4] and the eye term of [6]); "input" scales the eye prompts as eq. [8] is
                         written, "attention" biases the eye layers' attention to the prompts by log W;
4. fusion [4]-[5]        after each fusion level l (default 4 evenly spaced layers): F_V ← F_V + G_V(α_V·F_V ⊕ W·GAP(F_E)),
                         F_E ← F_E + G_E(α_E·F_E ⊕ GAP(F_V)), G the paper's one linear layer with an activation
                         (`fusion_mlp="bottleneck"`: a zero-gated bottleneck MLP);
5. final fusion [6]      the full token sequences, the eye steps aligned in time to the video tokens, added (eye term
                         × W) and projected to the head width (`final_fusion="cls"`: per-frame CLS + eye CLS);
6. head [7]              a small Transformer over the T frame tokens with its own CLS → classifier;
7. PEML loss [12]        per-level heads p^l on the multimodal F^l of chosen levels, Σ w^l·CE, w^l growing with depth
                         (PEML stage only): linear probes on F^l averaged over frames (`level_head="transformer"`:
                         each p^l a Transformer head like [7]).

This module is flat (single-dot sibling imports only) so that `save_pretrained` can ship it as remote code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn
from transformers import PreTrainedModel, ViTConfig
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput
from transformers.models.vit.modeling_vit import ViTEmbeddings, ViTLayer

from .configuration_mert import TRAINING_STAGES, MERTConfig
from .eye_prior_mert import NUM_FEATURES, MERTEyePrior, fit_feature_prior


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
@dataclass
class MERTModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size * num_frames, num_tokens, hidden_size)`):
        Final video-encoder tokens F_V^L (after the encoder's final LayerNorm), per frame.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, head_hidden_size)`):
        The head's CLS token after the Transformer head [7] (the clip representation fed to the classifier).
    frame_features (`torch.FloatTensor` of shape `(batch_size, num_frames, head_hidden_size)`):
        The final fusion [6]: per-frame CLS of F_V^L plus the eye CLS of F_E^L, projected to the head width (with
        `final_fusion="tokens"`: each frame's tokens plus the time-aligned eye tokens, projected and averaged).
    eye_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_eye_tokens, eye_hidden_size)`):
        Final eye-encoder tokens F_E^L.
    level_features (`tuple(torch.FloatTensor)`, one per PEML level):
        The fused features F^l of each PEML level, input of the level heads: with `level_head="linear"` the
        frame-averaged video CLS after fusion, `(batch_size, hidden_size)`; with "transformer" the multimodal sum of
        eq. [6] at that level, before its projection, `(batch_size, num_frames, hidden_size)`.
    instruction_weights (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
        W(E', Ē) of eqs. [9]-[11]: how close each sample's eye-movement series is to the high-quality prior
        (larger = more trustworthy). `None` while the model has no prior.
    eye_hidden_states, eye_attentions, head_hidden_states, head_attentions (*optional*):
        The same as `hidden_states` / `attentions` for the eye encoder (`(batch_size, num_eye_tokens, ...)`) and the
        Transformer head.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        Video encoder: embedding output plus one entry per layer (after fusion), each `(batch_size * num_frames,
        num_tokens, hidden_size)`.
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        Video encoder: one entry per layer, each `(batch_size * num_frames, num_heads, num_tokens, num_tokens)`: the
        attention probabilities the layer used (gradients flow through them).

    As in transformers, the optional hidden states and attentions come last (`return_dict=False` tuples too), in the
    order eye encoder, head, video encoder (`hidden_states`, `attentions`).
    """

    last_hidden_state: Optional[torch.FloatTensor] = None
    pooler_output: Optional[torch.FloatTensor] = None
    frame_features: Optional[torch.FloatTensor] = None
    eye_last_hidden_state: Optional[torch.FloatTensor] = None
    level_features: Optional[tuple[torch.FloatTensor, ...]] = None
    instruction_weights: Optional[torch.FloatTensor] = None
    eye_hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    eye_attentions: Optional[tuple[torch.FloatTensor, ...]] = None
    head_hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    head_attentions: Optional[tuple[torch.FloatTensor, ...]] = None
    hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    attentions: Optional[tuple[torch.FloatTensor, ...]] = None


@dataclass
class MERTVideoClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        CE [2] of the final head; in the PEML stage plus Σ_l w^l·CE(p^l(F^l), y) [12].
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): the final head's scores.
    level_logits (`tuple(torch.FloatTensor)`, one per PEML level, each `(batch_size, num_labels)`):
        Scores of the auxiliary level heads p^l.
    instruction_weights (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): W(E', Ē), see [`MERTModelOutput`].
    eye_hidden_states, eye_attentions, head_hidden_states, head_attentions, hidden_states, attentions:
        See [`MERTModelOutput`] (the same order: hidden states and attentions last).
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    level_logits: Optional[tuple[torch.FloatTensor, ...]] = None
    instruction_weights: Optional[torch.FloatTensor] = None
    eye_hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    eye_attentions: Optional[tuple[torch.FloatTensor, ...]] = None
    head_hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    head_attentions: Optional[tuple[torch.FloatTensor, ...]] = None
    hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    attentions: Optional[tuple[torch.FloatTensor, ...]] = None


# ----------------------------------------------------------------------------------------------------------------------
# Building blocks
def _vit_config(config: MERTConfig, part: str) -> ViTConfig:
    """The `ViTConfig` of one Transformer stack of MERT: "video" (φ_V), "eye" (φ_E) or "head" (eq. [7])."""
    sizes = {
        "video": (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size),
        "eye": (
            config.resolved_eye_hidden_size,
            config.resolved_eye_num_hidden_layers,
            config.resolved_eye_num_attention_heads,
            config.resolved_eye_intermediate_size,
        ),
        "head": (
            config.head_hidden_size,
            config.head_num_layers,
            config.resolved_head_num_attention_heads,
            config.resolved_head_intermediate_size,
        ),
    }[part]
    vit_config = ViTConfig(
        hidden_size=sizes[0],
        num_hidden_layers=sizes[1],
        num_attention_heads=sizes[2],
        intermediate_size=sizes[3],
        hidden_act=config.hidden_act,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps,
        image_size=config.image_size,
        patch_size=config.patch_size,
        num_channels=config.num_channels,
        qkv_bias=config.qkv_bias,
    )
    vit_config._attn_implementation = config._attn_implementation or "sdpa"
    return vit_config


# The largest activation one chunk of a `MERTLayer` may allocate on CPU, in bytes (see `MERTLayer`): below glibc's
# largest mmap threshold (32 MiB), so that the chunks are reused from the heap once it is prepared.
CPU_LAYER_CHUNK_BYTES = 24 * 2**20
# Whether `MERTLayer` runs the query, key and value projections as one GEMM on CPU. Off: on the AMD EPYC with
# AVX512-BF16 it was not faster than three GEMMs in bf16 (benchmarks/README.md, issue 23); kept as a measured switch.
FUSED_QKV = False
_cpu_heap_prepared = False


def _prepare_cpu_heap() -> None:
    """Once per process, before the first `MERTLayer` runs on CPU: allocate and free one block of just under 32 MiB.

    glibc's malloc serves blocks above its mmap threshold with mmap and unmaps them on free, so they come back as
    fresh, zero-filled pages on every call. The threshold starts at 128 KiB and rises to the size of each mmap'd block
    that is freed, up to 32 MiB, and its heap-trim threshold to twice that; freeing one such block puts both at their
    maximum at once, so `MERTLayer`'s chunks (≤ 24 MiB) and the per-clip tensors of the forward are reused from the
    heap, and up to 64 MiB freed at the heap's top is kept. This is process-wide (glibc reaches the same state by
    itself once any program frees such a block). Measured at the paper configuration (benchmarks/README.md): the
    fresh-page faults of a forward drop to zero. With another C allocator it is just an allocation and a free.
    Skipped under `torch.compile`.
    """
    global _cpu_heap_prepared
    if not _cpu_heap_prepared:
        torch.empty(32 * 2**20 - 2**16, dtype=torch.uint8)  # mmap'd, then freed at once
        _cpu_heap_prepared = True


class MERTLayer(ViTLayer):
    """One pre-norm Transformer block of φ_V, φ_E and the head: transformers' `ViTLayer` — same parameters (so ViT
    checkpoints load as is), same function — run on CPU as two half-blocks over chunks of its first dimension.

    The sequences along the first dimension (the B·T frames of φ_V, the B series of φ_E) do not interact inside a
    block, so each half can take a few at a time. On CPU:
    - the attention half, x + Attn(LN(x)), runs over as many sequences as keep the (n, S, 3·D) query, key and value
      projections under `CPU_LAYER_CHUNK_BYTES` — at the paper size in bf16, all 16 frames in one call (with
      `FUSED_QKV`, the three projections as one GEMM on the concatenated weights);
    - the MLP half, x + MLP(LN(x)), runs in chunks whose (n, S, intermediate_size) hidden state stays under
      `CPU_LAYER_CHUNK_BYTES` (24 MiB). glibc hands out blocks above its mmap threshold (at most 32 MiB) with mmap and
      returns them on free, so every call would fault in fresh zeroed pages: at the paper configuration (16 frames ×
      203 tokens, a 40 MB fp32 hidden state per layer) those page faults cost more than the GELU itself. In bf16 a
      clip's 20 MB hidden state stays whole (bigger GEMMs); a batch of windows is split.
    Without gradients (inference), the chunks write straight into one output tensor (no concatenation). On other
    devices, with an attention mask, while attention maps are recorded (`run_whole`) and under `torch.compile`
    (inductor plans its own memory) the block runs whole as transformers' `ViTLayer`. On CPU it first prepares
    glibc's heap (`_prepare_cpu_heap`). The chunking depends only on the input's shape, its device, its dtype and the
    autocast state, so a gradient-checkpointing recompute chunks as the forward did (as long as
    `CPU_LAYER_CHUNK_BYTES` is not changed in between).
    """

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.intermediate_size = config.intermediate_size
        self.run_whole = False  # set while attentions are recorded: one map per layer, the very tensor used

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        """(N, S, D) → (N, S, D)."""
        if (
            self.run_whole
            or hidden_states.device.type != "cpu"
            or attention_mask is not None
            or torch.compiler.is_compiling()
        ):
            return super().forward(hidden_states, attention_mask, **kwargs)
        _prepare_cpu_heap()
        seq_len, dim = hidden_states.shape[1:]
        compute_dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden_states.dtype
        hidden_states = self._in_chunks(self._attention_half, hidden_states, seq_len * 3 * dim * compute_dtype.itemsize)
        return self._in_chunks(self._mlp_half, hidden_states, seq_len * self.intermediate_size * compute_dtype.itemsize)

    @staticmethod
    def _in_chunks(half, hidden_states: torch.Tensor, sequence_bytes: int) -> torch.Tensor:
        """`half` (a residual half-block, (n, S, D) → (n, S, D)) over balanced chunks of the first dimension, each
        with at most `CPU_LAYER_CHUNK_BYTES` of its largest activation (`sequence_bytes` per sequence)."""
        num_sequences = hidden_states.shape[0]
        num_chunks = -(-num_sequences // max(1, CPU_LAYER_CHUNK_BYTES // sequence_bytes))  # ceil
        if num_chunks == 1:
            return half(hidden_states)
        chunk = -(-num_sequences // num_chunks)  # balanced: 16 frames at ≤ 13 per chunk → 8 + 8, not 13 + 3
        if torch.is_grad_enabled() and hidden_states.requires_grad:
            return torch.cat([half(part) for part in hidden_states.split(chunk)])
        parts = [half(part) for part in hidden_states.split(chunk)[:1]]  # the first chunk gives the output dtype
        output = hidden_states.new_empty(hidden_states.shape, dtype=parts[0].dtype)
        output[:chunk] = parts[0]
        for start in range(chunk, num_sequences, chunk):
            output[start : start + chunk] = half(hidden_states[start : start + chunk])
        return output

    def _attention_half(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """x + dropout(Attn(LN_before(x))), as in `ViTLayer`."""
        return self.dropout(self._attention(self.layernorm_before(hidden_states))) + hidden_states

    def _mlp_half(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """x + dropout(MLP(LN_after(x))), as in `ViTLayer`."""
        return self.dropout(self.mlp(self.layernorm_after(hidden_states))) + hidden_states

    def _attention(self, normed: torch.Tensor) -> torch.Tensor:
        """Self-attention of (n, S, D) normalised tokens. With SDPA and `FUSED_QKV`: one GEMM for the query, key and
        value projections (the weights concatenated on the fly, so gradients reach each of them) and SDPA on strided
        views of its output; otherwise transformers' `ViTAttention` (eager attention, int8-quantised projections, or
        `FUSED_QKV` off)."""
        attention = self.attention
        fusable = isinstance(attention.q_proj.weight, torch.Tensor)  # not a quantised (int8) linear layer
        if not FUSED_QKV or not fusable or attention.config._attn_implementation != "sdpa":
            return attention(normed)[0]
        n, seq_len, _ = normed.shape
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        weight = torch.cat([p.weight for p in projections])
        bias = None if attention.q_proj.bias is None else torch.cat([p.bias for p in projections])
        qkv = nn.functional.linear(normed, weight, bias).view(n, seq_len, 3, attention.num_attention_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (n, heads, S, head_dim), strided views
        dropout = attention.attention_dropout if self.training else 0.0
        context = nn.functional.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=attention.scaling)
        return attention.o_proj(context.transpose(1, 2).reshape(n, seq_len, -1))


class MERTVideoEncoder(nn.Module):
    """φ_V of eq. [3]: ViT patch embedding + ViT layers, applied to each frame. Its parameter names are those of
    transformers' `ViTModel` (`embeddings.*`, `layers.N.*`, `layernorm.*`), so a ViT checkpoint loads into it as is."""

    def __init__(self, vit_config: ViTConfig):
        super().__init__()
        self.embeddings = ViTEmbeddings(vit_config)
        self.layers = nn.ModuleList([MERTLayer(vit_config) for _ in range(vit_config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(vit_config.hidden_size, eps=vit_config.layer_norm_eps)


class MERTEyeEmbeddings(nn.Module):
    """The token embedding of φ_E (eq. [3]): each 5-d step → a linear projection; a step marked invalid in the mask
    (and every step when no eye input is given) is replaced by a learned `missing_embedding`; then CLS and learned
    positions."""

    def __init__(self, config: MERTConfig):
        super().__init__()
        dim = config.resolved_eye_hidden_size
        self.step_embedding = nn.Linear(config.eye_num_channels, dim)
        self.missing_embedding = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.eye_sequence_length + 1, dim))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, eye_movement_values: torch.Tensor, eye_movement_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, C) values and (B, L) bool mask → (B, 1 + L, D_e) tokens."""
        steps = self.step_embedding(eye_movement_values)
        steps = torch.where(eye_movement_mask[..., None], steps, self.missing_embedding.to(steps.dtype))
        cls = self.cls_token.expand(steps.shape[0], -1, -1)
        return self.dropout(torch.cat([cls, steps], dim=1) + self.position_embeddings)


class MERTEyeEncoder(nn.Module):
    """φ_E of eq. [3]: eye-movement token embedding + ViT layers + final LayerNorm."""

    def __init__(self, config: MERTConfig, vit_config: ViTConfig):
        super().__init__()
        self.embeddings = MERTEyeEmbeddings(config)
        self.layers = nn.ModuleList([MERTLayer(vit_config) for _ in range(vit_config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(vit_config.hidden_size, eps=vit_config.layer_norm_eps)


class MERTCrossModalGate(nn.Module):
    """One direction of eqs. [4]/[5]: F + G(α·F ⊕ GAP(F_other)), the features with their cross-modal update.

    α is a learnable scalar, ⊕ broadcasts the other stream's globally averaged features over every token, G is a
    bottleneck MLP (dim → bottleneck → dim, GELU) whose output passes a per-channel gate initialised to zero, so an
    untrained fusion leaves the encoder untouched. When the two streams differ in width, the context is first
    projected linearly to this stream's width.
    """

    def __init__(self, dim: int, context_dim: int, bottleneck: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.context_projection = nn.Linear(context_dim, dim) if context_dim != dim else nn.Identity()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(N, S, D) tokens F and (N, D_context) context c → (N, S, D) F + gate ⊙ up(GELU(down(α·F ⊕ c))).

        Computed without any (N, S, D) intermediate, only the result is written: `down` is linear, so
        down(α·F ⊕ c) = α·(F W_downᵀ) ⊕ down(c) is formed at the bottleneck width; the gate is folded into `up`'s
        weights, gate ⊙ (x W_upᵀ + b_up) = x (gate ⊙ W_up)ᵀ + gate ⊙ b_up; and F enters as the input of that
        GEMM (addmm), so the residual add costs no pass of its own. Same function as the literal formula. Under
        autocast the update is added separately, so that F (the residual stream) stays in its own dtype.
        """
        context = self.down(self.context_projection(context))[:, None, :]  # (N, 1, bottleneck): down(c)
        projected = nn.functional.linear(hidden_states, self.down.weight)  # (N, S, bottleneck): F W_downᵀ
        # GELU(α·F W_downᵀ + down(c)), in the GEMM's dtype (α, a 1-element fp32 tensor, would promote it to fp32)
        bottleneck = self.act(torch.addcmul(context, projected, self.alpha.to(projected.dtype)))
        gated_weight, gated_bias = self.gate[:, None] * self.up.weight, self.gate * self.up.bias  # (D, bottleneck), (D,)
        if torch.is_autocast_enabled(hidden_states.device.type):  # autocast would run addmm, F included, in bf16/fp16
            return hidden_states + nn.functional.linear(bottleneck, gated_weight, gated_bias)  # F keeps its dtype
        fused = torch.addmm(hidden_states.flatten(0, 1), bottleneck.flatten(0, 1), gated_weight.t())  # F + x W'ᵀ
        return fused.add_(gated_bias).view_as(hidden_states)


class MERTCrossModalLinear(nn.Module):
    """One direction of eqs. [4]/[5] with G as the paper writes it (`fusion_mlp="linear"`): F + GELU(W(α·F ⊕ c) + b),
    one linear layer dim → dim with an activation, no bottleneck and no gate (so, unlike `MERTCrossModalGate`, an
    untrained fusion already changes the encoder's features). α, ⊕ and the context projection as there.
    """

    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.context_projection = nn.Linear(context_dim, dim) if context_dim != dim else nn.Identity()
        self.linear = nn.Linear(dim, dim)
        self.act = nn.GELU()

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(N, S, D) tokens F and (N, D_context) context c → (N, S, D) F + GELU(W(α·F ⊕ c) + b).

        The layer is linear, so W(α·F ⊕ c) + b = α·(F Wᵀ) ⊕ (W c + b): the context passes the layer once per
        sequence, not once per token. Same function as the literal formula; under autocast the update is computed in
        the autocast dtype and F keeps its own.
        """
        context = self.linear(self.context_projection(context))[:, None, :]  # (N, 1, D): W c + b
        projected = nn.functional.linear(hidden_states, self.linear.weight)  # (N, S, D): F Wᵀ
        # the update in the GEMM's dtype (bf16 under autocast: α, a 1-element fp32 tensor, would promote the (N, S, D)
        # update and its GELU to fp32), added to F in F's dtype
        return hidden_states + self.act(torch.addcmul(context, projected, self.alpha.to(projected.dtype)))


class MERTFusionLayer(nn.Module):
    """Multi-level cross-modal fusion at one level (eqs. [4]-[5]); both updates use the pre-fusion features. The
    update of each stream is `video_gate` / `eye_gate`, a `MERTCrossModalGate` (`fusion_mlp="bottleneck"`) or a
    `MERTCrossModalLinear` ("linear")."""

    def __init__(self, config: MERTConfig):
        super().__init__()
        video_dim, eye_dim = config.hidden_size, config.resolved_eye_hidden_size
        if config.fusion_mlp == "linear":
            self.video_gate = MERTCrossModalLinear(video_dim, eye_dim)
            self.eye_gate = MERTCrossModalLinear(eye_dim, video_dim)
        else:
            self.video_gate = MERTCrossModalGate(video_dim, eye_dim, config.fusion_bottleneck_size)
            self.eye_gate = MERTCrossModalGate(eye_dim, video_dim, config.fusion_bottleneck_size)

    def forward(
        self, video: torch.Tensor, eye: torch.Tensor, num_frames: int, eye_scale: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B·T, S_v, D_v), eye (B, S_e, D_e) → the fused pair, same shapes (`num_frames` = T, implied by B).
        `eye_scale` (B,): W scaling the eye context GAP(F_E) handed to the video stream [4]
        (`instruction_placement="context"`)."""
        batch_size = eye.shape[0]
        clip_video = video.reshape(batch_size, -1, video.shape[-1])  # (B, T·S_v, D_v), a view: all tokens of a clip
        video_context = clip_video.mean(dim=1)  # GAP(F_V) over frames+tokens, (B, D_v)
        eye_context = eye.mean(dim=1)  # GAP(F_E), (B, D_e)
        if eye_scale is not None:
            eye_context = eye_context * eye_scale.to(eye_context.dtype)[:, None]  # W·GAP(F_E)
        # G_V is token-wise, so it runs on the clip view: GAP(F_E) broadcasts over every token of every frame.
        new_video = self.video_gate(clip_video, eye_context).view_as(video)
        new_eye = self.eye_gate(eye, video_context)
        return new_video, new_eye


class MERTPrompts(nn.Module):
    """The PEML input-instruction prompts (eq. [8]): `num_prompt_tokens` learnable tokens per modality."""

    def __init__(self, config: MERTConfig):
        super().__init__()
        self.video_prompts = nn.Parameter(torch.zeros(1, config.num_prompt_tokens, config.hidden_size))
        self.eye_prompts = nn.Parameter(torch.zeros(1, config.num_prompt_tokens, config.resolved_eye_hidden_size))


class MERTTemporalHead(nn.Module):
    """Eq. [7]: a Transformer over the T fused frame tokens with its own CLS and learned temporal positions."""

    def __init__(self, config: MERTConfig, vit_config: ViTConfig):
        super().__init__()
        dim = config.head_hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_frames + 1, dim))
        self.layers = nn.ModuleList([MERTLayer(vit_config) for _ in range(vit_config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def temporal_positions(self, num_frames: int) -> torch.Tensor:
        """(1, 1 + num_frames, dim): the CLS position and the learned frame positions; for another number of frames
        than the config's (e.g. a processor sampling at `fps=`), the frame positions are linearly interpolated over
        the same time span."""
        trained = self.position_embeddings.shape[1] - 1
        if num_frames == trained:
            return self.position_embeddings
        cls, frames = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        if trained == 1:
            frames = frames.expand(-1, num_frames, -1)
        else:
            frames = nn.functional.interpolate(
                frames.transpose(1, 2), size=num_frames, mode="linear", align_corners=True
            ).transpose(1, 2)
        return torch.cat([cls, frames], dim=1)

    def forward(
        self, frame_features: torch.Tensor, output_hidden_states: bool = False, attentions: Optional[list] = None
    ) -> tuple[torch.Tensor, Optional[tuple[torch.Tensor, ...]]]:
        """(B, T, dim) frame tokens → the head's CLS after the final LayerNorm (B, dim), and, when
        `output_hidden_states`, the token states (B, 1 + T, dim): the input plus one per layer. The attention maps
        are appended to `attentions` when a list is given (see `_record_attentions`)."""
        batch_size, num_frames = frame_features.shape[:2]
        tokens = torch.cat([self.cls_token.expand(batch_size, -1, -1), frame_features], dim=1)
        tokens = tokens + self.temporal_positions(num_frames).to(tokens.dtype)
        states = (tokens,) if output_hidden_states else None
        with _record_attentions(self.layers, attentions):
            for layer in self.layers:
                tokens = layer(tokens)
                if output_hidden_states:
                    states += (tokens,)
        return self.layernorm(tokens[:, 0]), states


class MERTLevelTransformer(nn.Module):
    """A level head p^l with `level_head="transformer"` ("similar to Eq. 7", eq. [12]): the multimodal F^l of level l
    (the sum of eq. [6] at that level) projected to the head width, its own Transformer head of the sizes of eq. [7],
    and a linear classifier on that head's CLS. (Its parameter names differ from the linear probes' `level_head_{l}`,
    so a checkpoint pre-trained with either kind of level head loads into the other: level heads only train in PEML.)
    """

    def __init__(self, config: MERTConfig, vit_config: ViTConfig):
        super().__init__()
        self.projection = nn.Linear(config.hidden_size, config.head_hidden_size)
        self.head = MERTTemporalHead(config, vit_config)
        self.classifier = nn.Linear(config.head_hidden_size, config.num_labels)

    def forward(self, level_features: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden_size) F^l → (B, num_labels) the logits of p^l."""
        return self.classifier(self.head(self.projection(level_features))[0])


@contextlib.contextmanager
def _record_attentions(layers, sink: Optional[list]):
    """Collect the attention maps of `layers` (`MERTLayer`) into `sink`, one (N, heads, S, S) tensor per layer, at the
    end of the block (no-op when `sink` is None). The layers run whole (not in CPU chunks) meanwhile, so each map is
    the attention-probability tensor the layer actually multiplied with its values: gradients flow through it."""
    if sink is None:
        yield
        return
    per_layer = [[] for _ in layers]
    hooks = [
        layer.attention.register_forward_hook(lambda module, args, output, maps=maps: maps.append(output[1]))
        for layer, maps in zip(layers, per_layer)
    ]
    for layer in layers:
        layer.run_whole = True
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for layer in layers:
            layer.run_whole = False
    sink.extend(maps[0] if len(maps) == 1 else torch.cat(maps) for maps in per_layer if maps)


# ----------------------------------------------------------------------------------------------------------------------
# Loading (W(E', Ē) of eqs. [9]-[11] is `eye_prior_mert.instruction_weight`, computed by `MERTEyePrior`)
def _hub_kwargs(kwargs: dict) -> dict:
    """The `from_pretrained` keyword arguments that locate a checkpoint's files (revision, cache, token, ...)."""
    keys = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
    return {k: kwargs[k] for k in keys if k in kwargs}


# ----------------------------------------------------------------------------------------------------------------------
# Models
class MERTPreTrainedModel(PreTrainedModel):
    config: MERTConfig
    config_class = MERTConfig
    base_model_prefix = "mert"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["MERTLayer", "ViTEmbeddings"]
    # the prior's buffers before `MERTEyePrior` (read by `MERTEyePrior.load_legacy`, not by the state-dict load)
    _keys_to_ignore_on_load_unexpected = [rf"(^|\.){old}$" for old in MERTEyePrior.LEGACY_KEYS]
    # a checkpoint without the prior is reported by `has_eye_prior` and by the PEML/W errors, which say what to do
    _keys_to_ignore_on_load_missing = [r"(^|\.)eye_prior\."]

    def _init_weights(self, module):
        """Truncated-normal init (ViT's), zero-initialised fusion gates (eqs. [4]-[5]), an empty eye prior."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
        elif isinstance(module, (MERTEyeEmbeddings, MERTTemporalHead)):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
            if isinstance(module, MERTEyeEmbeddings):
                init.trunc_normal_(module.missing_embedding, mean=0.0, std=std)
        elif isinstance(module, MERTCrossModalGate):
            init.ones_(module.alpha)
            init.zeros_(module.gate)
        elif isinstance(module, MERTCrossModalLinear):
            init.ones_(module.alpha)
        elif isinstance(module, MERTPrompts):
            init.trunc_normal_(module.video_prompts, mean=0.0, std=std)
            init.trunc_normal_(module.eye_prompts, mean=0.0, std=std)
        elif isinstance(module, MERTEyePrior):  # no prior yet
            init.zeros_(module.mean)
            init.copy_(module.covariance, torch.eye(module.covariance.shape[0]))
            init.zeros_(module.mean_initialized)
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_scale)
            init.copy_(module.feature_precision, torch.eye(NUM_FEATURES))
            init.zeros_(module.features_initialized)
            init.zeros_(module.features_own_rate)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then a check of the stored eye-movement prior against the config
        (an older checkpoint without the feature prior loads with a clear warning; see
        `MERTEyePrior.reconcile_loaded`). Checkpoints saved before the prior became the `MERTEyePrior` submodule
        (buffers `eye_prior_mean`, ... on `MERTModel`) load their prior from those names
        (`MERTEyePrior.LEGACY_KEYS`)."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        base = model.base_model
        if isinstance(getattr(base, "eye_prior", None), MERTEyePrior):
            if not base.eye_prior.stored:
                base.eye_prior.load_legacy(pretrained_model_name_or_path, **_hub_kwargs(kwargs))
            base.eye_prior.reconcile_loaded(str(pretrained_model_name_or_path))
        return loaded

    # -- stages (docs/design.md §Stages) -------------------------------------------------------------------------------
    def _stage_trainable_modules(self, stage: str) -> list[nn.Module]:
        raise NotImplementedError

    def set_training_stage(self, stage: str) -> None:
        """Switch between the two stages of EM-VFER and set `requires_grad` accordingly.

        - "pretrain": no prompts; the eye encoder, fusion (incl. α), final fusion, head and classifier train; the
          video encoder trains only when `config.train_video_encoder` (default: when it was not initialised from a
          pretrained ViT). Prompts and level heads are frozen.
        - "peml": prompts on; both encoders frozen; prompts, fusion (incl. α), final fusion, head, classifier and
          level heads train.
        """
        if stage not in TRAINING_STAGES:
            raise ValueError(f"training stage must be one of {TRAINING_STAGES}, got {stage!r}")
        self.config.training_stage = stage
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        for module in self._stage_trainable_modules(stage):
            for parameter in module.parameters():
                parameter.requires_grad_(True)

    @property
    def training_stage(self) -> str:
        return self.config.training_stage

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class MERTModel(MERTPreTrainedModel):
    """The MERT backbone: encoders [3], PEML prompts [8]-[11], multi-level fusion [4]-[5], final fusion [6] and the
    Transformer head [7]. Returns the head's CLS as `pooler_output`; the classifier and level heads live in
    [`MERTForVideoClassification`]."""

    def __init__(self, config: MERTConfig):
        config.check_sizes()  # sizes are validated on use, not on construction (as in transformers)
        super().__init__(config)
        self._video_vit_config = _vit_config(config, "video")
        self._eye_vit_config = _vit_config(config, "eye")
        self._head_vit_config = _vit_config(config, "head")
        self.video_encoder = MERTVideoEncoder(self._video_vit_config)
        self.eye_encoder = MERTEyeEncoder(config, self._eye_vit_config)
        self.fusion = nn.ModuleDict({str(level): MERTFusionLayer(config) for level in config.resolved_fusion_levels})
        self.prompts = MERTPrompts(config) if config.num_prompt_tokens > 0 else None
        eye_dim = config.resolved_eye_hidden_size
        self.eye_to_video = nn.Linear(eye_dim, config.hidden_size) if eye_dim != config.hidden_size else nn.Identity()
        self.final_fusion = nn.Linear(config.hidden_size, config.head_hidden_size)
        self.head = MERTTemporalHead(config, self._head_vit_config)
        # The prior Ē of high-quality eye movements and W(E', Ē) [9]-[11], saved with the checkpoint.
        self.eye_prior = MERTEyePrior(config)
        self.post_init()
        self.set_training_stage(config.training_stage)

    # -- input embeddings (the ViT patch embedding of φ_V) ------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.video_encoder.embeddings.patch_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.video_encoder.embeddings.patch_embeddings = value

    # -- stages ------------------------------------------------------------------------------------------------------
    def _stage_trainable_modules(self, stage: str) -> list[nn.Module]:
        shared = [self.fusion, self.eye_to_video, self.final_fusion, self.head]
        if stage == "peml":
            return shared + ([self.prompts] if self.prompts is not None else [])
        train_video = self.config.train_video_encoder
        if train_video is None:
            train_video = not self.config.video_encoder_pretrained
        return shared + [self.eye_encoder] + ([self.video_encoder] if train_video else [])

    @property
    def prompts_active(self) -> bool:
        return self.config.training_stage == "peml" and self.prompts is not None

    # -- the prior Ē (the `eye_prior` submodule, eqs. [9]-[11]) ----------------------------------------------------------
    @property
    def has_eye_prior(self) -> bool:
        """Whether the prior that `config.instruction_prior` asks for is stored ("features" or the mean series)."""
        return self.eye_prior.is_set

    @property
    def stored_eye_priors(self) -> tuple[str, ...]:
        """The kinds of prior stored: "features" and/or "mean" (which also serves the multivariate normal)."""
        return self.eye_prior.stored

    def set_eye_prior(self, mean=None, covariance=None, features=None) -> None:
        """Store the prior Ē: the mean series (L, C) (and Σ (C, C)) and/or the feature prior `features` =
        {"mean": (F,), "scale": (F,), "precision": (F, F)} of `eye_prior_mert.fit_feature_prior`
        (`MERTEyePrior.set`; `model.eye_prior.state()` gives these keyword arguments back)."""
        self.eye_prior.set(mean, covariance, features=features)

    def set_eye_prior_from_series(self, eye_movement_values, eye_movement_mask=None, eye_quality_features=None) -> None:
        """Compute and store the prior from high-quality series: an array/tensor (N, L, C) (+ mask (N, L)) or an
        iterable of `EyeMovementSeries` (resampled to `config.eye_sequence_length`; their quality features are
        computed at each series' own rate). Stores every kind of prior (the feature prior and the mean series with
        Σ), so that `config.instruction_prior` can be switched later. `eye_quality_features` (N, F) may give the
        features of array input (else they are computed from the L steps)."""
        from .eye_movement_mert import eye_movement_prior, stack_eye_movement_series

        if isinstance(eye_movement_values, torch.Tensor):
            eye_movement_values = eye_movement_values.detach().float().cpu().numpy()
        if isinstance(eye_movement_mask, torch.Tensor):
            eye_movement_mask = eye_movement_mask.detach().cpu().numpy()
        if not hasattr(eye_movement_values, "shape"):  # an iterable of EyeMovementSeries
            series = list(eye_movement_values)
            eye_movement_values, eye_movement_mask = stack_eye_movement_series(series, self.config.eye_sequence_length)
            if eye_quality_features is None:
                eye_quality_features = torch.stack([s.quality_features() for s in series])
        mean, covariance = eye_movement_prior(
            eye_movement_values, mask=eye_movement_mask, length=self.config.eye_sequence_length
        )
        values = torch.as_tensor(eye_movement_values, dtype=torch.float32)
        mask = None if eye_movement_mask is None else torch.as_tensor(eye_movement_mask).bool()
        features = fit_feature_prior(values, mask, features=eye_quality_features)
        self.set_eye_prior(mean, covariance, features=features)

    def instruction_weights(
        self, eye_movement_values: torch.Tensor, eye_movement_mask: torch.Tensor, eye_quality_features=None
    ) -> torch.Tensor:
        """W(E', Ē) for a batch (B,), with this model's prior and its config's distance/prior options; raises a
        clear error when the prior is not stored."""
        return self.eye_prior(eye_movement_values, eye_movement_mask, eye_quality_features)

    # -- input checks --------------------------------------------------------------------------------------------------
    def _check_inputs(self, pixel_values, eye_movement_values, eye_movement_mask):
        c = self.config
        # Any number of frames T >= 1 (the head's temporal positions are interpolated); fixed C, H, W.
        expected = (c.num_channels, c.image_size, c.image_size)
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 5 or tuple(pixel_values.shape[2:]) != expected:
            got = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(
                f"pixel_values must have shape (batch_size, num_frames, {', '.join(map(str, expected))}) "
                f"(num_frames {c.num_frames} as trained, or any other T >= 1: temporal positions are interpolated), "
                f"got {got}"
            )
        if pixel_values.shape[1] < 1:
            raise ValueError(f"pixel_values must hold at least one frame, got shape {tuple(pixel_values.shape)}")
        batch_size = pixel_values.shape[0]
        expected_eye = (batch_size, c.eye_sequence_length, c.eye_num_channels)
        if eye_movement_values is not None and tuple(eye_movement_values.shape) != expected_eye:
            raise ValueError(
                f"eye_movement_values must have shape {expected_eye} (batch, eye_sequence_length, channels), "
                f"got {tuple(eye_movement_values.shape)}"
            )
        if eye_movement_mask is not None:
            if eye_movement_values is None:
                raise ValueError("eye_movement_mask was given without eye_movement_values")
            if tuple(eye_movement_mask.shape) != expected_eye[:2]:
                raise ValueError(
                    f"eye_movement_mask must have shape {expected_eye[:2]}, got {tuple(eye_movement_mask.shape)}"
                )

    def _sync_attention_implementation(self, output_attentions: bool) -> None:
        impl = "eager" if output_attentions else (self.config._attn_implementation or "sdpa")
        for vit_config in (self._video_vit_config, self._eye_vit_config, self._head_vit_config):
            if vit_config._attn_implementation != impl:
                vit_config._attn_implementation = impl

    def _eye_layers_done_after(self, video_layer: int) -> int:
        """How many eye-encoder layers have run when video layer `video_layer` (1-based) is done (lockstep)."""
        num_video, num_eye = self.config.num_hidden_layers, self.config.resolved_eye_num_hidden_layers
        return (video_layer * num_eye) // num_video

    # -- final fusion [6] and level features [12] -----------------------------------------------------------------------
    def _fuse_modalities(
        self,
        video: torch.Tensor,
        eye: torch.Tensor,
        num_frames: int,
        num_prompts: int,
        normalize: bool = False,
        eye_scale: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The sum of eq. [6] before its projection: video tokens (B·T, P + S_v, D_v) and eye tokens
        (B, P + 1 + L, D_e) (P prompts first, then CLS) → per-frame features (B, T, D_v).

        `final_fusion="cls"`: each frame's video CLS + the eye CLS. "tokens": every token of a frame (CLS and patches)
        plus the eye step tokens aligned to it, averaged over the frame. The alignment interpolates the L step tokens
        linearly along time onto the clip's T·S_v video tokens, taken frame after frame, so frame t receives the t-th
        of T equal time segments of the eye series (the eye CLS, which has no time, is left out). Averaging a frame's
        tokens commutes with the (linear) projection of eq. [6], so this equals projecting every summed token and
        averaging per frame, at the cost of one projection per frame. `normalize` applies the encoders' final
        LayerNorms first (token-wise: only the tokens used are normalised). `eye_scale` (B,) multiplies the eye term
        (W with `instruction_placement="context"`).
        """
        video_norm = self.video_encoder.layernorm if normalize else nn.Identity()
        eye_norm = self.eye_encoder.layernorm if normalize else nn.Identity()
        batch_size = eye.shape[0]
        scale = 1.0 if eye_scale is None else eye_scale.to(video.dtype)[:, None, None]  # (B, 1, 1)
        if self.config.final_fusion == "cls":
            frame_cls = video_norm(video[:, num_prompts]).reshape(batch_size, num_frames, -1)  # (B, T, D_v)
            return frame_cls + scale * self.eye_to_video(eye_norm(eye[:, num_prompts]))[:, None, :]
        video_tokens = video_norm(video[:, num_prompts:])  # (B·T, S_v, D_v)
        tokens_per_frame = video_tokens.shape[1]
        eye_steps = eye_norm(eye[:, num_prompts + 1 :]).transpose(1, 2)  # (B, D_e, L)
        aligned = nn.functional.interpolate(eye_steps, size=num_frames * tokens_per_frame, mode="linear")
        # aligned: (B, D_e, T·S_v), frame after frame → the mean of each frame's share, (B, T, D_e)
        eye_frames = aligned.reshape(batch_size, -1, num_frames, tokens_per_frame).mean(dim=-1).transpose(1, 2)
        video_frames = video_tokens.mean(dim=1).reshape(batch_size, num_frames, -1)  # (B, T, D_v)
        return video_frames + scale * self.eye_to_video(eye_frames)  # eye_to_video is affine: commutes with the means

    def _level_features(
        self, video: torch.Tensor, eye: torch.Tensor, num_frames: int, num_prompts: int, eye_scale=None
    ) -> torch.Tensor:
        """F^l of eq. [12] from the fused tokens of level l, under the encoders' final LayerNorms: the multimodal sum
        of eq. [6] at level l (B, T, D_v) for `level_head="transformer"`; for "linear", its average over frames
        (B, D_v) (`level_head_input="multimodal"`, eq. [12]'s F^l) or the frame-averaged video CLS alone
        ("video_cls")."""
        if self.config.level_head_input == "video_cls" and self.config.level_head == "linear":
            cls = video[:, num_prompts].reshape(eye.shape[0], num_frames, -1).mean(dim=1)
            return self.video_encoder.layernorm(cls)
        fused = self._fuse_modalities(video, eye, num_frames, num_prompts, normalize=True, eye_scale=eye_scale)
        return fused if self.config.level_head == "transformer" else fused.mean(dim=1)

    # -- W in the forward -----------------------------------------------------------------------------------------------
    def _resolve_instruction_weights(self, values, mask, quality_features, override, batch_size):
        """`(reported, used)`, both (B,) or None: the W returned in the output and the W the forward computes with —
        the caller's `instruction_weights`, else W(E', Ē) from the prior, else None (no prior: W does not act).
        Under torch.export / torch.compile there is no data-dependent branch on the prior flag: without a prior the
        reported W is 0 and the used one 1 (the same outputs as eager mode, where W does not act)."""
        if override is not None:
            override = torch.as_tensor(override, dtype=torch.float32, device=values.device)
            if override.shape != (batch_size,):
                raise ValueError(
                    f"instruction_weights must have shape ({batch_size},) (one W per sample), got {tuple(override.shape)}"
                )
            if not torch.compiler.is_compiling() and not bool(torch.isfinite(override).all() and (override >= 0).all()):
                raise ValueError("instruction_weights must be finite and >= 0")
            return override, override
        if torch.compiler.is_compiling():
            weights = self.eye_prior(values, mask, quality_features)
            has_prior = self.eye_prior.flag() > 0
            return weights * has_prior.to(weights.dtype), torch.where(has_prior, weights, torch.ones_like(weights))
        weights = self.eye_prior(values, mask, quality_features) if self.has_eye_prior else None
        return weights, weights

    @staticmethod
    def _prompt_attention_bias(weights, seq_len: int, num_prompts: int, dtype) -> torch.Tensor:
        """(B, 1, 1, S_e) additive attention bias: log W on the keys of the first `num_prompts` tokens (the eye
        prompts), 0 elsewhere, so that softmax multiplies each query's unnormalised attention to the prompts by W
        (`instruction_placement="attention"`). W is floored at 1e-4: W = 0 removes the prompts all but exactly."""
        log_w = weights.float().clamp_min(1e-4).log()[:, None]  # (B, 1)
        is_prompt = torch.arange(seq_len, device=weights.device) < num_prompts  # (S_e,)
        bias = torch.where(is_prompt[None], log_w, torch.zeros((), device=weights.device))
        return bias[:, None, None, :].to(dtype)

    # -- forward -------------------------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        eye_movement_values: Optional[torch.Tensor] = None,
        eye_movement_mask: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        eye_quality_features: Optional[torch.Tensor] = None,
        instruction_weights: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Union[MERTModelOutput, tuple]:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, image_size, image_size)`):
            Normalised face frames (see `MERTVideoProcessor`).
        eye_movement_values (`torch.FloatTensor` of shape `(batch_size, eye_sequence_length, eye_num_channels)`,
            *optional*): the canonical eye-movement series E' (docs/design.md §Eye-movement format). Without it every
            step is "missing": the eye encoder sees the learned `missing_embedding` tokens, and W = 0 (with the
            default placement the eye stream's evidence is switched off).
        eye_movement_mask (`torch.BoolTensor` of shape `(batch_size, eye_sequence_length)`, *optional*):
            True for valid steps; default all valid when values are given.
        eye_quality_features (`torch.FloatTensor` of shape `(batch_size, num_quality_features)`, *optional*):
            the quality features of each series computed at its own sampling rate (the processor returns them);
            W then uses them instead of features of the resampled L steps.
        instruction_weights (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): W to use instead of
            W(E', Ē) (oracle and ablation studies, or your own quality score); returned as given.
        """
        config = self.config
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        return_dict = return_dict if return_dict is not None else config.return_dict
        self._check_inputs(pixel_values, eye_movement_values, eye_movement_mask)
        self._sync_attention_implementation(bool(output_attentions))

        batch_size, num_frames = pixel_values.shape[:2]
        dtype = self.video_encoder.embeddings.patch_embeddings.projection.weight.dtype
        if eye_movement_values is None:
            eye_movement_values = pixel_values.new_zeros(batch_size, config.eye_sequence_length, config.eye_num_channels)
            eye_movement_mask = torch.zeros(batch_size, config.eye_sequence_length, dtype=torch.bool, device=pixel_values.device)
        elif eye_movement_mask is None:
            eye_movement_mask = torch.ones(eye_movement_values.shape[:2], dtype=torch.bool, device=pixel_values.device)
        eye_movement_mask = eye_movement_mask.bool()

        # Instruction weight W(E', Ē) [9]-[11] (no parameters involved), or the caller's W
        weights, used = self._resolve_instruction_weights(
            eye_movement_values, eye_movement_mask, eye_quality_features, instruction_weights, batch_size
        )
        # where W acts (`instruction_placement`): "input" scales the eye prompts (eq. [8] as written), "attention" adds
        # log W to the attention logits of every eye layer on the eye prompts' keys, "context" scales the eye stream's
        # evidence handed to the video stream [4] and to the decision [6] (in both stages, wherever W exists)
        placement = config.instruction_placement
        scale = None
        if used is not None:
            scale = used if config.use_instruction_weights else torch.ones_like(used)  # W, or W ≡ 1
        eye_scale = scale if placement == "context" else None

        # Encoders' token embeddings [3]
        video = self.video_encoder.embeddings(pixel_values.flatten(0, 1).to(dtype))  # (B·T, 1 + N_v, D_v)
        eye = self.eye_encoder.embeddings(eye_movement_values.to(dtype), eye_movement_mask)  # (B, 1 + L, D_e)

        # PEML input instruction [8]: prompts before CLS of both streams
        num_prompts, eye_attention_bias = 0, None
        if self.prompts_active:
            if scale is None:
                raise ValueError(self.eye_prior.missing_message())
            num_prompts = config.num_prompt_tokens
            video_prompts = self.prompts.video_prompts.expand(video.shape[0], -1, -1)
            eye_prompts = self.prompts.eye_prompts.expand(batch_size, -1, -1)
            if placement == "input":  # P_E·W before the pre-norm encoder: LN(W·p) = LN(p), so W mostly cancels
                eye_prompts = eye_prompts * scale.to(dtype)[:, None, None]
            elif placement == "attention":  # every query's attention to the P eye prompts is multiplied by W
                eye_attention_bias = self._prompt_attention_bias(scale, eye.shape[1] + num_prompts, num_prompts, dtype)
            video = torch.cat([video_prompts, video], dim=1)
            eye = torch.cat([eye_prompts, eye], dim=1)

        video_states = (video,) if output_hidden_states else None
        eye_states = (eye,) if output_hidden_states else None
        video_attentions = [] if output_attentions else None
        eye_attentions = [] if output_attentions else None
        level_features = []
        peml_levels = set(config.resolved_peml_levels)

        # Both encoders in lockstep, fused after each fusion level [4]-[5]
        eye_done = 0
        with _record_attentions(self.video_encoder.layers, video_attentions), _record_attentions(
            self.eye_encoder.layers, eye_attentions
        ):
            for level, video_layer in enumerate(self.video_encoder.layers, start=1):
                video = video_layer(video)
                while eye_done < self._eye_layers_done_after(level):
                    eye = self.eye_encoder.layers[eye_done](eye, eye_attention_bias)
                    eye_done += 1
                    if output_hidden_states:
                        eye_states += (eye,)
                if str(level) in self.fusion:
                    video, eye = self.fusion[str(level)](video, eye, num_frames, eye_scale)
                if output_hidden_states:
                    video_states += (video,)
                if level in peml_levels:  # F^l for the level heads [12]
                    level_features.append(self._level_features(video, eye, num_frames, num_prompts, eye_scale))

        video = self.video_encoder.layernorm(video)
        eye = self.eye_encoder.layernorm(eye)

        # Final fusion [6]: per-frame video CLS (or tokens) + eye CLS (or aligned tokens) → head width
        fused = self._fuse_modalities(video, eye, num_frames, num_prompts, eye_scale=eye_scale)
        frame_features = self.final_fusion(fused)  # (B, T, H)

        # Transformer head over the T frame tokens [7]
        head_attentions = [] if output_attentions else None
        pooled, head_states = self.head(frame_features, bool(output_hidden_states), head_attentions)

        output = MERTModelOutput(
            last_hidden_state=video,
            pooler_output=pooled,
            frame_features=frame_features,
            eye_last_hidden_state=eye,
            level_features=tuple(level_features),
            instruction_weights=weights,
            hidden_states=video_states,
            attentions=tuple(video_attentions) if output_attentions else None,
            eye_hidden_states=eye_states,
            eye_attentions=tuple(eye_attentions) if output_attentions else None,
            head_hidden_states=head_states,
            head_attentions=tuple(head_attentions) if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()


class MERTForVideoClassification(MERTPreTrainedModel):
    """MERT with the expression classifier and the PEML level heads p^l (eq. [12]) on top of [`MERTModel`]."""

    def __init__(self, config: MERTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.mert = MERTModel(config)
        self.classifier = nn.Linear(config.head_hidden_size, config.num_labels)
        # p^l of eq. [12]: with level_head="linear" plain top-level Linear attributes `level_head_{l}` (re-initialised
        # like the classifier); with "transformer" a `MERTLevelTransformer` per level in `level_transformers`.
        self.level_transformers = None
        if config.level_head == "transformer":
            self.level_transformers = nn.ModuleDict(
                {str(level): MERTLevelTransformer(config, self.mert._head_vit_config)
                 for level in config.resolved_peml_levels}
            )  # fmt: skip
        else:
            for level in config.resolved_peml_levels:
                setattr(self, f"level_head_{level}", nn.Linear(config.hidden_size, config.num_labels))
        self.post_init()
        self.set_training_stage(config.training_stage)

    def level_heads(self) -> list[nn.Linear]:
        """The linear classifiers of the level heads p^l (the whole p^l for `level_head="linear"`), in the order of
        `config.resolved_peml_levels`."""
        if self.level_transformers is not None:
            return [self.level_transformers[str(level)].classifier for level in self.config.resolved_peml_levels]
        return [getattr(self, f"level_head_{level}") for level in self.config.resolved_peml_levels]

    def _level_logits(self, level_features: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """p^l(F^l) for every PEML level: (B, num_labels) each."""
        if self.level_transformers is not None:
            return tuple(self.level_transformers[str(level)](f)
                         for level, f in zip(self.config.resolved_peml_levels, level_features))  # fmt: skip
        return tuple(head(f) for head, f in zip(self.level_heads(), level_features))

    def _stage_trainable_modules(self, stage: str) -> list[nn.Module]:
        modules = self.mert._stage_trainable_modules(stage) + [self.classifier]
        if stage != "peml":
            return modules
        return modules + ([self.level_transformers] if self.level_transformers is not None else self.level_heads())

    # Delegates to the backbone, so that `model.set_eye_prior...` works on the classification model too.
    @property
    def has_eye_prior(self) -> bool:
        return self.mert.has_eye_prior

    @property
    def eye_prior(self) -> MERTEyePrior:
        return self.mert.eye_prior

    @property
    def stored_eye_priors(self) -> tuple[str, ...]:
        return self.mert.stored_eye_priors

    def set_eye_prior(self, mean=None, covariance=None, features=None) -> None:
        self.mert.set_eye_prior(mean, covariance, features=features)

    def set_eye_prior_from_series(self, eye_movement_values, eye_movement_mask=None, eye_quality_features=None) -> None:
        self.mert.set_eye_prior_from_series(eye_movement_values, eye_movement_mask, eye_quality_features)

    @classmethod
    def from_vision_pretrained(cls, vision_model_name_or_path, **config_kwargs) -> "MERTForVideoClassification":
        """A MERT whose video encoder φ_V is initialised bit-exactly from any transformers `ViTModel` checkpoint
        (local folder or Hub id). The ViT's sizes become the video-encoder sizes; other `MERTConfig` fields come from
        `config_kwargs`. The video encoder is then frozen in pre-training (see `MERTConfig.train_video_encoder`)."""
        from transformers import ViTModel

        vit = ViTModel.from_pretrained(vision_model_name_or_path, add_pooling_layer=False)
        vc = vit.config
        sizes = dict(
            hidden_size=vc.hidden_size,
            num_hidden_layers=vc.num_hidden_layers,
            num_attention_heads=vc.num_attention_heads,
            intermediate_size=vc.intermediate_size,
            hidden_act=vc.hidden_act,
            layer_norm_eps=vc.layer_norm_eps,
            image_size=vc.image_size if isinstance(vc.image_size, int) else vc.image_size[0],
            patch_size=vc.patch_size if isinstance(vc.patch_size, int) else vc.patch_size[0],
            num_channels=vc.num_channels,
            qkv_bias=vc.qkv_bias,
        )
        clash = {k for k in sizes if k in config_kwargs and config_kwargs[k] != sizes[k]}
        if clash:
            raise ValueError(f"{sorted(clash)} are set by the ViT checkpoint {vision_model_name_or_path!r}")
        config = MERTConfig(**{**config_kwargs, **sizes, "video_encoder_pretrained": True})
        model = cls(config)
        state = {k: v for k, v in vit.state_dict().items() if not k.startswith("pooler.")}
        result = model.mert.video_encoder.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"the ViT checkpoint {vision_model_name_or_path!r} does not match MERT's video encoder: "
                f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        model.set_training_stage(config.training_stage)
        return model

    def forward(
        self,
        pixel_values: torch.Tensor,
        eye_movement_values: Optional[torch.Tensor] = None,
        eye_movement_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        eye_quality_features: Optional[torch.Tensor] = None,
        instruction_weights: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Union[MERTVideoClassifierOutput, tuple]:
        r"""
        pixel_values, eye_movement_values, eye_movement_mask, eye_quality_features, instruction_weights: see
            [`MERTModel.forward`].
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): class indices in `[0, num_labels)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.mert(
            pixel_values,
            eye_movement_values=eye_movement_values,
            eye_movement_mask=eye_movement_mask,
            eye_quality_features=eye_quality_features,
            instruction_weights=instruction_weights,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.classifier(outputs.pooler_output)
        level_logits = self._level_logits(outputs.level_features)

        loss = None
        if labels is not None:
            loss = self.compute_loss(logits, level_logits, labels, outputs.instruction_weights)

        output = MERTVideoClassifierOutput(
            loss=loss,
            logits=logits,
            level_logits=level_logits,
            instruction_weights=outputs.instruction_weights,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            eye_hidden_states=outputs.eye_hidden_states,
            eye_attentions=outputs.eye_attentions,
            head_hidden_states=outputs.head_hidden_states,
            head_attentions=outputs.head_attentions,
        )
        return output if return_dict else output.to_tuple()

    def compute_loss(self, logits, level_logits, labels, instruction_weights=None) -> torch.Tensor:
        """CE [2] on the final head; in the PEML stage plus the progressive level losses Σ_l w^l·CE [12], and, when
        `config.instruction_loss_weighting`, each sample's CE weighted by its batch-normalised W."""
        labels = labels.to(logits.device).long().reshape(-1)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.config.num_labels):
            raise ValueError(
                f"labels must be class indices in [0, {self.config.num_labels}), got values "
                f"{sorted(set(labels.tolist()))[:10]}"
            )
        per_sample = nn.functional.cross_entropy(logits.float(), labels, reduction="none")
        peml = self.config.training_stage == "peml"
        if peml and self.config.instruction_loss_weighting and instruction_weights is not None:
            w = instruction_weights.detach().float()
            per_sample = per_sample * (w / w.mean().clamp_min(1e-6))
        loss = per_sample.mean()
        if peml:
            for weight, level in zip(self.config.resolved_peml_level_weights, level_logits):
                loss = loss + weight * nn.functional.cross_entropy(level.float(), labels)
        return loss


__all__ = [
    "MERTForVideoClassification",
    "MERTModel",
    "MERTModelOutput",
    "MERTPreTrainedModel",
    "MERTVideoClassifierOutput",
]
