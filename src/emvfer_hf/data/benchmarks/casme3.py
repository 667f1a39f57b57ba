"""CAS(ME)^3 Part A (Li et al., TPAMI 2022): micro-expressions filmed at 30 fps, evaluated leave-one-subject-out
with 3, 4 or 7 classes (docs/datasets.md §CAS(ME)^3).

Layout::

    CASME3/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx                the label sheet (sheet "label")
    CASME3/Part_A_ME_clip/frame/<Subject>_<Filename>_<Onset>/<k>.jpg  clip frames (folder case may differ)
    CASME3/part_A/data/part_A_split/part_A/<Subject>/<Filename>/color/ the full sequences (fallback)

The label sheet is read by :func:`read_casme3_labels`, the layout by :func:`load_casme3`, and
:class:`CASME3Benchmark` writes the same layout for the sample data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import datasets
import pandas as pd

from .._media import write_jpgs
from .._utils import PathLike, find_file_glob, find_path, require_dir, require_file
from ..labels import CASME3_GROUPS, LABELS
from ..sample_data import SampleWriter, class_plan, clip_rng, render_clip
from .base import Benchmark, register
from .common import check_protocol, find_column, finish_labels, read_table
from .micro import micro_dataset, micro_rows, sample_onsets

CASME3_PROTOCOLS = ("3class", "4class", "7class")
LABEL_SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"


# ------------------------------------------------------------------------------------------------------- reader
def read_casme3_labels(xlsx_path: PathLike, protocol: str = "3class") -> pd.DataFrame:
    """Parse the CAS(ME)^3 Part A micro-expression sheet ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``.

    The data is in sheet ``label`` (falls back to the first sheet with an ``emotion`` column, e.g. ``Sheet1`` of v1),
    every cell stored as text. Emotions are lower-cased (``Others`` → ``others``); apexes outside [onset, offset]
    are kept as they are; an offset of ``0`` (unknown) becomes ``-1``.

    Protocols (leave-one-subject-out): ``"3class"`` negative = {disgust, fear, anger, sad}, positive = {happy},
    surprise, others dropped (699 samples, 88 subjects); ``"4class"`` adds others (860); ``"7class"`` all emotions
    in the order ``LABELS["casme3_7class"]``.

    Returns:
        DataFrame with ``subject`` (as in the sheet, e.g. ``spNO.1``), ``filename`` (``a``..``m``, case kept),
        ``onset``, ``apex``, ``offset``, ``action_units``, ``objective_class``, ``emotion``, ``label``, ``label_name``.
    """
    protocol = check_protocol(protocol, CASME3_PROTOCOLS, "read_casme3_labels")
    path = require_file(xlsx_path, "CAS(ME)^3 label sheet")
    if path.suffix.lower() in (".xlsx", ".xls", ".xlsm"):
        sheets = pd.read_excel(path, sheet_name=None, dtype=str)
        order = (["label"] if "label" in sheets else []) + [s for s in sheets if s != "label"]
        df = next((sheets[s] for s in order if any(str(c).strip().lower() == "emotion" for c in sheets[s].columns)),
                  None)
        if df is None:
            raise ValueError(f"{path}: no sheet with an 'emotion' column (sheets: {list(sheets)})")
    else:
        df = read_table(path)
    cols = {
        "subject": find_column(df, ["Subject"], path), "filename": find_column(df, ["Filename"], path),
        **{k: find_column(df, [k, k + "Frame"], path) for k in ("onset", "apex", "offset")},
        "emotion": find_column(df, ["emotion"], path),
        "action_units": find_column(df, ["AU", "Action Units"], path, required=False),
        "objective_class": find_column(df, ["Objective class"], path, required=False),
    }
    rows = micro_rows(df, path, cols, CASME3_GROUPS[protocol], lambda v, *_: str(v).strip())
    names = LABELS[f"casme3_{protocol}"]
    return finish_labels(pd.DataFrame(rows), names, path)


# ------------------------------------------------------------------------------------------------------- loader
def load_casme3(
    root: PathLike,
    protocol: str = "3class",
    annotation: Optional[PathLike] = None,
    test_subject: Optional[str] = None,
    missing: str = "raise",
) -> datasets.DatasetDict:
    """CAS(ME)^3 Part A micro-expressions (30 fps), leave-one-subject-out.

    Media: ``Part_A_ME_clip/frame/<Subject>_<Filename>_<Onset>/<frame>.jpg`` (folder names matched
    case-insensitively: ``spNo.1`` on disk vs ``spNO.1`` in the sheet), else the full sequences
    ``part_A/data/part_A_split/part_A/<Subject>/<Filename>/color/``.

    Args:
        protocol: ``"3class"`` (699 samples), ``"4class"`` (860) or ``"7class"``.
        annotation: the label sheet (default: ``*ME_label_JpgIndex*.xls*`` anywhere under ``root``).
    """
    root = require_dir(root, "CAS(ME)^3 root")
    if annotation is None:
        annotation = find_file_glob(root, ["*ME_label_JpgIndex*.xls*", "**/*ME_label_JpgIndex*.xls*"],
                                    "CAS(ME)^3 label sheet")
    df = read_casme3_labels(annotation, protocol=protocol)
    df["clip_id"] = df["subject"] + "_" + df["filename"] + "_" + df["onset"].astype(str)
    clip_root = find_path(root, ["Part_A_ME_clip", "frame"], kind="dir")
    clip_index = {p.name.lower(): p for p in clip_root.iterdir()} if clip_root is not None else {}
    seq_root = find_path(root, ["part_A", "data", "part_A_split", "part_A"], kind="dir")
    if clip_root is None and seq_root is None:
        raise FileNotFoundError(f"CAS(ME)^3: neither Part_A_ME_clip/frame nor part_A/data/part_A_split/part_A in {root}")

    def resolve(rec):
        hit = clip_index.get(rec["clip_id"].lower())
        if hit is None and seq_root is not None:
            hit = find_path(seq_root, [rec["subject"], rec["filename"], "color"], kind="dir")
        return hit

    return micro_dataset(df, resolve, annotation, missing, test_subject, f"CAS(ME)^3 {protocol} ({annotation})")


# -------------------------------------------------------------------------------------------------- benchmark
#: CAS(ME)^3 Part A is filmed at 30 fps (Li et al., TPAMI 2022); the sample clips are rendered at that rate
SAMPLE_FPS = 30.0


class CASME3Benchmark(Benchmark):
    """CAS(ME)^3 Part A: 3, 4 or 7 classes, leave one subject out, scored on the concatenated predictions."""

    name, title, folder = "casme3", "CAS(ME)^3", "CASME3"
    label_sets = {"3class": "casme3_3class", "4class": "casme3_4class", "7class": "casme3_7class"}
    evaluation = "loso"
    sample_stream = 5
    loader = staticmethod(load_casme3)

    def write_sample(self, root: Path, writer: SampleWriter, clips_per_class, num_frames, size, noise, seed) -> None:
        """The CAS(ME)^3 layout: clip frame folders (one subject's folder case differing from the sheet), the label
        sheet with the release's quirks (an apex outside [onset, offset], an unknown offset, ``Others``)."""
        emotions = ["disgust", "surprise", "others", "fear", "anger", "sad", "happy"]
        subjects = ["spNO.1", "spNO.2", "spNO.10", "spNO.149"]
        on_disk = {"spNO.2": "spNo.2"}  # folder case differs from the sheet
        letters = "abcdefghijklm"
        rows = []
        for i, (k, emo) in enumerate(class_plan(emotions, clips_per_class)):
            rng = clip_rng(seed, self.sample_stream, i)
            onset, apex, offset, apex_pos = sample_onsets(rng, num_frames)
            clip = render_clip(emo, rng, num_frames, size, noise, fps=SAMPLE_FPS, kind="micro", apex=apex_pos)
            sub = subjects[i % len(subjects)]
            fn = letters[(i // len(subjects)) % len(letters)]
            fn = "J" if i == 5 else fn
            folder = f"{on_disk.get(sub, sub)}_{fn}_{onset}"
            write_jpgs(root / "Part_A_ME_clip" / "frame" / folder, clip.frames,
                       [f"{onset + n}.jpg" for n in range(num_frames)])
            sheet_apex = onset - 5 if i == 3 else apex  # apex outside [onset, offset], as in 4 official rows
            sheet_offset = 0 if i == 4 else offset  # unknown offset
            emo_cell = "Others" if (emo == "others" and k == 0) else emo
            rows.append({"Subject": sub, "Filename": fn, "Onset": str(onset), "Apex": str(sheet_apex),
                         "Offset": str(sheet_offset), "AU": ["4", "R12", "5", "1+2"][i % 4],
                         "Objective class": ["I", "II", "III", "IV"][i % 4], "emotion": emo_cell})
            writer.add(f"{sub}_{fn}_{onset}", emo, clip, onset=onset, apex=apex, offset=offset)
        with pd.ExcelWriter(root / LABEL_SHEET) as xw:
            pd.DataFrame(rows).astype(str).to_excel(xw, sheet_name="label", index=False)
            pd.DataFrame().to_excel(xw, sheet_name="Sheet1", index=False)
            pd.DataFrame().to_excel(xw, sheet_name="Sheet3", index=False)


CASME3 = register(CASME3Benchmark())
