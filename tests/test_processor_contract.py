"""The v5 `BaseVideoProcessor` contract of MERTVideoProcessor (issue 13): metadata, pre-sampled frames, fps
sampling (and the model taking the resulting T), preprocessing on a device."""

import numpy as np
import pytest
import torch
from transformers.video_utils import VideoMetadata

from emvfer_hf import MERTConfig, MERTForVideoClassification, MERTVideoProcessor

from .conftest import TINY_MERT


@pytest.fixture
def processor():
    return MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, eye_sequence_length=16,
                              do_face_crop=False, do_extract_eye_movements=False)  # fmt: skip


def video(num_frames=20, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (num_frames, 40, 48, 3), dtype=np.uint8)


def test_return_metadata(processor):
    out = processor([video(20), video(30, 1)], return_metadata=True, video_metadata=[{"fps": 10.0}, {"fps": 15.0}])
    meta = out["video_metadata"]
    assert len(meta) == 2 and all(isinstance(m, VideoMetadata) for m in meta)
    assert (meta[0].fps, meta[0].total_num_frames, meta[0].duration) == (10.0, 20, 2.0)
    assert (meta[1].fps, meta[1].total_num_frames, meta[1].duration) == (15.0, 30, 2.0)
    assert meta[0].frames_indices == [2, 7, 12, 17]  # the middle of each of the 4 segments
    assert "video_metadata" not in processor([video(20)])  # only when asked


def test_do_sample_frames_false_takes_frames_as_given(processor):
    clip = video(6)
    out = processor(clip, do_sample_frames=False, return_metadata=True, return_tensors="pt")
    assert out["pixel_values"].shape == (1, 6, 3, 32, 32)
    assert out["video_metadata"][0].frames_indices == list(range(6))
    sampled = processor(clip, return_tensors="pt")["pixel_values"]
    assert sampled.shape[1] == 4


def test_fps_sampling_and_the_model_takes_the_resulting_T(processor):
    clip = video(50)  # 2 s at 25 fps (default_fps)
    out = processor(clip, fps=4, return_metadata=True, return_tensors="pt")
    assert out["pixel_values"].shape[1] == 8
    assert len(out["video_metadata"][0].frames_indices) == 8
    # the rate from video_metadata wins over default_fps: 50 frames at 10 fps = 5 s → 20 frames at 4 fps
    assert processor(clip, fps=4, video_metadata={"fps": 10.0}, return_tensors="pt")["pixel_values"].shape[1] == 20
    with pytest.raises(ValueError, match="mutually exclusive"):
        processor(clip, fps=4, num_frames=4)
    torch.manual_seed(0)
    model = MERTForVideoClassification(MERTConfig(**TINY_MERT)).eval()
    with torch.no_grad():
        logits = model(pixel_values=out["pixel_values"], eye_movement_values=out["eye_movement_values"],
                       eye_movement_mask=out["eye_movement_mask"]).logits  # fmt: skip
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


def test_device_path_on_cpu_matches_the_default_path(processor):
    clip = video(20)
    reference = processor(clip, return_tensors="pt")["pixel_values"]
    on_device = processor(clip, device="cpu", return_tensors="pt")["pixel_values"]
    assert isinstance(on_device, torch.Tensor) and on_device.device.type == "cpu" and on_device.dtype == torch.float32
    assert on_device.shape == reference.shape
    # torch's antialiased bilinear resize vs OpenCV's area resize: close, not equal
    assert (on_device - reference).abs().mean() < 0.05
    if torch.cuda.is_available():
        on_gpu = processor(clip, device="cuda", return_tensors="pt")["pixel_values"]
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), on_device, atol=1e-4, rtol=0)


def test_size_shortest_edge_and_center_crop(processor):
    out = processor(video(20), size={"shortest_edge": 24}, do_center_crop=True, crop_size={"height": 20, "width": 20},
                    return_tensors="pt")  # fmt: skip
    assert out["pixel_values"].shape == (1, 4, 3, 20, 20)
