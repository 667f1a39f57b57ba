"""``python -m emvfer_hf ...``: the `emvfer` console script (also under ``accelerate launch -m emvfer_hf ...``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
