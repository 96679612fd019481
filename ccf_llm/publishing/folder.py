"""A training run (``<run>/model`` + ``<run>/metrics.json``) -> a Hub-ready model folder, written atomically.

The folder holds the model in bfloat16 (loaded as such where bf16 is native, else as float32; ``dtype`` chooses), the
processor (tokenizer files and ``processor_config.json``: prompt settings, item catalog, attribute and profile
tables), every remote-code file (configuration, modeling, processing, pipeline), the Inference Endpoints
``handler.py`` and the model card. ``config.json`` carries ``auto_map`` and the ``custom_pipelines`` entry, and
``processor_config.json`` the processor's ``auto_map``, so ``pipeline(model=folder, trust_remote_code=True)`` and
``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` need nothing else. :func:`save_model_folder`
writes every such folder (``ccf_llm.testing.make_tiny`` too), so a tiny folder is a faithful stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from modeling_ccf import CCFLLMForCTR
from pipeline_ccf import CCFLLMPipeline
from processing_ccf import CCFLLMProcessor

from .card import find_measured_row, model_card, read_baseline, results_files, run_dataset
from .hub import check_hub_access, upload

HANDLER_TEMPLATE = Path(__file__).with_name("handler.py")
CODE_FILES = ("configuration_ccf.py", "modeling_ccf.py", "processing_ccf.py", "pipeline_ccf.py", "handler.py")
DATA_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "README.md")
BASELINE_DIR = (
    "cf_baseline"  # a run's CF model scored on the run's rows (the main job writes it), shown on the card
)


def write_model_folder(
    run_dir: str | Path,
    out_dir: str | Path,
    results: str | Path | None = None,
    repo_id: str | None = None,
    base_model: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the Hub folder of ``run_dir`` to ``out_dir`` (built in a temporary folder, then renamed). The card
    shows ``<run>/cf_baseline`` (the main job's CF model alone on the run's rows) beside the run where it exists."""
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
        model_ref=repo_id or out.name,
        dataset=run_dataset(summary),
        base_model=base_model,
        baseline=read_baseline(run / BASELINE_DIR) if measured else None,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        save_model_folder(model, processor, staging, card)
        staging.chmod(0o755)  # mkdtemp makes it private
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def save_model_folder(model: CCFLLMForCTR, processor: CCFLLMProcessor, folder: str | Path, card: str) -> Path:
    """Write a complete model folder: bf16 weights, processor files, remote code, ``handler.py`` and ``card``."""
    folder = Path(folder)
    pipe = CCFLLMPipeline(model=model, processor=processor, device="cpu")
    # bf16 after the pipeline's set-up, which would run bf16 weights in float32 on a CPU without native bf16.
    pipe.model.to(torch.bfloat16)
    pipe.save_pretrained(folder)
    shutil.copy(HANDLER_TEMPLATE, folder / "handler.py")
    (folder / "README.md").write_text(card)
    check_complete(folder)
    check_portable(folder)
    return folder


def check_complete(folder: Path) -> None:
    """Every file the Hub repository needs is there (weights may be one file or an index of shards)."""
    missing = [name for name in CODE_FILES + DATA_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        missing.append("model.safetensors")
    if missing:
        raise RuntimeError(f"the published folder lacks {missing}")


def local_roots(folder: Path) -> set[str]:
    """Absolute paths of this machine that a file of ``folder`` could have picked up (with a trailing separator)."""
    roots = {
        sys.prefix,
        sys.base_prefix,
        Path.home(),
        Path.cwd(),
        folder.resolve().parent,
        tempfile.gettempdir(),
    }
    return {str(Path(root).resolve()).rstrip(os.sep) + os.sep for root in roots} - {os.sep}


def check_portable(folder: Path) -> None:
    """No text file names a local path (e.g. a backbone's folder in ``config.json``): others load the folder elsewhere."""
    roots = local_roots(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix != ".safetensors":
            text = path.read_text(encoding="utf-8", errors="replace")
            found = sorted(root for root in roots if root in text)
            if found:
                raise RuntimeError(
                    f"{path} names local path(s) {found}: a model folder must not hold machine paths"
                )


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
