"""The sample-data generator: exact layouts, determinism, the ground-truth eye series, Tobii TSV, MTCNN, speed."""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emvfer_hf.data import (
    LABELS,
    add_sample_data_arguments,
    load_sample_eye_series,
    make_sample_dataset,
    run_sample_data,
)
from emvfer_hf.video_processing_mert import decode_video
from emvfer_hf.data.sample_data import (
    BLINK,
    CLASS_STYLES,
    EYE_ONLY_PAIRS,
    EYES,
    SACCADE,
    generate_eye_series,
    sample_eye_series_path,
)

SMALL = dict(clips_per_class=1, num_frames=8, resolution=96, noise=0.1, seed=1)


@pytest.fixture(scope="module")
def emer_root(tmp_path_factory):
    return make_sample_dataset("emer", tmp_path_factory.mktemp("emer"), clips_per_class=2, num_frames=16,
                               resolution=128, noise=0.1, seed=0)


def test_every_label_set_renders_distinct_classes_and_eye_only_pairs():
    for key, names in LABELS.items():
        styles = [CLASS_STYLES[n] for n in names]
        assert len(set(styles)) == len(names), key  # (face, eyes) identifies the class
    assert ("sadness", "disgust") in EYE_ONLY_PAIRS["dfew"] and ("surprise", "fear") in EYE_ONLY_PAIRS["dfew"]
    assert {frozenset(p) for p in EYE_ONLY_PAIRS["emer_7class"]} >= {frozenset(("fear", "surprise"))}


def test_eye_styles_differ_in_the_series():
    rng = np.random.default_rng(0)
    dart = [generate_eye_series(EYES["darting"], 4.0, rng) for _ in range(5)]
    wide = [generate_eye_series(EYES["wide"], 4.0, rng) for _ in range(5)]
    rate = lambda ss, code: np.mean([(np.diff((s.values[:, 4] == code).astype(int)) == 1).sum() for s in ss])
    assert rate(dart, SACCADE) > 3 * rate(wide, SACCADE)
    assert rate(dart, BLINK) > rate(wide, BLINK)
    trend = lambda ss: np.mean([s.values[-20:, 0].mean() - s.values[:20, 0].mean() for s in ss])
    assert trend(wide) > 0.5 and abs(trend([generate_eye_series(EYES["calm"], 4.0, rng)])) < 0.4


def test_emer_layout_tsv_and_ground_truth(emer_root):
    from emvfer_hf.eyetracking import read_eye_tracking

    root = Path(emer_root)
    labels = pd.read_excel(root / "EMER_label.xlsx")
    assert list(labels.columns[:3]) == ["ID", "Participant", "ER"] and len(labels) == 14
    assert (root / "emer_set.txt").read_text().splitlines()[0].split("\t")[1].startswith("set")
    clip_id = labels.ID[0]
    assert (root / "face video" / f"{clip_id}.mp4").is_file()
    tsv = root / "eye_movement data" / f"{clip_id}.tsv"
    header = tsv.read_text(encoding="utf-8").splitlines()[0].split("\t")
    for col in ("Recording timestamp [ms]", "Sensor", "Gaze point X [DACS px]", "Pupil diameter left [mm]",
                "Validity left", "Eye movement type"):
        assert col in header
    gt, info = load_sample_eye_series(root, clip_id)
    assert gt.values.shape[1] == 5 and not gt.normalized
    assert info["frame_values"].shape == (16, 5) and info["label_name"] == labels.ER[0]
    rec = read_eye_tracking(tsv)
    assert len(rec.timestamps_ms) == len(gt)
    ok = ~np.isnan(rec.pupil_left)
    assert ok.mean() > 0.5
    assert np.abs(rec.pupil_left[ok] - gt.values[ok, 0]).max() < 0.2  # mm, tracker noise only
    gx, gy = rec.gaze_normalized()
    assert np.nanmax(np.abs(gx - gt.values[:, 2])) < 0.05
    decoded = decode_video(root / "face video" / f"{clip_id}.mp4")
    frames = np.stack([decoded.frames[i] for i in sorted(decoded.frames)])
    assert frames.shape == (16, 128, 128, 3)


def test_deterministic_in_seed(tmp_path):
    a = make_sample_dataset("dfew", tmp_path / "a", **SMALL)
    b = make_sample_dataset("dfew", tmp_path / "b", **SMALL)
    c = make_sample_dataset("dfew", tmp_path / "c", **{**SMALL, "seed": 2})
    rel = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert rel == sorted(p.relative_to(b) for p in b.rglob("*.jpg"))
    assert all((a / r).read_bytes() == (b / r).read_bytes() for r in rel[:20])
    assert any((a / r).read_bytes() != (c / r).read_bytes() for r in rel[:20] if (c / r).exists())
    key = load_sample_eye_series(a, "00002")[0].values
    np.testing.assert_array_equal(key, load_sample_eye_series(b, "00002")[0].values)


def test_frame_names_and_spreadsheets(tmp_path):
    dfew = make_sample_dataset("dfew", tmp_path / "dfew", **SMALL)
    clip = min((dfew / "Clip" / "clip_224x224").iterdir())
    assert min(p.name for p in clip.iterdir()) == f"{clip.name}_00001.jpg"
    tim = dfew / "Clip" / "clip_224x224_16f" / clip.name
    assert {p.name for p in tim.iterdir()} == {f"{clip.name}_{i}.jpg" for i in range(1, 17)}
    assert (dfew / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_5.csv").read_text().startswith(
        "video_name,label\n")
    casme2 = make_sample_dataset("casme2", tmp_path / "casme2", **SMALL)
    sheet = pd.read_excel(casme2 / "CASME2-coding-20140508.xlsx")
    assert "Unnamed: 2" in sheet.columns and "/" in set(sheet.ApexFrame.astype(str))
    assert any(p.name.startswith("img") for p in (casme2 / "CASME2_RAW_selected").rglob("*.jpg"))
    casme3 = make_sample_dataset("casme3", tmp_path / "casme3", **SMALL)
    xl = pd.ExcelFile(casme3 / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")
    assert xl.sheet_names == ["label", "Sheet1", "Sheet3"]
    from openpyxl import load_workbook

    ws = load_workbook(casme3 / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")["label"]
    assert ws["C2"].data_type == "s"  # onset stored as text, like the official sheet
    mafw = make_sample_dataset("mafw", tmp_path / "mafw", **SMALL)
    line = (mafw / "Train & Test Set" / "single" / "no_caption" / "set_1" / "train.txt").read_text().splitlines()[0]
    assert line.split(" ")[0].endswith(".mp4") and line.split(" ")[1] in LABELS["mafw"]
    assert sample_eye_series_path(mafw, line.split(".")[0]).is_file()


def test_mtcnn_finds_the_rendered_faces(emer_root):
    from facenet_pytorch import MTCNN
    from PIL import Image

    mtcnn = MTCNN(device="cpu")
    probs = []
    for video in sorted((Path(emer_root) / "face video").glob("*.mp4"))[:7]:
        decoded = decode_video(video, indices_fn=lambda n: [2, 12])
        frames = [decoded.frames[2], decoded.frames[12]]
        _, p = mtcnn.detect([Image.fromarray(f) for f in frames])
        probs += [0.0 if q[0] is None else float(q[0]) for q in p]
    assert np.mean(np.array(probs) >= 0.85) >= 0.7, probs
    assert np.mean(np.array(probs) > 0) >= 0.85, probs


def test_cli_and_default_speed(tmp_path):
    parser = add_sample_data_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--output", str(tmp_path), "--dataset", "emer", "dfew"])
    assert args.clips_per_class == 4 and args.num_frames == 16 and args.resolution == 128
    start = time.time()
    assert run_sample_data(args) == 0
    assert time.time() - start < 20  # seconds; the README's main job must stay < 5 min on 2 cores
    assert (tmp_path / "EMER" / "sample_manifest.json").is_file()
    assert (tmp_path / "DFEW" / "EmoLabel_DataSplit").is_dir()


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown sample dataset"):
        make_sample_dataset("ferplus", tmp_path)
    with pytest.raises(ValueError, match="noise"):
        make_sample_dataset("emer", tmp_path, noise=2.0)


# ---------------------------------------------------------------------------------------------- the "gap" world
@pytest.fixture(scope="module")
def gap_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gap")
    emer = make_sample_dataset("emer", root / "EMER", clips_per_class=2, num_frames=8, resolution=96, world="gap")
    dfew = make_sample_dataset("dfew", root / "DFEW", clips_per_class=1, num_frames=8, resolution=96, world="gap",
                               test_clips_per_class=3)
    return emer, dfew


def _manifest(root):
    import json

    return json.loads((Path(root) / "sample_manifest.json").read_text())


def _frames(root, clip_ids, video):
    """(N, H, W, 3) RGB frames of the clips, every frame."""
    decoded = [decode_video(video(root, c)) for c in clip_ids]
    return np.concatenate([np.stack([d.frames[i] for i in sorted(d.frames)]) for d in decoded])


def test_gap_world_target_has_few_labelled_clips_and_disjoint_identities(gap_world):
    from emvfer_hf.data import load_dfew

    emer, dfew = gap_world
    emer_ids = {c["identity"] for c in _manifest(emer)["clips"]}
    dfew_ids = {c["identity"] for c in _manifest(dfew)["clips"]}
    assert emer_ids and dfew_ids and not emer_ids & dfew_ids  # other people downstream
    assert all(i.startswith("A") for i in emer_ids) and all(i.startswith("B") for i in dfew_ids)
    names = LABELS["dfew"]
    for fold in (1, 3):  # the same few-shot split in every fold
        splits = load_dfew(dfew, fold=fold)
        assert sorted(splits["train"]["label"]) == sorted(range(len(names)))  # 1 labelled clip per class
        assert len(splits["test"]) == 3 * len(names)
    manifest = _manifest(dfew)
    assert manifest["options"]["world"] == "gap" and manifest["options"]["test_clips_per_class"] == 3
    # an EMER participant shows every class (the paper's protocol), with one look in every clip
    labels = pd.read_excel(Path(emer) / "EMER_label.xlsx")
    assert labels.groupby("Participant")["ER"].nunique().min() == len(LABELS["emer_7class"])


def test_gap_world_target_is_filmed_differently(gap_world):
    import dataclasses

    import cv2

    from emvfer_hf.data.sample_data import DOMAINS, apply_camera

    emer, dfew = gap_world
    lab = _frames(emer, [c["clip_id"] for c in _manifest(emer)["clips"]][:7],
                  lambda r, c: Path(r) / "face video" / f"{c}.mp4")
    wild = _frames(dfew, [c["clip_id"] for c in _manifest(dfew)["clips"]][:7],
                   lambda r, c: Path(r) / "Clip" / "clip_224x224" / c)

    def red_over_blue(frames):  # (N, H, W, 3) RGB
        return frames[..., 0].astype(np.float64).mean() / frames[..., 2].astype(np.float64).mean()

    assert red_over_blue(wild) > 1.3 * red_over_blue(lab)  # the warm colour cast
    # the softer camera: the wild optics (without its noise) take most of the detail out of a lab frame
    frame = cv2.cvtColor(lab[0], cv2.COLOR_RGB2BGR)
    optics = dataclasses.replace(DOMAINS["wild"], noise_sigma=0.0, colour_gain=(1.0, 1.0, 1.0), brightness=0.0)
    soft = apply_camera(frame, optics, np.random.default_rng(0))

    def detail(img):
        return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()

    assert detail(soft) < 0.5 * detail(frame)
    # and its sensor noise: frame-to-frame changes of a background pixel within the first clip (8 frames)
    def flicker(frames):
        return frames[:8, 1, 1].astype(np.float64).std(0).max()

    assert flicker(wild) > 2 * flicker(lab)


def test_gap_world_options(tmp_path):
    with pytest.raises(ValueError, match="unknown sample world"):
        make_sample_dataset("dfew", tmp_path / "a", world="nope")
    with pytest.raises(ValueError, match="has only"):
        make_sample_dataset("mafw", tmp_path / "b", world="gap")
