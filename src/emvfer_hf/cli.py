"""The `emvfer` console script: `predict`, `analyze`, `live`, `export`, `eyes`, `sample-data`, `demo`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .precision import DTYPES
from .video_io_mert import DEFAULT_FPS

#: the exit status of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT), as shells report it
EXIT_INTERRUPTED = 130


def _number(kind, minimum, inclusive: bool = True):
    """An argparse type: ``kind`` (int or float) at least ``minimum`` (above it when not ``inclusive``); a value
    out of range is an argument error, never silently changed."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if value < minimum or (not inclusive and value == minimum):
            bound = "at least" if inclusive else "more than"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_COUNT = _number(int, 1)  # --batch-size, --max-faces, --top-k
_SECONDS = _number(float, 0, inclusive=False)  # --window, --stride, --end, --max-seconds, --fps
_START = _number(float, 0)  # --start


def _sources(*paths) -> dict:
    """``{description: path}`` of the inputs that are paths (not a camera index or a URL), for `check_outputs`."""
    return {f"input video {k + 1}" if len(paths) > 1 else "input video": p for k, p in enumerate(paths)
            if p is not None and not str(p).isdigit() and "://" not in str(p)}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# emvfer predict
def _add_predict(subparsers) -> None:
    p = subparsers.add_parser("predict", help="expression labels and scores of videos")
    p.add_argument("videos", nargs="+", help="video files or frame folders")
    p.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    p.add_argument("--top-k", type=_COUNT, default=3)
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=_COUNT, default=1)
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch (default) or onnx: run the graph written by `emvfer export` with onnxruntime")
    p.add_argument("--onnx", default=None, help="the ONNX file for --runtime onnx (default MODEL/model.onnx)")
    p.set_defaults(func=run_predict)


def predict_videos(videos, classifier, processor, top_k: int = 3, batch_size: int = 1, progress=True):
    """Yield `{"video", "predictions": [{"label", "score"}...], "instruction_weight"}` for each video, or
    `{"video", "error"}` for one that cannot be processed (the others still run). `classifier` is an
    `emvfer_hf.inference.Classifier` (a PyTorch model or an ONNX graph)."""
    import torch
    from tqdm.auto import tqdm

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    top_k = max(1, min(top_k, len(classifier.labels)))
    bar = tqdm(total=len(videos), desc="predicting", disable=not progress or len(videos) < 2, file=sys.stderr)
    for start in range(0, len(videos), batch_size):
        chunk = videos[start : start + batch_size]
        ready, errors = [], {}
        for video in chunk:  # process one by one so that a bad file names itself and spares the others
            try:
                ready.append((video, processor(video, return_tensors="pt")))
            except (ValueError, FileNotFoundError) as error:
                errors[video] = str(error)
        results = {}
        if ready:
            prediction = classifier({k: torch.cat([inputs[k] for _, inputs in ready]) for k in ready[0][1]})
            for row, (video, _) in enumerate(ready):
                weight = prediction.weight(row)
                results[video] = {
                    "video": str(video),
                    "predictions": [{"label": label, "score": round(score, 4)}
                                    for label, score in prediction.top_k(row, top_k)],  # fmt: skip
                    "instruction_weight": None if weight is None else round(weight, 4),
                }
        for video in chunk:
            yield results.get(video) or {"video": str(video), "error": errors[video]}
        bar.update(len(chunk))
    bar.close()


def run_predict(args) -> int:
    import emvfer_hf  # noqa: F401  (registers the Auto classes)
    from transformers import AutoConfig, AutoModelForVideoClassification, AutoVideoProcessor

    from .analysis import load_or_explain
    from .inference import Classifier

    processor = load_or_explain(args.model, lambda: AutoVideoProcessor.from_pretrained(args.model))
    if args.runtime == "onnx":
        config = load_or_explain(args.model, lambda: AutoConfig.from_pretrained(args.model))
        classifier = Classifier.from_onnx(args.onnx or Path(args.model) / "model.onnx", config)
    else:
        model = load_or_explain(args.model, lambda: AutoModelForVideoClassification.from_pretrained(args.model))
        classifier = Classifier(model, args.device)
    failed = 0
    for result in predict_videos(args.videos, classifier, processor, args.top_k, args.batch_size):
        failed += "error" in result
        if args.json:
            print(json.dumps(result), flush=True)
        elif "error" in result:
            print(f"{result['video']}: ERROR {result['error']}", flush=True)
        else:
            labels = "  ".join(f"{p['label']} {p['score']:.3f}" for p in result["predictions"])
            w = result["instruction_weight"]
            print(f"{result['video']}: {labels}" + ("" if w is None else f"  (eye-signal weight W={w:.3f})"), flush=True)
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------------------------------
# emvfer analyze / emvfer live
def _add_window_arguments(p) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    p.add_argument("--window", type=_SECONDS, default=2.0, help="window length in seconds (default 2)")
    p.add_argument("--stride", type=_SECONDS, default=1.0, help="seconds between window starts (default 1)")
    p.add_argument("--max-faces", type=_COUNT, default=None, help="at most this many faces per frame (the largest)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="model precision: auto (default: bf16 weights where the device computes bf16 natively, else "
                        "fp32), fp32, bf16, bf16-autocast, fp16 (autocast) or int8 (CPU, dynamic quantisation)")


def _add_analyze(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="expression timelines of recordings: one row per face and window (CSV or Parquet)",
        description="One video with --out (a CSV or Parquet timeline), or a corpus with --out-dir: video files, "
                    "folders (searched recursively), glob patterns (quoted) and manifests (.csv/.tsv with a video "
                    "or path column, other columns carried along; .txt/.lst with one path per line). A corpus run "
                    "writes OUT/timelines/*.parquet (one per video, sealed when complete), OUT/timeline.parquet "
                    "(all merged, with a video column) and OUT/failures.csv; a rerun skips what is complete. Under "
                    "`accelerate launch` every process takes its share of the videos.",
    )  # fmt: skip
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video file or frame folder (--out); or, with --out-dir, videos, folders, globs, manifests")
    _add_window_arguments(p)
    p.add_argument("--start", type=_START, default=None, help="analyse from this time (s)")
    p.add_argument("--end", type=_SECONDS, default=None, help="analyse until this time (s)")
    p.add_argument("--batch-size", type=_COUNT, default=None,
                   help="windows per model call (default: 1 on a CPU, where one at a time runs fastest; 8 on a GPU)")
    p.add_argument("--out", default=None,
                   help="CSV file of the timeline, or Parquet if it ends in .parquet (rows written as they come)")
    p.add_argument("--out-dir", default=None, help="corpus mode: the folder of the timelines, merged dataset and "
                   "failures (on storage every process reaches)")  # fmt: skip
    p.add_argument("--identity", choices=("auto", "dlib", "histogram"), default="auto",
                   help="how faces are re-identified after a gap or a cut: dlib's face embedding (pip install "
                        "'emvfer-hf[identity]'), the colour histogram, or auto (the embedding where installed)")  # fmt: skip
    p.add_argument("--videos-at-once", type=_COUNT, default=1,
                   help="corpus mode: videos analysed at once per process (threads); their windows share the "
                        "model's batches (for GPUs; default 1)")  # fmt: skip
    p.add_argument("--persons", action="store_true",
                   help="corpus mode: group the tracks of all videos into persons by face identity (person_id)")
    p.add_argument("--plot", default=None, help="PNG of each face's class probabilities over time (--out only)")
    p.add_argument("--annotated", default=None,
                   help="video file with face boxes, track ids and labels drawn (--out only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_analyze, device=None)


def run_analyze(args) -> int:
    """``emvfer analyze``: the outputs are checked before any work; the rows go to the CSV as each window is done;
    Ctrl-C or SIGTERM keeps the rows so far (a last row says so) and exits 130. With ``--out-dir``: the corpus
    (:func:`run_analyze_corpus`)."""
    from .analysis import analyze_video, check_window_arguments, plot_timeline
    from .outputs import RowWriter, check_outputs

    if (args.out is None) == (args.out_dir is None):
        raise ValueError("give --out FILE (one video) or --out-dir FOLDER (a corpus), not both and not neither")
    if args.out_dir is not None:
        return run_analyze_corpus(args)
    if len(args.inputs) != 1:
        raise ValueError(f"--out takes one video, got {len(args.inputs)} inputs; use --out-dir FOLDER for a corpus")
    if args.persons:
        raise ValueError("--persons groups the tracks of a corpus: use it with --out-dir")
    args.video = args.inputs[0]
    args.device = args.device or "cpu"
    check_window_arguments(args.window, args.stride, args.start, args.end, args.max_faces, args.batch_size,
                           name=args.video)  # fmt: skip
    check_outputs(_sources(args.video), {"--out": args.out, "--plot": args.plot, "--annotated": args.annotated})
    with RowWriter(args.out) as writer:  # a partial file now: writability is known before the work
        timeline = analyze_video(
            args.video, args.model, window=args.window, stride=args.stride, start=args.start, end=args.end,
            max_faces=args.max_faces, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
            progress=not args.quiet, annotated=args.annotated, on_rows=writer.write, identity=args.identity,
        )  # fmt: skip
    faces = timeline[timeline.track_id >= 0]
    print(f"{args.out}: {len(timeline)} rows, {timeline.attrs['num_tracks']} face track(s), "
          f"{timeline.attrs['analysed_s']:.1f} s analysed, {int((timeline.reason == 'no face').sum())} window(s) "
          "without a face")  # fmt: skip
    for track, rows in faces.groupby("track_id"):
        counts = rows.label.value_counts()
        print(f"  face {track}: {len(rows)} windows, mostly {counts.index[0]} ({counts.iloc[0]}/{len(rows)})")
    if "stopped_early" in timeline.attrs:
        print(f"warning: {timeline.attrs['stopped_early']}", file=sys.stderr)
    if "interrupted" in timeline.attrs:
        cut = len(timeline) and str(timeline.reason.iloc[-1]).startswith("interrupted")
        kept = f"{args.out} keeps the rows so far (its last row says so)" if cut else f"{args.out} is complete"
        print(f"emvfer analyze: {timeline.attrs['interrupted']}; {kept}" + (f"; no {args.plot} written" if args.plot
              else ""), file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    if args.plot:
        plot_timeline(timeline, args.plot)
        print(f"{args.plot}: plot written")
    if args.annotated:
        print(f"{args.annotated}: annotated video written")
    return 0


def run_analyze_corpus(args) -> int:
    """``emvfer analyze INPUT... --out-dir OUT``: every video of the corpus (this process's share under
    ``accelerate launch``) into OUT; exit 0 when every video has its timeline, 1 when some failed (listed in
    OUT/failures.csv), 130 when interrupted (only complete files are left; a rerun goes on from there)."""
    from .analysis import check_window_arguments, load_checkpoint
    from .corpus import analyze_corpus, process_state, resolve_corpus

    if args.plot or args.annotated:
        raise ValueError("--plot and --annotated draw one video: use them with --out (one video), not --out-dir")
    check_window_arguments(args.window, args.stride, args.start, args.end, args.max_faces, args.batch_size)
    videos = resolve_corpus(args.inputs)
    state = process_state()
    _share_cpu_threads(state)
    device = args.device or str(state.device)
    model = load_checkpoint(args.model, device=device)
    result = analyze_corpus(videos, args.out_dir, *model, model_name=str(args.model), window=args.window,
                            stride=args.stride, start=args.start, end=args.end, max_faces=args.max_faces,
                            batch_size=args.batch_size, device=device, dtype=args.dtype, identity=args.identity,
                            persons=args.persons, progress=not args.quiet, videos_at_once=args.videos_at_once,
                            state=state)  # fmt: skip
    where = f"process {state.process_index}/{state.num_processes}: " if state.num_processes > 1 else ""
    print(f"{where}{len(result.analysed)} video(s) analysed ({result.seconds:.1f} s of video), {len(result.skipped)} "
          f"already complete, {len(result.failed)} failed", file=sys.stderr)  # fmt: skip
    if result.batches:
        print(f"{where}{result.batches['calls']} forward pass(es), {result.batches['shared']} holding windows of "
              "several videos", file=sys.stderr)  # fmt: skip
    for video, reason in result.failed.items():
        print(f"  failed: {reason if video in reason else f'{video}: {reason}'}", file=sys.stderr)
    if result.interrupted:
        print(f"emvfer analyze: interrupted; {args.out_dir} keeps only complete timelines (run the same command again "
              "to go on)", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    if result.merged is not None:
        print(f"{result.merged}: the merged timelines of {result.complete} of the {len(videos)} video(s)")
        failures = Path(args.out_dir) / "failures.csv"
        if failures.exists():
            print(f"{failures}: the videos that failed")
            return 1
    return 1 if result.failed else 0


def _share_cpu_threads(state) -> None:
    """Several CPU processes on one machine (``accelerate launch --cpu --num_processes N``): each gets its share of
    the cores for torch, unless OMP_NUM_THREADS says otherwise."""
    import os

    if state.num_processes > 1 and state.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        import torch

        local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))


def _add_live(subparsers) -> None:
    p = subparsers.add_parser("live", help="predict a camera, stream or file every stride (rolling buffer)")
    p.add_argument("--source", required=True, help="camera index (0), stream URL, or a video file (paced at its rate)")
    _add_window_arguments(p)
    p.add_argument("--show", action="store_true", help="draw the boxes, labels and W on the picture")
    p.add_argument("--no-pace", action="store_true", help="read a file as fast as possible instead of at its rate")
    p.add_argument("--max-seconds", type=_SECONDS, default=None, help="stop after this much video")
    p.add_argument("--out", default=None, help="also write every prediction to this CSV file (as they come)")
    p.set_defaults(func=run_live_command)


def run_live_command(args) -> int:
    """``emvfer live``: each row printed and, with ``--out``, appended to the CSV as it comes; Ctrl-C or SIGTERM
    stops it, keeps every row (a last row says so) and exits 130."""
    from .analysis import check_window_arguments, load_checkpoint, timeline_columns
    from .live import format_row, run_live
    from .outputs import RowWriter, check_outputs

    check_window_arguments(args.window, args.stride, max_faces=args.max_faces)
    check_outputs(_sources(args.source), {"--out": args.out})
    model, processor = load_checkpoint(args.model)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    writer = RowWriter(args.out, columns=timeline_columns(labels)) if args.out else None

    def on_row(row: dict) -> None:
        print(format_row(row), flush=True)
        if writer is not None:
            writer.write([row])

    try:
        rows = run_live(args.source, model, processor, window=args.window, stride=args.stride,
                        max_faces=args.max_faces, device=args.device, dtype=args.dtype,
                        pace=False if args.no_pace else None, show=args.show, max_seconds=args.max_seconds,
                        on_row=on_row)  # fmt: skip
    except BaseException as error:
        if writer is not None:
            writer.abort(f"failed: {type(error).__name__}: {error} (the rows before it are kept)")
        raise
    if writer is not None:
        writer.close()
        print(f"{args.out}: {len(rows)} predictions written")
    if rows and str(rows[-1].get("reason", "")).startswith("interrupted"):
        return EXIT_INTERRUPTED
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# emvfer export
def _add_export(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX (dynamic batch)")
    p.add_argument("model", help="checkpoint folder")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--output", default=None, help="ONNX file to write (default MODEL/model.onnx)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--quantize", action="store_true", help="also write an int8 dynamically quantised graph (*.int8.onnx)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch logits check")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    import emvfer_hf  # noqa: F401
    import numpy as np
    import torch
    from transformers import AutoModelForVideoClassification

    from .export import ONNX_INPUT_NAMES, example_input_dict, export_onnx, quantize_onnx
    from .inference import ONNXVideoClassifier

    from .analysis import load_or_explain
    from .outputs import check_outputs

    output = Path(args.output) if args.output else Path(args.model) / "model.onnx"
    folder = Path(args.model)
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    inputs = {f"checkpoint's file {f.name}": f for f in files if f.is_file() and f.suffix != ".onnx"}
    check_outputs(inputs, {"--output": output, "the int8 graph": output.with_suffix(".int8.onnx") if args.quantize
                           else None})  # fmt: skip
    model = load_or_explain(args.model, lambda: AutoModelForVideoClassification.from_pretrained(args.model))
    model = model.float().eval()
    export_onnx(model, output, opset=args.opset)
    print(f"wrote {output} (inputs {', '.join(ONNX_INPUT_NAMES)}; dynamic batch)")
    if not args.no_check:
        inputs = example_input_dict(model.config, batch_size=3, seed=1)
        with torch.no_grad():
            expected = model(**inputs).logits.numpy()
        got = ONNXVideoClassifier(output)(**inputs)["logits"]
        diff = float(np.abs(got - expected).max())
        print(f"onnxruntime vs PyTorch (batch 3): max |Δlogit| = {diff:.2e}")
        if diff > 1e-4:
            print("emvfer export: error: the ONNX logits differ from PyTorch by more than 1e-4", file=sys.stderr)
            return 1
    if args.quantize:
        quantized = quantize_onnx(output, output.with_suffix(".int8.onnx"))
        print(f"wrote {quantized} (int8 dynamic quantisation)")
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# emvfer eyes
def _add_eyes(subparsers) -> None:
    p = subparsers.add_parser("eyes", help="the visual eye-movement series of a video (CSV, optional plot)")
    p.add_argument("video", help="video file or frame folder")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--plot", default=None, help="PNG file of the five channels over time")
    p.add_argument("--fps", type=_SECONDS, default=None, help=f"frame rate of a frame folder (default {DEFAULT_FPS:g})")
    p.set_defaults(func=run_eyes)


def run_eyes(args) -> int:
    """``emvfer eyes``: the series is normalised over the whole video, so the CSV is written once it is done (under a
    partial name, then renamed); an interrupt leaves no file and exits 130."""
    from .eye_extraction_mert import extract_eye_movements
    from .outputs import check_outputs
    from .visualization import plot_eye_movements, write_eye_movements_csv

    check_outputs(_sources(args.video), {"--out": args.out, "--plot": args.plot})
    series = extract_eye_movements(args.video, fps=args.fps)  # normalised over the whole video: written once done
    write_eye_movements_csv(series, args.out)
    print(f"{args.out}: {len(series)} steps, {series.valid.mean():.0%} valid")
    if args.plot:
        plot_eye_movements(series, args.plot, title=Path(args.video).name)
        print(f"{args.plot}: plot written")
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# emvfer sample-data
def _add_sample_data(subparsers) -> None:
    from .data.benchmarks import add_sample_data_arguments, run_sample_data

    p = subparsers.add_parser(
        "sample-data", help="write small datasets in the exact on-disk layouts of the six benchmarks"
    )
    add_sample_data_arguments(p)
    p.set_defaults(func=run_sample_data)


# ----------------------------------------------------------------------------------------------------------------------
# emvfer demo
def _add_demo(subparsers) -> None:
    from .demo import DEFAULT_HOST, DEFAULT_MAX_DURATION_S, DEFAULT_MAX_FILE_SIZE, DEFAULT_PORT

    p = subparsers.add_parser("demo", help="serve the Gradio demo page (pip install 'emvfer-hf[demo]')")
    p.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="largest upload, e.g. 200mb")
    p.add_argument("--max-duration", type=float, default=DEFAULT_MAX_DURATION_S, help="longest clip in seconds")
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from .demo import build_demo, launch_demo

    try:
        demo = build_demo(args.model, device=args.device, max_duration_s=args.max_duration)
    except ImportError as error:  # Gradio is an optional extra
        print(f"emvfer demo: error: {error}", file=sys.stderr)
        return 2
    launch_demo(demo, host=args.host, port=args.port, max_file_size=args.max_file_size)
    return 0


# ----------------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emvfer", description="EM-VFER: eye-movement-instructed video facial expression recognition"
    )
    subparsers = parser.add_subparsers(dest="command")
    _add_predict(subparsers)
    _add_analyze(subparsers)
    _add_live(subparsers)
    _add_export(subparsers)
    _add_eyes(subparsers)
    _add_sample_data(subparsers)
    _add_demo(subparsers)
    return parser


def main(argv=None) -> int:
    """Run one command. Exit status: 0 done, 1 some input failed (``predict``) or the analysis failed, 2 a bad input
    or argument (one line naming it), 130 interrupted (Ctrl-C or SIGTERM; what was written so far is kept)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    previous = _sigterm_as_interrupt()
    try:
        return args.func(args)
    except (ValueError, OSError) as error:  # bad inputs, missing files, a --model that is not a checkpoint
        print(f"emvfer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # face detection or the model failed (analysis.analyze_video names file and time)
        print(f"emvfer {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"emvfer {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _restore_sigterm(previous)


def _sigterm_as_interrupt():
    """Make SIGTERM stop a command as Ctrl-C does (KeyboardInterrupt: outputs kept and marked); the previous handler,
    or None where signals cannot be set here (not the main thread)."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
