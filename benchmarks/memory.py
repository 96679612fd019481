"""Peak GPU memory of a Llama-7B-shaped LoRA training step, and the projected wall time of the full ML-1M run.

Peak = ``torch.cuda.max_memory_allocated`` over one step (weights included) at batch 16 x ~160 tokens:
ours (bf16 frozen base, fp32 LoRA/fusion, gradient checkpointing) for stage 1 and stage 2, and the
longest batch; the plain loop (fp32 weights + bf16 autocast, gradient checkpointing) for ``ratio``.

The projection reads this run's ``train_throughput`` and ``eval_throughput`` results (same device) for
each backbone: both stages over the 33,891 train rows per epoch, a valid pass (10,401 rows) per epoch and
a test pass (7,331 rows) per stage. On a machine without a GPU it says so and exits.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import torch

from benchmarks import common
from benchmarks.train_throughput import ours_step, plain_step

TARGET_GIB = 24.0
TARGET_MINUTES = 30.0
ROWS = {"train": 33_891, "valid": 10_401, "test": 7_331}
GIB = 2**30


def peak_gib(step, batch: dict) -> float:
    """Peak allocated memory over one training step (what is already allocated counts too)."""
    common.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step(batch)
    common.synchronize()
    return torch.cuda.max_memory_allocated() / GIB


def rows_near(processor, rows: list[dict], batch_size: int, tokens: int) -> tuple[list[dict], list[dict]]:
    """The ``batch_size`` rows of similar length whose longest prompt is closest to ``tokens``, and the longest rows."""
    lengths = [len(e["input_ids"]) for e in common.encode_rows(processor, rows)]
    order = sorted(range(len(rows)), key=lengths.__getitem__)
    ordered = [rows[i] for i in order]
    end = min(range(batch_size, len(rows) + 1), key=lambda e: abs(lengths[order[e - 1]] - tokens))
    return ordered[end - batch_size : end], ordered[-batch_size:]


def projection(out: Path, backbone: str, epochs: tuple[float, float]) -> dict:
    """Projected minutes of the two-stage run, ours and plain, from this device's throughput results."""
    kind = common.device().type
    train_file, eval_file = (
        out / f"{name}_{backbone}_{kind}.json" for name in ("train_throughput", "eval_throughput")
    )
    if not (train_file.is_file() and eval_file.is_file()):
        return {"missing": [p.name for p in (train_file, eval_file) if not p.is_file()]}
    train = json.loads(train_file.read_text())["samples_per_s"]
    evals = json.loads(eval_file.read_text())["samples_per_s"]
    first, second = epochs
    ours = (
        first * (ROWS["train"] / train["stage1"] + ROWS["valid"] / evals["text"])
        + ROWS["test"] / evals["text"]
        + second * (ROWS["train"] / train["stage2"] + ROWS["valid"] / evals["hybrid"])
        + ROWS["test"] / evals["hybrid"]
    )
    plain = (first + second) * (ROWS["train"] / train["plain"] + ROWS["valid"] / evals["plain"]) + 2 * ROWS[
        "test"
    ] / evals["plain"]
    return {
        "ours_minutes": round(ours / 60, 2),
        "plain_minutes": round(plain / 60, 2),
        "ratio": round(plain / ours, 3),
    }


def main(argv: list[str] | None = None) -> dict:
    args = common.parser(__doc__.splitlines()[0], backbone="llama7b")
    args.add_argument("--batch-size", type=int, default=16)
    args.add_argument("--tokens", type=int, default=160, help="padded prompt length of the measured batch")
    args.add_argument(
        "--epochs", type=float, nargs=2, default=(2.0, 2.0), help="epochs of stage 1 and stage 2"
    )
    args = args.parse_args(argv)
    if common.device().type != "cuda":
        record = {"name": "memory", "device": common.device_name(), "skipped": "no GPU"}
        print(json.dumps(record), flush=True)
        return record

    tokenizer = common.load_tokenizer(args)
    data = common.load_data(args.tiny, "train")
    rows = common.sample_rows(data, 50 * args.batch_size, args.seed)
    backbone = common.make_backbone(args, tokenizer, torch.bfloat16)
    vocab = backbone.config.vocab_size
    ours, processor = common.build_ours(backbone, tokenizer, data, torch.bfloat16)
    del backbone
    gc.collect()
    torch.cuda.empty_cache()
    common.enable_checkpointing(ours)
    ours.train()
    text = processor.with_settings(hybrid=False)
    near, longest = rows_near(text, rows, args.batch_size, args.tokens)
    text_batch, longest_text, hybrid_batch = (
        common.ours_batches(p, r, len(r), vocab)[0]
        for p, r in ((text, near), (text, longest), (processor, near))
    )
    stage1, stage2 = ours_step(ours, "text", True), ours_step(ours, "fusion", True)
    stage1(text_batch)  # the optimizer state exists from the first step on
    stage2(hybrid_batch)
    peaks = {
        "ours_stage1": peak_gib(stage1, text_batch),
        "ours_stage2": peak_gib(stage2, hybrid_batch),
        "ours_stage1_longest": peak_gib(stage1, longest_text),
    }
    del ours, stage1, stage2
    gc.collect()
    torch.cuda.empty_cache()
    plain_backbone = common.make_backbone(args, tokenizer, torch.float32)
    common.enable_checkpointing(plain_backbone)
    plain = common.make_plain(plain_backbone).train()
    plain_batch = common.plain_batches(processor, near, len(near), 1, vocab, True)[0]
    step = plain_step(plain, True)
    step(plain_batch)
    peaks["plain"] = peak_gib(step, plain_batch)
    widths = {
        "ours_stage1": text_batch["input_ids"].shape[1],
        "ours_stage2": hybrid_batch["input_ids"].shape[1],
        "ours_stage1_longest": longest_text["input_ids"].shape[1],
        "plain": plain_batch["input_ids"].shape[1],
    }
    backbones = ["tiny"] if args.tiny else ["smollm2-random", "smollm2", "llama7b"]
    return common.write_result(
        "memory",
        args,
        {
            "ratio": round(peaks["ours_stage1"] / peaks["plain"], 3),
            "target": f"ours peak < {TARGET_GIB} GiB at batch 16; two-stage run < {TARGET_MINUTES} min (llama7b)",
            "peak_gib": {name: round(value, 2) for name, value in peaks.items()},
            "padded_tokens": widths,
            "projection": {name: projection(args.out, name, tuple(args.epochs)) for name in backbones},
            "settings": {
                "batch_size": args.batch_size,
                "tokens": args.tokens,
                "epochs": list(args.epochs),
                "rows": ROWS,
                "data": data.source,
            },
        },
    )


if __name__ == "__main__":
    main()
