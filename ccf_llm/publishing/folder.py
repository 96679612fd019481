"""A training run (``<run>/model`` + ``<run>/metrics.json``) -> a Hub-ready model folder, written atomically.

The folder holds the model in bfloat16 (loaded as such where bf16 is native, else as float32; ``dtype`` chooses), the
tokenizer, the item catalog, every remote-code file (configuration, modeling, processing, pipeline), the
Inference Endpoints ``handler.py`` and the model card. ``config.json`` carries ``auto_map`` and the
``custom_pipelines`` entry, so ``pipeline(model=folder, trust_remote_code=True)`` needs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from modeling_ccf import CCFLLMForCTR
from pipeline_ccf import CCFLLMPipeline
from processing_ccf import CCFLLMProcessor

from .card import find_measured_row, model_card, results_files, run_dataset
from .hub import check_hub_access, upload

HANDLER_TEMPLATE = Path(__file__).with_name("handler.py")
CODE_FILES = ("configuration_ccf.py", "modeling_ccf.py", "processing_ccf.py", "pipeline_ccf.py", "handler.py")
DATA_FILES = ("config.json", "tokenizer_config.json", "ccf_processor.json", "item_catalog.json", "README.md")


def write_model_folder(
    run_dir: str | Path,
    out_dir: str | Path,
    results: str | Path | None = None,
    repo_id: str | None = None,
    base_model: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the Hub folder of ``run_dir`` to ``out_dir`` (built in a temporary folder, then renamed)."""
    run, out = Path(run_dir), Path(out_dir)
    for needed in (run / "model" / "config.json", run / "metrics.json"):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} not found: is {run} a finished training run (scripts/train.py)?"
            )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    summary = json.loads((run / "metrics.json").read_text())
    measured = find_measured_row(summary["row"], results_files(summary, results))

    model = CCFLLMForCTR.from_pretrained(run / "model", dtype=torch.float32)
    processor = CCFLLMProcessor.from_pretrained(run / "model")
    card = model_card(
        summary["row"],
        measured,
        processor.catalog,
        model.config,
        name=repo_id.split("/")[-1] if repo_id else out.name,
        model_ref=repo_id or str(out),
        dataset=run_dataset(summary),
        base_model=base_model,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        pipe = CCFLLMPipeline(model=model, processor=processor, device="cpu")
        # bf16 after the pipeline's set-up, which would run bf16 weights in float32 on a CPU without native bf16.
        pipe.model.to(torch.bfloat16)
        pipe.save_pretrained(staging)
        shutil.copy(HANDLER_TEMPLATE, staging / "handler.py")
        (staging / "README.md").write_text(card)
        check_complete(staging)
        staging.chmod(0o755)  # mkdtemp makes it private
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def check_complete(folder: Path) -> None:
    """Every file the Hub repository needs is there (weights may be one file or an index of shards)."""
    missing = [name for name in CODE_FILES + DATA_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        missing.append("model.safetensors")
    if missing:
        raise RuntimeError(f"the published folder lacks {missing}")


def replace_folder(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` by renames only, so ``target`` is never a half-written folder."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old)


def publish(
    run_dir: str | Path,
    out_dir: str | Path,
    push_to_hub: str | None = None,
    private: bool = False,
    repo_id: str | None = None,
    **folder_options,
) -> tuple[Path, str | None]:
    """Write the folder and optionally upload it; Hub access is checked before anything is written.

    ``repo_id`` names the model on its card when the folder is not pushed here. Returns the folder and
    the commit URL (``None`` without ``push_to_hub``).
    """
    token = check_hub_access(push_to_hub) if push_to_hub else None
    folder = write_model_folder(run_dir, out_dir, repo_id=push_to_hub or repo_id, **folder_options)
    url = upload(folder, push_to_hub, token, private) if push_to_hub else None
    return folder, url
