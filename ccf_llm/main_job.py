"""The main job (``make demo``): embedded data -> MF tables -> two stages -> evaluation -> published folder
-> the folder loaded back through ``AutoModel``/``pipeline`` with ``trust_remote_code`` in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .publishing import publish
from .publishing import showcase as showcase_module
from .training import ExperimentConfig, run_experiment, summary_table


def run_main_job(config_path: str | Path, command: str, **overrides) -> Path:
    """Train, evaluate and publish ``config_path`` (``overrides`` replace its settings), then show the folder."""
    start = time.perf_counter()
    config = ExperimentConfig.from_yaml(config_path, **overrides)
    print(f"== training {config.method} on {config.data} (config {config_path})", flush=True)
    summary = run_experiment(config, command=command)
    print(f"\n== evaluation ({summary['row']['train_rows']} train rows, {summary['row']['device']})")
    print(summary_table(summary).to_string())
    folder, _ = publish(
        config.output_dir, Path(config.output_dir) / "published", results=config.results, overwrite=True
    )
    print(f"\n== published folder: {folder}")
    print("== loading it back in a fresh interpreter (python -I, repository modules blocked)", flush=True)
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run(
            [sys.executable, "-I", showcase_module.__file__, str(folder.resolve())],
            cwd=cwd,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            check=True,
        )
    print(f"\n== main job done in {time.perf_counter() - start:.0f} s")
    return folder
