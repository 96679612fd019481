"""The main job (``make demo``): embedded data -> MF tables -> two stages -> evaluation beside the MF tables alone
-> published folder -> the folder loaded back through ``AutoModel``/``pipeline`` with ``trust_remote_code`` in a
fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from huggingface_hub import ModelCard

from .atomic import write_text_atomically
from .cf import METHOD_NAMES, encode_splits, load_cf_model, predict, rows_metrics
from .data import load_named
from .evaluation.compare import compare_runs, write_scores
from .evaluation.rows import device_label, results_row
from .publishing import publish
from .publishing import showcase as showcase_module
from .publishing.card import Baseline, comparison_line, read_baseline
from .publishing.folder import BASELINE_DIR
from .training import ExperimentConfig, run_experiment, summary_table
from .training.run import subsample

CONFIDENCE = 0.95


def run_main_job(config_path: str | Path, command: str, **overrides) -> Path:
    """Train, evaluate and publish ``config_path`` (``overrides`` replace its settings), then show the folder."""
    start = time.perf_counter()
    config = ExperimentConfig.from_yaml(config_path, **overrides)
    print(f"== training {config.method} on {config.data} (config {config_path})", flush=True)
    summary = run_experiment(config, command=command)
    run_dir = Path(config.output_dir)
    row = summary["row"]
    print(f"\n== evaluation ({row['train_rows']} LLM train rows, {row['device']}), the same rows for both")
    if config.fusion == "text_only":  # no CF tables to compare with
        print(summary_table(summary).to_string(na_rep="–"))  # "–": no warm or no cold rows
    else:
        baseline = score_cf_baseline(config, run_dir, row, command)
        print(evaluation_table(row, baseline.row).to_string(na_rep="–"))
        print(comparison_line(baseline.comparison, baseline.row["method"]))
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
    print(check_model_card(folder, row, config.results))
    print(f"\n== main job done in {time.perf_counter() - start:.0f} s")
    return folder


def score_cf_baseline(config: ExperimentConfig, run_dir: Path, llm_row: dict, command: str) -> Baseline:
    """The CF model whose tables the run read, scored alone (its own logit) on the rows the run scored, into
    ``<run>/cf_baseline`` (scores and ``metrics.json``: its row and CCF-LLM minus it on test, bootstrapped paired
    over users), which the published card shows."""
    start = time.perf_counter()
    full = load_named(config.data, config.data_dir)
    cf_dir = Path(config.cf_dir) if config.cf_dir else run_dir / "cf"
    model, info = load_cf_model(cf_dir, full)
    encoded = encode_splits(subsample(config, full), model.history_len)
    out = run_dir / BASELINE_DIR
    out.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for split, rows in (("valid", encoded.valid), ("test", encoded.test)):
        scores = predict(model, rows)
        write_scores(out, split, rows, scores)
        metrics[split] = rows_metrics(rows, scores)
    row = results_row(
        method=METHOD_NAMES.get(info["model"], info["model"]),
        experiment=None,
        command=command,
        sampled=bool(config.max_train_rows or config.max_valid_rows or config.max_test_rows),
        train_rows=len(full.splits["train"]),
        test_rows=len(encoded.test["label"]),
        settings={"cf": cf_dir.name if config.cf_dir else config.cf_model, **info.get("settings", {})},
        backbone=None,
        device=device_label(gpu=False),
        seconds=time.perf_counter() - start,
        metrics=metrics,
        valid_rows=len(encoded.valid["label"]),
    )
    paired = compare_runs([run_dir], baseline=out, confidence=CONFIDENCE).iloc[0]
    comparison = {
        "split": "test",
        "rows": int(paired["rows"]),
        "minus_baseline": float(paired["minus_baseline"]),
        "low": float(paired["diff_low"]),
        "high": float(paired["diff_high"]),
        "confidence": CONFIDENCE,
        "resample": "users",
        "llm_train_rows": llm_row["train_rows"],
    }
    write_text_atomically(out / "metrics.json", json.dumps({"row": row, "comparison": comparison}, indent=2))
    return read_baseline(out)


def evaluation_table(row: dict, cf_row: dict) -> pd.DataFrame:
    """Valid and test metrics of CCF-LLM and of the CF tables alone, one line per model and split."""
    models = {row["method"]: row, f"{cf_row['method']} (CF tables alone)": cf_row}
    lines = [
        {"model": name, "split": split, **values[split]}
        for split in ("valid", "test")
        for name, values in models.items()
    ]
    return pd.DataFrame(lines).set_index(["split", "model"])


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
