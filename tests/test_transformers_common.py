"""transformers' own common tests on MERT: `ModelTesterMixin`, `ConfigTester` and `VideoProcessingTestMixin` of the
installed transformers version, taken from its source distribution on PyPI (tests/registry_data.py fetches and caches
it; the tests skip, with the reason, only where the registry cannot be reached).

Tiny configurations throughout (docs/design.md §Rules). A common test is overridden only where MERT truly differs; each
override says why. Tests that need hardware, Hub access or libraries absent here skip through transformers' own
decorators (`require_torch_accelerator`, `slow`, ...).
"""

from __future__ import annotations

import importlib
import unittest
import unittest.mock

import pytest
import torch
from torch import nn

from emvfer_hf import MERTConfig, MERTForVideoClassification, MERTModel, MERTVideoProcessor

from .registry_data import TRANSFORMERS_TESTS_PACKAGE, transformers_tests_dir


def _common(module: str):
    """A module of transformers' tests (e.g. "test_modeling_common"); skips when the sdist cannot be fetched."""
    transformers_tests_dir()
    return importlib.import_module(f"{TRANSFORMERS_TESTS_PACKAGE}.{module}")


try:  # collection must not fail where the registry is unreachable: the classes below then skip with the reason
    _modeling = _common("test_modeling_common")
    _configuration = _common("test_configuration_common")
    _video = _common("test_video_processing_common")
    ModelTesterMixin, floats_tensor = _modeling.ModelTesterMixin, _modeling.floats_tensor
    ConfigTester, VideoProcessingTestMixin = _configuration.ConfigTester, _video.VideoProcessingTestMixin
    _SKIP = None
except pytest.skip.Exception as skipped:
    _SKIP = str(skipped)
    ModelTesterMixin = VideoProcessingTestMixin = object
    ConfigTester = floats_tensor = None


# ----------------------------------------------------------------------------------------------------------------------
class MERTModelTester:
    """Tiny MERT (2 layers, hidden 32, 4 frames of 32x32, L=16), as transformers' model testers build them."""

    def __init__(self, parent, batch_size=2, num_frames=4, image_size=32, patch_size=16, num_channels=3,
                 hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 eye_sequence_length=16, head_hidden_size=16, num_labels=3, is_training=True):  # fmt: skip
        self.parent = parent
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.eye_sequence_length = eye_sequence_length
        self.head_hidden_size = head_hidden_size
        self.num_labels = num_labels
        self.is_training = is_training
        # the video encoder's per-frame tokens: patches + CLS (the pre-training stage has no prompts)
        self.seq_length = (image_size // patch_size) ** 2 + 1
        # hidden states come three ways (video encoder, eye encoder, head), each with its own field
        self.num_hidden_states_types = 3

    def get_config(self):
        return MERTConfig(
            num_frames=self.num_frames, image_size=self.image_size, patch_size=self.patch_size,
            num_channels=self.num_channels, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
            eye_sequence_length=self.eye_sequence_length, head_hidden_size=self.head_hidden_size,
            fusion_bottleneck_size=8, num_prompt_tokens=3, num_labels=self.num_labels,
        )  # fmt: skip

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor(
            [self.batch_size, self.num_frames, self.num_channels, self.image_size, self.image_size]
        )
        eye_movement_values = floats_tensor([self.batch_size, self.eye_sequence_length, 5])
        eye_movement_mask = torch.ones(self.batch_size, self.eye_sequence_length, dtype=torch.bool)
        labels = torch.randint(0, self.num_labels, (self.batch_size,))
        return self.get_config(), pixel_values, eye_movement_values, eye_movement_mask, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, eye_movement_values, eye_movement_mask, _ = self.prepare_config_and_inputs()
        inputs = {"pixel_values": pixel_values, "eye_movement_values": eye_movement_values,
                  "eye_movement_mask": eye_movement_mask}  # fmt: skip
        return config, inputs


@unittest.skipIf(_SKIP is not None, _SKIP or "")
class MERTModelCommonTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (MERTModel, MERTForVideoClassification)
    pipeline_model_mapping = {}
    test_resize_embeddings = False  # patch embeddings (a Conv2d), no token vocabulary to resize
    has_attentions = True

    def setUp(self):
        self.model_tester = MERTModelTester(self)
        self.config_tester = ConfigTester(self, config_class=MERTConfig, has_text_modality=False, hidden_size=37)
        # The common tests tell a base model (no loss, not trained by `test_training*`) from a head model by the
        # static name table of the Auto classes; MERT registers with `AutoModel.register` at import, which that table
        # does not see. Listing MERTModel there (for this test only) is what a model inside transformers has.
        from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

        patcher = unittest.mock.patch.dict(MODEL_MAPPING_NAMES, {"mert": "MERTModel"})
        patcher.start()
        self.addCleanup(patcher.stop)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and model_class is MERTForVideoClassification:
            inputs_dict["labels"] = torch.zeros(self.model_tester.batch_size, dtype=torch.long)
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    # Overridden: MERT is a vision model; its input embedding is the ViT patch embedding (a Conv2d projection), not
    # an `nn.Embedding` over a vocabulary. Same override as transformers' own ViT / VideoMAE tests.
    def test_model_get_set_embeddings(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            x = model.get_output_embeddings()
            self.assertTrue(x is None or isinstance(x, nn.Linear))


# ----------------------------------------------------------------------------------------------------------------------
class MERTVideoProcessingTester:
    def __init__(self, parent, batch_size=3, num_frames=8, num_channels=3, min_resolution=24, max_resolution=48):
        self.parent = parent
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.num_channels = num_channels
        self.min_resolution = min_resolution
        self.max_resolution = max_resolution
        self.size = {"shortest_edge": 20}
        self.crop_size = {"height": 18, "width": 18}

    def prepare_video_processor_dict(self):
        # Random noise has no face: the face crop and the visual eye-movement extraction are off (central crop)
        return {"num_frames": self.num_frames, "size": self.size, "do_center_crop": True, "crop_size": self.crop_size,
                "do_face_crop": False, "do_extract_eye_movements": False, "eye_sequence_length": 16}  # fmt: skip

    def expected_output_video_shape(self, videos):
        return (self.num_frames, 3, self.crop_size["height"], self.crop_size["width"])

    def prepare_video_inputs(self, equal_resolution=False, return_tensors="pil"):
        return _video.prepare_video_inputs(
            batch_size=self.batch_size, num_frames=self.num_frames, num_channels=self.num_channels,
            min_resolution=self.min_resolution, max_resolution=self.max_resolution,
            equal_resolution=equal_resolution, return_tensors=return_tensors,
        )  # fmt: skip


@unittest.skipIf(_SKIP is not None, _SKIP or "")
class MERTVideoProcessingCommonTest(VideoProcessingTestMixin, unittest.TestCase):
    fast_video_processing_class = MERTVideoProcessor
    input_name = "pixel_values"

    def setUp(self):
        super().setUp()
        self.video_processor_tester = MERTVideoProcessingTester(self)

    @property
    def video_processor_dict(self):
        return self.video_processor_tester.prepare_video_processor_dict()

    # Overridden: the common version ends by asking for more frames (10) than the video has (8) and expects a
    # ValueError. MERT instead repeats the last frame (`sample_segment_indices`), because its datasets hold clips
    # shorter than T (CASME II onset-apex clips of a few frames; DFEW's shortest clips) and a training run must not
    # stop on them. Everything else of the common test is kept as it is, and the padding is checked instead.
    def test_call_sample_frames(self):
        from transformers.video_utils import VideoMetadata

        processor = MERTVideoProcessor(**self.video_processor_dict)
        previous = self.video_processor_tester.num_frames
        self.video_processor_tester.num_frames = 8
        try:
            videos = self.video_processor_tester.prepare_video_inputs(equal_resolution=False, return_tensors="torch")
            processor.do_sample_frames = False  # no sampling, even with num_frames
            self.assertEqual(processor(videos[0], return_tensors="pt", num_frames=3)["pixel_values"].shape[1], 8)
            self.assertEqual(processor(videos, return_tensors="pt", num_frames=3)["pixel_values"].shape[1], 8)
            processor.do_sample_frames = True
            self.assertEqual(processor(videos[0], return_tensors="pt", num_frames=3)["pixel_values"].shape[1], 3)
            self.assertEqual(processor(videos, return_tensors="pt", num_frames=3)["pixel_values"].shape[1], 3)
            with self.assertRaises(ValueError):  # fps needs the video's rate
                processor.sample_frames(metadata=VideoMetadata(total_num_frames=8), fps=3)
            metadata = [[{"duration": 2.0, "total_num_frames": 8, "fps": 4}]]
            self.assertEqual(
                processor(videos[0], return_tensors="pt", fps=3, video_metadata=metadata)["pixel_values"].shape[1], 6
            )
            batched = processor(videos, return_tensors="pt", fps=3, video_metadata=metadata * len(videos))
            self.assertEqual(batched["pixel_values"].shape[1], 6)
            metadata = [[VideoMetadata(duration=2.0, total_num_frames=8, fps=4)]]
            self.assertEqual(
                processor(videos[0], return_tensors="pt", fps=3, video_metadata=metadata)["pixel_values"].shape[1], 6
            )
            # MERT: more frames than the video has → the last frame repeats
            out = processor(videos[0], return_tensors="pt", num_frames=10, return_metadata=True)
            self.assertEqual(out["pixel_values"].shape[1], 10)
            self.assertEqual(out["video_metadata"][0].frames_indices, [0, 1, 2, 3, 4, 5, 6, 7, 7, 7])
        finally:
            self.video_processor_tester.num_frames = previous
