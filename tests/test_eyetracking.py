"""Eye-tracker recordings: readers (Pro Lab TSV both styles, xlsx, Pro SDK, EyeLink EDF), writer, event detection,
to_series.

Ground truth for the event detector are real recordings with the tracker's own events: the Pupil Labs Neon demo in
tests/fixtures/eye_tracking/ (200 Hz, MIT, rewritten as a Pro Lab TSV; see its README) and the EyeLink EDFs in the
eyelinkio wheel's test data (1000 Hz monocular, 500 Hz binocular, with the online parser's events; fetched from
the package registry by tests/registry_data.py).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emvfer_hf.eye_movement_mert import BEHAVIOUR_CHANNEL, EyeMovementSeries
from emvfer_hf.eyetracking import (
    EyeTrackingDataWarning,
    EyeTrackingRecording,
    coarse_events,
    detect_events,
    read_eye_tracking,
    read_eyelink_edf,
    read_tobii_sdk,
    read_tobii_tsv,
    read_tobii_xlsx,
    write_tobii_tsv,
)
from tests.registry_data import eyelink_edf

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
    detected = detect_events(neon_no_labels)
    assert list(detected.columns) == ["event", "onset_ms", "offset_ms"]
    assert set(detected["event"]) <= {"fixation", "saccade", "pso", "pursuit", "blink"}
    assert (detected["offset_ms"] >= detected["onset_ms"]).all()
    ours = coarse_events(detected, 5.0)  # the device's vocabulary: PSOs in saccades, pursuit in fixations
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
    counts = coarse_events(detect_events(low), 5.0 * step)["event"].value_counts()
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
    with pytest.warns(EyeTrackingDataWarning, match="truncated.tsv.*last line.*cut short.*dropped"):
        read_tobii_tsv(_write(tmp_path, "truncated.tsv", good[: len(good) // 2 + 7].rsplit("\t", 3)[0]))
    no_gaze = _rows([c for c in BARE_HEADER if not c.startswith("Gaze")],
                    [[c for j, c in enumerate(r) if j not in (2, 3)] for r in _bare_rows()])
    with pytest.raises(ValueError, match="nogaze.tsv.*Gaze point X"):
        read_tobii_tsv(_write(tmp_path, "nogaze.tsv", no_gaze))
    invalid = [r[:2] + ["", "", "", "", "Invalid", "Invalid", "EyesNotFound"] for r in _bare_rows()]
    with pytest.raises(ValueError, match="invalid.tsv.*no valid sample"):
        read_tobii_tsv(_write(tmp_path, "invalid.tsv", _rows(BARE_HEADER, invalid)))
    rows = _bare_rows(decimal=".")
    for r in rows:
        r[0] = "not a time"
    with pytest.raises(ValueError, match="notime.tsv: nothing usable remains.*lines 2, 3.*timestamp.*does not parse"):
        read_tobii_tsv(_write(tmp_path, "notime.tsv", _rows(BARE_HEADER, rows)))
    bad_xlsx = _write(tmp_path, "bad.xlsx", "not a workbook")
    with pytest.raises(ValueError, match="bad.xlsx.*unreadable"):
        read_tobii_xlsx(bad_xlsx)
    with pytest.raises(ValueError, match="no valid sample"):
        read_tobii_sdk([{**s, "left_gaze_point_validity": 0, "right_gaze_point_validity": 0} for s in _sdk_samples()])


# ------------------------------------------------------------------------------------------- keeping real recordings
def _glitched_neon(tmp_path, name, edit, drop_sensor=False):
    """The real Neon export (1788 samples) with its lines edited by ``edit(lines)`` (line 0: the header)."""
    lines = NEON_TSV.read_text(encoding="utf-8").splitlines()
    if drop_sensor:
        col = lines[0].split("\t").index("Sensor")
        lines = ["\t".join(c for j, c in enumerate(line.split("\t")) if j != col) for line in lines]
    edit(lines)
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _set_time(lines, i, value):
    cells = lines[i].split("\t")
    cells[0] = value
    lines[i] = "\t".join(cells)


def test_real_recording_with_a_timestamp_glitch_reads_with_one_warning(tmp_path):
    """The issue's case: the last sample of a real export comes before the one before it. Plus a repeated stamp, a
    missing one between regular neighbours (repaired), a missing one at a gap (dropped), a stamp that jumps far
    ahead and back, a row that does not parse and a row with a stray field. ONE warning names the file and the
    samples; only they are lost, and the detector still finds the device's events."""
    ref = read_tobii_tsv(NEON_TSV, resolution=(1600, 1200))
    t_last_before = ref.timestamps_ms[-2]

    def edit(lines):
        n = len(lines) - 1
        _set_time(lines, n, "3")  # last sample: 3 ms, long before the one before it
        _set_time(lines, 101, lines[100].split("\t")[0])  # sample 100 repeats sample 99's stamp
        _set_time(lines, 301, "")  # sample 300 missing, its neighbours 10 ms apart: repaired
        _set_time(lines, 501, "999999")  # sample 500 jumps far ahead, 501 continues as before
        lines[701] = "garbage\t" + "x" * 5000  # a row that does not parse (and a long cell)
        lines[901] += "\tstray"  # a stray field

    p = _glitched_neon(tmp_path, "glitch.tsv", edit)
    with pytest.warns(EyeTrackingDataWarning) as record:
        rec = read_tobii_tsv(p, resolution=(1600, 1200))
    assert len(record) == 1
    msg = str(record[0].message)
    assert msg.startswith(str(p)) and len(msg) < 1500 and "xxxxxxxxxx" not in msg
    for part in ("lines 702 and 902", "sample 100 repeated", "sample 300 had no timestamp", "repaired",
                 "out of order", "samples 500 and 1785"):
        assert part in msg, (part, msg)
    # lost: the garbage and stray rows, the repeat, the far-ahead stamp and the last sample
    assert len(rec) == 1788 - 5
    assert np.all(np.diff(rec.timestamps_ms) > 0)
    assert rec.timestamps_ms[-1] == pytest.approx(t_last_before)
    assert rec.metadata["reader_notes"] and "repaired" in " ".join(rec.metadata["reader_notes"])
    counts = coarse_events(detect_events(rec), 5.0)["event"].value_counts()
    assert counts["blink"] == 2 and 23 * 0.8 <= counts["fixation"] <= 23 * 1.2


@pytest.mark.parametrize("drop_sensor", [False, True], ids=["with-sensor-column", "without-sensor-column"])
def test_rows_that_do_not_parse_are_dropped_with_a_warning(tmp_path, drop_sensor):
    """A row that does not parse costs that row, with or without a Sensor column: not silently (with one), not
    the whole file (without one)."""
    def edit(lines):
        lines[11] = "\t".join(["12ab"] + lines[11].split("\t")[1:])
        lines[12] = "\t".join(["Eye Tracker?"] * len(lines[12].split("\t")))

    p = _glitched_neon(tmp_path, "rows.tsv", edit, drop_sensor=drop_sensor)
    with pytest.warns(EyeTrackingDataWarning, match=r"rows.tsv.*lines 12 and 13 had a timestamp .* does not parse"):
        rec = read_tobii_tsv(p, resolution=(1600, 1200))
    assert len(rec) == 1786


def test_chunked_reading_is_exact(tmp_path, monkeypatch):
    """Tiny chunks (97 rows, 1000 bytes, so that lines straddle chunk boundaries) read the same recording, and find
    the same bad lines, as the defaults; CRLF line ends too."""
    from emvfer_hf.eyetracking import readers

    def edit(lines):
        lines[50] += "\tstray"
        lines[-1] = lines[-1][: len(lines[-1]) // 2]  # cut short

    p = _glitched_neon(tmp_path, "chunks.tsv", edit)
    p.write_bytes(p.read_bytes().rstrip(b"\n"))  # no final line break: a truncated export
    crlf = tmp_path / "crlf.tsv"
    crlf.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    with pytest.warns(EyeTrackingDataWarning) as ref_warning:
        ref = read_tobii_tsv(p, resolution=(1600, 1200))
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 97)
    monkeypatch.setattr(readers, "_CHUNK_BYTES", 1000)
    for path in (p, crlf):
        with pytest.warns(EyeTrackingDataWarning) as record:
            rec = read_tobii_tsv(path, resolution=(1600, 1200))
        assert str(record[0].message).replace(str(path), "") == str(ref_warning[0].message).replace(str(p), "")
        np.testing.assert_array_equal(rec.timestamps_ms, ref.timestamps_ms)
        np.testing.assert_array_equal(rec.gaze_x, ref.gaze_x)
    assert len(ref) == 1788 - 2 and "line 51" in str(ref_warning[0].message)


def test_clean_files_read_without_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", EyeTrackingDataWarning)
        assert len(read_tobii_tsv(NEON_TSV)) == 1788


def test_error_messages_quote_little(tmp_path):
    """A huge header line or cell never ends up in a message."""
    p = tmp_path / "huge_header.tsv"
    p.write_bytes(b"Recording timestamp\t" + b"G" * (2 << 20) + b"\n1\t2\n")
    with pytest.raises(ValueError, match="huge_header.tsv.*first line is longer") as e:
        read_tobii_tsv(p)
    assert len(str(e.value)) < 300
    header = "\t".join(BARE_HEADER[:2] + ["Pupil diameter left"] + [f"Extra {i} " + "y" * 200 for i in range(50)])
    p = _write(tmp_path, "nogaze.tsv", header + "\n" + "\t".join(["1"] * 53) + "\n")
    with pytest.raises(ValueError, match="nogaze.tsv.*missing gaze columns") as e:
        read_tobii_tsv(p)
    assert len(str(e.value)) < 700


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


# ------------------------------------------------------------------------------------------- EyeLink EDF
needs_eyelinkio = pytest.mark.skipif(importlib.util.find_spec("eyelinkio") is None,
                                     reason="needs the optional extra emvfer-hf[eyelink] (eyelinkio)")
EDF_CACHE: dict = {}


def _edf(name: str, eye=None) -> EyeTrackingRecording:
    """A real EDF of eyelinkio's test data, read once per session (the Python-side EDF parse takes ~1 s)."""
    key = (name, eye)
    if key not in EDF_CACHE:
        EDF_CACHE[key] = read_eyelink_edf(eyelink_edf(name), eye=eye)
    return EDF_CACHE[key]


def tracker_reference(events: pd.DataFrame, blink_ms=(50.0, 500.0)):
    """The tracker's saccades, fixations and blinks, counted like ours.

    - EyeLink reports every blink inside a saccade (the lid sweeps the pupil image before it is lost): those
      blink-saccade pairs are one blink, so saccades that contain a blink are not counted as saccades (our
      detector folds them into the blink).
    - EyeLink calls every loss of the pupil a blink, from 1 ms dropouts to seconds of lost tracking; a blink is
      counted when it lasts ``blink_ms`` (50-500 ms), the range the detector uses.
    """
    ev = events.copy()
    ev["event"] = ev["event"].str.lower()
    sacc = ev[ev["event"] == "saccade"]
    if "contains_blink" in ev:
        sacc = sacc[~sacc["contains_blink"].astype(bool)]
    blinks = ev[ev["event"] == "blink"]
    dur = blinks["offset_ms"] - blinks["onset_ms"]
    blinks = blinks[(dur >= blink_ms[0]) & (dur <= blink_ms[1])]
    return sacc, ev[ev["event"] == "fixation"], blinks


def median_onset_difference(truth: pd.DataFrame, ours: pd.DataFrame) -> tuple[float, int]:
    """Median |onset difference| (ms) over the tracker's saccades that one of ours overlaps (the closest onset among
    the overlapping ones), and how many were matched."""
    on, off = ours["onset_ms"].to_numpy(), ours["offset_ms"].to_numpy()
    diffs = []
    for a, b in zip(truth["onset_ms"], truth["offset_ms"]):
        hit = (on <= b) & (off >= a)
        if hit.any():
            diffs.append(np.min(np.abs(on[hit] - a)))
    return (float(np.median(diffs)) if diffs else float("nan")), len(diffs)


def compare_with_tracker(rec: EyeTrackingRecording, truth: pd.DataFrame, **kwargs) -> dict:
    """Counts in the trackers' vocabulary: a PSO is part of its saccade, pursuit part of the fixation around it
    (the parsers have neither class)."""
    ours = coarse_events(detect_events(rec, **kwargs), 1000.0 / rec.sampling_rate_hz)
    t_sacc, t_fix, t_blink = tracker_reference(truth)
    out = {"ours": ours}
    for name, ref in (("saccade", t_sacc), ("fixation", t_fix), ("blink", t_blink)):
        out[name] = (int((ours["event"] == name).sum()), len(ref))
    out["onset_ms"], out["matched"] = median_onset_difference(t_sacc, ours[ours["event"] == "saccade"])
    return out


def _neon_truth():
    truth = pd.read_csv(NEON_EVENTS).rename(columns=str.lower)
    truth["event"] = truth["event"].str.lower()
    return truth


RECORDINGS = [  # loaders of (recording, tracker events)
    pytest.param(lambda nl: (nl, _neon_truth()), id="neon-200Hz"),
    pytest.param(lambda nl: (_edf("test_raw.edf"), _edf("test_raw.edf").events), id="eyelink-1000Hz-test_raw",
                 marks=needs_eyelinkio),
    pytest.param(lambda nl: (_edf("test_2_raw.edf"), _edf("test_2_raw.edf").events), id="eyelink-1000Hz-test_2_raw",
                 marks=needs_eyelinkio),
    pytest.param(lambda nl: (_edf("test_raw_binocular.edf", "right"), _edf("test_raw_binocular.edf", "right").events),
                 id="eyelink-500Hz-binocular-right", marks=needs_eyelinkio),
]


@pytest.mark.parametrize("loader", RECORDINGS)
def test_detector_matches_tracker_events(neon_no_labels, loader):
    """Two trackers, three rates (200, 500, 1000 Hz), one set of defaults: counts within ±25 % of the tracker's own
    fixations, saccades and blinks, and matched saccades start within a median 20 ms of the tracker's onsets."""
    rec, truth = loader(neon_no_labels)
    res = compare_with_tracker(rec, truth)
    for name in ("fixation", "saccade", "blink"):
        ours, theirs = res[name]
        assert abs(ours - theirs) <= 0.25 * theirs, f"{rec.source}: {name}: detected {ours}, tracker {theirs}"
    _, n_truth = res["saccade"]
    assert res["matched"] >= 0.75 * n_truth
    assert res["onset_ms"] <= 20.0, f"{rec.source}: median saccade onset difference {res['onset_ms']} ms"
    ours = res["ours"]
    assert (ours["offset_ms"] >= ours["onset_ms"]).all()
    fix = ours[ours["event"] == "fixation"]
    assert ((fix["offset_ms"] - fix["onset_ms"] + 1000.0 / rec.sampling_rate_hz) >= 40.0).all()


@needs_eyelinkio
def test_blink_saccade_pairs_fold_into_blinks():
    """Every EyeLink blink of test_raw.edf lies inside a tracker saccade; the detector reports the pair as one blink
    that covers the tracker's blink, and no saccade overlapping it."""
    rec = _edf("test_raw.edf")
    ours = detect_events(rec)
    blinks, sacc = ours[ours["event"] == "blink"], ours[ours["event"] == "saccade"]
    tracker = rec.events
    assert tracker[tracker["event"] == "saccade"]["contains_blink"].sum() == 7
    for _, b in tracker[tracker["event"] == "blink"].iterrows():
        cover = blinks[(blinks["onset_ms"] <= b["onset_ms"]) & (blinks["offset_ms"] >= b["offset_ms"])]
        assert len(cover) == 1
        c = cover.iloc[0]
        assert not ((sacc["onset_ms"] <= c["offset_ms"]) & (sacc["offset_ms"] >= c["onset_ms"])).any()


@needs_eyelinkio
def test_read_eyelink_edf_monocular():
    rec = _edf("test_raw.edf")
    assert len(rec) == 66827 and rec.sampling_rate_hz == pytest.approx(1000.0)
    assert rec.duration_ms == pytest.approx(66826.0)
    assert np.all(np.diff(rec.timestamps_ms) > 0)
    assert rec.resolution == (1920.0, 1080.0) and rec.metadata["resolution_source"] == "GAZE_COORDS"
    assert rec.metadata["recorded_eye"] == "LEFT_EYE" and rec.metadata["pupil_units"] == "PUPIL_AREA"
    assert 0.98 < rec.valid.mean() < 0.995  # 1.1 % lost: the blinks
    gx, gy = rec.gaze_normalized()
    assert np.nanmedian(gx) == pytest.approx(0.0, abs=0.1) and np.nanmedian(gy) == pytest.approx(0.0, abs=0.1)
    assert 0 <= np.nanmin(rec.gaze_x) and np.nanmax(rec.gaze_x) <= 1920
    assert 500 < np.nanmedian(rec.pupil_left) < 2000  # pupil area, camera units
    np.testing.assert_array_equal(rec.pupil_left, rec.pupil_right)  # one eye: both pupil channels
    assert np.isnan(rec.pupil_left[~rec.valid]).all() and np.isfinite(rec.gaze_x[rec.valid]).all()
    counts = rec.events["event"].value_counts()
    assert (counts["fixation"], counts["saccade"], counts["blink"]) == (21, 19, 7)
    assert {"peak_velocity", "contains_blink"} <= set(rec.events.columns)
    s = rec.to_series(length=256)  # events="auto": the tracker's own
    assert s.values.shape == (256, 5) and np.isfinite(s.values).all()
    d = rec.to_series(events="detect", length=256)
    assert (d.values[:, BEHAVIOUR_CHANNEL] == s.values[:, BEHAVIOUR_CHANNEL]).mean() > 0.8


@needs_eyelinkio
def test_read_eyelink_edf_binocular():
    both = _edf("test_raw_binocular.edf")  # default: both eyes
    assert both.metadata["eye"] == "both" and both.metadata["recorded_eye"] == "BINOCULAR"
    assert both.sampling_rate_hz == pytest.approx(500.0) and len(both) == 99823
    assert both.metadata["events_eye"] == "right"  # the better-tracked eye
    left, right = _edf("test_raw_binocular.edf", "left"), _edf("test_raw_binocular.edf", "right")
    assert left.valid.sum() < right.valid.sum() <= both.valid.sum()
    np.testing.assert_array_equal(both.valid, left.valid | right.valid)
    # one chosen eye is both pupil channels (as for a monocular file), so its canonical series is valid
    np.testing.assert_array_equal(left.pupil_left, left.pupil_right)
    np.testing.assert_array_equal(right.pupil_left, right.pupil_right)
    assert right.to_series().valid.mean() > 0.5
    assert np.isfinite(both.pupil_left[left.valid]).all() and np.isfinite(both.pupil_right[right.valid]).all()
    per_eye = both.metadata["tracker_events"]
    assert set(per_eye["eye"]) == {"left", "right"}
    assert (left.events["event"] == "fixation").sum() == 480 and (right.events["event"] == "fixation").sum() == 377
    with pytest.raises(ValueError, match="test_raw.edf.*eye='right' not available"):
        read_eyelink_edf(eyelink_edf("test_raw.edf"), eye="right")


@needs_eyelinkio
def test_eyelink_edf_samples_through_tobii_tsv(tmp_path):
    """The issue's case: an EyeLink recording written as a Pro Lab TSV without events, read back and detected."""
    rec = _edf("test_raw.edf")
    p = write_tobii_tsv(tmp_path / "eyelink.tsv", rec.timestamps_ms, rec.gaze_x, rec.gaze_y, rec.pupil_left / 1000,
                        rec.pupil_right / 1000, rec.valid, rec.valid, resolution=(1920, 1080))
    back = read_tobii_tsv(p)
    assert back.events is None  # an empty Eye movement type column is no labels
    assert back.sampling_rate_hz == pytest.approx(1000.0)
    res = compare_with_tracker(back, rec.events)
    for name in ("fixation", "saccade", "blink"):
        ours, theirs = res[name]
        assert abs(ours - theirs) <= 0.25 * theirs, f"{name}: detected {ours}, tracker {theirs}"
    assert res["onset_ms"] <= 20.0


@needs_eyelinkio
def test_eyelink_edf_bad_files(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="missing.edf.*no such file"):
        read_eyelink_edf(tmp_path / "missing.edf")
    text = tmp_path / "notes.edf"
    text.write_text("not an EDF\n")
    with pytest.raises(ValueError, match="notes.edf.*not an EyeLink EDF"):
        read_eyelink_edf(text)
    real = eyelink_edf("test_raw.edf").read_bytes()
    truncated = tmp_path / "truncated.edf"
    truncated.write_bytes(real[: len(real) // 2])
    with pytest.raises(ValueError, match="truncated.edf.*unreadable EyeLink EDF"):
        read_eyelink_edf(truncated)
    corrupt = tmp_path / "corrupt.edf"  # a real preamble, then noise: the native EDF API segfaults on it
    corrupt.write_bytes(real[:200] + np.random.default_rng(0).bytes(50_000))
    with pytest.raises(ValueError, match="corrupt.edf.*(corrupt|unreadable) EyeLink EDF"):
        read_eyelink_edf(corrupt)
    import sys

    monkeypatch.setitem(sys.modules, "eyelinkio", None)  # not installed
    with pytest.raises(ImportError, match=r"emvfer-hf\[eyelink\]"):
        read_eyelink_edf(eyelink_edf("test_raw.edf"))


def test_xlsx_with_a_huge_cell_is_refused_before_loading(tmp_path):
    """A small workbook whose sheet expands enormously (the issue's 1 MB xlsx with a 1 GiB cell, here 64 MiB) is
    refused from the zip directory alone, with a short message that names the file and the part."""
    import zipfile

    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("xl/sharedStrings.xml", "w") as part:
            chunk = b"a" * 2**20
            for _ in range(64):
                part.write(chunk)
    assert path.stat().st_size < 2**20
    with pytest.raises(ValueError, match=r"bomb\.xlsx: its part 'xl/sharedStrings\.xml' expands to 64 MiB") as error:
        read_tobii_xlsx(path)
    assert len(str(error.value)) < 400
