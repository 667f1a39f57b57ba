"""MERTVideoProcessor on a real face video, frame folders, arrays, and bad inputs."""

import numpy as np
import pytest
import torch
from transformers import AutoVideoProcessor

from emvfer_hf import EyeMovementSeries, MERTVideoProcessor
from emvfer_hf.data._media import write_jpgs, write_mp4
from emvfer_hf.video_processing_mert import decode_video, eye_frame_indices, sample_segment_indices


@pytest.fixture(scope="module")
def carphone_frames(carphone):
    decoded = decode_video(carphone)
    return np.stack([decoded.frames[i] for i in sorted(decoded.frames)])


def test_segment_sampling():
    assert sample_segment_indices(16, 4).tolist() == [2, 6, 10, 14]  # middle of each segment
    assert sample_segment_indices(3, 5).tolist() == [0, 1, 2, 2, 2]  # short clip: repeat the last frame
    rng = np.random.default_rng(0)
    train = sample_segment_indices(100, 4, train=True, rng=rng)
    assert all(25 * k <= i < 25 * (k + 1) for k, i in enumerate(train))
    a = sample_segment_indices(100, 4, train=True, rng=np.random.default_rng(7))
    b = sample_segment_indices(100, 4, train=True, rng=np.random.default_rng(7))
    assert a.tolist() == b.tolist()
    assert eye_frame_indices(10, None).tolist() == list(range(10))
    assert eye_frame_indices(100, 5).tolist() == [0, 25, 50, 74, 99]


def test_real_face_video(carphone, tiny_processor):
    out = tiny_processor(str(carphone), return_tensors="pt", return_face_boxes=True, return_eye_series=True)
    assert out["pixel_values"].shape == (1, 4, 3, 32, 32) and out["pixel_values"].dtype == torch.float32
    assert out["eye_movement_values"].shape == (1, 16, 5) and out["eye_movement_mask"].shape == (1, 16)
    assert torch.isfinite(out["pixel_values"]).all() and torch.isfinite(out["eye_movement_values"]).all()
    assert out["eye_movement_mask"].float().mean() > 0.9  # the face is visible throughout
    box = out["face_boxes"][0, 0]
    assert 0 < box[2] - box[0] < 176 * 1.5 and box[0] < 88 < box[2]  # a square around the centre of the frame
    assert -1.5 <= out["pixel_values"].min() and out["pixel_values"].max() <= 1.0 + 1e-6
    series = out["eye_series"][0]
    assert isinstance(series, EyeMovementSeries) and len(series) == 24  # the denser eye frames


def test_frame_folder_array_and_tensor_inputs(carphone_frames, tiny_processor, tmp_path):
    frames = carphone_frames[:20]
    # DFEW layout: Clip/clip_224x224/00001/00001_1.jpg ... 00001_20.jpg (natural order, not lexicographic)
    folder = tmp_path / "Clip" / "clip_224x224" / "00001"
    write_jpgs(folder, [f[..., ::-1] for f in frames], [f"00001_{i + 1}.jpg" for i in range(20)])
    from_folder = tiny_processor(str(folder), return_face_boxes=True)
    from_array = tiny_processor(frames, return_face_boxes=True)
    from_tensor = tiny_processor(torch.from_numpy(frames), return_face_boxes=True)
    np.testing.assert_allclose(from_array["pixel_values"], from_tensor["pixel_values"])
    # same frames, only jpeg-compressed: same face box (within a few px) and close pixels
    np.testing.assert_allclose(from_folder["face_boxes"], from_array["face_boxes"], atol=6)
    assert np.abs(from_folder["pixel_values"] - from_array["pixel_values"]).mean() < 0.1
    batch = tiny_processor([frames, str(folder)], return_tensors="pt")
    assert batch["pixel_values"].shape[0] == 2


def test_user_eye_movements_replace_visual_extraction(carphone_frames, tiny_processor):
    t = np.linspace(0, 2, 50)
    values = np.stack([np.sin(t), np.cos(t), 0.5 * np.sin(3 * t), 0.2 * t - 0.2, np.zeros_like(t)], axis=1)
    series = EyeMovementSeries(values, np.ones(50, bool), t)
    out = tiny_processor(carphone_frames[:10], eye_movements=series)
    np.testing.assert_allclose(out["eye_movement_values"][0], series.resample(16).values, atol=1e-6)
    with pytest.raises(ValueError, match="eye-movement inputs for 1 videos"):
        tiny_processor(carphone_frames[:10], eye_movements=[series, series])


def test_train_sampling_is_seeded(carphone_frames, tiny_processor):
    kwargs = dict(do_train_sampling=True, do_extract_eye_movements=False, return_face_boxes=False)
    a = tiny_processor(carphone_frames, sampling_seed=1, **kwargs)["pixel_values"]
    b = tiny_processor(carphone_frames, sampling_seed=1, **kwargs)["pixel_values"]
    c = tiny_processor(carphone_frames, sampling_seed=2, **kwargs)["pixel_values"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_and_auto_load(tmp_path):
    processor = MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, eye_sequence_length=16)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "video_preprocessor_config.json").exists()
    assert (tmp_path / "video_processing_mert.py").exists()
    loaded = AutoVideoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, MERTVideoProcessor)
    assert loaded.num_frames == 4 and loaded.eye_sequence_length == 16 and loaded.size["height"] == 32
    assert list(loaded.image_mean) == [0.5, 0.5, 0.5]
    defaults = MERTVideoProcessor()
    assert defaults.num_frames == 16 and defaults.size["height"] == 224 and defaults.eye_sequence_length == 256


# ---------------------------------------------------------------------------------------------------------------------
# Bad and unusual inputs: each a clear error naming the input, never a hang
def test_missing_zero_byte_and_non_video_files(tiny_processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        tiny_processor(str(tmp_path / "nope.mp4"))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4.*empty"):
        tiny_processor(str(empty))
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(ValueError, match="notes.mp4"):
        tiny_processor(str(text))
    folder = tmp_path / "frames"
    folder.mkdir()
    with pytest.raises(ValueError, match="frames.*no image files"):
        tiny_processor(str(folder))


def test_truncated_video_decodes_what_it_can(carphone, tiny_processor, tmp_path):
    data = carphone.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    try:
        out = tiny_processor(str(truncated))
    except ValueError as error:  # acceptable: a clear error naming the file
        assert "truncated.mp4" in str(error)
    else:
        assert np.isfinite(out["pixel_values"]).all()


def test_video_without_faces(tiny_processor, tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((96, 128, 3), 40, np.uint8) + rng.integers(0, 20, (96, 128, 3), dtype=np.uint8) for _ in range(8)]
    path = write_mp4(tmp_path / "wall.mp4", frames, fps=10)
    with pytest.raises(ValueError, match="wall.mp4.*no face"):
        tiny_processor(str(path))
    out = tiny_processor(str(path), allow_no_face=True)
    assert out["pixel_values"].shape == (1, 4, 3, 32, 32)
    assert not out["eye_movement_mask"].any()


def test_one_frame_grayscale_and_huge_inputs(carphone_frames, tiny_processor, tmp_path):
    one = write_mp4(tmp_path / "one.mp4", [carphone_frames[0][..., ::-1]], fps=25)
    out = tiny_processor(str(one))
    assert out["pixel_values"].shape == (1, 4, 3, 32, 32)  # padded by repeating the only frame
    np.testing.assert_array_equal(out["pixel_values"][0, 0], out["pixel_values"][0, 3])

    gray = carphone_frames[:12].mean(axis=-1).astype(np.uint8)  # (T, H, W)
    out = tiny_processor(gray)
    assert out["pixel_values"].shape == (1, 4, 3, 32, 32)
    assert np.allclose(out["pixel_values"][0, :, 0], out["pixel_values"][0, :, 1])
    gray_video = write_mp4(tmp_path / "gray.mp4", [np.repeat(g[..., None], 3, -1) for g in gray], fps=25)
    assert tiny_processor(str(gray_video))["pixel_values"].shape == (1, 4, 3, 32, 32)

    import cv2

    huge = cv2.resize(carphone_frames[0], (4000, 3000), interpolation=cv2.INTER_LINEAR)
    out = tiny_processor(huge[None], return_face_boxes=True)
    box = out["face_boxes"][0, 0]
    assert 1000 < box[2] - box[0] < 4000  # the face found at full resolution


class _FaceInSecondFrameOnly:
    """A face backend that finds a face in the second frame it is given and nowhere else."""

    def detect(self, frames):
        n = len(frames)
        boxes, landmarks = np.full((n, 4), np.nan, np.float32), np.full((n, 5, 2), np.nan, np.float32)
        boxes[1] = [10, 10, 40, 40]
        landmarks[1] = [[18, 20], [32, 20], [25, 27], [19, 33], [31, 33]]
        return boxes, landmarks, np.where(np.isfinite(boxes[:, 0]), 1.0, np.nan)


def test_face_only_outside_the_eye_frames_gives_an_invalid_eye_series():
    processor = MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, eye_sequence_length=16,
                                   eye_frames=4)  # fmt: skip
    processor.face_backend = _FaceInSecondFrameOnly()
    frames = np.random.default_rng(0).integers(0, 255, (20, 48, 48, 3), dtype=np.uint8)
    # frames used: model 2, 7, 12, 17 and eyes 0, 6, 13, 19 → the face is in frame 2, a model frame only
    out = processor(frames, allow_no_face=True, return_face_boxes=True)
    assert np.isfinite(out["face_boxes"]).all()  # crops around the face that was found
    assert not out["eye_movement_mask"].any() and np.isfinite(out["eye_movement_values"]).all()


def test_unsupported_standard_options_are_refused(tiny_processor):
    """do_sample_frames=False and fps= are supported now (tests/test_processor_contract.py); do_resize=False is not:
    the face crops always take `size`."""
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="not supported"):
        tiny_processor(frames, do_resize=False)
