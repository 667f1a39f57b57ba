"""emvfer_hf: EM-VFER (eye-movement-instructed robust video facial expression recognition) for Hugging Face.

Importing the package registers the "mert" model type with transformers' Auto classes, so that
`AutoConfig`, `AutoModel` and `AutoModelForVideoClassification` resolve MERT checkpoints, and marks the classes
for `save_pretrained` to ship their code next to the weights (loadable with `trust_remote_code=True` in a process
that never imported `emvfer_hf`).
"""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoVideoProcessor

from .configuration_mert import MERTConfig
from .eye_movement_mert import EyeMovementSeries, eye_movement_prior, normalize_eye_movements
from .modeling_mert import (
    MERTForVideoClassification,
    MERTModel,
    MERTModelOutput,
    MERTPreTrainedModel,
    MERTVideoClassifierOutput,
)
from .video_processing_mert import MERTVideoProcessor

__version__ = "0.1.0"

AutoConfig.register("mert", MERTConfig, exist_ok=True)
AutoModel.register(MERTConfig, MERTModel, exist_ok=True)
AutoModelForVideoClassification.register(MERTConfig, MERTForVideoClassification, exist_ok=True)
MERTConfig.register_for_auto_class()
MERTModel.register_for_auto_class("AutoModel")
MERTForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
AutoVideoProcessor.register(MERTConfig, MERTVideoProcessor, exist_ok=True)
MERTVideoProcessor.register_for_auto_class("AutoVideoProcessor")

__all__ = [
    "EyeMovementSeries",
    "MERTConfig",
    "MERTForVideoClassification",
    "MERTModel",
    "MERTModelOutput",
    "MERTPreTrainedModel",
    "MERTVideoClassifierOutput",
    "MERTVideoProcessor",
    "eye_movement_prior",
    "normalize_eye_movements",
]
