"""Requests/s of the pipeline on a list of single-candidate requests: ``batch_size=16`` vs one by one.

Requests: every test row of randomly drawn users, as a caller would send them (user id, history ids,
candidate id). One by one is the HF pipeline's own loop (one forward per request); batched sorts the
requests so that a user's requests with the same history share one prefix computation, and scores
``--batch-size`` of them per forward. Both in fp32 so their scores can be compared (max |difference|).
"""

from __future__ import annotations

import torch

from benchmarks import common
from pipeline_ccf import CCFLLMPipeline

TOLERANCE = 1e-4


def main(argv: list[str] | None = None) -> dict:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--requests", type=int, help="default: 96 on CPU, 1,024 on GPU")
    args.add_argument("--batch-size", type=int, default=16)
    args = args.parse_args(argv)
    if args.backbone == "llama7b" and not args.tiny:
        raise SystemExit("pipeline_throughput runs SmolLM2 (real or --random-weights) or --tiny")
    cuda = common.device().type == "cuda"
    count = args.requests or (8 if args.tiny else 1024 if cuda else 96)

    tokenizer = common.load_tokenizer(args)
    data = common.load_data(args.tiny, "test")
    backbone = common.make_backbone(args, tokenizer, torch.float32)
    model, processor = common.build_ours(backbone, tokenizer, data, torch.float32)
    del backbone
    pipe = CCFLLMPipeline(model=model, processor=processor, device=common.device())
    requests = [
        {"user_id": row["uid"], "history": [item for item in row["his"] if item > 0], "candidate": row["iid"]}
        for row in common.sample_users(data, count, args.seed)
    ]

    pipe(requests[: args.batch_size], batch_size=args.batch_size)  # warm-up of both paths
    pipe(requests[0])
    batched_seconds, batched = common.timed(lambda: pipe(requests, batch_size=args.batch_size))
    single_seconds, single = common.timed(lambda: pipe(requests))
    difference = max(abs(a[0]["score"] - b[0]["score"]) for a, b in zip(batched, single, strict=True))
    return common.write_result(
        "pipeline_throughput",
        args,
        {
            "ratio": round(single_seconds / batched_seconds, 3),
            "target": f"none (batch_size={args.batch_size} vs 1), max |score difference| < {TOLERANCE}",
            "max_abs_score_difference": difference,
            "scores_equal": difference < TOLERANCE,
            "requests_per_s": {
                "batched": round(count / batched_seconds, 2),
                "one_by_one": round(count / single_seconds, 2),
            },
            "seconds": {"batched": round(batched_seconds, 3), "one_by_one": round(single_seconds, 3)},
            "settings": {
                "requests": count,
                "batch_size": args.batch_size,
                "dtype": "fp32",
                "data": data.source,
                "threads": torch.get_num_threads(),
            },
        },
    )


if __name__ == "__main__":
    main()
