"""Model cards of fine-tuned checkpoints: huggingface_hub `ModelCard` with a `model-index` of the eval results."""

from __future__ import annotations

from pathlib import Path

from ..data.benchmarks import find_benchmark

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")

METRIC_NAMES = {"war": "WAR (accuracy)", "uar": "UAR (mean class recall)", "uf1": "UF1 (macro F1)"}
# a benchmark scored per frame (Aff-Wild2)
FRAME_METRIC_NAMES = {"acc": "Accuracy (per frame)", "macro_f1": "macro-F1 over all classes (per frame)"}


def _metric_names(results: dict) -> dict:
    benchmark = find_benchmark(results.get("dataset"))
    return FRAME_METRIC_NAMES if benchmark is not None and benchmark.frame_scored else METRIC_NAMES


def _dataset_name(results: dict) -> str:
    benchmark = find_benchmark(results.get("dataset"))
    name = benchmark.title if benchmark is not None else results.get("dataset", "")
    return f"{name} sample data" if results.get("sample_data") else name


def model_card_data(model, results: dict):
    """`ModelCardData` with `pipeline_tag: video-classification` and a model-index entry per reported metric."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = results.get("dataset", "sample")
    dataset_name = _dataset_name(results)
    split = "test" if results.get("protocol") != "loso" else "loso"
    names = _metric_names(results)
    eval_results = [
        EvalResult(
            task_type="video-classification", dataset_type=dataset, dataset_name=dataset_name, dataset_split=split,
            metric_type=key, metric_name=names[key], metric_value=round(100 * float(value), 2),
        )  # fmt: skip
        for key, value in results.get("metrics", {}).items()
        if key in names
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification",
        license="apache-2.0",
        tags=["emvfer", "mert", "facial-expression-recognition", "eye-movement", "video-classification"],
        datasets=[dataset_name],
        metrics=sorted({r.metric_type for r in eval_results}),
        model_name=Path(results.get("output_dir", "emvfer")).name,
        eval_results=eval_results or None,
        base_model=results.get("base_model") if "/" in str(results.get("base_model", "")) else None,
    )


def _protocol(results: dict) -> str:
    if results.get("protocol") == "loso":
        return "leave-one-subject-out"
    benchmark = find_benchmark(results.get("dataset"))
    if benchmark is not None and benchmark.evaluation == "split":
        return "train → validation"
    if results.get("test_subject"):
        return f"held-out subject {results['test_subject']}"
    return f"fold {results.get('fold', 1)}"


def write_model_card(output_dir, model, results: dict):
    """Render `model_card_template.md` into `<output_dir>/README.md` and return the `ModelCard`."""
    from huggingface_hub import ModelCard

    output_dir = Path(output_dir)
    results = {**results, "output_dir": str(output_dir)}
    config = model.config
    metrics, names = results.get("metrics", {}), _metric_names(results)
    metrics_table = "\n".join(
        f"| {names.get(k, k)} | {100 * float(v):.2f} |" for k, v in metrics.items() if isinstance(v, float)
    )
    card = ModelCard.from_template(
        model_card_data(model, results),
        template_path=str(TEMPLATE_PATH),
        model_id=output_dir.name,
        dataset_name=_dataset_name(results),
        sample_note=(
            "\n\n> **Sample data.** This checkpoint was trained on the bundled *synthetic* sample data (rendered faces "
            "in the benchmark's layout, written by `emvfer sample-data`), not on the real benchmark: it demonstrates "
            "the recipe, its numbers say nothing about real videos."
            if results.get("sample_data")
            else ""
        ),
        protocol=_protocol(results),
        labels=", ".join(config.id2label[i] for i in range(config.num_labels)),
        metrics_table=metrics_table or "| — | — |",
        num_samples=results.get("num_samples", "—"),
        base_model=results.get("base_model", "—"),
        command=results.get("command", "—"),
        num_frames=config.num_frames,
        image_size=config.image_size,
        eye_sequence_length=config.eye_sequence_length,
        trainable=f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.2f}M",
        total=f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M",
    )
    card.save(output_dir / "README.md")
    return card
