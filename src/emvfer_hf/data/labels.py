"""Class orders of every supported benchmark/protocol, and the mapping of raw label strings onto them.

The :data:`LABELS` registry is the single place where the index → name order of each protocol is defined
(docs/datasets.md gives the sources). Loaders build their ``datasets.ClassLabel`` from it and the sample-data generator
renders one expression per name.

| key             | order (index 0 first)                                                                    | source                                   |
|-----------------|------------------------------------------------------------------------------------------|------------------------------------------|
| ``dfew``        | happiness, sadness, neutral, anger, surprise, disgust, fear                              | official README ids 1..7, minus 1        |
| ``mafw``        | anger, disgust, fear, happiness, neutral, sadness, surprise, contempt, anxiety,          | official ``single-set.xlsx`` ids 1..11,  |
|                 | helplessness, disappointment                                                             | minus 1 (MAE-DFER's order, NOT DFER-CLIP)|
| ``affwild2``    | neutral, anger, disgust, fear, happiness, sadness, surprise, other                       | ABAW annotation header (ids 0..7)        |
| ``casme2_3class``| negative, positive, surprise                                                            | MEGC2019 / HTNet                         |
| ``casme2_5class``| happiness, disgust, repression, surprise, others                                        | original CASME II protocol               |
| ``casme3_3class``| negative, positive, surprise                                                            | HTNet ``label_for_3``                    |
| ``casme3_4class``| negative, positive, surprise, others                                                    | 3-class + others                         |
| ``casme3_7class``| happy, surprise, sad, disgust, fear, anger, others                                      | HTNet ``label_for_7`` (1..6 → 0..5) + others |
| ``emer_7class`` | happiness, sadness, fear, surprise, disgust, anger, neutral                              | EMER README                              |
| ``emer_3class`` | positive, negative, neutral                                                              | EMER README                              |
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

LABELS: Dict[str, Tuple[str, ...]] = {
    "dfew": ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"),
    "mafw": (
        "anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
        "contempt", "anxiety", "helplessness", "disappointment",
    ),
    "affwild2": ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other"),
    "casme2_3class": ("negative", "positive", "surprise"),
    "casme2_5class": ("happiness", "disgust", "repression", "surprise", "others"),
    "casme3_3class": ("negative", "positive", "surprise"),
    "casme3_4class": ("negative", "positive", "surprise", "others"),
    "casme3_7class": ("happy", "surprise", "sad", "disgust", "fear", "anger", "others"),
    "emer_7class": ("happiness", "sadness", "fear", "surprise", "disgust", "anger", "neutral"),
    "emer_3class": ("positive", "negative", "neutral"),
}

# Raw emotion vocabulary of each micro-expression sheet (lower-cased) → the protocol class, or None (= excluded).
CASME2_GROUPS: Dict[str, Dict[str, Optional[str]]] = {
    "3class": {
        "disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise",
        "fear": None, "sadness": None, "others": None,
    },
    "5class": {
        "happiness": "happiness", "disgust": "disgust", "repression": "repression", "surprise": "surprise",
        "others": "others", "fear": None, "sadness": None,
    },
}
CASME3_GROUPS: Dict[str, Dict[str, Optional[str]]] = {
    "3class": {
        "disgust": "negative", "fear": "negative", "anger": "negative", "sad": "negative",
        "happy": "positive", "surprise": "surprise", "others": None,
    },
    "4class": {
        "disgust": "negative", "fear": "negative", "anger": "negative", "sad": "negative",
        "happy": "positive", "surprise": "surprise", "others": "others",
    },
    "7class": {name: name for name in LABELS["casme3_7class"]},
}

# Spelling variants seen across releases and peer code → the canonical names used in LABELS.
SYNONYMS: Dict[str, str] = {
    "happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise", "fearful": "fear",
    "disgusted": "disgust", "other": "others", "helpless": "helplessness", "disappointed": "disappointment",
    "anxious": "anxiety", "contemptuous": "contempt",
}

# EMER 7-class → 3-class (valence grouping).
EMER_7_TO_3 = {
    "happiness": "positive", "surprise": "positive", "neutral": "neutral",
    "sadness": "negative", "fear": "negative", "disgust": "negative", "anger": "negative",
}


def label_names(key: str) -> Tuple[str, ...]:
    """The class names of protocol ``key`` (see :data:`LABELS`), index 0 first."""
    if key not in LABELS:
        raise KeyError(f"unknown label set {key!r}; known: {sorted(LABELS)}")
    return LABELS[key]


def normalize_label_string(value, names, source: str = "<labels>") -> str:
    """Map a raw label string (any case, surrounding blanks, synonyms such as ``happy``/``happiness``) onto one of
    ``names``.

    Raises:
        ValueError: naming ``source`` and the value when it matches no class.
    """
    raw = str(value).strip()
    low = raw.lower()
    if low in names:
        return low
    for cand in (SYNONYMS.get(low), {v: k for k, v in SYNONYMS.items()}.get(low)):
        if cand is not None and cand in names:
            return cand
    raise ValueError(f"{source}: unknown label {raw!r}; expected one of {list(names)}")
