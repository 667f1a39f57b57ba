"""Model cost, like the paper's Table XI: parameters (total and trainable per stage) and MACs per clip.

MACs are torch's `FlopCounterMode` FLOPs / 2 (matmuls, convolutions and attention; element-wise ops, softmax and
LayerNorm are not counted), for one clip (batch 1) of the configured size, in the PEML stage (prompts on, as
deployed) and the pre-training stage (no prompts). The peers of the forward benchmark are counted the same way.

The `MERTConfig` switches (the earlier defaults, which issue 20 replaced: the gated bottleneck G after every layer,
CLS fusion, linear level heads on the video CLS; and the paper's Transformer level heads) are counted the same way,
next to the defaults, in the PEML stage (the level heads run in every stage's forward, so they count in the MACs;
they train only in the PEML stage).
"""

from __future__ import annotations

import common


# The switches (README, "Paper vs this implementation"), by the name used in the results.
SWITCHES = {
    "fusion_mlp=bottleneck, every layer": {"fusion_mlp": "bottleneck", "num_fusion_levels": None},
    "final_fusion=cls": {"final_fusion": "cls"},
    "level_head=transformer": {"level_head": "transformer"},
    "earlier_defaults": {"fusion_mlp": "bottleneck", "num_fusion_levels": None, "final_fusion": "cls",
                         "level_head_input": "video_cls"},
}


def _params(size: str, **overrides) -> dict:
    """Total and trainable parameters in each stage of a MERT with 7 labels (and the `MERTConfig` `overrides`)."""
    model = common.build_mert(size, stage="pretrain", **overrides)
    counts = {"total": sum(p.numel() for p in model.parameters())}
    counts["trainable_pretrain_random_video_encoder"] = model.num_trainable_parameters()
    model.config.train_video_encoder = False  # as after `from_vision_pretrained` (the paper's face-pretrained ViT)
    model.set_training_stage("pretrain")
    counts["trainable_pretrain_pretrained_video_encoder"] = model.num_trainable_parameters()
    model.set_training_stage("peml")
    counts["trainable_peml"] = model.num_trainable_parameters()
    return counts


def _switch_costs(size: str, default_peml_flops: int) -> dict:
    """Parameters and PEML-stage GMACs per clip of each switch, with the difference to the defaults."""
    costs = {}
    for name, overrides in SWITCHES.items():
        model = common.build_mert(size, stage="peml", **overrides)
        flops, _ = common.count_flops(lambda m=model: m(**common.mert_inputs(m.config, batch_size=1)).logits)
        params = _params(size, **overrides)
        costs[name] = {
            "config": overrides,
            "total_parameters": params["total"],
            "trainable_peml": params["trainable_peml"],
            "gmacs_per_clip_peml": flops / 2e9,
            "extra_gmacs_vs_default": (flops - default_peml_flops) / 2e9,
        }
        del model
    return costs


def run(size: str = "paper", quick: bool = False, device: str = "cpu") -> dict:
    flops = common.clip_flops(size)
    pretrain = common.build_mert(size, stage="pretrain")
    pretrain_flops, _ = common.count_flops(
        lambda: pretrain(**common.mert_inputs(pretrain.config, batch_size=1)).logits
    )
    models = flops["models"]
    default_params = _params(size)
    return {
        "benchmark": "model_cost",
        "size": size,
        "num_labels": common.NUM_LABELS,
        "counted": "MACs = FlopCounterMode FLOPs / 2 (matmul, conv, attention); per clip, batch 1",
        "parameters": default_params,
        "gmacs_per_clip": {
            "mert_peml": models["mert"] / 2e9,
            "mert_pretrain_no_prompts": pretrain_flops / 2e9,
            "bare_encoders": models["bare_encoders"] / 2e9,
            "videomae": models["videomae"] / 2e9,
            "frame_vit_meanpool": models["frame_vit_meanpool"] / 2e9,
        },
        "mert_peml_gmacs_by_component": {k: v / 2e9 for k, v in flops["mert_components"].items()},
        "paper_switches": _switch_costs(size, models["mert"]),
        "paper_table_xi": {"gmacs_per_clip": 308.86, "trainable_peml": 7.62e6},
        "machine": common.machine_info(device),
    }


def markdown(result: dict) -> str:
    p, g, c = result["parameters"], result["gmacs_per_clip"], result["mert_peml_gmacs_by_component"]
    paper = result["paper_table_xi"]
    lines = [
        f"Counted: {result['counted']}.",
        "",
        "| | this implementation | paper (Table XI) |",
        "|---|---|---|",
        f"| total parameters | {p['total'] / 1e6:.2f}M | — |",
        f"| trainable, pre-training, random video encoder | {p['trainable_pretrain_random_video_encoder'] / 1e6:.2f}M | — |",
        f"| trainable, pre-training, pretrained video encoder | {p['trainable_pretrain_pretrained_video_encoder'] / 1e6:.2f}M | — |",
        f"| trainable, PEML stage, {result['num_labels']} labels | **{p['trainable_peml'] / 1e6:.2f}M** | "
        f"{paper['trainable_peml'] / 1e6:.2f}M |",
        f"| GMACs per clip, PEML stage (prompts on) | **{g['mert_peml']:.2f}** | {paper['gmacs_per_clip']} |",
        f"| GMACs per clip, pre-training stage (no prompts) | {g['mert_pretrain_no_prompts']:.2f} | — |",
        "",
        "MERT's GMACs per clip by component (PEML stage): "
        + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in c.items())
        + ".",
        "",
        "Peers, GMACs per clip: "
        + f"(a) bare encoders {g['bare_encoders']:.2f}, (b) VideoMAE-B {g['videomae']:.2f}, "
        + f"(c) 16-frame ViT-B + mean pooling {g['frame_vit_meanpool']:.2f}.",
        "",
        "`MERTConfig` switches (README, \"Paper vs this implementation\"), PEML stage, "
        f"{result['num_labels']} labels:",
        "",
        "| config | total parameters | trainable, PEML stage | GMACs per clip | vs default |",
        "|---|---|---|---|---|",
        f"| defaults (linear G at 4 levels, token eq. [6], linear p^l on F^l) | {p['total'] / 1e6:.2f}M | "
        f"{p['trainable_peml'] / 1e6:.2f}M | {g['mert_peml']:.2f} | — |",
    ]
    for name, cost in result.get("paper_switches", {}).items():
        extra_params = (cost["trainable_peml"] - p["trainable_peml"]) / 1e6
        lines.append(
            f"| `{name}` | {cost['total_parameters'] / 1e6:.2f}M | "
            f"{cost['trainable_peml'] / 1e6:.2f}M | {cost['gmacs_per_clip_peml']:.2f} | "
            f"{extra_params:+.2f}M trainable, {cost['extra_gmacs_vs_default']:+.2f} GMACs |"
        )
    return "\n".join(lines)
