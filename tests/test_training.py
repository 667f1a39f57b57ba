"""The example scripts end to end on sample data (tiny MERT): pre-training → PEML → evaluation, 2-process CPU
Accelerate, resume, Hub capture, and the errors that must come before any training starts."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForVideoClassification, AutoVideoProcessor, pipeline

from emvfer_hf import MERTConfig, MERTForVideoClassification
from emvfer_hf.data import make_sample_dataset

REPO = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = (
    "num_frames=4,image_size=32,patch_size=16,hidden_size=32,num_hidden_layers=2,num_attention_heads=2,"
    "intermediate_size=37,eye_sequence_length=16,fusion_bottleneck_size=8,head_hidden_size=16,num_prompt_tokens=3"
)


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    options = dict(clips_per_class=2, num_frames=8, resolution=112, seed=0)
    make_sample_dataset("emer", root / "EMER", **options)
    make_sample_dataset("dfew", root / "DFEW", **options)
    return root


def common_args(workdir, out, *extra):
    return [
        "--output_dir", str(out), "--cache_dir", str(workdir / "cache"), "--model_size", "small",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--seed", "0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(workdir):
    out = workdir / "emvfer-emer"
    load_example("pretrain_mert").main(
        ["--data_dir", str(workdir / "EMER"), "--config_overrides", TINY_OVERRIDES, "--num_train_epochs", "1",
         "--learning_rate", "3e-4", *common_args(workdir, out)]
    )  # fmt: skip
    return out


def finetune(workdir, out, *extra, model=None):
    return load_example("finetune_peml").main(
        ["--dataset", "dfew", "--data_dir", str(workdir / "DFEW"), "--model_name_or_path", str(model),
         *common_args(workdir, out, *extra)]
    )  # fmt: skip


def test_pretraining_saves_model_processor_and_prior(pretrained):
    names = {p.name for p in pretrained.iterdir()}
    assert {"config.json", "model.safetensors", "video_preprocessor_config.json", "results.json"} <= names
    model = MERTForVideoClassification.from_pretrained(pretrained)
    assert model.has_eye_prior and model.eye_prior.mean.abs().sum() > 0  # Ē of the training recordings
    assert torch.linalg.eigvalsh(model.eye_prior.covariance).min() > 0
    results = json.loads((pretrained / "results.json").read_text())
    assert results["stage"] == "pretrain" and len(results["train_loss"]) > 0
    assert set(results["metrics"]) >= {"war", "uar"}
    assert results["validation"]["clips"] == [] and results["validation_history"] == []  # no selection asked for


def eye_prior_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "eye_prior" in k}


def test_stage1_prior_is_fitted_on_the_clip_spans_before_training(workdir, pretrained, monkeypatch, tmp_path):
    """Ē is the prior of exactly the series stage 1 trains on (each training clip's span of its recording, not the
    whole recording), and the model holds it before its first optimisation step."""
    from emvfer_hf.data import load_emer
    from emvfer_hf.training import stages
    from emvfer_hf.training.data import tracker_clip_series, tracker_series, video_timeline

    rows = list(load_emer(workdir / "EMER", fold=1)["train"])
    spans = [tracker_clip_series(r["eye_tracking"], (video_timeline(r["video"])[0] - 1) / video_timeline(r["video"])[1])
             for r in rows]  # fmt: skip
    saved = MERTForVideoClassification.from_pretrained(pretrained)
    expected = MERTForVideoClassification.from_pretrained(pretrained)
    expected.set_eye_prior_from_series(spans)
    whole = MERTForVideoClassification.from_pretrained(pretrained)
    whole.set_eye_prior_from_series([tracker_series(r["eye_tracking"]) for r in rows])
    saved, expected, whole = map(eye_prior_buffers, (saved, expected, whole))
    assert saved and all(torch.equal(saved[k], expected[k]) for k in saved)
    assert json.loads((pretrained / "results.json").read_text())["eye_prior"]["num_series"] == len(rows)
    assert not all(torch.equal(saved[k], whole[k]) for k in saved)  # the spans differ from whole recordings

    seen, real_train = [], stages.train

    def spying_train(args, model, *rest, **kwargs):  # records the prior at each forward pass while training
        def hook(module, inputs):
            if module.training:
                seen.append((module.has_eye_prior, eye_prior_buffers(module)))

        handle = model.register_forward_pre_hook(hook)
        try:
            return real_train(args, model, *rest, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(stages, "train", spying_train)
    load_example("pretrain_mert").main(
        ["--data_dir", str(workdir / "EMER"), "--config_overrides", TINY_OVERRIDES, "--max_train_steps", "1",
         *common_args(workdir, tmp_path / "stage1")]
    )  # fmt: skip
    assert len(seen) == 1 and seen[0][0]  # the one training step already sees Ē
    assert all(torch.equal(seen[0][1][k], expected[k]) for k in expected)


def test_finetune_evaluate_and_pipeline(workdir, pretrained):
    out = workdir / "emvfer-dfew"
    finetune(workdir, out, "--num_train_epochs", "1", "--learning_rate", "5e-4", model=pretrained)
    results = json.loads((out / "results.json").read_text())
    assert results["stage"] == "peml" and results["num_samples"] > 0
    assert {"war", "uar", "uf1", "macro_f1", "weighted_f1"} <= set(results["metrics"])
    assert results["mean_instruction_weight"] is not None
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    card = (out / "README.md").read_text()
    assert "pipeline_tag: video-classification" in card and "model-index" in card and "PEML" in card
    assert "DFEW sample data" in card and "synthetic" in card  # never passed off as the real benchmark
    model = AutoModelForVideoClassification.from_pretrained(out)
    assert model.training_stage == "peml" and model.config.id2label[0] == "happiness"  # DFEW's order

    clip = sorted((workdir / "DFEW" / "Clip" / "clip_224x224").iterdir())[0]
    predictions = pipeline("video-classification", model=str(out))(str(clip), top_k=2)
    assert len(predictions) == 2 and predictions[0]["label"] in model.config.label2id

    evaluation = workdir / "evaluation"
    load_example("evaluate").main(
        ["--dataset", "dfew", "--data_dir", str(workdir / "DFEW"), "--model_name_or_path", str(out),
         "--output_dir", str(evaluation), "--cache_dir", str(workdir / "cache")]
    )  # fmt: skip
    assert "| fold 1 |" in (evaluation / "results.md").read_text()
    evaluated = json.loads((evaluation / "results.json").read_text())
    assert evaluated["metrics"]["war"] == pytest.approx(results["metrics"]["war"])  # same model, same clips


def test_inference_precisions_keep_the_trained_models_decisions(workdir, pretrained):
    """On the PEML model trained above, the `--dtype` paths (issue 23) act on the model and keep its decisions: bf16
    weights and int8 change the logits (another precision really runs) but not the predicted classes of the
    sample clips; W comes from the fp32 prior in every path."""
    from emvfer_hf.inference import Classifier

    out = workdir / "emvfer-dfew"
    if not out.exists():  # run alone
        finetune(workdir, out, "--num_train_epochs", "1", "--learning_rate", "5e-4", model=pretrained)
    model = AutoModelForVideoClassification.from_pretrained(out)
    processor = AutoVideoProcessor.from_pretrained(out)
    clips = sorted((workdir / "DFEW" / "Clip" / "clip_224x224").iterdir())[:6]
    inputs = processor([str(c) for c in clips], return_tensors="pt")
    reference = Classifier(model, dtype="fp32")(inputs)
    for dtype in ("bf16", "int8"):
        prediction = Classifier(model, dtype=dtype)(inputs)
        assert not np.array_equal(prediction.logits, reference.logits), dtype
        assert (prediction.scores.argmax(1) == reference.scores.argmax(1)).all(), dtype
        np.testing.assert_allclose(prediction.scores, reference.scores, atol=0.05)
        np.testing.assert_allclose(prediction.weights, reference.weights, atol=1e-6)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is left as it was


def test_early_stopping_selects_on_validation_and_scores_test_once(workdir, pretrained):
    """DFEW has no subjects: the validation split is stratified by label, carved from the training fold and recorded
    in results.json; early stopping reads it, and the test fold is scored once, at the end."""
    from emvfer_hf.data import load_dfew

    out = workdir / "emvfer-dfew-early"
    finetune(workdir, out, "--num_train_epochs", "4", "--early_stopping_patience", "1",
                       "--validation_fraction", "0.2", "--learning_rate", "5e-4", model=pretrained)  # fmt: skip
    saved = json.loads((out / "results.json").read_text())
    folds = load_dfew(workdir / "DFEW", fold=1)
    validation = saved["validation"]
    assert validation["fraction"] == 0.2 and validation["seed"] == 0 and validation["grouped_by"].startswith("none")
    assert len(validation["clips"]) == 2 and set(validation["clips"]) <= set(folds["train"]["clip_id"])
    assert saved["num_samples"] == len(folds["test"])  # metrics of the whole test fold
    history = saved["validation_history"]
    assert 1 <= len(history) <= 4 and all(set(m) >= {"war", "epoch"} for m in history)
    best = max(history, key=lambda m: m["war"])  # the first of equal values
    assert saved["best_epoch"] == best["epoch"] and saved["best_metric"] == {"war": best["war"]}
    assert "stopped_early_at_epoch" in saved or len(history) == 4


def test_loso_carves_validation_from_the_other_subjects(workdir, pretrained):
    """CASME II, leave-one-subject-out: each fold's validation split is whole subjects of its training side (never
    the held-out one), and each held-out subject is scored once, with its fold's best model."""
    root = make_sample_dataset("casme2", workdir / "CASME2", clips_per_class=4, num_frames=8, resolution=112, seed=0)
    out = workdir / "emvfer-casme2-loso"
    load_example("finetune_peml").main(
        ["--dataset", "casme2", "--data_dir", str(root), "--protocol", "loso", "--model_name_or_path", str(pretrained),
         "--ignore_mismatched_sizes", "--num_train_epochs", "1", "--validation_fraction", "0.3",
         "--metric_for_best_model", "war", *common_args(workdir, out)]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    selection = results["selection_per_subject"]
    assert set(selection) == set(results["subjects"]) and results["num_samples"] == sum(results["subjects"].values())
    for subject, chosen in selection.items():
        validation = chosen["validation"]
        assert validation["grouped_by"] == "subject" and validation["groups"] and subject not in validation["groups"]
        assert chosen["best_epoch"] == 0 and len(chosen["validation_history"]) == 1


def test_resume_gives_identical_weights_and_losses(workdir, pretrained):
    full = workdir / "run-full"
    args = ("--max_train_steps", "4", "--learning_rate", "5e-4")
    finetune(workdir, full, *args, "--checkpointing_steps", "2", model=pretrained)
    assert (full / "step_2").is_dir() and (full / "step_4").is_dir()
    resumed = workdir / "run-resumed"  # as if the first run had been killed right after step_2
    finetune(workdir, resumed, *args, "--resume_from_checkpoint", str(full / "step_2"), model=pretrained)
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    differ = [key for key in a if not torch.equal(a[key], b[key])]
    assert not differ, f"{len(differ)} tensors differ after resume, e.g. {differ[:3]}"
    losses = json.loads((full / "results.json").read_text())["train_loss"]
    resumed_losses = json.loads((resumed / "results.json").read_text())["train_loss"]
    assert len(losses) == 4 and resumed_losses == losses[2:]  # steps 3 and 4, the same floats


def test_affwild2_is_scored_per_frame(workdir, pretrained):
    root = make_sample_dataset("affwild2", workdir / "Aff-Wild2", clips_per_class=2, num_frames=8, seed=0)
    out = workdir / "emvfer-affwild2"
    load_example("finetune_peml").main(
        ["--dataset", "affwild2", "--data_dir", str(root), "--model_name_or_path", str(pretrained),
         "--ignore_mismatched_sizes", "--max_train_steps", "1", *common_args(workdir, out)]
    )  # fmt: skip
    # the frames of the validation annotations: -1, or labelled without a face crop, or evaluated
    ignored = uncovered = total = 0
    for txt in root.glob("*ABAW*/EXPR_*/Validation_Set/*.txt"):
        labels = [int(v) for v in txt.read_text().split()[1:]]
        crops = root / "cropped_aligned" / txt.stem
        total += len(labels)
        ignored += labels.count(-1)
        uncovered += sum(v != -1 and not (crops / f"{i:05d}.jpg").is_file() for i, v in enumerate(labels, 1))
    assert ignored and uncovered  # the sample data has both kinds
    results = json.loads((out / "results.json").read_text())
    frames = results["metrics"]
    assert (frames["ignored_frames"], frames["uncovered_frames"]) == (ignored, uncovered)
    assert frames["frames"] == total - ignored - uncovered == sum(map(sum, results["confusion_matrix"]))
    assert {"acc", "macro_f1"} <= set(frames) and "war" in results["window_metrics"]
    assert "Accuracy (per frame)" in (out / "README.md").read_text()

    evaluation = workdir / "evaluation-affwild2"
    load_example("evaluate").main(
        ["--dataset", "affwild2", "--data_dir", str(root), "--model_name_or_path", str(out), "--folds", "1", "2",
         "--output_dir", str(evaluation), "--cache_dir", str(workdir / "cache")]
    )  # fmt: skip
    evaluated = json.loads((evaluation / "results.json").read_text())
    assert "metrics" not in evaluated  # two folds: no single figure under the headline's name
    assert evaluated["summary"]["acc"]["mean"] == pytest.approx(frames["acc"]) == evaluated["per_fold"][1]["acc"]
    assert evaluated["summary"]["acc"]["std"] == pytest.approx(0.0)  # the same checkpoint twice
    assert evaluated["pooled_metrics"]["frames"] == 2 * frames["frames"]
    table = (evaluation / "results.md").read_text()
    assert "mean ± std over folds" in table and "| pooled (all folds) |" in table and "labelled -1 left out" in table


def test_two_process_cpu_run(workdir, pretrained):
    import socket

    out = workdir / "run-ddp"
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # `--cpu --num_processes 2` starts ONE process in accelerate >= 1.16; two CPU processes need the multi-GPU
    # launcher with ACCELERATE_USE_CPU=1 (gloo)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
        "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        str(REPO / "examples" / "finetune_peml.py"),
        "--dataset", "dfew", "--data_dir", str(workdir / "DFEW"), "--model_name_or_path", str(pretrained),
        "--max_train_steps", "2", "--validation_fraction", "0.2", "--metric_for_best_model", "war",
        *common_args(workdir, out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((out / "results.json").read_text())["num_processes"] == 2
    results = json.loads((out / "results.json").read_text())
    from emvfer_hf.data import load_dfew

    assert results["num_samples"] == len(load_dfew(workdir / "DFEW", fold=1)["test"])  # gathered, no duplicates
    assert sum(map(sum, results["confusion_matrix"])) == results["num_samples"]
    assert len(results["validation"]["clips"]) == 2 and results["best_epoch"] == 0  # saved and restored over DDP
    assert AutoModelForVideoClassification.from_pretrained(out).training_stage == "peml"


def test_push_to_hub_uploads_a_loadable_folder(workdir, pretrained, monkeypatch, tmp_path):
    import shutil

    from huggingface_hub import HfApi

    captured = {}

    def create_repo(self, repo_id, **kwargs):
        captured["repo_id"] = repo_id

    def upload_folder(self, repo_id, folder_path, ignore_patterns=None, **kwargs):
        target = tmp_path / "hub" / repo_id
        shutil.copytree(folder_path, target, ignore=shutil.ignore_patterns(*(ignore_patterns or [])))
        captured["folder"] = target

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(HfApi, "whoami", lambda self, *a, **k: {"name": "alice"})
    out = workdir / "emvfer-pushed"
    finetune(workdir, out, "--max_train_steps", "1", "--checkpointing_steps", "1", "--push_to_hub", model=pretrained)
    assert captured["repo_id"] == "alice/emvfer-pushed"  # --hub_model_id defaults to <namespace>/<output_dir name>
    folder = captured["folder"]
    names = {p.name for p in folder.iterdir()}
    assert {"README.md", "model.safetensors", "modeling_mert.py", "video_preprocessor_config.json"} <= names
    assert not any(n.startswith("step_") for n in names)  # Accelerate states stay local
    assert AutoModelForVideoClassification.from_pretrained(folder).has_eye_prior


# ---------------------------------------------------------------------------------------------------------------------
# Errors before any training starts
def test_checkpoint_without_prior_is_refused(workdir, tmp_path):
    no_prior = tmp_path / "no-prior"
    config = MERTConfig(num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, eye_sequence_length=16, head_hidden_size=16, num_labels=7)  # fmt: skip
    MERTForVideoClassification(config).save_pretrained(no_prior)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="no eye-movement prior"):
        finetune(workdir, out, "--max_train_steps", "1", model=no_prior)
    assert not (out / "model.safetensors").exists()


def test_label_mismatch_needs_ignore_mismatched_sizes(workdir, pretrained, tmp_path):
    model = MERTForVideoClassification.from_pretrained(pretrained)
    other = tmp_path / "three-labels"
    config = model.config
    config.num_labels, config.id2label = 3, {0: "positive", 1: "negative", 2: "neutral"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    three = MERTForVideoClassification(config)
    three.set_eye_prior(**model.mert.eye_prior.state())
    three.save_pretrained(other)
    with pytest.raises(ValueError, match="--ignore_mismatched_sizes"):
        finetune(workdir, tmp_path / "out", "--max_train_steps", "1", model=other)
    finetune(workdir, tmp_path / "out", "--max_train_steps", "1", "--ignore_mismatched_sizes", model=other)
    tuned = AutoModelForVideoClassification.from_pretrained(tmp_path / "out")
    assert tuned.config.num_labels == 7 and tuned.level_head_1.out_features == 7


def test_unwritable_output_and_missing_data(workdir, pretrained, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="not writable"):
        finetune(workdir, blocker / "out", "--max_train_steps", "1", model=pretrained)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_example("finetune_peml").main(
            ["--dataset", "dfew", "--data_dir", str(tmp_path / "nowhere"), "--model_name_or_path", str(pretrained),
             *common_args(workdir, tmp_path / "out2")]
        )  # fmt: skip


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for path in sorted((REPO / "examples" / "accelerate_configs").glob("*.yaml")):
        kinds[path.stem] = str(load_config_from_file(str(path)).distributed_type)
    assert kinds == {"cpu": "DistributedType.NO", "deepspeed_zero2": "DistributedType.DEEPSPEED",
                     "fsdp": "DistributedType.FSDP", "multi_gpu": "DistributedType.MULTI_GPU",
                     "multi_node": "DistributedType.MULTI_GPU"}  # fmt: skip
    multi_node = load_config_from_file(str(REPO / "examples" / "accelerate_configs" / "multi_node.yaml"))
    assert multi_node.num_machines == 2 and multi_node.num_processes == 16 and multi_node.main_process_port


def test_weight_decay_groups(tiny_config):
    from emvfer_hf.training.loop import build_optimizer

    model = MERTForVideoClassification(tiny_config)
    model.set_training_stage("peml")  # needs no prior to build the optimizer
    optimizer = build_optimizer(model, 1e-4, 1e-2)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in optimizer.param_groups[0]["params"]}
    kept = {names[id(p)] for p in optimizer.param_groups[1]["params"]}
    assert optimizer.param_groups[0]["weight_decay"] == 1e-2 and optimizer.param_groups[1]["weight_decay"] == 0.0
    assert "mert.fusion.1.video_gate.linear.weight" in decayed and "classifier.weight" in decayed
    assert {"mert.fusion.1.video_gate.linear.bias", "mert.fusion.1.video_gate.alpha", "mert.prompts.eye_prompts",
            "classifier.bias"} <= kept  # fmt: skip
