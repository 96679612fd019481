"""Figures for the README from finished runs: ``python scripts/make_plots.py outputs/ml1m --out results``.

``python scripts/make_plots.py outputs/ml1m-cpu --prefix ml1m_cpu_`` for the CPU-protocol rows.
Reads each run folder's ``test_scores.parquet``, ``*/trainer_state.json`` and ``gates.json`` (written by
``scripts/train.py``) and writes ``roc.png``, ``training_curves.png`` and ``gates_warm_vs_cold.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    args = parser.parse_args()
    runs = {}
    for metrics in sorted(args.runs_dir.glob("*/metrics.json")):
        method = json.loads(metrics.read_text())["row"]["method"]
        if method.removesuffix(CPU_SUFFIX) in MAIN_ROWS:
            runs[method] = metrics.parent
    if not runs:
        raise SystemExit(f"no finished runs of {MAIN_ROWS} under {args.runs_dir}")
    print(plot_roc(runs, args.out / f"{args.prefix}roc.png"))
    print(plot_training_curves(runs, args.out / f"{args.prefix}training_curves.png"))
    ccf = [folder for method, folder in runs.items() if method.removesuffix(CPU_SUFFIX) == "CCF-LLM"]
    gates = (ccf[0] if ccf else Path()) / "gates.json"
    if gates.is_file() and json.loads(gates.read_text()):
        print(plot_gates(gates, args.out / f"{args.prefix}gates_warm_vs_cold.png"))


if __name__ == "__main__":
    main()
