"""The scoring of event detectors against human coders (emvfer_hf.eyetracking.agreement), on small hand-made
examples worked out by hand: per-sample Cohen's kappa per class, pooled over recordings (Andersson et al. 2017), and
event-level F1 with onset/offset differences of matched events (Hooge et al. 2018)."""

import numpy as np
import pandas as pd
import pytest

from emvfer_hf.eyetracking.agreement import (
    cohen_kappa,
    event_agreement,
    events_from_sample_labels,
    labels_from_events,
    match_events,
    sample_kappa,
)

T = np.arange(10.0)  # 1 kHz: sample i at i ms
REF = np.array(list("FFFFSSSFFF"))
DET = np.array(list("FFFSSSFFFF"))
NAMES = {"F": "fixation", "S": "saccade", "P": "pso", "U": "undefined"}


def _names(chars):
    return np.array([NAMES[c] for c in chars], dtype=object)


def test_kappa_by_hand():
    # fixation vs rest: 8 of 10 samples agree (p_o = 0.8); both codings say fixation on 7 of 10, so chance
    # agreement p_e = 0.7² + 0.3² = 0.58 and kappa = (0.8 - 0.58) / (1 - 0.58) = 0.5238
    assert cohen_kappa(REF == "F", DET == "F") == pytest.approx(0.22 / 0.42)
    assert sample_kappa([_names(REF)], [_names(DET)], "fixation") == pytest.approx(0.22 / 0.42)
    assert sample_kappa([_names(REF)], [_names(DET)], "saccade") == pytest.approx(0.22 / 0.42)
    assert cohen_kappa(REF == "F", REF == "F") == pytest.approx(1.0)
    assert cohen_kappa(REF == "F", REF != "F") < 0  # worse than chance
    assert np.isnan(cohen_kappa(np.ones(5, bool), np.ones(5, bool)))  # no variation: undefined
    with pytest.raises(ValueError, match="samples"):
        cohen_kappa(np.ones(3, bool), np.ones(4, bool))


def test_kappa_pools_recordings_and_skips_undefined():
    """Pooled = kappa of the concatenated samples (not the mean of per-recording kappas); samples the reference
    leaves undefined do not count, whatever the detector says there."""
    a_ref, a_det = _names("FFFFF"), _names("FFFFF")  # alone: kappa undefined (no variation)
    b_ref, b_det = _names(REF), _names(DET)
    pooled = sample_kappa([a_ref, b_ref], [a_det, b_det], "fixation")
    # 15 samples, 13 agree; reference 12/15 fixation, detection 12/15
    po, pe = 13 / 15, (12 / 15) ** 2 + (3 / 15) ** 2
    assert pooled == pytest.approx((po - pe) / (1 - pe))
    with_undefined = sample_kappa([_names("UU" + "".join(REF))], [_names("SS" + "".join(DET))], "fixation")
    assert with_undefined == pytest.approx(0.22 / 0.42)


def test_labels_and_events_round_trip():
    ev = events_from_sample_labels(T, _names("FFFFSSPPUF"))
    assert list(ev["event"]) == ["fixation", "saccade", "pso", "fixation"]
    assert list(ev["onset_ms"]) == [0, 4, 6, 9] and list(ev["offset_ms"]) == [3, 5, 7, 9]
    back = labels_from_events(T, ev)
    assert list(back) == list(_names("FFFFSSPPUF"))
    # overlapping events: the later class in `order` wins
    over = pd.DataFrame({"event": ["saccade", "fixation"], "onset_ms": [2.0, 0.0], "offset_ms": [4.0, 9.0]})
    assert list(labels_from_events(T, over, order=("fixation", "saccade"))[:6]) == list(_names("FFSSSF"))


def test_event_f1_and_timing_by_hand():
    ref = events_from_sample_labels(T, _names(REF))  # F 0-3, S 4-6, F 7-9
    det = events_from_sample_labels(T, _names(DET))  # F 0-2, S 3-5, F 6-9
    sac = event_agreement([ref], [det], "saccade")
    assert (sac["n_reference"], sac["n_detected"], sac["n_matched"], sac["f1"]) == (1, 1, 1, 1.0)
    assert sac["onset_median_ms"] == -1.0 and sac["offset_median_ms"] == -1.0  # one sample early at both ends
    assert sac["onset_median_abs_ms"] == 1.0
    fix = event_agreement([ref], [det], "fixation")
    assert fix["f1"] == 1.0 and fix["onset_median_ms"] == -0.5 and fix["offset_median_ms"] == -0.5  # (0-0, 6-7)

    # a reference saccade split in two by the detector, and a false saccade: one match of 1 reference, 3 detected
    ref2 = pd.DataFrame({"event": ["saccade"], "onset_ms": [10.0], "offset_ms": [40.0]})
    det2 = pd.DataFrame({"event": ["saccade"] * 3, "onset_ms": [8.0, 30.0, 100.0], "offset_ms": [20.0, 45.0, 110.0]})
    assert match_events(ref2, det2) == [(0, 0)]  # equal overlaps (10 ms each): the earlier detection
    res = event_agreement([ref2], [det2], "saccade")
    assert res["n_matched"] == 1 and res["f1"] == pytest.approx(2 / 4)
    # pooled over recordings
    both = event_agreement([ref, ref2], [det, det2], "saccade")
    assert (both["n_reference"], both["n_detected"], both["n_matched"]) == (2, 4, 2)
    assert both["f1"] == pytest.approx(4 / 6)


def test_matching_is_one_to_one_by_largest_overlap():
    ref = pd.DataFrame({"event": ["saccade"] * 2, "onset_ms": [0.0, 30.0], "offset_ms": [20.0, 50.0]})
    det = pd.DataFrame({"event": ["saccade"], "onset_ms": [15.0], "offset_ms": [45.0]})  # overlaps 5 and 15 ms
    assert match_events(ref, det) == [(1, 0)]
    empty = pd.DataFrame({"event": [], "onset_ms": [], "offset_ms": []})
    assert match_events(ref, empty) == []
    assert event_agreement([ref], [empty], "saccade")["f1"] == 0.0


def test_events_module_imports_nothing_of_the_recording():
    """No import circle: events.py (the detector) imports no module of the package but the eye-movement format's
    shared helpers (`eye_movement_mert`, which imports no sibling at load); recording.py imports it."""
    import ast
    from pathlib import Path

    from emvfer_hf.eyetracking import events

    tree = ast.parse(Path(events.__file__).read_text(encoding="utf-8"))
    relative = [(n.level, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert relative == [(2, "eye_movement_mert")]
    from emvfer_hf import eye_movement_mert

    tree = ast.parse(Path(eye_movement_mert.__file__).read_text(encoding="utf-8"))
    assert not [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level > 0]  # nothing at load
    absolute = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    absolute += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    assert not any(m and m.startswith("emvfer_hf") for m in absolute)
