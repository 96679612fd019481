#!/usr/bin/env python
"""Fit the content-aware non-LLM baseline (ccf_llm.baselines.content), tuned on valid, scored on the whole test split.

    python scripts/train_content.py --data ml1m --out outputs/content/ml1m --results results/ml1m.json

``--out`` gets metrics.json (the results row, the features and the grid's valid AUCs) and
valid_scores.parquet / test_scores.parquet, which ``scripts/compare_runs.py`` pairs with an LLM run's.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

from ccf_llm.baselines import FEATURE_GROUPS, MODELS, fit_content_baseline
from ccf_llm.data import SHARED_ML1M, load_named
from ccf_llm.evaluation import upsert_result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="ml1m", help="ml1m, default (RecBole's ml-100k) or a split folder")
    parser.add_argument(
        "--data-dir", type=Path, help=f"ML-1M split folder (default {SHARED_ML1M} or $CCF_ML1M_DIR)"
    )
    parser.add_argument("--model", default="gbdt", choices=MODELS)
    parser.add_argument(
        "--features",
        nargs="+",
        default=list(FEATURE_GROUPS),
        choices=FEATURE_GROUPS,
        help="feature groups (default: all the data can feed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="cross-fitting folds and model seed")
    parser.add_argument("--out", type=Path, required=True, help="folder for metrics.json and the scores")
    parser.add_argument("--results", type=Path, help="results JSON to upsert the row into (default: none)")
    parser.add_argument("--experiment", help="the experiment config name the row belongs to")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    data = load_named(args.data, args.data_dir)
    logging.info("%s: %s", data.name, {split: data.splits[split].num_rows for split in data.splits})
    run = fit_content_baseline(data, args.model, args.features, seed=args.seed)
    row = run.row(
        command=shlex.join(["python", "scripts/train_content.py", *sys.argv[1:]]),
        device=f"cpu ({os.cpu_count()} cores)",
        experiment=args.experiment,
    )
    run.save(args.out, row)
    logging.info("best %s; wrote %s", run.best, args.out)
    if args.results:
        upsert_result(args.results, row, dataset="ml-1m" if args.data == "ml1m" else data.name)
    print(pd.DataFrame({split: row[split] for split in ("valid", "test")}).T.to_string(na_rep="–"))


if __name__ == "__main__":
    main()
