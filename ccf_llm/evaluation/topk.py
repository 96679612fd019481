"""Top-K recommendation on a test split: CF retrieval from the model's own tables, alone and reranked by the LLM.

Protocol: each test user with a liked test item; its candidates are every catalog item except those it rated in
train and those in its history (the items it liked before its first test row); relevant are its liked test items.
CF retrieval ranks the candidates by ``user_cf[u] @ item_cf[i]`` (``CCFLLMForCTR.retrieve_candidates``); the
rerank scores the top ``num_candidates`` of them with the LLM on one shared prompt prefix (``rank_candidates``)
and orders them by that score (ties: CF order). Users without train rows, whose CF row was never trained,
retrieve from their history as an unknown user does; the LLM reads their id, as the CTR evaluation does.

Metrics per user at K, then averaged: HR (a relevant item in the top K), Recall (relevant items in the top K over
all relevant ones) and NDCG (binary gains, the ideal list holding min(relevant, K) of them). Intervals resample
users (BCa bootstrap of the mean); the rerank's difference from CF retrieval is paired, on the same users.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm.auto import tqdm

from modeling_ccf import CCFLLMForCTR, retrieve_from_tables
from processing_ccf import CCFLLMProcessor

from ..atomic import write_text_atomically
from ..data import CTRData

METRICS = ("hr", "ndcg", "recall")
METHODS = {"cf": "CF retrieval", "rerank": "CF retrieval + LLM rerank"}
# (user id, history, num_candidates, items to leave out) -> item ids, best first
Retrieve = Callable[[int, list[int], int, set[int]], list[int]]
# (user id, history, candidates) -> one LLM score per candidate
Rerank = Callable[[int, list[int], list[int]], list[float]]


@dataclass
class TopKUser:
    """One test user: what it liked before the test period, what it rated in train, what it liked in test."""

    uid: int
    history: list[int]
    seen: set[int]
    relevant: set[int]
    warm: bool  # has train rows, so its CF row was trained


def topk_users(data: CTRData, split: str = "test") -> list[TopKUser]:
    """The users of ``split`` with a liked item there that is still a candidate, by id."""
    train = data.splits["train"].select_columns(["uid", "iid"]).to_pandas()
    rows = data.splits[split].select_columns(["uid", "iid", "label", "timestamp", "his"]).to_pandas()
    seen = train.groupby("uid")["iid"].agg(set).to_dict()
    # each user's first row (split order breaks equal timestamps): its history as the period starts
    first = rows.sort_values("timestamp", kind="stable").drop_duplicates("uid")
    history = {
        int(u): [int(i) for i in his if i > 0] for u, his in zip(first["uid"], first["his"], strict=True)
    }
    liked = rows[rows["label"] > 0].groupby("uid")["iid"].agg(set).to_dict()
    users = []
    for uid in sorted(liked):
        rated = {int(item) for item in seen.get(uid, ())}
        relevant = {int(item) for item in liked[uid]} - rated - set(history[int(uid)])
        if relevant:
            users.append(TopKUser(int(uid), history[int(uid)], rated, relevant, uid in seen))
    return users


def sample_users(users: list[TopKUser], count: int, seed: int = 0) -> list[TopKUser]:
    """A fixed random sample of ``count`` users (0: all), in id order."""
    if count <= 0 or count >= len(users):
        return list(users)
    return sorted(random.Random(seed).sample(users, count), key=lambda user: user.uid)


def ranking_metrics(ranked: Sequence[int], relevant: set[int], k: int) -> dict[str, float]:
    """HR, NDCG and Recall at ``k`` of one ranked list (binary relevance)."""
    hits = [item in relevant for item in ranked[:k]]
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return {
        "hr": float(any(hits)),
        "ndcg": sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit) / ideal,
        "recall": sum(hits) / len(relevant),
    }


def per_user_metrics(
    users: list[TopKUser],
    retrieve: Retrieve,
    rerank: Rerank | None,
    num_candidates: int = 50,
    k: int = 10,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per user: ``uid``, ``warm``, ``relevant`` and ``<method>_<metric>`` for CF retrieval and, given
    ``rerank``, for the reranked top ``num_candidates``."""
    if num_candidates < k:
        raise ValueError(
            f"num_candidates ({num_candidates}) must be at least k ({k}): the rerank fills the top k"
        )
    table = []
    for user in tqdm(users, desc="top-k users", disable=not progress):
        candidates = retrieve(user.uid if user.warm else 0, user.history, num_candidates, user.seen)
        row = {"uid": user.uid, "warm": user.warm, "relevant": len(user.relevant)}
        row |= {f"cf_{name}": value for name, value in ranking_metrics(candidates, user.relevant, k).items()}
        if rerank is not None:
            scores = rerank(user.uid, user.history, candidates)
            order = sorted(range(len(candidates)), key=lambda rank: (-scores[rank], rank))
            reranked = [candidates[rank] for rank in order]
            row |= {
                f"rerank_{name}": value for name, value in ranking_metrics(reranked, user.relevant, k).items()
            }
        table.append(row)
    return pd.DataFrame(table)


def mean_interval(
    values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The mean with a BCa bootstrap interval over users; all-equal values (e.g. a difference of 0 everywhere)
    have no spread to resample, so their interval is the value itself."""
    values = np.asarray(values, dtype=np.float64)
    estimate = float(values.mean())
    if np.ptp(values) == 0:
        return {"estimate": estimate, "low": estimate, "high": estimate}
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return {"estimate": estimate, "low": float(interval.low), "high": float(interval.high)}


def summarize(
    frame: pd.DataFrame, k: int = 10, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> dict[str, dict]:
    """Per method: ``metrics`` (means), ``intervals`` ([low, high]) and the warm / cold users' means; the
    rerank also ``minus_cf``, its paired difference from CF retrieval with intervals. Metric names end in ``@k``."""

    def rounded(value: float) -> float:
        return round(value, 4)

    options = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    summary = {}
    for method in METHODS:
        if f"{method}_hr" not in frame:
            continue
        intervals = {name: mean_interval(frame[f"{method}_{name}"], **options) for name in METRICS}
        entry = {
            "metrics": {f"{name}@{k}": rounded(intervals[name]["estimate"]) for name in METRICS},
            "intervals": {
                f"{name}@{k}": [rounded(intervals[name]["low"]), rounded(intervals[name]["high"])]
                for name in METRICS
            },
        }
        for group, members in (("warm", frame["warm"]), ("cold", ~frame["warm"])):
            part = frame[members]
            entry[group] = {
                "users": len(part),
                **{
                    f"{name}@{k}": rounded(part[f"{method}_{name}"].mean()) if len(part) else None
                    for name in METRICS
                },
            }
        if method == "rerank":
            entry["minus_cf"] = {}
            for name in METRICS:
                difference = mean_interval(frame[f"rerank_{name}"] - frame[f"cf_{name}"], **options)
                entry["minus_cf"][f"{name}@{k}"] = {key: rounded(value) for key, value in difference.items()}
        summary[method] = entry
    return summary


# --- what retrieves and reranks ---------------------------------------------------------------------------


def model_recommender(
    model: CCFLLMForCTR, processor: CCFLLMProcessor, bf16: bool = False
) -> tuple[Retrieve, Rerank]:
    """Retrieval from the model's CF tables over its catalog, and the LLM's scores on one shared prefix, in bf16
    autocast when ``bf16``."""
    model.eval()
    pool = sorted(processor.catalog)
    device = model.device

    def retrieve(uid: int, history: list[int], count: int, seen: set[int]) -> list[int]:
        return model.retrieve_candidates(uid, history, count, exclude=seen, pool=pool)[0].tolist()

    def rerank(uid: int, history: list[int], candidates: list[int]) -> list[float]:
        prefix, suffixes = processor.encode_ranking(history, candidates, uid)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            scores = model.rank_candidates(prefix.to(device), suffixes.to(device))
        return scores.float().tolist()

    return retrieve, rerank


def tables_retriever(user_table: torch.Tensor, item_table: torch.Tensor, catalog: Sequence[int]) -> Retrieve:
    """The same retrieval on exported CF tables alone (``scripts/train_cf.py --out``), without an LLM."""
    pool = sorted(catalog)

    def retrieve(uid: int, history: list[int], count: int, seen: set[int]) -> list[int]:
        ids, _ = retrieve_from_tables(user_table, item_table, uid, history, count, exclude=seen, pool=pool)
        return ids.tolist()

    return retrieve


# --- the results file ---------------------------------------------------------------------------------


def upsert_topk(path: str | os.PathLike, rows: list[dict], dataset: str = "ml-1m") -> dict:
    """``{"dataset", "rows"}`` at ``path``, each row replacing the one with the same method, experiment (or
    model) and users."""
    target = Path(path)
    content = json.loads(target.read_text()) if target.is_file() else {"dataset": dataset, "rows": []}
    if content.get("dataset") != dataset:
        raise ValueError(f"{target}: holds dataset {content.get('dataset')!r}, not {dataset!r}")

    def key(row: dict) -> tuple:
        return row["method"], row.get("experiment") or row.get("model"), row["users"]

    for row in rows:
        keys = [key(old) for old in content["rows"]]
        if key(row) in keys:  # keep the row's place, so diffs of the file stay readable
            content["rows"][keys.index(key(row))] = row
        else:
            content["rows"].append(row)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, json.dumps(content, indent=2) + "\n")
    return content
