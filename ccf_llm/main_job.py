"""The main job (``make demo``): embedded data -> MF tables -> two stages -> evaluation -> published folder
-> the folder loaded back through ``AutoModel``/``pipeline`` with ``trust_remote_code`` in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from huggingface_hub import ModelCard

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
    print(summary_table(summary).to_string(na_rep="–"))  # "–": no warm or no cold rows
    run_dir = Path(config.output_dir)
    folder, _ = publish(run_dir, run_dir / f"ccf-llm-{run_dir.name}", results=config.results, overwrite=True)
    print(f"\n== published folder: {folder}")
    print("== loading it back in a fresh interpreter (python -I, repository modules blocked)", flush=True)
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run(
            [sys.executable, "-I", showcase_module.__file__, str(folder.resolve())],
            cwd=cwd,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            check=True,
        )
    print(check_model_card(folder, summary["row"], config.results))
    print(f"\n== main job done in {time.perf_counter() - start:.0f} s")
    return folder


def check_model_card(folder: Path, row: dict, results: str | None) -> str:
    """The card's YAML parses (as the Hub reads it) and its ``model-index`` holds exactly the run's numbers."""
    meta = ModelCard.load(folder / "README.md").data.to_dict()
    card = {
        (result["dataset"]["split"], metric["type"]): metric["value"]
        for entry in meta.get("model-index", [])
        for result in entry["results"]
        for metric in result["metrics"]
    }
    if not results:
        return "\n== model card: YAML parses (no results file configured, so no model-index to check)"
    measured = {(split, key): value for split in ("valid", "test") for key, value in row[split].items()}
    expected = {key: value for key, value in measured.items() if value is not None}
    if card != expected:
        raise RuntimeError(
            f"{folder / 'README.md'}: model-index {card} differs from the run's metrics {expected}"
        )
    return f"\n== model card: YAML parses; its {len(card)} model-index numbers equal row {row['method']!r} of {results}"
