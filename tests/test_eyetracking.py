"""Eye-tracker recordings: readers (Pro Lab TSV both styles, xlsx, Pro SDK), writer, event detection, to_series.

The real recording in tests/fixtures/eye_tracking/ (Pupil Labs Neon demo, MIT, rewritten as a Pro Lab TSV; see
its README) is the ground truth for the event detector.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emvfer_hf.eye_movement_mert import BEHAVIOUR_CHANNEL, EyeMovementSeries
from emvfer_hf.eyetracking import (
    EyeTrackingRecording,
    detect_events,
    read_eye_tracking,
    read_tobii_sdk,
    read_tobii_tsv,
    read_tobii_xlsx,
    write_tobii_tsv,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eye_tracking"
NEON_TSV = FIXTURES / "neon_demo_prolab.tsv"
NEON_EVENTS = FIXTURES / "neon_demo_events.csv"


@pytest.fixture(scope="module")
def neon_no_labels(tmp_path_factory):
    """The real recording with its ``Eye movement type`` (and derived) columns removed."""
    df = pd.read_csv(NEON_TSV, sep="\t", dtype=str, keep_default_na=False)
    df = df.drop(columns=[c for c in df.columns if c.startswith(("Eye movement type", "Gaze event duration"))])
    path = tmp_path_factory.mktemp("neon") / "neon_no_labels.tsv"
    df.to_csv(path, sep="\t", index=False)
    return read_tobii_tsv(path, resolution=(1600, 1200))


def _intervals(df, name):
    sel = df[df["event"].str.lower() == name]
    return list(zip(sel["onset_ms"], sel["offset_ms"]))


# ------------------------------------------------------------------------------------------- real recording
def test_read_real_recording():
    rec = read_tobii_tsv(NEON_TSV)
    assert len(rec) == 1788
    assert rec.sampling_rate_hz == pytest.approx(200, rel=0.01)
    assert np.all(np.diff(rec.timestamps_ms) > 0)
    for name in ("pupil_left", "pupil_right", "gaze_x", "gaze_y"):
        arr = getattr(rec, name)
        assert arr.shape == (1788,) and np.isfinite(arr[rec.valid]).all()
    assert 2.0 < np.nanmedian(rec.pupil_left) < 8.0  # mm
    assert (~rec.valid).sum() == 100  # the two blinks
    assert np.isnan(rec.pupil_left[~rec.valid]).all()
    # the export's own labels are kept: EyesNotFound runs of 240/260 ms are blinks
    assert rec.events is not None
    assert (rec.events["event"] == "blink").sum() == 2


def test_detector_matches_device_events(neon_no_labels):
    assert neon_no_labels.events is None  # labels really removed
    ours = detect_events(neon_no_labels)
    assert list(ours.columns) == ["event", "onset_ms", "offset_ms"]
    assert set(ours["event"]) <= {"fixation", "saccade", "blink"}
    assert (ours["offset_ms"] >= ours["onset_ms"]).all()
    truth = pd.read_csv(NEON_EVENTS).rename(columns=str.lower)
    truth["event"] = truth["event"].str.lower()
    for name in ("fixation", "saccade", "blink"):
        n_true = (truth["event"] == name).sum()
        n_ours = (ours["event"] == name).sum()
        assert abs(n_ours - n_true) <= 0.2 * n_true, f"{name}: detected {n_ours}, device {n_true}"
    ours_blinks, true_blinks = _intervals(ours, "blink"), _intervals(truth, "blink")

    def overlaps(a, b):
        return a[0] <= b[1] and b[0] <= a[1]

    assert all(any(overlaps(o, t) for t in true_blinks) for o in ours_blinks)
    assert all(any(overlaps(o, t) for o in ours_blinks) for t in true_blinks)


def test_detector_ignores_export_labels():
    rec = read_tobii_tsv(NEON_TSV)
    scrambled = EyeTrackingRecording(
        rec.timestamps_ms, rec.pupil_left, rec.pupil_right, rec.gaze_x, rec.gaze_y, rec.valid,
        resolution=rec.resolution, events=rec.events.assign(event="saccade"),
    )
    pd.testing.assert_frame_equal(detect_events(rec), detect_events(scrambled))


@pytest.mark.parametrize("step", [2, 3])
def test_detector_lower_rates(neon_no_labels, step):
    """Down-sampled to 100 and 67 Hz the detector still finds the same structure (counts within ±30 %)."""
    r = neon_no_labels
    s = slice(None, None, step)
    low = EyeTrackingRecording(r.timestamps_ms[s], r.pupil_left[s], r.pupil_right[s], r.gaze_x[s], r.gaze_y[s],
                               r.valid[s], resolution=r.resolution)
    counts = detect_events(low)["event"].value_counts()
    assert counts.get("blink", 0) == 2
    assert 23 * 0.7 <= counts.get("fixation", 0) <= 23 * 1.3
    assert 22 * 0.7 <= counts.get("saccade", 0) <= 22 * 1.3


def test_detect_events_with_known_geometry():
    """A synthetic 250 Hz scan path with 3 known saccades, detected with pixels_per_degree (30 °/s I-VT)."""
    t = np.arange(0, 2000, 4.0)
    x = np.full_like(t, 500.0)
    for onset in (400, 900, 1500):  # 40 ms saccades of 200 px (5 ° at 40 px/deg => 125 °/s)
        x += np.clip((t - onset) / 40.0, 0, 1) * 200
    y = np.full_like(t, 400.0) + np.random.default_rng(0).normal(0, 0.5, len(t))
    rec = EyeTrackingRecording(t, np.full_like(t, 3.0), np.full_like(t, 3.0), x, y, np.ones(len(t), bool))
    ev = detect_events(rec, pixels_per_degree=40.0)
    assert (ev["event"] == "saccade").sum() == 3
    assert (ev["event"] == "fixation").sum() == 4
    assert (ev["event"] == "blink").sum() == 0


# ------------------------------------------------------------------------------------------- reader variants
def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _rows(header, rows):
    return "\t".join(header) + "\n" + "\n".join("\t".join(r) for r in rows) + "\n"


BARE_HEADER = ["Recording timestamp", "Sensor", "Gaze point X", "Gaze point Y", "Pupil diameter left",
               "Pupil diameter right", "Validity left", "Validity right", "Eye movement type"]


def _bare_rows(t_scale=1000, decimal=","):
    rows = []
    for i in range(40):
        t = str(int(i * 4 * t_scale)) if t_scale != 1 else str(i * 4)
        if i == 10:  # EyesNotFound with empty cells
            rows.append([t, "Eye Tracker", "", "", "", "", "Invalid", "Invalid", "EyesNotFound"])
            continue
        px, py = f"{960 + i:.1f}", f"{540 - i:.1f}"
        pl, pr = "3.41", "3.38"
        rows.append([t, "Eye Tracker", px, py, pl, pr, "Valid", "Valid", "Fixation"])
        if i == 20:
            rows.append([t, "Mouse", "100", "100", "", "", "", "", ""])
            rows.append([t, "", "", "", "", "", "", "", ""])  # an Event row
    return [[c.replace(".", decimal) for c in r] for r in rows]


def test_bare_header_comma_decimals_microseconds(tmp_path):
    """Bare names, comma decimals, µs timestamps without a unit (inferred from the 4000 µs step), Sensor rows
    of Mouse/empty dropped, EyesNotFound rows and empty cells invalid."""
    p = _write(tmp_path, "bare.tsv", _rows(BARE_HEADER, _bare_rows()))
    rec = read_tobii_tsv(p)
    assert len(rec) == 40
    np.testing.assert_allclose(np.diff(rec.timestamps_ms), 4.0)
    assert rec.sampling_rate_hz == pytest.approx(250)
    assert rec.gaze_x[1] == pytest.approx(961.0) and rec.pupil_left[1] == pytest.approx(3.41)
    assert not rec.valid[10] and rec.valid.sum() == 39
    assert np.isnan(rec.pupil_left[10]) and np.isnan(rec.gaze_x[10])
    assert rec.metadata["resolution_source"] == "default"


def test_bare_header_millisecond_inference(tmp_path):
    p = _write(tmp_path, "ms.tsv", _rows(BARE_HEADER, _bare_rows(t_scale=1, decimal=".")))
    rec = read_tobii_tsv(p, resolution=(1280, 720))
    np.testing.assert_allclose(np.diff(rec.timestamps_ms), 4.0)
    assert rec.resolution == (1280.0, 720.0)


def test_suffixed_header_microsecond_unit_and_resolution(tmp_path):
    header = ["Recording timestamp [μs]", "Sensor", "Recording resolution width", "Recording resolution height",
              "Gaze point X [DACS px]", "Gaze point Y [DACS px]", "Gaze point X (MCSnorm)", "Gaze point Y (MCSnorm)",
              "Pupil diameter left [mm]", "Pupil diameter right [mm]", "Validity left", "Validity right"]
    rows = [[str(i * 8333), "Eye Tracker", "1280", "1024", str(640 + i), "512", "0.5", "0.5", "3.1", "", "Valid",
             "Invalid"] for i in range(30)]
    rec = read_tobii_tsv(_write(tmp_path, "suffix.tsv", _rows(header, rows)))
    assert rec.sampling_rate_hz == pytest.approx(120, rel=0.01)
    assert rec.resolution == (1280.0, 1024.0)
    assert rec.gaze_x[3] == 643  # the px column, not the MCSnorm one
    assert rec.valid.all() and rec.valid_left.all() and not rec.valid_right.any()
    assert np.isnan(rec.pupil_right).all()


def test_xlsx_export(tmp_path):
    df = pd.read_csv(NEON_TSV, sep="\t").iloc[:300]
    p = tmp_path / "2_sport_anger.xlsx"
    df.to_excel(p, index=False)
    rec = read_tobii_xlsx(p, resolution=(1600, 1200))
    ref = read_tobii_tsv(NEON_TSV, resolution=(1600, 1200))
    np.testing.assert_allclose(rec.timestamps_ms, ref.timestamps_ms[:300])
    np.testing.assert_allclose(rec.gaze_x, ref.gaze_x[:300])
    assert read_eye_tracking(p).gaze_x.shape == (300,)
    # EMER-style sheet: gaze columns only, no timestamps -> needs the sampling rate
    emer = tmp_path / "emer.xlsx"
    df[["Gaze point X [DACS px]", "Gaze point Y [DACS px]"]].rename(columns=lambda c: c.split(" [")[0]).to_excel(
        emer, index=False)
    with pytest.raises(ValueError, match="emer.xlsx.*timestamp"):
        read_tobii_xlsx(emer)
    rec = read_tobii_xlsx(emer, sampling_rate_hz=200)
    assert rec.timestamps_ms[1] == pytest.approx(5.0)


def _sdk_samples(n=50):
    out = []
    for i in range(n):
        lost = i in (7, 8)
        out.append({
            "device_time_stamp": 1_000_000 + i * 16667,
            "system_time_stamp": 5_000_000 + i * 16667,
            "left_gaze_point_on_display_area": (float("nan"),) * 2 if lost else (0.25 + i / 1000, 0.5),
            "right_gaze_point_on_display_area": (float("nan"),) * 2 if lost else (0.27 + i / 1000, 0.52),
            "left_gaze_point_validity": 0 if lost else 1,
            "right_gaze_point_validity": 0 if lost else 1,
            "left_pupil_diameter": float("nan") if lost else 3.2,
            "right_pupil_diameter": float("nan") if lost else 3.3,
            "left_pupil_validity": 0 if lost else 1,
            "right_pupil_validity": 0 if lost else 1,
        })
    return out


def test_pro_sdk_dicts_and_csv(tmp_path):
    samples = _sdk_samples()
    rec = read_tobii_sdk(samples)
    assert len(rec) == 50 and rec.sampling_rate_hz == pytest.approx(60, rel=0.01)
    assert rec.resolution == (1.0, 1.0)
    assert rec.gaze_x[0] == pytest.approx(0.26) and rec.gaze_y[0] == pytest.approx(0.51)
    assert not rec.valid[7] and not rec.valid[8] and rec.valid.sum() == 48
    gx, _ = rec.gaze_normalized()
    assert gx[0] == pytest.approx(-0.48)
    p = tmp_path / "sdk.csv"
    pd.DataFrame(samples).to_csv(p, index=False)  # tuples become "(x, y)" strings
    rec_csv = read_eye_tracking(p)
    np.testing.assert_allclose(rec_csv.gaze_x, rec.gaze_x, equal_nan=True)
    np.testing.assert_array_equal(rec_csv.valid, rec.valid)
    scaled = read_tobii_sdk(samples, resolution=(1920, 1080))
    assert scaled.gaze_x[0] == pytest.approx(0.26 * 1920)


def test_writer_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    n = 250
    t = np.arange(n) * 4.0
    gx, gy = 960 + rng.normal(0, 5, n), 540 + rng.normal(0, 5, n)
    pl, pr = 3.4 + rng.normal(0, 0.05, n), 3.3 + rng.normal(0, 0.05, n)
    valid = np.ones(n, bool)
    valid[100:125] = False  # a 100 ms blink
    types = np.where(valid, 0, 2)
    types[50:55] = 1
    for decimal in (".", ","):
        p = write_tobii_tsv(tmp_path / f"rec{decimal}.tsv", t, gx, gy, pl, pr, valid, valid, types,
                            participant="P07", resolution=(1920, 1080), decimal=decimal)
        rec = read_tobii_tsv(p)
        np.testing.assert_allclose(rec.timestamps_ms, t)
        np.testing.assert_allclose(rec.gaze_x[valid], gx[valid], atol=0.06)
        np.testing.assert_allclose(rec.pupil_right[valid], pr[valid], atol=6e-4)
        np.testing.assert_array_equal(rec.valid, valid)
        assert rec.resolution == (1920.0, 1080.0) and rec.metadata["participant"] == "P07"
        counts = rec.events["event"].value_counts()
        assert counts["blink"] == 1 and counts["saccade"] == 1 and counts["fixation"] == 3
    header = p.read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert "Recording timestamp [ms]" in header and "Gaze point X [DACS px]" in header


# ------------------------------------------------------------------------------------------- bad input
def test_bad_inputs(tmp_path):
    good = _rows(BARE_HEADER, _bare_rows(decimal="."))
    with pytest.raises(ValueError, match="missing.tsv.*no such file"):
        read_tobii_tsv(tmp_path / "missing.tsv")
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" * 20)
    with pytest.raises(ValueError, match="binary.tsv"):
        read_tobii_tsv(binary)
    with pytest.raises(ValueError, match="empty.tsv.*empty"):
        read_tobii_tsv(_write(tmp_path, "empty.tsv", ""))
    with pytest.raises(ValueError, match="truncated.tsv.*truncated"):
        read_tobii_tsv(_write(tmp_path, "truncated.tsv", good[: len(good) // 2 + 7].rsplit("\t", 3)[0]))
    no_gaze = _rows([c for c in BARE_HEADER if not c.startswith("Gaze")],
                    [[c for j, c in enumerate(r) if j not in (2, 3)] for r in _bare_rows()])
    with pytest.raises(ValueError, match="nogaze.tsv.*Gaze point X"):
        read_tobii_tsv(_write(tmp_path, "nogaze.tsv", no_gaze))
    invalid = [r[:2] + ["", "", "", "", "Invalid", "Invalid", "EyesNotFound"] for r in _bare_rows()]
    with pytest.raises(ValueError, match="invalid.tsv.*no valid sample"):
        read_tobii_tsv(_write(tmp_path, "invalid.tsv", _rows(BARE_HEADER, invalid)))
    rows = _bare_rows(decimal=".")
    rows[5][0], rows[6][0] = rows[6][0], rows[5][0]
    with pytest.raises(ValueError, match="nonmono.tsv.*'Recording timestamp'.*not monotonic"):
        read_tobii_tsv(_write(tmp_path, "nonmono.tsv", _rows(BARE_HEADER, rows)))
    bad_xlsx = _write(tmp_path, "bad.xlsx", "not a workbook")
    with pytest.raises(ValueError, match="bad.xlsx.*unreadable"):
        read_tobii_xlsx(bad_xlsx)
    with pytest.raises(ValueError, match="no valid sample"):
        read_tobii_sdk([{**s, "left_gaze_point_validity": 0, "right_gaze_point_validity": 0} for s in _sdk_samples()])


# ------------------------------------------------------------------------------------------- to_series
def test_to_series_whole_and_window():
    rec = read_tobii_tsv(NEON_TSV, resolution=(1600, 1200))
    s = rec.to_series()
    assert isinstance(s, EyeMovementSeries) and s.normalized
    assert s.values.shape == (len(rec), 5) and s.values.dtype == np.float32
    assert np.isfinite(s.values).all()
    assert s.valid.all()  # blinks are valid observations
    beh = s.values[:, BEHAVIOUR_CHANNEL]
    assert set(np.unique(beh)) <= {0.0, 0.5, 1.0}
    assert (beh[~rec.valid] == 1.0).all()  # every lost sample is inside one of the two blinks
    assert np.abs(s.values[:, 2:4]).max() <= 1.0
    np.testing.assert_allclose(s.values[:, :2].mean(0), 0, atol=1e-4)  # pupils z-scored
    np.testing.assert_allclose(s.values[:, :2].std(0), 1, atol=1e-3)

    # a 25 fps video starting 2.5 s into the recording, 4 s long
    frame_times = np.arange(100) / 25.0
    w = rec.to_series(start_ms=2500, end_ms=6500, times_s=frame_times)
    assert w.values.shape == (100, 5) and w.valid.all()
    np.testing.assert_allclose(w.times_s, frame_times)
    # frames 15 / 20 (0.6 / 0.8 s into the video) are recording times 3.1 / 3.3 s: inside / just after the first blink (2.99-3.23 s)
    assert w.values[15, BEHAVIOUR_CHANNEL] == 1.0 and w.values[20, BEHAVIOUR_CHANNEL] < 1.0
    r = rec.to_series(start_ms=2500, end_ms=6500, length=256)
    assert r.values.shape == (256, 5) and r.times_s[0] == pytest.approx(0.0) and r.times_s[-1] <= 4.0
    # detected vs export labels: same shape, mostly the same behaviour
    d = rec.to_series(events="detect")
    assert (d.values[:, 4] == s.values[:, 4]).mean() > 0.8
    with pytest.raises(ValueError, match="no sample in the window"):
        rec.to_series(start_ms=20_000, end_ms=21_000)
    with pytest.raises(ValueError, match="events must be"):
        rec.to_series(events="pro lab")


def test_to_series_lost_tracking_is_invalid(tmp_path):
    t = np.arange(500) * 4.0
    valid = np.ones(500, bool)
    valid[100:110] = False  # 40 ms dropout: not a blink, not valid
    valid[200:250] = False  # 200 ms: blink, valid
    valid[300:450] = False  # 600 ms: lost tracking, not valid
    g = np.where(valid, 900.0, np.nan)
    p = np.where(valid, 3.0 + np.sin(t / 200), np.nan)
    rec = EyeTrackingRecording(t, p, p, g, g, valid)
    s = rec.to_series(events="detect")
    assert not s.valid[100:110].any() and not s.valid[300:450].any()
    assert s.valid[200:250].all() and (s.values[200:250, 4] == 1.0).all()
    assert np.isfinite(s.values).all()
