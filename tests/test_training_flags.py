"""Training at scale (issue 13): each flag changes behaviour on a tiny run — gradient clipping bounds the norm,
gradient checkpointing gives the same loss and gradients, torch.compile (eager backend) the same logits, early
stopping stops — and sharded preprocessing writes the same cache as one process."""

import argparse
from pathlib import Path

import datasets
import numpy as np
import torch

from emvfer_hf import MERTConfig, MERTForVideoClassification
from emvfer_hf.data.cache import preprocess_dataset, preprocess_shard
from emvfer_hf.training.arguments import add_training_arguments
from emvfer_hf.training.loop import train

from .conftest import TINY_MERT


class TinyClips(torch.utils.data.Dataset):
    def __init__(self, n=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        c = TINY_MERT
        self.pixels = torch.randn(n, c["num_frames"], 3, c["image_size"], c["image_size"], generator=g)
        self.eyes = torch.randn(n, c["eye_sequence_length"], 5, generator=g)
        self.labels = torch.randint(0, c["num_labels"], (n,), generator=g)

    def __len__(self):
        return len(self.labels)

    def sample_for_epoch(self, epoch):
        pass

    def __getitem__(self, i):
        return {"pixel_values": self.pixels[i], "eye_movement_values": self.eyes[i],
                "eye_movement_mask": torch.ones(self.eyes.shape[1], dtype=torch.bool), "labels": self.labels[i],
                "index": torch.tensor(i)}  # fmt: skip


def make_args(tmp_path, *flags):
    parser = add_training_arguments(argparse.ArgumentParser())
    return parser.parse_args(["--output_dir", str(tmp_path), "--per_device_train_batch_size", "4",
                              "--learning_rate", "1e-2", "--lr_scheduler_type", "constant", *flags])  # fmt: skip


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MERTForVideoClassification(MERTConfig(**TINY_MERT))


def test_flags_are_parsed(tmp_path):
    args = make_args(tmp_path, "--gradient_checkpointing", "--max_grad_norm", "0.5", "--torch_compile",
                     "--torch_compile_backend", "eager", "--early_stopping_patience", "2")  # fmt: skip
    assert args.gradient_checkpointing and args.max_grad_norm == 0.5 and args.torch_compile
    assert args.torch_compile_backend == "eager" and args.early_stopping_patience == 2
    defaults = make_args(tmp_path)
    assert not defaults.gradient_checkpointing and defaults.max_grad_norm is None and not defaults.torch_compile


def test_max_grad_norm_bounds_the_update(tmp_path):
    data = TinyClips()
    _, model, history = train(make_args(tmp_path, "--max_train_steps", "2", "--max_grad_norm", "1e-3"),
                              tiny_model(), data)  # fmt: skip
    assert len(history["grad_norm"]) == 2 and min(history["grad_norm"]) > 1e-3  # the norm before clipping
    # after clipping, the gradient the optimizer used has norm max_grad_norm
    model = tiny_model()
    loss = model(**{k: v for k, v in torch.utils.data.default_collate([data[i] for i in range(4)]).items()
                    if k != "index"}).loss  # fmt: skip
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    torch.nn.utils.clip_grad_norm_(params, 1e-3)
    assert abs(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item() - 1e-3) < 1e-6
    _, _, unclipped = train(make_args(tmp_path / "b", "--max_train_steps", "2"), tiny_model(), data)
    assert unclipped["grad_norm"] == [] and unclipped["train_loss"] != history["train_loss"]


def batch_of(data, n=4):
    batch = torch.utils.data.default_collate([data[i] for i in range(n)])
    batch.pop("index")
    return batch


def test_gradient_checkpointing_same_loss_and_grads():
    data = TinyClips()
    reference, checkpointed = tiny_model().train(), tiny_model().train()
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.is_gradient_checkpointing
    losses = []
    for model in (reference, checkpointed):
        loss = model(**batch_of(data)).loss
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-6
    for (name, a), (_, b) in zip(reference.named_parameters(), checkpointed.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_gradient_checkpointing_flag_in_train(tmp_path):
    data = TinyClips()
    _, plain, h1 = train(make_args(tmp_path / "a", "--max_train_steps", "2"), tiny_model(), data)
    _, ckpt, h2 = train(make_args(tmp_path / "b", "--max_train_steps", "2", "--gradient_checkpointing"),
                        tiny_model(), data)  # fmt: skip
    assert ckpt.is_gradient_checkpointing and not plain.is_gradient_checkpointing
    np.testing.assert_allclose(h1["train_loss"], h2["train_loss"], atol=1e-5)


def test_torch_compile_eager_same_logits(tmp_path):
    data = TinyClips()
    model = tiny_model().eval()
    with torch.no_grad():
        expected = model(**batch_of(data)).logits
    compiled = torch.compile(tiny_model().eval(), backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(**batch_of(data)).logits, expected)
    _, trained, history = train(make_args(tmp_path, "--max_train_steps", "1", "--torch_compile",
                                          "--torch_compile_backend", "eager"), tiny_model(), data)  # fmt: skip
    assert hasattr(trained, "_orig_mod") or hasattr(getattr(trained, "module", None), "_orig_mod")
    _, _, plain = train(make_args(tmp_path / "p", "--max_train_steps", "1"), tiny_model(), data)
    np.testing.assert_allclose(history["train_loss"], plain["train_loss"], atol=1e-5)


def test_early_stopping_stops(tmp_path):
    data = TinyClips()
    calls = []

    def constant_metric(predictions):  # never improves after the first evaluation
        calls.append(1)
        return {"war": 0.5}

    args = make_args(tmp_path, "--num_train_epochs", "10", "--early_stopping_patience", "2")
    _, _, history = train(args, tiny_model(), data, eval_dataset=TinyClips(4, 1), compute_metrics=constant_metric)
    assert history["stopped_early_at_epoch"] == 2 and len(history["eval"]) == 3
    args = make_args(tmp_path / "b", "--num_train_epochs", "4")
    _, _, history = train(args, tiny_model(), data, eval_dataset=TinyClips(4, 1), compute_metrics=constant_metric)
    assert "stopped_early_at_epoch" not in history and len(history["eval"]) == 4


def _fake_compute(video_path, calls=None):
    rng = np.random.default_rng(abs(hash(Path(video_path).name)) % 2**32)
    return {"frame_indices": np.arange(4), "face_boxes": rng.random((4, 4), dtype=np.float32),
            "eye_movements": rng.random((6, 5), dtype=np.float32), "eye_valid": np.ones(6, bool),
            "eye_times_s": np.arange(6, dtype=np.float32)}  # fmt: skip


def test_two_shards_write_the_same_cache_as_one(tmp_path):
    videos = []
    for i in range(7):
        path = tmp_path / "videos" / f"clip{i}.mp4"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i]) * 100)
        videos.append(str(path))
    dataset = datasets.Dataset.from_dict({"video": videos, "label": list(range(7))})
    counted = []

    def compute(video_path):
        counted.append(video_path)
        return _fake_compute(video_path)

    one, two = tmp_path / "one", tmp_path / "two"
    assert preprocess_shard(dataset, compute, one, 0, 1) == 7
    sizes = [preprocess_shard(dataset, compute, two, i, 2) for i in range(2)]
    assert sizes == [4, 3] and len(counted) == 14 and len(set(counted[7:])) == 7  # the shards are disjoint
    files_one = sorted(p.relative_to(one) for p in one.rglob("*.npz"))
    files_two = sorted(p.relative_to(two) for p in two.rglob("*.npz"))
    assert files_one == files_two and len(files_one) == 7
    for rel in files_one:
        with np.load(one / rel) as a, np.load(two / rel) as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
    # the split read afterwards is all cache hits
    before = len(counted)
    out = preprocess_dataset(dataset, compute, two)
    assert len(counted) == before and len(out) == 7
