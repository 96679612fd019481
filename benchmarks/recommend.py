"""Recommending 10 of 50 for one user: CF retrieval from the model's tables + one shared-prefix rerank, vs scoring
the same 50 candidates one forward call at a time; in fp32 so the scores can be compared (max |difference| < 1e-4).

Both sides start from the user's id and history and include building their prompts. Recommend:
``retrieve_candidates`` (the user's CF row against every item row), ``encode_ranking`` and ``rank_candidates``,
then the top ``--top-k``. One by one: one prompt and one ``forward`` per retrieved candidate (the retrieval is
shared, so it is not counted there). The CF tables are random; the time does not depend on their values.
"""

from __future__ import annotations

import torch

from benchmarks import common

TOLERANCE = 1e-4


def main(argv: list[str] | None = None) -> dict:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--candidates", type=int, default=50, help="CF candidates the LLM reranks")
    args.add_argument("--top-k", type=int, default=10)
    args.add_argument("--repeats", type=int, help="timed recommendations (default: 3 on CPU, 10 on GPU)")
    args = args.parse_args(argv)
    cuda = common.device().type == "cuda"
    repeats = args.repeats or (10 if cuda else 3)

    tokenizer = common.load_tokenizer(args)
    data = common.load_data(args.tiny, "test")
    backbone = common.make_backbone(args, tokenizer, torch.float32)
    ours, processor = common.build_ours(backbone, tokenizer, data, torch.float32)
    del backbone
    ours.eval()
    pool = sorted(data.catalog)

    def left(row: dict) -> int:  # catalog items outside the row's history: what can be retrieved
        return len(set(pool) - set(row["his"]))

    # the longest history that leaves the candidates to retrieve (on the tiny catalog, not every one does)
    row = max(
        common.sample_rows(data, 200, args.seed), key=lambda r: (left(r) >= args.candidates, len(r["his"]))
    )
    user, history = row["uid"], [item for item in row["his"] if item > 0]
    vocab = ours.config.text_config.vocab_size
    keep = (processor.user_token_id, processor.item_token_id)

    def to_device(batch: dict) -> dict:
        batch = {key: value.to(common.device()) for key, value in batch.items()}
        batch["history_ids"] = batch["history_ids"].long()
        batch["input_ids"] = common.fold_ids(batch["input_ids"], vocab, keep)
        return batch

    def recommend() -> tuple[list[int], torch.Tensor]:
        ids = ours.retrieve_candidates(user, history, args.candidates, pool=pool)[0].tolist()
        prefix, suffixes = (to_device(b) for b in processor.encode_ranking(history, ids, user))
        scores = ours.rank_candidates(prefix, suffixes)
        return ids, scores

    def one_by_one(ids: list[int], kept: list[int]) -> torch.Tensor:
        return torch.cat([ours(**to_device(processor([kept], [item], [user]))).logits for item in ids])

    with torch.inference_mode():
        ids, scores = recommend()  # warm-up: on GPU every shape once (cuDNN plans)
        prefix, _ = processor.encode_ranking(history, ids, user)
        kept = prefix["history_ids"][
            0
        ].tolist()  # encode_ranking may trim the history to fit the longest candidate
        one_by_one(ids if cuda else ids[:1], kept)
        retrieve_seconds, _ = common.timed(
            lambda: [
                ours.retrieve_candidates(user, history, args.candidates, pool=pool) for _ in range(repeats)
            ]
        )
        recommend_seconds, recommended = common.timed(lambda: [recommend() for _ in range(repeats)])
        single_seconds, single = common.timed(lambda: one_by_one(ids, kept))
    recommend_seconds /= repeats
    ids, scores = recommended[-1]
    difference = (scores - single).abs().max().item()
    top = scores.argsort(descending=True, stable=True)[: args.top_k].tolist()
    return common.write_result(
        "recommend",
        args,
        {
            "ratio": round(single_seconds / recommend_seconds, 3),
            "target": f"none (recommend vs one forward per candidate), max |score difference| < {TOLERANCE}",
            "max_abs_score_difference": difference,
            "scores_equal": difference < TOLERANCE,
            "seconds": {
                "recommend": round(recommend_seconds, 4),
                "retrieve_candidates": round(retrieve_seconds / repeats, 5),
                "one_by_one": round(single_seconds, 4),
            },
            "recommended": [ids[rank] for rank in top],
            "settings": {
                "candidates": len(ids),
                "top_k": args.top_k,
                "catalog_items": len(pool),
                "history_items": len(history),
                "prompt_history_items": len(kept),
                "repeats": repeats,
                "dtype": "fp32",
                "data": data.source,
                "threads": torch.get_num_threads(),
            },
        },
    )


if __name__ == "__main__":
    main()
