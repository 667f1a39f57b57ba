"""The stock `pipeline("video-classification")`, remote code in a fresh process, and the `emvfer` CLI end to end."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from PIL import Image
from transformers import pipeline

from emvfer_hf.cli import main as cli_main


def test_checkpoint_is_complete(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "video_preprocessor_config.json"} <= names
    remote_code = {"configuration_mert.py", "modeling_mert.py", "video_processing_mert.py", "eye_movement_mert.py",
                   "eye_extraction_mert.py", "faces_mert.py", "face_backends_mert.py", "video_io_mert.py"}  # fmt: skip
    assert remote_code <= names


def test_stock_pipeline(tiny_checkpoint, carphone):
    classifier = pipeline("video-classification", model=str(tiny_checkpoint))
    result = classifier(str(carphone))
    assert [r["label"] for r in result] and {r["label"] for r in result} <= {"happiness", "sadness", "neutral"}
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-4)
    assert len(classifier(str(carphone), top_k=1)) == 1
    sigmoid = classifier(str(carphone), top_k=3, function_to_apply="sigmoid")
    assert all(0 < r["score"] < 1 for r in sigmoid) and sum(r["score"] for r in sigmoid) != pytest.approx(1.0)


def test_stock_pipeline_with_remote_code_in_fresh_process(tiny_checkpoint, carphone, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        from transformers import pipeline
        classifier = pipeline("video-classification", model={str(tiny_checkpoint)!r}, trust_remote_code=True)
        result = classifier({str(carphone)!r}, top_k=2)
        assert "emvfer_hf" not in sys.modules, "the package must not be imported"
        print(json.dumps(result))
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(predictions) == 2 and predictions[0]["label"] in {"happiness", "sadness", "neutral"}


def test_cli_predict_json(tiny_checkpoint, carphone, tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    code = cli_main(["predict", str(carphone), str(missing), "--model", str(tiny_checkpoint), "--json", "--top-k", "2"])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 1  # one of the two videos failed
    good, bad = lines
    assert good["video"] == str(carphone) and len(good["predictions"]) == 2
    assert 0 < good["instruction_weight"] <= 1
    assert "missing.mp4" in bad["error"]


def test_cli_predict_table(tiny_checkpoint, carphone, capsys):
    assert cli_main(["predict", str(carphone), "--model", str(tiny_checkpoint), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "carphone_pristine.mp4:" in out and "eye-signal weight W=" in out


def test_cli_eyes_with_plot(carphone, tmp_path, capsys):
    csv_path, png_path = tmp_path / "eyes.csv", tmp_path / "eyes.png"
    assert cli_main(["eyes", str(carphone), "--out", str(csv_path), "--plot", str(png_path)]) == 0
    rows = csv_path.read_text().strip().splitlines()
    assert rows[0] == "time_s,pupil_left,pupil_right,gaze_x,gaze_y,behaviour,valid"
    assert len(rows) == 1 + 120  # one row per frame
    with Image.open(png_path) as image:
        image.verify()
    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.size[0] > 500 and image.size[1] > 400


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert cli_main(["eyes", str(bad), "--out", str(tmp_path / "x.csv")]) == 2
    assert "bad.mp4" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "emvfer_hf.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "predict" in result.stdout and "eyes" in result.stdout


def test_cli_predict_with_a_bad_model_folder(carphone, tmp_path, capsys):
    assert cli_main(["predict", str(carphone), "--model", str(tmp_path / "no-such-model")]) == 2
    assert "no-such-model" in capsys.readouterr().err
