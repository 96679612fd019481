"""Parameter counts per module of a SmolLM2-135M CCF-LLM, and the CPU forward time of its Yes/No head.

The model: the embedded SmolLM2-135M-Instruct (GGUF, fp32), gate fusion, LoRA q/v r=8, random CF tables of
ML-1M's sizes (839 users, 3,256 items, width 64). The timing: one batch of real ML-1M hybrid prompts
(test rows, up to 10 history titles each), scored by

- ``ours``: ``CCFLLMForCTR.forward``, the "Yes"/"No" rows of the output head on the last hidden state only;
- ``full``: the same embeddings through ``model.backbone`` (the causal LM), full-vocabulary logits at
  every position, then the same score read off the last position;

interleaved (one of each per round, so load from other processes hits both alike), median of the timed
rounds after one warm-up each. Both give the same scores (``max_score_difference``).

    python -m benchmarks.model_report [--batch 16] [--runs 5] [--threads 1 2]   # ~35 min on 2 busy cores

Prints the report and writes ``benchmarks/results/model_report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import load_data, sample_rows, versions
from ccf_llm.build import build_model, load_backbone
from modeling_ccf import CCFLLMForCTR, last_token_index

NUM_USERS, NUM_ITEMS, CF_DIM = 839, 3256, 64  # ML-1M's CF tables (row 0 = padding)
OUT = Path(__file__).resolve().parent / "results" / "model_report.json"


def parameter_counts(model: CCFLLMForCTR) -> dict[str, int]:
    """Parameters per module (tied input/output embeddings counted once, as ``named_parameters`` does)."""
    counts = dict.fromkeys(("backbone", "lora", "alg", "gate", "user_cf", "item_cf"), 0)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            group = "lora"
        elif name.startswith("backbone."):
            group = "backbone"
        elif name.startswith(("fusion.alg.", "fusion.gate.")):
            group = name.split(".")[1]
        elif name.startswith(("user_cf.", "item_cf.")):
            group = name.split(".")[0]
        else:
            raise ValueError(f"parameter {name} belongs to no reported module")
        counts[group] += parameter.numel()
    counts["backbone_input_embeddings"] = model.get_input_embeddings().weight.numel()
    counts["cf_tables"] = counts["user_cf"] + counts["item_cf"]
    counts["total"] = sum(counts[key] for key in ("backbone", "lora", "alg", "gate", "cf_tables"))
    counts["trained_stage1"] = counts["lora"]
    counts["trained_stage2"] = counts["alg"] + counts["gate"]
    return counts


def score_with_full_logits(model: CCFLLMForCTR, batch: dict) -> torch.Tensor:
    """The baseline: the causal LM's own forward (all positions x the whole vocabulary), then Yes - No."""
    embeds, _, _ = model.embed_hybrid_prompt(
        batch["input_ids"], batch["user_ids"], batch["item_ids"], batch["history_ids"], batch["title_index"]
    )
    mask = batch["attention_mask"]
    logits = model.backbone(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=False,
    ).logits
    assert logits.shape[:2] == mask.shape, "the baseline must compute logits at every position"
    last = logits[torch.arange(logits.shape[0]), last_token_index(mask)]
    return last[:, model.config.yes_token_id] - last[:, model.config.no_token_id]


def time_forwards(model: CCFLLMForCTR, batch: dict, runs: int) -> dict:
    variants = {"ours": lambda: model(**batch).logits, "full": lambda: score_with_full_logits(model, batch)}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    results = {}
    with torch.no_grad():
        for round_ in range(runs + 1):  # round 0 is the warm-up
            for name, forward in variants.items():
                start = time.perf_counter()
                results[name] = forward()
                if round_:
                    seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "ours_s": medians["ours"],
        "full_s": medians["full"],
        "ratio_full_over_ours": medians["full"] / medians["ours"],
        "runs_s": seconds,
        "max_score_difference": float((results["ours"] - results["full"]).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per variant (after one warm-up)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        help="torch thread counts to time, each a full set (default: torch's)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    data = load_data(tiny=False, split="test")
    start = time.perf_counter()
    backbone, tokenizer = load_backbone()
    load_s = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    users = torch.randn(NUM_USERS, CF_DIM, generator=generator)
    items = torch.randn(NUM_ITEMS, CF_DIM, generator=generator)
    model, processor = build_model(backbone, tokenizer, data.catalog, users, items, fusion="gate")
    del backbone
    model.eval()
    counts = parameter_counts(model)

    rows = sample_rows(data, args.batch, seed=0)
    batch = dict(
        processor([row["his"] for row in rows], [row["iid"] for row in rows], [row["uid"] for row in rows])
    )
    lengths = batch["attention_mask"].sum(1).float()
    vocab = model.backbone.get_output_embeddings().weight.shape[0]
    timings = {}
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        timings[str(threads)] = time_forwards(model, batch, args.runs)

    report = {
        "name": "model_report",
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 de-quantized to fp32), gate fusion, LoRA q/v r=8",
        "data": data.source,
        "parameters": counts,
        "config": {"num_users": NUM_USERS, "num_items": NUM_ITEMS, "cf_dim": CF_DIM, "vocab_size": vocab},
        "batch": {
            "rows": args.batch,
            "padded_length": int(batch["input_ids"].shape[1]),
            "mean_tokens": float(lengths.mean()),
            "full_logits_mib_fp32": args.batch * int(batch["input_ids"].shape[1]) * vocab * 4 / 2**20,
        },
        "forward_by_threads": timings,
        "backbone_load_s": load_s,
        "cpu": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
        "versions": versions(),
        "unix_time": int(time.time()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"parameters: {json.dumps(counts)}")
    print(f"batch: {json.dumps(report['batch'])}")
    for threads, timing in timings.items():
        print(
            f"{threads} thread(s): ours {timing['ours_s']:.2f} s, full logits {timing['full_s']:.2f} s, "
            f"ratio {timing['ratio_full_over_ours']:.2f}, max score difference {timing['max_score_difference']:.1e}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
