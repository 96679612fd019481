"""Score an exported CF model on the rows an LLM config evaluates, for a like-for-like comparison.

    python scripts/score_cf.py --cf-dir outputs/experiments/cf-mf-bias --config configs/ml1m-cpu.yaml \\
        --out outputs/cf-mf-bias-cpu-rows

The CPU protocol (configs/ml1m-cpu.yaml) scores the LLM rows on a sample of valid; this scores the CF model that
feeds them on exactly those rows, with the model's own logit (``cf_model.safetensors``). ``--out DIR`` keeps the
scores and the row there, a run folder that ``scripts/compare_runs.py`` reads like a training run's; the CF
experiments (``scripts/experiment.py cf-mf-bias``) score into their own folder this way. The results file is left
alone: a CF model's row is its training run's (``scripts/train_cf.py``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from ccf_llm.atomic import write_text_atomically
from ccf_llm.cf import METHOD_NAMES, encode_splits, load_cf_model, predict, rows_metrics
from ccf_llm.data import load_named
from ccf_llm.evaluation.compare import write_scores
from ccf_llm.evaluation.rows import device_label, results_row
from ccf_llm.training import ExperimentConfig
from ccf_llm.training.run import subsample


def default_method(cf_method: str, config: ExperimentConfig) -> str:
    sampled = config.max_valid_rows or config.max_test_rows
    return f"{cf_method} (cpu-subsample rows)" if sampled else cf_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cf-dir", required=True, help="an export of scripts/train_cf.py --out")
    parser.add_argument("--config", required=True, help="the LLM config whose valid/test rows to score")
    parser.add_argument(
        "--method",
        help='row name (default "<CF method> (cpu-subsample rows)", or "<CF method>" on whole splits)',
    )
    parser.add_argument("--experiment", help="the configs/experiments/ name the scores belong to")
    parser.add_argument("--out", type=Path, help="a folder for <split>_scores.parquet and metrics.json")
    args = parser.parse_args()
    start = time.perf_counter()
    config = ExperimentConfig.from_yaml(args.config)
    full = load_named(config.data, config.data_dir)
    model, info = load_cf_model(args.cf_dir, full)
    encoded = encode_splits(subsample(config, full), model.history_len)
    rows = {"valid": encoded.valid, "test": encoded.test}
    scores = {split: predict(model, batch) for split, batch in rows.items()}
    metrics = {split: rows_metrics(batch, scores[split]) for split, batch in rows.items()}
    row = results_row(
        method=args.method or default_method(METHOD_NAMES[info["model"]], config),
        experiment=args.experiment,
        command=shlex.join(["python", "scripts/score_cf.py", *sys.argv[1:]]),
        sampled=bool(config.max_valid_rows or config.max_test_rows),
        train_rows=len(full.splits["train"]),
        test_rows=len(rows["test"]["label"]),
        settings=info.get("settings", {}),
        backbone=None,
        device=device_label(gpu=False),
        seconds=time.perf_counter() - start,
        metrics=metrics,
        valid_rows=len(rows["valid"]["label"]),
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for split, batch in rows.items():
            write_scores(args.out, split, batch, scores[split])
        write_text_atomically(args.out / "metrics.json", json.dumps({"row": row}, indent=2))
    print(pd.DataFrame({split: row[split] for split in ("valid", "test")}).T.to_string(na_rep="–"))


if __name__ == "__main__":
    main()
