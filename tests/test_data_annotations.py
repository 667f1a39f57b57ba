"""Annotation parsers on the real annotation files (tests/fixtures/annotations) and on small hand-written files."""

from pathlib import Path

import pandas as pd
import pytest

from emvfer_hf.data import (
    LABELS,
    read_affwild2_labels,
    read_casme2_labels,
    read_casme3_labels,
    read_dfew_split,
    read_emer_labels,
    read_emer_split,
    read_mafw_split,
)

FIXTURES = Path(__file__).parent / "fixtures" / "annotations"
CASME3_XLSX = FIXTURES / "casme3_partA_ME_label_JpgIndex_v2.xlsx"
CASME2_CSV = FIXTURES / "casme2_megc2019_3class.csv"


def test_casme3_official_sheet_3class():
    df = read_casme3_labels(CASME3_XLSX, protocol="3class")
    assert len(df) == 699
    assert df["subject"].nunique() == 88
    assert df["label_name"].value_counts().to_dict() == {"negative": 457, "surprise": 187, "positive": 55}
    assert list(df.attrs["class_names"]) == ["negative", "positive", "surprise"]
    assert df["onset"].dtype.kind == "i" and df["apex"].dtype.kind == "i"


def test_casme3_official_sheet_4_and_7class():
    df4 = read_casme3_labels(CASME3_XLSX, protocol="4class")
    assert len(df4) == 860
    assert df4["label_name"].value_counts()["others"] == 161  # 158 'others' + 3 'Others'
    df7 = read_casme3_labels(CASME3_XLSX, protocol="7-class")
    assert len(df7) == 860 and set(df7["label_name"]) == set(LABELS["casme3_7class"])
    # quirks kept: uppercase filename, apex outside [onset, offset]
    assert "J" in set(df7["filename"])
    row = df7[(df7.subject == "spNO.149") & (df7.filename == "d")].iloc[0]
    assert (row.onset, row.apex, row.offset) == (112, 83, 358)


def test_casme2_megc_list():
    df = read_casme2_labels(CASME2_CSV, protocol="3class")
    assert len(df) == 145
    assert df["subject"].nunique() == 24
    assert df["label_name"].value_counts().to_dict() == {"negative": 88, "positive": 32, "surprise": 25}
    assert not {"sub10", "sub18"} & set(df["subject"])
    with pytest.raises(ValueError, match="5class"):
        read_casme2_labels(CASME2_CSV, protocol="5class")


def _coding_sheet(path, header=True):
    rows = [
        [1, "EP02_01f", None, 46, 59, 86, None, "12", "happiness"],
        [1, "EP03_02", None, 131, "/", 160, None, "4+7", "repression"],
        [2, "EP09f", None, 10, 14, 20, None, "R12", "fear"],
        [2, "EP06_02_01", None, 5, 9, 30, None, "L10", "Others"],
    ]
    cols = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
            "Estimated Emotion"]
    df = pd.DataFrame(rows, columns=[c or "" for c in cols])
    df.to_excel(path, index=False, header=header)
    return path


@pytest.mark.parametrize("header", [True, False])
def test_casme2_coding_sheet(tmp_path, header):
    path = _coding_sheet(tmp_path / "CASME2-coding-20140508.xlsx", header=header)
    df3 = read_casme2_labels(path, "3class")
    assert list(df3["label_name"]) == ["positive", "negative"]
    assert list(df3["apex"]) == [59, -1]  # '/' -> unknown
    assert list(df3["subject"]) == ["sub01", "sub01"]
    df5 = read_casme2_labels(path, "5class")
    assert list(df5["label_name"]) == ["happiness", "repression", "others"]


def test_casme_unknown_emotion_names_file(tmp_path):
    df = pd.DataFrame({"Subject": ["spNO.1"], "Filename": ["a"], "Onset": ["1"], "Apex": ["2"], "Offset": ["3"],
                       "AU": ["4"], "Objective class": ["I"], "emotion": ["joy"]})
    path = tmp_path / "sheet.xlsx"
    df.to_excel(path, sheet_name="label", index=False)
    with pytest.raises(ValueError, match=r"sheet\.xlsx.*joy"):
        read_casme3_labels(path)


def test_dfew_split(tmp_path):
    p = tmp_path / "set_1.csv"
    p.write_text("video_name,label\n1,2\n2,3\n4,2\n")
    df = read_dfew_split(p)
    assert list(df["clip_id"]) == ["00001", "00002", "00004"]
    assert list(df["label_name"]) == ["sadness", "neutral", "sadness"]
    assert list(df["label"]) == [1, 2, 1]
    p.write_text("video_name,label\n1,9\n")
    with pytest.raises(ValueError, match="set_1.csv.*outside"):
        read_dfew_split(p)


def test_mafw_split(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("00025.mp4 anger\n00028.mp4 Happiness\n\n")
    df = read_mafw_split(p)
    assert list(df["clip_id"]) == ["00025", "00028"]
    assert list(df["label"]) == [0, 3]
    p.write_bytes("00025.mp4\tanger\t愤怒\tangry\n".encode("gb18030"))
    assert read_mafw_split(p)["label_name"].tolist() == ["anger"]
    p.write_text("00025.mp4 anger_disgust\n")
    with pytest.raises(ValueError, match="train.txt: line 1: unknown label 'anger_disgust'"):
        read_mafw_split(p)


def test_affwild2_labels(tmp_path):
    p = tmp_path / "video10_1.txt"
    p.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n0\n4\n-1\n7\n")
    df = read_affwild2_labels(p)
    assert list(df["frame"]) == [1, 2, 3, 4, 5]
    assert list(df["label"]) == [0, 0, 4, -1, 7]
    assert df.attrs["num_classes"] == 8
    p.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n0\n7\n")
    with pytest.raises(ValueError, match="outside -1..6"):
        read_affwild2_labels(p)


def test_emer_labels_and_split(tmp_path):
    p = tmp_path / "EMER_label.xlsx"
    pd.DataFrame({"ID": ["2_sport_anger", "8_film_happy", "12_film_surprise"], "ER": ["anger", "happy", "neutral"],
                  "FER": ["neutral", "happiness", "surprise"], "Valence": [-0.5, 0.7, 0.0],
                  "Arousal": [0.6, 0.3, 0.1]}).to_excel(p, index=False)
    df = read_emer_labels(p)
    assert list(df["label_name"]) == ["anger", "happiness", "neutral"]
    assert list(df["subject"]) == ["2", "8", "12"]
    assert read_emer_labels(p, protocol="3class")["label_name"].tolist() == ["negative", "positive", "neutral"]
    assert read_emer_labels(p, target="FER")["label_name"].tolist() == ["neutral", "happiness", "surprise"]
    s = tmp_path / "emer_set.txt"
    s.write_text("ID\tset\n2_sport_anger\tset1\n8_film_happy,2\n12_film_surprise set_3\n")
    assert read_emer_split(s)["fold"].tolist() == [1, 2, 3]


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_dfew_split(tmp_path / "nope.csv")
