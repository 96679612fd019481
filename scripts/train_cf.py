#!/usr/bin/env python
"""Train a CF backbone on a CTR split and export its frozen tables for the LLM.

    python scripts/train_cf.py --model mf --bias --data ml1m --out outputs/cf/ml1m/mf_bias
    python scripts/train_cf.py --model sasrec --data ml1m --out outputs/cf/ml1m/sasrec --grid

Writes ``<out>/cf_tables.safetensors`` + ``cf_config.json`` (see ccf_llm.cf) and, for ML-1M, upserts
the model's row in results/ml1m.json. With ``--grid`` it trains every combination of the model's
grid in configs/cf_grid.yaml, keeps the one with the best valid AUC and writes the table of all of them
to ``<out>/grid.json``. The CF experiments of configs/experiments/ call it (``scripts/experiment.py cf-mf-bias``).
The logic lives in ccf_llm.cf.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import yaml

from ccf_llm.cf import DEFAULT_SETTINGS, METHOD_NAMES, grid_search, save_cf_tables, train_cf
from ccf_llm.data import SHARED_ML1M, load_named
from ccf_llm.evaluation.rows import device_label, record_row, results_row
from ccf_llm.settings import parse_assignments

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    grid_file = ROOT / "configs" / "cf_grid.yaml"
    grids = yaml.safe_load(grid_file.read_text()) if grid_file.is_file() else {}
    epilog = "defaults:\n" + "\n".join(f"  {k}: {v}" for k, v in DEFAULT_SETTINGS.items())
    epilog += f"\ngrids ({grid_file.relative_to(ROOT)}):\n" + "\n".join(
        f"  {k}: {v}" for k, v in grids.items()
    )
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, choices=["mf", "lightgcn", "sasrec", "din"])
    parser.add_argument(
        "--bias", action="store_true", help="MF only: user/item/global biases (method MF-bias)"
    )
    parser.add_argument(
        "--data", default="ml1m", help="ml1m, default (RecBole's ml-100k) or a saved split folder"
    )
    parser.add_argument(
        "--data-dir", type=Path, help=f"ML-1M split folder (default {SHARED_ML1M} or $CCF_ML1M_DIR)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for cf_tables.safetensors + cf_config.json"
    )
    parser.add_argument("--grid", action="store_true", help="search the model's grid in configs/cf_grid.yaml")
    parser.add_argument("--grid-file", type=Path, default=grid_file)
    parser.add_argument(
        "--grid-name", help="which grid of --grid-file to search (default: the model's, e.g. mf_bias)"
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override settings (YAML values); repeatable, each adds to the ones before",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="results JSON to upsert the row into (default: results/ml1m.json for ml1m)",
    )
    parser.add_argument("--no-results", action="store_true", help="do not touch the results file")
    parser.add_argument("--method", help="the row's method name (default: the model's, e.g. MF-bias)")
    parser.add_argument("--experiment", help="the configs/experiments/ name the row belongs to (its command)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the CPU box has 2 shared cores)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    if args.bias and args.model != "mf":
        parser.error("--bias applies to --model mf only")
    try:
        args.overrides = parse_assignments(args.set)
    except ValueError as err:
        parser.error(str(err))
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    name = "mf_bias" if args.bias else args.model
    data = load_named(args.data, args.data_dir)

    start = time.perf_counter()
    if args.grid:
        grids = yaml.safe_load(args.grid_file.read_text()) or {}
        grid_name = args.grid_name or name
        if grid_name not in grids:
            sys.exit(
                f"train_cf.py: {args.grid_file} has no grid '{grid_name}' (it has: {', '.join(grids) or 'none'})"
            )
        grid = grids[grid_name]
        run, table = grid_search(
            name, data, {**DEFAULT_SETTINGS[name], **args.overrides}, grid, progress=not args.quiet
        )
    else:
        run, table = train_cf(name, data, args.overrides, progress=not args.quiet), None
    total = time.perf_counter() - start
    save_cf_tables(run, args.out, grid=table)
    print(json.dumps({"model": name, "settings": run.settings, "best_epoch": run.best_epoch,
                      "valid": run.valid, "test": run.test, "seconds": round(run.seconds, 1),
                      "total_seconds": round(total, 1), "out": str(args.out)}, indent=2))  # fmt: skip

    results = args.results or (ROOT / "results" / "ml1m.json" if args.data == "ml1m" else None)
    if results and not args.no_results:
        row = results_row(
            method=args.method or METHOD_NAMES[name],
            experiment=args.experiment,
            command=shlex.join(["python", "scripts/train_cf.py", *sys.argv[1:]]),
            sampled=False,
            train_rows=len(data.splits["train"]),
            test_rows=len(data.splits["test"]),
            settings=run.settings,
            backbone=None,
            device=device_label(threads=args.threads, gpu=False),
            seconds=run.seconds,
            metrics={"valid": run.valid, "test": run.test},
            best_epoch=run.best_epoch,
            **({"grid_seconds": round(total, 1)} if args.grid else {}),
        )
        record_row(results, row, args.data, data.name)


if __name__ == "__main__":
    main()
