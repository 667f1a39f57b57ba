"""The one training loop both stages share (Accelerate at the seams, as in transformers' `*_no_trainer.py` examples)."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from .data import collate_clips

logger = logging.getLogger(__name__)

# Learned tokens and embeddings that are matrices but must not decay (biases, norms, α and gates are vectors).
NO_DECAY_EMBEDDINGS = ("prompts", "position_embeddings", "cls_token", "missing_embedding")


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A random permutation per epoch, seeded by `(seed, epoch)`: the same order in every process and after a resume.

    The epoch is set by the loop with `shuffle_for_epoch` (deliberately not `set_epoch`, which Accelerate's data
    loaders call with their own iteration count — a count that a resumed run, which skipped batches with another
    loader, does not share)."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def shuffle_for_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


def build_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on weight matrices only: none on vectors (biases, norms,
    α, fusion gates) nor on prompts, CLS tokens and position / missing embeddings.

    As in BERT and ViT practice: decay is an L2 pull towards 0 that regularises the linear maps; on a bias or a
    norm's scale it only shifts the function, and on a learnt token (a prompt, CLS, a position or missing-step
    embedding) it drags the token towards the zero vector, i.e. towards "no information", which in PEML would fight
    the few prompt parameters the stage trains."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            skip = parameter.ndim < 2 or any(key in name for key in NO_DECAY_EMBEDDINGS)
            (no_decay if skip else decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameter in this stage")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate)


def make_dataloader(dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0):
    sampler = EpochShuffleSampler(len(dataset), seed) if shuffle else None
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_clips, num_workers=num_workers
    )


@torch.no_grad()
def predict(model, dataloader, accelerator: Accelerator, desc: str = "evaluating") -> dict:
    """Run `model` over `dataloader` and gather, over all processes and without duplicates, `logits` (N, C),
    `labels` (N,), `indices` (N,) (row numbers in the dataset) and `instruction_weights` (N,) (NaN without a prior)."""
    model.eval()
    gathered = {"logits": [], "labels": [], "indices": [], "instruction_weights": []}
    for batch in tqdm(dataloader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
        labels, indices = batch.pop("labels"), batch.pop("index")
        outputs = model(**batch)
        weights = outputs.instruction_weights
        if weights is None:
            weights = torch.full_like(labels, float("nan"), dtype=torch.float32)
        values = accelerator.gather_for_metrics((outputs.logits.float(), labels, indices, weights.float()))
        for key, value in zip(gathered, values):
            gathered[key].append(value.cpu())
    return {key: torch.cat(values).numpy() for key, values in gathered.items()}


def _latest_checkpoint(output_dir: Path) -> Optional[Path]:
    candidates = [p for p in output_dir.glob("*") if p.is_dir() and re.fullmatch(r"(step|epoch)_\d+", p.name)]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


BEST_MODEL_DIR = "best_model_state"  # in --output_dir while training: the Accelerate state of the best epoch


def train(
    args,
    model,
    train_dataset,
    eval_dataset=None,
    compute_metrics=None,
    accelerator: Optional[Accelerator] = None,
    test_dataset=None,
) -> tuple[Accelerator, torch.nn.Module, dict]:
    """Train `model` on `train_dataset` (a `ClipDataset`) with the flags of `add_training_arguments`.

    `eval_dataset` is the VALIDATION split (carved from the training fold, `data.split_validation`): it is
    evaluated after each epoch with `compute_metrics(predictions_dict) -> dict`, drives `--early_stopping_patience`
    and picks the best epoch by `--metric_for_best_model` (default: the first metric); the best epoch's state is kept
    on disk (`<output_dir>/best_model_state`, an Accelerate state, so sharded models work too) and restored when
    training ends. `test_dataset` (the official test fold) is evaluated ONCE, after that restore: nothing selects
    on it. Saves Accelerate states every `--checkpointing_steps`, resumes from `--resume_from_checkpoint` (skipping
    the batches already seen, and picking up the best epoch so far). Returns `(accelerator, prepared_model,
    history)`: `train_loss` (and `grad_norm`) per step, `eval` validation metrics per epoch,
    `validation_predictions` of the last validation pass, `best_epoch` / `best_metric` (with validation),
    `predictions` (see `predict`) and `test_metrics` of the test fold, gathered from every process. Save the model
    with `save_trained` on EVERY process (sharded FSDP / ZeRO-3 weights are gathered there).
    """
    accelerator = accelerator or Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=args.output_dir,
    )
    set_seed(args.seed)
    output_dir = Path(args.output_dir)

    train_loader = make_dataloader(train_dataset, args.per_device_train_batch_size, True, args.seed, args.num_workers)
    eval_loader, test_loader = (
        make_dataloader(dataset, args.per_device_eval_batch_size, False, args.seed, args.num_workers)
        if dataset is not None and len(dataset)
        else None
        for dataset in (eval_dataset, test_dataset)
    )
    patience = getattr(args, "early_stopping_patience", None)
    if patience is not None and (eval_loader is None or compute_metrics is None):
        raise ValueError("--early_stopping_patience needs a validation split with metrics (--validation_fraction > 0); "
                         "the test fold is never used to stop")
    sampler = train_loader.sampler  # kept (inside the batch sampler) by accelerator.prepare
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
    max_grad_norm = getattr(args, "max_grad_norm", None)
    if getattr(args, "gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(args, "torch_compile", False):
        model = torch.compile(model, backend=getattr(args, "torch_compile_backend", None) or "inductor")

    steps_per_epoch = math.ceil(len(train_loader) / accelerator.num_processes / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.num_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)
    if test_loader is not None:
        test_loader = accelerator.prepare(test_loader)

    checkpointing_steps = args.checkpointing_steps
    if checkpointing_steps is not None and str(checkpointing_steps).isdigit():
        checkpointing_steps = int(checkpointing_steps)
    if args.with_tracking:
        hparams = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(Path(args.output_dir).name, hparams)

    completed_steps, starting_epoch, resume_batches = 0, 0, 0
    if args.resume_from_checkpoint:
        path = Path(args.resume_from_checkpoint)
        if args.resume_from_checkpoint == "latest":
            path = _latest_checkpoint(output_dir)
            if path is None:
                raise ValueError(f"--resume_from_checkpoint latest: no step_N/epoch_N folder in {output_dir}")
        if not path.is_dir():
            raise ValueError(f"--resume_from_checkpoint: {path} is not a checkpoint folder")
        accelerator.print(f"Resumed from checkpoint: {path}")
        accelerator.load_state(str(path))
        kind, number = path.name.split("_")
        if kind == "epoch":
            starting_epoch, completed_steps = int(number) + 1, (int(number) + 1) * steps_per_epoch
        else:
            completed_steps = int(number)
            starting_epoch = completed_steps // steps_per_epoch
            resume_batches = (completed_steps % steps_per_epoch) * args.gradient_accumulation_steps

    history = {"train_loss": [], "eval": [], "grad_norm": []}
    selecting = eval_loader is not None and compute_metrics is not None
    best_dir = output_dir / BEST_MODEL_DIR
    best = _resumed_best(best_dir, starting_epoch) if selecting and args.resume_from_checkpoint else None
    evaluations_without_improvement = 0 if best is None else starting_epoch - 1 - best["epoch"]
    progress = tqdm(range(max_train_steps), disable=not accelerator.is_local_main_process, desc="training")
    progress.update(completed_steps)
    for epoch in range(starting_epoch, num_epochs):
        model.train()
        train_dataset.sample_for_epoch(epoch)
        sampler.shuffle_for_epoch(epoch)
        loader = train_loader
        if epoch == starting_epoch and resume_batches:
            loader = accelerator.skip_first_batches(train_loader, resume_batches)
        for batch in loader:
            batch.pop("index")
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if max_grad_norm is not None and accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)  # the norm before clipping
                    history["grad_norm"].append(float(norm))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                completed_steps += 1
                progress.update(1)
                step_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
                history["train_loss"].append(step_loss)
                progress.set_postfix(loss=f"{step_loss:.4f}")
                if args.with_tracking:
                    accelerator.log({"train_loss": step_loss, "lr": scheduler.get_last_lr()[0]}, step=completed_steps)
                if isinstance(checkpointing_steps, int) and completed_steps % checkpointing_steps == 0:
                    accelerator.save_state(str(output_dir / f"step_{completed_steps}"))
            if completed_steps >= max_train_steps:
                break
        stop = False
        if eval_loader is not None:  # the validation split: the only data anything selects on
            history["validation_predictions"] = predict(model, eval_loader, accelerator, desc="validation")
            metrics = compute_metrics(history["validation_predictions"]) if compute_metrics is not None else {}
            metrics["epoch"] = epoch
            history["eval"].append(metrics)
            accelerator.print(f"epoch {epoch} validation: " + "  ".join(
                f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))  # fmt: skip
            if args.with_tracking:
                accelerator.log({f"validation_{k}": v for k, v in metrics.items()}, step=completed_steps)
            if selecting:
                name = getattr(args, "metric_for_best_model", None) or next(k for k in metrics if k != "epoch")
                if name not in metrics:
                    raise ValueError(f"--metric_for_best_model {name!r} is not a validation metric: {sorted(metrics)}")
                value = metrics[name] if getattr(args, "greater_is_better", True) else -metrics[name]
                if best is None or value > best["value"]:
                    best, evaluations_without_improvement = {"epoch": epoch, "metric": name, "value": value}, 0
                    accelerator.save_state(str(best_dir))
                    if accelerator.is_main_process:
                        save_json(best_dir / "best.json", best)
                else:
                    evaluations_without_improvement += 1
                if patience is not None and evaluations_without_improvement >= patience:
                    history["stopped_early_at_epoch"] = epoch
                    accelerator.print(f"early stopping: validation {name} has not improved for {patience} "
                                      "evaluation(s)")  # fmt: skip
                    stop = True
        if checkpointing_steps == "epoch":
            accelerator.save_state(str(output_dir / f"epoch_{epoch}"))
        if stop or completed_steps >= max_train_steps:
            break
    progress.close()
    accelerator.wait_for_everyone()
    if best is not None:  # the best validation epoch's weights, for the test and for saving
        sign = 1 if getattr(args, "greater_is_better", True) else -1
        history["best_epoch"], history["best_metric"] = best["epoch"], {best["metric"]: sign * best["value"]}
        accelerator.load_state(str(best_dir))
        accelerator.print(f"restored the best model (validation {best['metric']} {sign * best['value']:.4f}, "
                          f"epoch {best['epoch']})")  # fmt: skip
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(best_dir, ignore_errors=True)
    if test_loader is not None:  # the official test fold, scored once
        history["predictions"] = predict(model, test_loader, accelerator, desc="testing")
        if compute_metrics is not None:
            history["test_metrics"] = compute_metrics(history["predictions"])
            if args.with_tracking:
                accelerator.log({f"test_{k}": v for k, v in history["test_metrics"].items()}, step=completed_steps)
    if args.with_tracking:
        accelerator.end_training()
    return accelerator, model, history


def _resumed_best(best_dir: Path, starting_epoch: int) -> Optional[dict]:
    """The best epoch recorded before a resume (`best.json` of `train`), if it precedes the resumed epoch (a state
    saved by a later epoch of an abandoned run does not count)."""
    path = best_dir / "best.json"
    if not path.is_file():
        return None
    best = json.loads(path.read_text())
    return best if best["epoch"] < starting_epoch else None


def save_trained(accelerator: Accelerator, model, output_dir, processor=None):
    """Save a prepared model (+ processor) with `save_pretrained`; call it on every process: the full state dict is
    gathered from all of them (FSDP, DeepSpeed ZeRO-3), only the main process writes. Returns the unwrapped model."""
    state_dict = accelerator.get_state_dict(model)
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(
        output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save, state_dict=state_dict
    )
    if processor is not None and accelerator.is_main_process:
        processor.save_pretrained(output_dir)
    accelerator.wait_for_everyone()
    return unwrapped


def save_json(path, payload) -> Path:
    path = Path(path)
    path.write_text(json.dumps(payload, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return path


def predicted_labels(predictions: dict) -> tuple[np.ndarray, np.ndarray]:
    """`(y_true, y_pred)` of a `predict` result."""
    return predictions["labels"], predictions["logits"].argmax(-1)
