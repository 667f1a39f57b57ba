"""Takes docs/figures/demo.png: the demo page in Debian's headless chromium after analysing a real clip.

The checkpoint is a tiny random MERT with the seven DFEW classes (the page, not the model, is what the picture shows).

    apt-get install -y chromium chromium-driver
    python docs/figures/make_demo_figure.py
"""

import base64
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.conftest import TINY_MERT
from tests.registry_data import pyfeat_data

CLIP = "WolfgangLanger_Pexels.mp4"
LABELS = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]  # DFEW's seven classes
OUT = ROOT / "docs" / "figures" / "demo.png"


def tiny_checkpoint(folder: Path) -> Path:
    """A tiny random MERT with DFEW's labels, saved with its processor."""
    import torch

    from emvfer_hf import MERTConfig, MERTForVideoClassification, MERTVideoProcessor

    config = MERTConfig(**{**TINY_MERT, "num_labels": len(LABELS), "id2label": dict(enumerate(LABELS)),
                           "label2id": {n: i for i, n in enumerate(LABELS)}})  # fmt: skip
    torch.manual_seed(0)
    model = MERTForVideoClassification(config)
    model.set_eye_prior_from_series(torch.randn(4, config.eye_sequence_length, 5))
    model.save_pretrained(folder)
    MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, eye_sequence_length=16).save_pretrained(folder)
    return folder


def main():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from emvfer_hf.demo import build_demo, launch_demo

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = build_demo(tiny_checkpoint(Path(tempfile.mkdtemp())), top_k=3)
    _, url, _ = launch_demo(demo, port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#video input[type=file]"))).send_keys(
            str(pyfeat_data(CLIP))
        )
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#video video")))
        driver.find_element(By.CSS_SELECTOR, "#submit").click()
        WebDriverWait(driver, 600).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#eye-plot img"))
        driver.execute_script("document.querySelector('#video video').currentTime = 6.0;")  # a frame with the face
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, height + 40)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        OUT.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.quit()
        demo.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
