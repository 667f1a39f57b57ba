"""The EM-VFER demo as a Hugging Face Space (Gradio SDK): `python app.py`.

The checkpoint comes from `EMVFER_MODEL` (a folder saved with `save_pretrained`, or a Hub id), else the folder
`model/` beside this file. The page binds to `GRADIO_SERVER_NAME` (Spaces set it to 0.0.0.0), else 127.0.0.1;
uploads are capped by `EMVFER_MAX_FILE_SIZE` (default 200mb) and clips by `EMVFER_MAX_DURATION` seconds (default 600).
Needs `pip install "emvfer-hf[demo]"` (on a Space: that line in requirements.txt).
"""

import os
from pathlib import Path

from emvfer_hf.demo import (
    DEFAULT_HOST,
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_PORT,
    build_demo,
    launch_demo,
)

MODEL = os.environ.get("EMVFER_MODEL") or str(Path(__file__).resolve().parent / "model")
if "EMVFER_MODEL" not in os.environ and not Path(MODEL).is_dir():
    raise SystemExit(f"app.py: no checkpoint: set EMVFER_MODEL to a checkpoint folder or Hub id, or save one in {MODEL}")

demo = build_demo(
    MODEL,
    device=os.environ.get("EMVFER_DEVICE", "cpu"),
    max_duration_s=float(os.environ.get("EMVFER_MAX_DURATION", DEFAULT_MAX_DURATION_S)),
)

if __name__ == "__main__":
    launch_demo(
        demo,
        host=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
        port=int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        max_file_size=os.environ.get("EMVFER_MAX_FILE_SIZE", DEFAULT_MAX_FILE_SIZE),
    )
