"""Pushing a saved checkpoint folder (model, processor, remote code, model card) to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

# Accelerate states and run artefacts stay local.
HUB_IGNORE_PATTERNS = ["step_*", "step_*/**", "epoch_*", "epoch_*/**", "subject_*/**", "best_model_state/**", "*.pt",
                       ".write_test*"]


def default_hub_model_id(output_dir, api=None, token: Optional[str] = None) -> str:
    """`<your namespace>/<output_dir name>` (e.g. `alice/emvfer-dfew`)."""
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    return f"{api.whoami()['name']}/{Path(output_dir).name}"


def push_folder_to_hub(output_dir, hub_model_id: Optional[str] = None, token: Optional[str] = None) -> str:
    """Create the model repository if needed and upload `output_dir` in one commit; returns the repo id."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = hub_model_id or default_hub_model_id(output_dir, api)
    api.create_repo(repo_id, exist_ok=True, repo_type="model")
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        commit_message="Upload EM-VFER (MERT) checkpoint",
        ignore_patterns=HUB_IGNORE_PATTERNS,
    )
    return repo_id
