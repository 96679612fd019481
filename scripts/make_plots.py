"""Figures for the README from finished runs: ``python scripts/make_plots.py outputs/ml1m --out results``.

``python scripts/make_plots.py outputs/ml1m-cpu --prefix ml1m_cpu_`` for the CPU-protocol rows;
``--method NAME`` (repeatable) plots the runs of those method names instead of TALLRec, CoLLM and CCF-LLM.
Reads each run folder's ``test_scores.parquet``, ``*/trainer_state.json`` and ``gates.json`` (written by
``scripts/train.py``) and writes ``roc.png``, ``training_curves.png`` and ``gates_warm_vs_cold.png`` (the
gates of the last plotted run that has any: GATE fusions only), and prints that run's gate summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ccf_llm.evaluation.gates import summarize_gates
from ccf_llm.evaluation.plots import plot_gates, plot_roc, plot_training_curves

MAIN_ROWS = ("TALLRec", "CoLLM", "CCF-LLM")
CPU_SUFFIX = (
    " (cpu-subsample)"  # "CCF-LLM (cpu-subsample)" is a CCF-LLM run; "CCF-LLM (add) (cpu-subsample)" is not
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="folder holding one sub-folder per run")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--prefix", default="ml1m_")
    parser.add_argument(
        "--method",
        action="append",
        dest="methods",
        help="a method name to plot (repeatable; default: the main rows)",
    )
    args = parser.parse_args()
    finished = {}
    for metrics in sorted(args.runs_dir.glob("*/metrics.json")):
        finished[json.loads(metrics.read_text())["row"]["method"]] = metrics.parent
    if args.methods:
        missing = [method for method in args.methods if method not in finished]
        if missing:
            raise SystemExit(
                f"no finished run of {missing} under {args.runs_dir}; finished: {sorted(finished)}"
            )
        runs = {method: finished[method] for method in args.methods}
    else:
        runs = {
            method: run for method, run in finished.items() if method.removesuffix(CPU_SUFFIX) in MAIN_ROWS
        }
    if not runs:
        raise SystemExit(f"no finished runs of {MAIN_ROWS} under {args.runs_dir}")
    print(plot_roc(runs, args.out / f"{args.prefix}roc.png"))
    print(plot_training_curves(runs, args.out / f"{args.prefix}training_curves.png"))
    files = [run / "gates.json" for run in runs.values() if (run / "gates.json").is_file()]
    gated = [(path, gates) for path in files if (gates := json.loads(path.read_text()))]
    if gated:
        path, gates = gated[-1]
        print(plot_gates(path, args.out / f"{args.prefix}gates_warm_vs_cold.png"))
        print(f"gates of {path}: {json.dumps(summarize_gates(gates))}")


if __name__ == "__main__":
    main()
