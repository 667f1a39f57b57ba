"""High-quality eye-tracker recordings: Tobii Pro Lab / Pro SDK and EyeLink EDF readers, a Pro Lab TSV writer,
event detection (fixations, saccades, PSOs, pursuit, blinks), and conversion to the canonical eye-movement series of :mod:`emvfer_hf.eye_movement_mert`."""

from .events import coarse_events, detect_events
from .readers import (
    EyeTrackingDataWarning,
    events_from_labels,
    read_eye_tracking,
    read_eyelink_edf,
    read_tobii_sdk,
    read_tobii_tsv,
    read_tobii_xlsx,
)
from .recording import EyeTrackingRecording
from .writer import write_tobii_tsv

__all__ = [
    "EyeTrackingDataWarning",
    "EyeTrackingRecording",
    "coarse_events",
    "detect_events",
    "events_from_labels",
    "read_eye_tracking",
    "read_eyelink_edf",
    "read_tobii_sdk",
    "read_tobii_tsv",
    "read_tobii_xlsx",
    "write_tobii_tsv",
]
