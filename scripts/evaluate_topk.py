"""Top-K recommendation on ML-1M's test split: CF retrieval from a model's tables, alone and reranked by its LLM.

    python scripts/evaluate_topk.py outputs/experiments/ccf-llm-year-tables --users 100 --out results/ml1m_topk.json
    python scripts/evaluate_topk.py --cf-only outputs/cf/ml1m/mf_bias --users 0

MODEL_DIR is a run folder (scripts/train.py, its model/ inside) or a model folder; ``--cf-only CF_DIR`` evaluates
the retrieval of exported CF tables (scripts/train_cf.py --out) with no LLM. ``--users N`` draws a fixed random
sample of the test users with a liked test item (``--seed``); 0 takes them all. The protocol and metrics:
``ccf_llm/evaluation/topk.py``. Rows are upserted into ``--out`` by method, experiment (or model) and users.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from ccf_llm.cf import METHOD_NAMES, load_cf_tables
from ccf_llm.data import load_named
from ccf_llm.evaluation.rows import device_label
from ccf_llm.evaluation.topk import (
    METHODS,
    model_recommender,
    per_user_metrics,
    sample_users,
    summarize,
    tables_retriever,
    topk_users,
    upsert_topk,
)
from ccf_llm.training.run import MODEL_DIR
from modeling_ccf import CCFLLMForCTR, use_bf16
from processing_ccf import PROCESSOR_FILE, CCFLLMProcessor


def model_folder(path: Path) -> Path:
    """The folder with the weights and the processor: ``path`` itself or its ``model/``."""
    for folder in (path / MODEL_DIR, path):
        if (folder / "config.json").is_file() and (folder / PROCESSOR_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"{path}: no model folder (config.json and {PROCESSOR_FILE}) there or in {MODEL_DIR}/"
    )


def run_experiment(folder: Path) -> str | None:
    """The experiment that trained the model, as its run's metrics.json names it (None if it does not)."""
    for metrics in (folder / "metrics.json", folder.parent / "metrics.json"):
        if metrics.is_file():
            summary = json.loads(metrics.read_text())
            return summary.get("row", {}).get("experiment") or summary.get("config", {}).get("experiment")
    return None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path, help="a run folder or model folder")
    parser.add_argument(
        "--cf-only", type=Path, metavar="CF_DIR", help="exported CF tables instead of a model"
    )
    parser.add_argument("--data", default="ml1m", help="data set name or split folder (default ml1m)")
    parser.add_argument(
        "--data-dir", help="folder of the ml1m split (default: $CCF_ML1M_DIR or the shared copy)"
    )
    parser.add_argument("--users", type=int, default=100, help="sampled test users (0: all; default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user sample and the bootstrap")
    parser.add_argument("--num-candidates", type=int, default=50, help="CF candidates the LLM reranks")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument(
        "--bf16", choices=("auto", "true", "false"), default="auto", help="auto: where native"
    )
    parser.add_argument("--experiment", help="the row's experiment (default: the run's metrics.json)")
    parser.add_argument("--out", type=Path, default=Path("results/ml1m_topk.json"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if (args.model_dir is None) == (args.cf_only is None):
        parser.error("give either MODEL_DIR or --cf-only CF_DIR")
    if args.num_candidates < args.k:
        parser.error(f"--num-candidates ({args.num_candidates}) must be at least --k ({args.k})")

    start = time.perf_counter()
    data = load_named(args.data, args.data_dir)
    everyone = topk_users(data)
    users = sample_users(everyone, args.users, args.seed)
    bf16 = use_bf16({"auto": None, "true": True, "false": False}[args.bf16])
    identity: dict = {"experiment": args.experiment}
    if args.cf_only is not None:
        try:
            user_table, item_table, info = load_cf_tables(args.cf_only)
        except (FileNotFoundError, ValueError) as err:
            parser.error(str(err))
        retrieve, rerank = tables_retriever(user_table, item_table, data.items), None
        identity |= {"model": str(args.cf_only), "cf": METHOD_NAMES.get(info.get("model"), info.get("model"))}
        bf16 = False
    else:
        try:
            folder = model_folder(args.model_dir)
        except FileNotFoundError as err:
            parser.error(str(err))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = CCFLLMForCTR.from_pretrained(folder, dtype=torch.float32).to(device)
        model.set_attn_implementation(
            "sdpa"
        )  # scoring without gradients: SDPA (ccf_llm.build.preferred_attention)
        retrieve, rerank = model_recommender(model, CCFLLMProcessor.from_pretrained(folder), bf16)
        identity |= {"model": str(args.model_dir)}
        identity["experiment"] = identity["experiment"] or run_experiment(folder)

    frame = per_user_metrics(users, retrieve, rerank, args.num_candidates, args.k, not args.no_progress)
    summary = summarize(frame, args.k, args.confidence, args.resamples, args.seed)
    command = shlex.join(
        ["python", "scripts/evaluate_topk.py", *(argv if argv is not None else sys.argv[1:])]
    )
    shared = {
        **identity,
        "command": command,
        "users": len(users),
        "user_sample": {"of": len(everyone), "seed": args.seed},
        "k": args.k,
        "candidates": "every catalog item but the user's train items and history",
        "device": device_label(bf16),
        "seconds": round(time.perf_counter() - start, 1),
    }
    rows = []
    for method, entry in summary.items():
        settings = {"num_candidates": args.num_candidates} if method == "rerank" else {}
        rows.append({"method": METHODS[method], **shared, **settings, **entry})
    upsert_topk(args.out, rows, dataset="ml-1m" if args.data == "ml1m" else data.name)
    table = pd.DataFrame({row["method"]: row["metrics"] for row in rows}).T
    print(f"{len(users)} of {len(everyone)} test users, top {args.k}")
    print(table.to_string(float_format=lambda value: f"{value:.4f}"))
    if "rerank" in summary:
        for name, difference in summary["rerank"]["minus_cf"].items():
            print(
                f"rerank - CF {name}: {difference['estimate']:+.4f} [{difference['low']:+.4f}, {difference['high']:+.4f}]"
            )
    return rows


if __name__ == "__main__":
    main()
