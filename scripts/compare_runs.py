"""Bootstrap intervals of runs' test AUCs and of their differences from a baseline run on the same rows.

    python scripts/compare_runs.py outputs/experiments/ccf-llm outputs/experiments/collm \\
        --baseline outputs/experiments/cf-mf-bias [outputs/experiments/tallrec ...]

(``python scripts/experiment.py --compare ccf-llm`` runs this for an experiment and its ``compare_with``.)

Each argument is a run folder with ``<split>_scores.parquet`` (``scripts/train.py --output-dir``,
``scripts/score_cf.py --out``); all must have scored the same rows. The difference from the baseline is a
paired bootstrap: both runs are scored on the same resamples. A resample draws whole users (``--resample users``,
the default): a user's rows share that user's leniency, so drawing single rows (``--resample rows``, what files
without a ``resample`` field used) gives intervals that are too narrow.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import pandas as pd

from ccf_llm.atomic import write_text_atomically
from ccf_llm.evaluation.compare import RESAMPLE_UNITS, compare_runs, run_name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders to compare")
    parser.add_argument(
        "--baseline",
        type=Path,
        nargs="+",
        help="run folder(s) to subtract, each in turn (paired on the same rows)",
    )
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resample",
        default="users",
        choices=RESAMPLE_UNITS,
        help="what a bootstrap draw takes (default users)",
    )
    parser.add_argument(
        "--out", type=Path, help="also write the table, settings and command to this JSON file"
    )
    args = parser.parse_args(argv)
    options = {"n_resamples": args.resamples, "seed": args.seed, "resample": args.resample}
    try:
        tables = [
            compare_runs(args.runs, baseline, args.split, args.confidence, **options).assign(
                baseline=run_name(baseline) if baseline else None
            )
            for baseline in (args.baseline or [None])
        ]
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"compare_runs: {err}")
    table = pd.concat(tables)
    print(
        f"{args.split} AUC, {args.confidence:.0%} BCa bootstrap intervals over {args.resample} "
        f"({args.resamples} resamples)"
    )
    print(table.to_string(float_format=lambda value: f"{value:.4f}"))
    if args.out:
        content = {
            "split": args.split,
            "confidence": args.confidence,
            "resamples": args.resamples,
            "seed": args.seed,
            "resample": args.resample,
            "baselines": [str(baseline) for baseline in args.baseline or []],
            "command": shlex.join(["python", "scripts/compare_runs.py", *(argv or sys.argv[1:])]),
            "rows": json.loads(table.reset_index().round(4).to_json(orient="records")),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(args.out, json.dumps(content, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
