"""Recommendations without given candidates: CF retrieval from the model's tables, the LLM rerank, top-K evaluation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import DatasetDict

from ccf_llm.data import CTRData
from ccf_llm.data.schema import frame_to_dataset
from ccf_llm.evaluation.topk import (
    mean_interval,
    per_user_metrics,
    ranking_metrics,
    sample_users,
    summarize,
    topk_users,
)
from ccf_llm.testing import make_tiny
from ccf_llm.testing.fresh import BLOCK_REPO_MODULES
from ccf_llm.testing.make_tiny import TINY_CATALOG, tiny_model
from ccf_llm.testing.tiny_run import write_tiny_run_inputs
from modeling_ccf import CCFLLMForCTR, retrieve_from_tables
from pipeline_ccf import CCFLLMPipeline
from processing_ccf import CCFLLMProcessor

HISTORY = [1, 3, 7]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, one_thread) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def model(folder: Path) -> CCFLLMForCTR:
    return CCFLLMForCTR.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def processor(folder: Path) -> CCFLLMProcessor:
    return CCFLLMProcessor.from_pretrained(folder)


# --- retrieval -----------------------------------------------------------------------------------------


def test_retrieval_is_the_users_cf_row_against_every_item_row(model: CCFLLMForCTR) -> None:
    ids, scores = model.retrieve_candidates(2, HISTORY, num_candidates=50)
    expected = model.item_cf.weight.double() @ model.user_cf.weight[2].double()
    allowed = [item for item in range(1, model.config.num_items) if item not in HISTORY]
    assert ids.tolist() == sorted(allowed, key=lambda item: -expected[item].item())
    assert scores.tolist() == pytest.approx(expected[ids].tolist())
    assert ids.tolist()[:3] == model.retrieve_candidates(2, HISTORY, num_candidates=3)[0].tolist()


@pytest.mark.parametrize("user", [0, 1, 4, 99, -3])
def test_history_exclude_and_padding_never_come_back(model: CCFLLMForCTR, user: int) -> None:
    for exclude in ([], [2], [2, 5, 8, 99]):
        ids = model.retrieve_candidates(user, HISTORY, 50, exclude=exclude)[0].tolist()
        assert ids and not set(ids) & {0, *HISTORY, *exclude}
        assert len(ids) == len(set(ids)) == model.config.num_items - 1 - len({*HISTORY, *exclude} - {99})


def test_pool_restricts_the_candidates(model: CCFLLMForCTR) -> None:
    ids = model.retrieve_candidates(2, HISTORY, 50, exclude=[4], pool=[1, 2, 4, 5, 99])[0].tolist()
    assert sorted(ids) == [2, 5]  # 1: history, 4: excluded, 99: no CF row
    assert model.retrieve_candidates(2, HISTORY, 50, pool=[1, 3])[0].tolist() == []


def test_retrieval_is_deterministic_and_breaks_ties_by_id() -> None:
    users = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 5.0], [1.0, 3.0], [2.0, -1.0], [1.0, 1.0]])
    ids, scores = retrieve_from_tables(users, items, 1, [], 5)
    assert ids.tolist() == [2, 4, 1, 3, 5] and scores.tolist() == [2, 2, 1, 1, 1]
    for _ in range(3):
        assert retrieve_from_tables(users, items, 1, [], 5)[0].tolist() == ids.tolist()


def test_unknown_user_retrieves_from_its_history(model: CCFLLMForCTR) -> None:
    """Id 0 and ids without a row alike: the mean of the history items' rows is the user's row."""
    items = model.item_cf.weight.double()
    expected = items @ items[HISTORY].mean(0)
    ids, scores = model.retrieve_candidates(0, HISTORY, 50)
    assert scores.tolist() == pytest.approx(expected[ids].tolist())
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)
    assert model.retrieve_candidates(99, HISTORY, 50)[0].tolist() == ids.tolist()
    other = model.retrieve_candidates(0, [2, 6], 50)[0].tolist()
    assert other != [item for item in ids.tolist() if item not in (2, 6)]  # the history moves the ranking
    without = model.retrieve_candidates(0, [], 50)  # no history: the mean user row
    mean_user = model.user_cf.weight.double()[1:].mean(0)
    assert without[1].tolist() == pytest.approx((items[without[0]] @ mean_user).tolist())


def test_unknown_user_keeps_whole_item_biases_in_bias_tables() -> None:
    """Biases tables (user [b_u + b_0, 1], item [1, b_i]): an unknown user ranks by popularity b_i, even when its
    history's items are unpopular (a plain mean of their rows would turn the order round)."""
    item_bias = torch.tensor([0.0, -2.0, -1.5, 0.5, 1.0, -0.2])
    items = torch.stack([torch.ones(6), item_bias], dim=1)
    items[0] = 0
    users = torch.tensor([[0.0, 0.0], [0.3, 1.0], [-0.4, 1.0]])
    ids, _ = retrieve_from_tables(users, items, 0, [1, 2], 10)
    assert ids.tolist() == [4, 3, 5]
    assert retrieve_from_tables(users, items, 1, [1, 2], 10)[0].tolist() == [4, 3, 5]


def test_retrieval_refuses_a_model_without_cf_tables_and_bad_counts(model: CCFLLMForCTR) -> None:
    text_only, _ = tiny_model(fusion="text_only")
    with pytest.raises(ValueError, match="no CF tables"):
        text_only.retrieve_candidates(1, HISTORY)
    for count in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_candidates"):
            model.retrieve_candidates(1, HISTORY, count)


def test_reranked_scores_equal_one_by_one_scores(model: CCFLLMForCTR, processor: CCFLLMProcessor) -> None:
    history = [1, "Fargo (1996)", 7]
    ids = model.retrieve_candidates(3, [1, 3, 7], 5)[0].tolist()
    prefix, suffixes = processor.encode_ranking(history, ids, 3)
    reranked = model.rank_candidates(prefix, suffixes)
    with torch.no_grad():
        single = [model(**processor([history], [item], [3])).logits.item() for item in ids]
    assert reranked.tolist() == pytest.approx(single, abs=1e-4)


# --- top-K evaluation ----------------------------------------------------------------------------------


def test_ranking_metrics_at_k() -> None:
    metrics = ranking_metrics([5, 1, 7, 9], {1, 9}, k=3)
    ideal = 1 + 1 / math.log2(3)
    assert metrics == pytest.approx({"hr": 1.0, "ndcg": (1 / math.log2(3)) / ideal, "recall": 0.5})
    assert ranking_metrics([5, 7], {1}, k=3) == {"hr": 0.0, "ndcg": 0.0, "recall": 0.0}
    assert ranking_metrics(list(range(20)), set(range(12)), k=10) == pytest.approx(
        {"hr": 1.0, "ndcg": 1.0, "recall": 10 / 12}
    )


def split_frame(rows: list[tuple[int, int, int, list[int]]], start: int) -> pd.DataFrame:
    """(uid, iid, label, history) rows in time order."""
    return pd.DataFrame(
        {
            "uid": [row[0] for row in rows],
            "iid": [row[1] for row in rows],
            "label": [row[2] for row in rows],
            "timestamp": start + np.arange(len(rows)),
            "his": [[0, *row[3]] for row in rows],
            "title": [TINY_CATALOG[row[1]] for row in rows],
            "not_cold": np.ones(len(rows), int),
        }
    )


def small_data() -> CTRData:
    """Users 1 and 2 rated items in train; user 3 has no train rows (cold); user 4 likes nothing in test."""
    train = [(1, 1, 1, []), (1, 2, 0, [1]), (2, 3, 1, []), (2, 4, 1, [3])]
    valid = [(1, 5, 1, [1]), (2, 6, 0, [3, 4])]
    test = [
        (1, 6, 1, [1, 5]),
        (1, 7, 1, [1, 5, 6]),
        (2, 8, 1, [3, 4]),
        (3, 2, 1, [7]),
        (3, 8, 0, [7, 2]),
        (4, 1, 0, [2]),
    ]
    splits = {
        name: frame_to_dataset(split_frame(rows, start))
        for name, rows, start in (("train", train, 0), ("valid", valid, 10), ("test", test, 20))
    }
    return CTRData(DatasetDict(splits), dict(TINY_CATALOG), name="small")


def test_test_users_hold_history_seen_and_relevant_items() -> None:
    users = {user.uid: user for user in topk_users(small_data())}
    assert sorted(users) == [1, 2, 3]  # user 4 has no liked test item
    first = users[1]
    assert (first.history, first.seen, first.relevant, first.warm) == ([1, 5], {1, 2}, {6, 7}, True)
    assert (users[2].history, users[2].seen, users[2].relevant) == ([3, 4], {3, 4}, {8})
    assert (users[3].history, users[3].seen, users[3].relevant, users[3].warm) == ([7], set(), {2}, False)
    every = topk_users(small_data())
    assert sample_users(every, 0) == every == sample_users(every, 5)
    two = sample_users(every, 2, seed=1)
    assert len(two) == 2 and two == sample_users(every, 2, seed=1)
    assert [user.uid for user in two] == sorted(user.uid for user in two)


def test_per_user_metrics_rank_cf_then_the_rerank() -> None:
    users = topk_users(small_data())
    calls = []

    def retrieve(uid: int, history: list[int], count: int, seen: set[int]) -> list[int]:
        calls.append((uid, count, seen))
        return [item for item in (8, 7, 6, 5, 4, 3, 2, 1) if item not in seen and item not in history][:count]

    def rerank(uid: int, history: list[int], candidates: list[int]) -> list[float]:
        return [-float(item) for item in candidates]  # the lowest id first

    frame = per_user_metrics(users, retrieve, rerank, num_candidates=3, k=1, progress=False)
    assert calls[2][0] == 0 and calls[0][0] == 1  # the cold user retrieves as an unknown user
    assert frame["uid"].tolist() == [1, 2, 3] and frame["warm"].tolist() == [True, True, False]
    # top 1 by CF: 8 of [8, 7, 6], 8 of [8, 7, 6], 8 of [8, 6, 5]
    assert frame["cf_hr"].tolist() == [0.0, 1.0, 0.0]
    assert frame["rerank_hr"].tolist() == [1.0, 0.0, 0.0]  # top 1 reranked: 6, 6, 5
    with pytest.raises(ValueError, match="at least k"):
        per_user_metrics(users, retrieve, rerank, num_candidates=2, k=3, progress=False)


def test_summary_intervals_are_paired_over_users() -> None:
    rng = np.random.default_rng(0)
    cf = rng.random(60)
    frame = pd.DataFrame(
        {
            "uid": range(60),
            "warm": [i % 3 > 0 for i in range(60)],
            **{f"cf_{m}": cf for m in ("hr", "ndcg", "recall")},
        }
    )
    for name in ("hr", "ndcg", "recall"):
        frame[f"rerank_{name}"] = cf + 0.05 + rng.normal(0, 0.01, 60)
    summary = summarize(frame, k=10, n_resamples=500)
    difference = summary["rerank"]["minus_cf"]["ndcg@10"]
    assert 0.04 < difference["low"] < difference["estimate"] < difference["high"] < 0.06  # paired: narrow
    low, high = summary["cf"]["intervals"]["ndcg@10"]
    assert high - low > 10 * (difference["high"] - difference["low"])  # unpaired spread is much wider
    assert summary["cf"]["warm"]["users"] == 40 and summary["cf"]["cold"]["users"] == 20
    same = summarize(frame.assign(**{f"rerank_{m}": cf for m in ("hr", "ndcg", "recall")}), n_resamples=200)
    assert same["rerank"]["minus_cf"]["hr@10"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert mean_interval(np.ones(5)) == {"estimate": 1.0, "low": 1.0, "high": 1.0}


def test_evaluate_topk_script_writes_rows_for_a_model_and_for_cf_tables(
    folder: Path, tmp_path: Path, load_script
) -> None:
    script = load_script("evaluate_topk")
    data = small_data().save(tmp_path / "data")
    out = tmp_path / "results" / "topk.json"
    common = ["--data", str(data), "--users", "0", "--k", "2", "--out", str(out), "--no-progress"]
    rows = script.main(
        [str(folder), "--num-candidates", "3", "--bf16", "false", "--resamples", "200", *common]
    )
    assert [row["method"] for row in rows] == ["CF retrieval", "CF retrieval + LLM rerank"]
    assert all(row["users"] == 3 and row["user_sample"] == {"of": 3, "seed": 0} for row in rows)
    assert set(rows[1]["minus_cf"]) == {"hr@2", "ndcg@2", "recall@2"} and rows[1]["num_candidates"] == 3
    assert rows[0]["command"].startswith("python scripts/evaluate_topk.py ")
    for row in rows:
        assert all(0 <= value <= 1 for value in row["metrics"].values())
    cf_dir = write_tiny_run_inputs(tmp_path / "inputs")["cf"]
    script.main(["--cf-only", str(cf_dir), *common])
    script.main(["--cf-only", str(cf_dir), *common])  # the same row again: replaced, not added
    written = json.loads(out.read_text())
    assert written["dataset"] == "data"
    assert [(row["method"], row["model"]) for row in written["rows"]] == [
        ("CF retrieval", str(folder)),
        ("CF retrieval + LLM rerank", str(folder)),
        ("CF retrieval", str(cf_dir)),
    ]
    with pytest.raises(SystemExit):
        script.main([str(folder), "--cf-only", str(cf_dir), *common])


# --- the pipeline: a request without candidates recommends ---------------------------------------------


@pytest.fixture(scope="module")
def pipe(model: CCFLLMForCTR, processor: CCFLLMProcessor) -> CCFLLMPipeline:
    return CCFLLMPipeline(model=model, processor=processor, device="cpu")


def test_recommendations_leave_out_history_and_exclude(pipe: CCFLLMPipeline) -> None:
    request = {"user_id": 2, "history": [1, "Fargo"], "exclude": [2, "The Matrix"]}
    rows = pipe(request)
    assert [row["item_id"] for row in rows] and not {row["item_id"] for row in rows} & {1, 3, 2, 4}
    assert len(rows) == 8 - 4  # every catalog item left: fewer than the default top_k of 10
    assert [row["llm_rank"] for row in rows] == list(range(1, len(rows) + 1))
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    retrieved = pipe.model.retrieve_candidates(2, [1, 3], 50, exclude=[2, 4])[0].tolist()
    assert {row["cf_rank"]: row["item_id"] for row in rows} == dict(enumerate(retrieved, 1))
    assert all(row["item"] == TINY_CATALOG[row["item_id"]] for row in rows)
    assert pipe(request) == rows  # deterministic
    assert pipe([request, {"candidate": 5}, request], batch_size=2)[::2] == [rows, rows]


def test_num_candidates_top_k_and_pool(pipe: CCFLLMPipeline) -> None:
    rows = pipe({"user_id": 3, "history": [1]}, num_candidates=3, top_k=2)
    assert len(rows) == 2 and {row["cf_rank"] for row in rows} <= {1, 2, 3}
    assert {row["item_id"] for row in pipe({"user_id": 3, "history": [1]}, num_candidates=3)} == set(
        pipe.model.retrieve_candidates(3, [1], 3)[0].tolist()
    )
    pooled = pipe({"history": [1], "pool": [1, 2, 5, "Alien"]})
    assert sorted(row["item_id"] for row in pooled) == [2, 5, 6]
    with pytest.warns(UserWarning, match="not in the item catalog: ignored"):
        assert [row["item_id"] for row in pipe({"history": [1], "pool": [2, 99]})] == [2]
    with pytest.raises(ValueError, match="nothing to recommend"):
        pipe({"history": [1], "pool": [1]})
    with pytest.raises(ValueError, match="num_candidates must be a positive integer"):
        pipe({"history": [1]}, num_candidates=0)


def test_reranked_recommendations_equal_one_by_one_scores(pipe: CCFLLMPipeline) -> None:
    request = {"user_id": 3, "history": [1, "Fargo (1996)", 7]}
    for row in pipe(request, num_candidates=5):
        single = pipe({**request, "candidate": row["item_id"]})[0]["score"]
        assert row["score"] == pytest.approx(single, abs=1e-4)


def test_unknown_user_recommends_from_its_history(pipe: CCFLLMPipeline) -> None:
    with pytest.warns(UserWarning, match="unknown user 999"):
        unknown = pipe({"user_id": 999, "history": [1, 3]})
    assert unknown == pipe({"history": [1, 3]})
    assert not {row["item_id"] for row in unknown} & {1, 3}
    assert pipe({"user_id": 2}) and pipe({"history": []})  # no history: the user's row, or the mean user's


def test_history_only_widget_text_returns_a_ranked_list(pipe: CCFLLMPipeline) -> None:
    rows = pipe("history: Toy Story (1995); Fargo (1996)")
    assert len(rows) == 6 and not {row["item_id"] for row in rows} & {1, 3}
    assert [row["llm_rank"] for row in rows] == list(range(1, 7))
    assert pipe("user: 2 | history: toy story | exclude: Heat", top_k=3) == pipe(
        {"user_id": 2, "history": [1], "exclude": [2]}, top_k=3
    )


def test_a_model_without_cf_tables_cannot_recommend() -> None:
    text_only = CCFLLMPipeline(*tiny_model(fusion="text_only"), device="cpu")
    with pytest.raises(ValueError, match="cannot recommend: this model has no CF tables"):
        text_only({"history": [1]})


FRESH_SCRIPT = BLOCK_REPO_MODULES + textwrap.dedent(
    """
    import importlib.util, json, sys, warnings
    from pathlib import Path

    warnings.simplefilter("ignore")
    import torch
    from transformers import pipeline

    folder = sys.argv[1]
    ctr = pipeline(model=folder, trust_remote_code=True, device="cpu", dtype=torch.float32)
    user = {"user_id": 2, "history": [1, "Fargo (1996)"]}
    request = {**user, "exclude": [2]}
    recommended = ctr(request, num_candidates=5, top_k=4)
    spec = importlib.util.spec_from_file_location("handler", Path(folder) / "handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    text = "user: 3 | history: Toy Story (1995)"
    print(json.dumps({
        "module": type(ctr).__module__,
        "recommended": recommended,
        "again": ctr(request, num_candidates=5, top_k=4),
        "retrieved": ctr.model.retrieve_candidates(2, [1, 3], 5, exclude=[2])[0].tolist(),
        "singles": [ctr({**user, "candidate": row["item_id"]})[0]["score"] for row in recommended],
        "unknown": ctr({"user_id": 999, "history": [1, 3]}, top_k=3),
        "anonymous": ctr({"history": [1, 3]}, top_k=3),
        "widget": ctr("history: Toy Story (1995); Fargo (1996)"),
        "endpoint": handler.EndpointHandler(folder)({"inputs": text, "parameters": {"top_k": 3}}),
        "default": pipeline(model=folder, trust_remote_code=True, device="cpu")(text, top_k=3),
    }))
    """
)


def test_recommendations_in_a_fresh_interpreter(folder: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("HF_MODULES_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_SCRIPT, str(folder)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["module"].startswith("transformers_modules.") and fresh["module"].endswith(".pipeline_ccf")
    rows = fresh["recommended"]
    assert len(rows) == 4 and not {row["item_id"] for row in rows} & {1, 2, 3}
    assert [row["llm_rank"] for row in rows] == [1, 2, 3, 4] and fresh["again"] == rows
    assert all(fresh["retrieved"][row["cf_rank"] - 1] == row["item_id"] for row in rows)
    assert [row["score"] for row in rows] == pytest.approx(fresh["singles"], abs=1e-4)
    assert fresh["unknown"] == fresh["anonymous"] and not {row["item_id"] for row in fresh["unknown"]} & {
        1,
        3,
    }
    assert [row["llm_rank"] for row in fresh["widget"]] == list(range(1, 7))
    assert fresh["endpoint"] == fresh["default"] and len(fresh["endpoint"]) == 3
