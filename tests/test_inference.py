"""The inference core (`inference.py`: `clip_inputs`, `Classifier`, `Prediction`) and the video I/O room's probe,
writer and live reader (`video_io_mert.py`), on the real face clip and a tiny checkpoint."""

import numpy as np
import pytest
import torch

from emvfer_hf import MERTForVideoClassification
from emvfer_hf.inference import Classifier, ClipOptions, Prediction, clip_inputs
from emvfer_hf.video_io_mert import (
    DEFAULT_FPS,
    VideoWriter,
    decode_video,
    iter_timed_chunks,
    open_stream,
    probe_duration,
    probe_video,
)


# ----------------------------------------------------------------------------------------------------------------------
# video I/O
def test_probe_video_reads_the_container(carphone):
    info = probe_video(carphone)
    assert info.num_frames == 120 and info.fps == pytest.approx(29.97, abs=0.01)
    assert (info.width, info.height, info.rotation) == (176, 144, 0.0)
    assert info.duration_s == pytest.approx(4.0, abs=0.05) == probe_duration(carphone)


def test_probe_video_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="notes.mp4: not a readable video file"):
        probe_video(tmp_path / "notes.mp4")
    assert probe_duration(tmp_path / "notes.mp4") is None


def test_video_writer_keeps_the_frame_times_and_evens_the_size(tmp_path):
    times = np.array([0.0, 0.1, 0.25, 0.3, 0.7, 0.8])  # a variable rate stays variable
    path = tmp_path / "timed.mp4"
    with VideoWriter(path, 10) as writer:
        for k, t in enumerate(times):
            writer.write(np.full((65, 81, 3), 40 * k, np.uint8), t)
    assert writer.frames == len(times)
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames) == (80, 64, len(times))
    (frames, read, _), = list(iter_timed_chunks(path, 64))
    np.testing.assert_allclose(read, times, atol=2e-3)
    assert [int(np.round(f.mean() / 40)) for f in frames] == list(range(len(times)))


def test_open_stream_gives_the_decoders_frames(carphone):
    frames, fps = open_stream(carphone)
    frames = list(frames)
    decoded = decode_video(str(carphone))
    assert fps == pytest.approx(29.97, abs=0.01) and len(frames) == decoded.num_frames == 120
    np.testing.assert_array_equal(frames[7], decoded.frames[7])
    assert DEFAULT_FPS == 25.0


# ----------------------------------------------------------------------------------------------------------------------
# clip → model inputs
def test_processor_output_is_clip_inputs(tiny_processor, carphone):
    """The processor's per-clip path is `clip_inputs` on its sampled frames, face boxes and eye series."""
    out = tiny_processor(str(carphone), return_face_boxes=True, return_frame_indices=True, return_eye_series=True)
    decoded = decode_video(str(carphone))
    frames = [decoded.frames[int(i)] for i in out["frame_indices"][0]]
    box = out["face_boxes"][0][0]  # the union box of the clip, the same in every frame
    inputs = clip_inputs(frames, box, out["eye_series"][0], ClipOptions.from_settings(tiny_processor))
    for name, value in inputs.model_inputs().items():
        np.testing.assert_allclose(value, out[name][0], atol=1e-6, err_msg=name)
    assert inputs.pixel_values.shape == (4, 3, 32, 32) and inputs.eye_movement_values.shape == (16, 5)


def test_clip_inputs_without_face_or_eyes():
    frames = [np.full((40, 60, 3), 128, np.uint8)] * 3
    inputs = clip_inputs(frames, np.full((3, 4), np.nan), None, ClipOptions(size={"height": 8, "width": 8},
                                                                            eye_sequence_length=5))  # fmt: skip
    assert inputs.pixel_values.shape == (3, 3, 8, 8) and np.isnan(inputs.face_boxes).all()  # central squares
    assert not inputs.eye_movement_mask.any() and not inputs.eye_quality_features.any()


# ----------------------------------------------------------------------------------------------------------------------
# inputs → prediction
def test_classifier_is_the_models_softmax(tiny_checkpoint, tiny_processor, carphone):
    model = MERTForVideoClassification.from_pretrained(tiny_checkpoint).eval()
    inputs = tiny_processor(str(carphone), return_tensors="pt")
    prediction = Classifier(model, dtype="fp32")(inputs)
    with torch.no_grad():
        out = model(**inputs)
    np.testing.assert_allclose(prediction.scores, out.logits.softmax(-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(prediction.weights, out.instruction_weights.numpy(), atol=1e-6)
    assert prediction.labels == ["happiness", "sadness", "neutral"] and len(prediction) == 1
    label, score = prediction.best(0)
    assert prediction.top_k(0, 2)[0] == (label, score) and len(prediction.top_k(0, 2)) == 2
    assert sum(prediction.probabilities(0).values()) == pytest.approx(1.0, abs=1e-5)


def test_prediction_top_k_orders_by_score():
    prediction = Prediction(["a", "b", "c"], np.array([[0.2, 0.5, 0.3]], np.float32), None, np.zeros((1, 3)))
    assert [label for label, _ in prediction.top_k(0, 3)] == ["b", "c", "a"] and prediction.weight(0) is None


def test_the_inference_core_ships_with_the_processor(tiny_checkpoint):
    """The processor imports the core, so `save_pretrained` copies it (and what it imports) next to the weights."""
    assert (tiny_checkpoint / "inference.py").is_file() and (tiny_checkpoint / "precision.py").is_file()


def test_open_stream_names_an_unreachable_network_source():
    """A URL that does not answer is named as a stream that cannot be opened, not as a bad file."""
    from emvfer_hf.video_io_mert import open_stream

    with pytest.raises(ValueError, match=r"rtsp://127\.0\.0\.1:1/none: cannot be opened as a video stream"):
        open_stream("rtsp://127.0.0.1:1/none", timeout_s=2)
