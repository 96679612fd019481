"""Pushing a published folder to the Hub, refusing early (before anything is written) when it cannot work."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token, is_offline_mode


class HubAccessError(RuntimeError):
    """The Hub cannot be reached with a token: offline mode, no token, or no connection."""


def check_hub_access(repo_id: str) -> str:
    """The token to push ``repo_id`` with; raises :class:`HubAccessError` saying what is missing."""
    owner, _, name = repo_id.partition("/")
    if not owner or not name or "/" in name:
        raise HubAccessError(f"--push-to-hub expects ORG/NAME, got {repo_id!r}")
    offline_env = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    if is_offline_mode() or offline_env:
        raise HubAccessError("HF_HUB_OFFLINE is set: not pushing (unset it to upload)")
    token = get_token()
    if not token:
        raise HubAccessError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then retry")
    try:
        HfApi(token=token).whoami()
    except Exception as err:  # any failure (network, bad token) means the upload would fail later
        raise HubAccessError(f"cannot reach {constants.ENDPOINT} with your token: {err}") from err
    return token


def upload(folder: str | Path, repo_id: str, token: str, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` as one commit; returns the commit URL."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload CCF-LLM model")
    return commit.commit_url
