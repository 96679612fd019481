"""Score an exported CF model on the rows an LLM config evaluates, for a like-for-like comparison.

    python scripts/score_cf.py --cf-dir outputs/cf/ml1m/mf_bias --config configs/ml1m-cpu.yaml

The CPU protocol (configs/ml1m-cpu.yaml) scores the LLM rows on samples of valid and test; this scores the
CF model that feeds them on exactly those rows, with the model's own logit (``cf_model.safetensors``), and
upserts "<CF method> (cpu-subsample rows)" (``--no-results``: no row). ``--out DIR`` also keeps the scores and
the row there, a run folder that ``scripts/compare_runs.py`` reads like a training run's. On a config without
samples (configs/ml1m.yaml) it scores the whole splits, beside ``scripts/evaluate.py``'s LLM scores there.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from ccf_llm.atomic import write_text_atomically
from ccf_llm.cf import METHOD_NAMES, encode_splits, load_cf_model, predict, rows_metrics
from ccf_llm.data import load_named
from ccf_llm.evaluation import split_metrics, upsert_result
from ccf_llm.evaluation.compare import write_scores
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
    parser.add_argument("--results", help="results JSON (default: the config's)")
    parser.add_argument("--no-results", action="store_true", help="do not touch the results file")
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
    row = {
        "method": args.method or default_method(METHOD_NAMES[info["model"]], config),
        "backbone": None,
        "fusion": None,
        "cf": info["model"],
        "train_rows": len(full.splits["train"]),
        "device": f"cpu ({os.cpu_count()} cores)",
        "seconds": round(time.perf_counter() - start, 1),
        "command": shlex.join(["python", "scripts/score_cf.py", *sys.argv[1:]]),
        "valid": split_metrics(metrics["valid"], "valid"),
        "test": split_metrics(metrics["test"], "test"),
        "rows": {split: len(batch["label"]) for split, batch in rows.items()},
    }
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for split, batch in rows.items():
            write_scores(args.out, split, batch, scores[split])
        write_text_atomically(args.out / "metrics.json", json.dumps({"row": row}, indent=2))
    results = args.results or config.results
    if results and not args.no_results:
        upsert_result(results, row, dataset="ml-1m" if config.data == "ml1m" else full.name)
    print(pd.DataFrame({split: row[split] for split in ("valid", "test")}).T.to_string(na_rep="–"))


if __name__ == "__main__":
    main()
