"""Ranking 100 candidates for one user: ``rank_candidates`` (shared prefix computed once, KV cache) vs
one forward call per candidate, in fp32 so the scores can be compared (max |difference| < 1e-4).

``rank_candidates`` runs the suffixes in length-sorted chunks on the CPU (``--chunk-size``; default the
model's: 16 rows on CPU, all at once on GPU); ``--chunk-size 100`` measures the single padded call.

A batched forward of the 100 full prompts (length-sorted batches) is reported too, as the stronger
baseline a careful user would write.
"""

from __future__ import annotations

import random

import torch

from benchmarks import common
from modeling_ccf import CPU_SUFFIX_CHUNK

TARGET = 5.0
TOLERANCE = 1e-4


def main(argv: list[str] | None = None) -> dict:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--candidates", type=int, default=100)
    args.add_argument("--batch-size", type=int, default=16, help="batch of the batched full-prompt baseline")
    args.add_argument("--chunk-size", type=int, help="suffix rows per call (default: the model's)")
    args.add_argument(
        "--repeats", type=int, help="timed calls of rank_candidates (default: 3 on CPU, 10 on GPU)"
    )
    args = args.parse_args(argv)
    cuda = common.device().type == "cuda"
    repeats = args.repeats or (10 if cuda else 3)

    tokenizer = common.load_tokenizer(args)
    data = common.load_data(args.tiny, "test")
    backbone = common.make_backbone(args, tokenizer, torch.float32)
    ours, processor = common.build_ours(backbone, tokenizer, data, torch.float32)
    del backbone
    ours.eval()
    rng = random.Random(args.seed)
    row = max(common.sample_rows(data, 200, args.seed), key=lambda r: len(r["his"]))  # a user with a history
    candidates = rng.sample(sorted(data.catalog), min(args.candidates, len(data.catalog)))
    vocab = ours.config.text_config.vocab_size
    keep = (processor.user_token_id, processor.item_token_id)

    def to_device(batch: dict) -> dict:
        batch = {key: value.to(common.device()) for key, value in batch.items()}
        batch["history_ids"] = batch["history_ids"].long()
        batch["input_ids"] = common.fold_ids(batch["input_ids"], vocab, keep)
        return batch

    prefix, suffixes = (to_device(b) for b in processor.encode_ranking(row["his"], candidates, row["uid"]))
    history = prefix["history_ids"][0].tolist()  # encode_ranking may trim it to fit the longest candidate
    singles = [to_device(processor([history], [c], [row["uid"]])) for c in candidates]
    encoded = sorted(
        common.encode_rows(processor, [{**row, "his": history, "iid": c} for c in candidates]),
        key=lambda e: len(e["input_ids"]),
    )
    batched = [
        to_device(processor.pad(encoded[i : i + args.batch_size]))
        for i in range(0, len(encoded), args.batch_size)
    ]

    with torch.inference_mode():
        ours.rank_candidates(
            prefix, suffixes, args.chunk_size
        )  # warm-up: on GPU every shape once (cuDNN plans)
        for batch in singles + batched if cuda else singles[:1]:
            ours(**batch)
        cached_seconds, cached = common.timed(
            lambda: [ours.rank_candidates(prefix, suffixes, args.chunk_size) for _ in range(repeats)]
        )
        single_seconds, single = common.timed(lambda: [ours(**batch).logits for batch in singles])
        batched_seconds, _ = common.timed(lambda: [ours(**batch).logits for batch in batched])
    cached_seconds /= repeats
    difference = (cached[-1] - torch.cat(single)).abs().max().item()
    return common.write_result(
        "ranking",
        args,
        {
            "ratio": round(single_seconds / cached_seconds, 3),
            "target": f">= {TARGET}x one-by-one, max |score difference| < {TOLERANCE}",
            "max_abs_score_difference": difference,
            "scores_equal": difference < TOLERANCE,
            "batched_ratio": round(batched_seconds / cached_seconds, 3),
            "seconds": {
                "rank_candidates": round(cached_seconds, 4),
                "one_by_one": round(single_seconds, 4),
                "batched_full_prompts": round(batched_seconds, 4),
            },
            "settings": {
                "candidates": len(candidates),
                "history_items": len(history),
                "prefix_tokens": prefix["input_ids"].shape[1],
                "suffix_tokens_max": suffixes["input_ids"].shape[1],
                "suffix_tokens_mean": round(suffixes["attention_mask"].sum(-1).float().mean().item(), 1),
                "chunk_size": args.chunk_size or ("all" if cuda else CPU_SUFFIX_CHUNK),
                "repeats": repeats,
                "batch_size": args.batch_size,
                "dtype": "fp32",
                "data": data.source,
                "threads": torch.get_num_threads(),
            },
        },
    )


if __name__ == "__main__":
    main()
