"""Sample data sets of the registered benchmarks: :func:`make_sample_dataset` (a benchmark's sample writer on the
synthetic world of :mod:`emvfer_hf.data.sample_data`, with its manifest) and the ``emvfer sample-data`` command."""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Tuple, Union

from .._utils import PathLike
from ..sample_data import CLASS_STYLES, EYES, FACES, VIDEO_FPS, WORLDS, SampleWriter, frame_size
from .base import benchmark_names, find_benchmark, get_benchmark

logger = logging.getLogger(__name__)


def make_sample_dataset(
    name: str,
    root: PathLike,
    clips_per_class: int = 4,
    num_frames: int = 16,
    resolution: Union[int, Tuple[int, int]] = 128,
    noise: float = 0.1,
    seed: int = 0,
    world: str = "plain",
    test_clips_per_class: Optional[int] = None,
) -> Path:
    """Write a small sample dataset in the exact layout of benchmark ``name`` under ``root``.

    Args:
        name: one of ``emer``, ``dfew``, ``mafw``, ``affwild2``, ``casme2``, ``casme3``.
        root: output folder (created; existing files of the same names are overwritten).
        clips_per_class: clips of every class (Aff-Wild2: segments per class in the train set, half in validation;
            CASME II also writes one fear and one sadness clip, excluded by its protocols).
        num_frames: frames per clip (DFEW also writes the 16-frame ``clip_224x224_16f`` variant).
        resolution: frame size, an int (square) or ``(width, height)``; faces fill ~75% of the height (60–70% for
            the not face-cropped MAFW / Aff-Wild2 raw videos; Aff-Wild2 crops are 112×112).
        noise: 0 = clean; scales pixel noise (σ = 20·noise grey levels) and head motion.
        seed: the generation is deterministic in it.
        world: ``"plain"`` (default) or ``"gap"`` (:data:`~emvfer_hf.data.sample_data.WORLDS`: EMER in the lab
            domain, DFEW across the domain gap; ``noise`` is then the domain's own).
        test_clips_per_class: ``"gap"`` DFEW only: test clips per class (default ``2 * clips_per_class``), beside
            the ``clips_per_class`` labelled training clips.
    Returns:
        ``root`` as a Path; load it with the dataset's loader (e.g. ``load_emer(root, fold=1)``).
    """
    benchmark = find_benchmark(name)
    if benchmark is None:
        raise ValueError(f"unknown sample dataset {name!r}; expected one of {list(benchmark_names())}")
    if clips_per_class < 1 or num_frames < 4:
        raise ValueError(f"need clips_per_class >= 1 and num_frames >= 4, got {clips_per_class}, {num_frames}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    if world not in WORLDS:
        raise ValueError(f"unknown sample world {world!r}; expected one of {list(WORLDS)}")
    key = benchmark.name
    if world != "plain" and key not in WORLDS[world]:
        raise ValueError(f"the {world!r} sample world has only {list(WORLDS[world])}, not {name!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    size = frame_size(resolution)
    options = {"clips_per_class": clips_per_class, "num_frames": num_frames, "resolution": list(size),
               "noise": noise, "seed": seed, "video_fps": VIDEO_FPS,
               "styles": {k: {"face": asdict(FACES[f]), "eyes": asdict(EYES[e])} for k, (f, e) in CLASS_STYLES.items()}}
    extra = {}
    if world != "plain":  # recorded only outside the plain world, whose manifests stay as they were
        domain = WORLDS[world][key]
        extra["domain"] = domain
        options.update(world=world, domain=asdict(domain))
        if benchmark.sample_test_split:
            extra["test_cpc"] = 2 * clips_per_class if test_clips_per_class is None else test_clips_per_class
            options["test_clips_per_class"] = extra["test_cpc"]
    writer = SampleWriter(key, root, options)
    benchmark.write_sample(root, writer, clips_per_class, num_frames, size, noise, seed, **extra)
    writer.close()
    logger.info("wrote %s sample data (%d clips) to %s", key, len(writer.clips), root)
    return root


def add_sample_data_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``emvfer sample-data`` (wire with ``parser.set_defaults(func=run_sample_data)``)."""
    parser.add_argument("--dataset", "-d", nargs="+", default=["emer", "dfew"],
                        choices=list(benchmark_names()) + ["all"], help="which layouts to write (default: emer dfew)")
    parser.add_argument("--output", "-o", default="sample_data",
                        help="output folder; each dataset goes to <output>/<NAME> (EMER, DFEW, MAFW, ...)")
    parser.add_argument("--clips-per-class", type=int, default=4)
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run_sample_data(args: argparse.Namespace) -> int:
    """Entry point of ``emvfer sample-data``: writes each requested dataset to ``<output>/<NAME>``."""
    names = benchmark_names() if "all" in args.dataset else args.dataset
    for name in names:
        root = make_sample_dataset(name, Path(args.output) / get_benchmark(name).folder,
                                   clips_per_class=args.clips_per_class, num_frames=args.num_frames,
                                   resolution=args.resolution, noise=args.noise, seed=args.seed)
        print(f"{name}: {root}")
    return 0
