"""The content-aware baseline: its features, its tuning on valid, and the run folder it writes."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from datasets import DatasetDict

from ccf_llm.baselines.content import (
    build_features,
    fit_content_baseline,
    genre_matrix,
    history_overlap,
    release_year,
)
from ccf_llm.data import load_split
from ccf_llm.data.schema import frame_to_dataset
from ccf_llm.evaluation.compare import compare_runs, read_scores
from ccf_llm.evaluation.results import check_row
from ccf_llm.metrics import ctr_metrics
from ccf_llm.testing.tiny_run import tiny_ctr_data

ATTRIBUTES = {  # the tiny catalog's items (8 has none: the empty attribute)
    1: "animation, children's, comedy",
    2: "action, crime, thriller",
    3: "crime, drama, thriller",
    4: "action, sci-fi",
    5: "children's, comedy",
    6: "horror, sci-fi",
    7: "adventure, children's",
}
USERS = pd.DataFrame(
    {
        "uid": [1, 2, 3, 4],  # user 5 is not in the table
        "gender": ["M", "F", None, "m"],
        "age": [25.0, 1.0, None, 56.0],
        "occupation": [12.0, 0.0, None, 4.0],
    }
)
SMALL_GBDT = {
    "learning_rate": [0.001, 0.3],
    "max_leaf_nodes": [3, 15],
    "l2_regularization": [0.0],
    "max_iter": [30],
}


def noisy_data(seed: int = 0):
    """The tiny split with attributes, users and a quarter of the labels flipped, so settings score differently."""
    data = tiny_ctr_data({"train": 240, "valid": 80, "test": 80}, seed=seed)
    rng = np.random.default_rng(seed)
    splits = {}
    for split in data.splits:
        frame = data.splits[split].to_pandas()
        frame["label"] = np.where(rng.random(len(frame)) < 0.25, 1 - frame["label"], frame["label"])
        splits[split] = frame_to_dataset(frame)
    data.splits = DatasetDict(splits)
    data.item_attributes = dict(ATTRIBUTES)
    data.users = USERS.copy()
    return data


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Heat (1995)", 1995.0),
        ("Seven (Se7en) (1995)", 1995.0),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995) ", 1995.0),
        ("(1995) Remake", None),
        ("Untitled", None),
    ],
)
def test_release_year_is_the_title_s_last_parenthesised_year(title: str, year: float | None) -> None:
    got = release_year(title)
    assert (np.isnan(got) and year is None) or got == year


def test_genre_matrix_and_history_overlap() -> None:
    genres, names = genre_matrix({1: "comedy, crime", 2: "crime", 3: "drama", 9: "comedy"}, n_items=4)
    assert names == ["comedy", "crime", "drama"]
    assert genres.shape == (5, 3) and not genres[0].any() and not genres[4].any()
    assert genres[1].tolist() == [1, 1, 0]
    his = [[0, 1, 2, 3], [0], [0, 3, 0]]  # padding 0 is no history item
    overlap = history_overlap(his, np.array([2, 1, 1]), genres)
    assert overlap["history_length"].tolist() == [3, 0, 1]
    # row 0: candidate crime; history 1 (comedy, crime), 2 (crime), 3 (drama) -> 2 of 3 share a genre;
    # history genre counts (1, 2, 1) against (0, 1, 0): cosine 2 / sqrt(6)
    assert overlap["history_genre_share"][0] == pytest.approx(2 / 3)
    assert overlap["history_genre_cosine"][0] == pytest.approx(2 / np.sqrt(6))
    assert overlap.iloc[1, 1:].isna().all()  # no history: nothing to compare
    assert overlap["history_genre_share"][2] == 0.0 and overlap["history_genre_cosine"][2] == 0.0


def test_features_of_the_tiny_split() -> None:
    data = noisy_data()
    features = build_features(data)
    valid = features.frames["valid"]
    rows = data.splits["valid"].to_pandas()
    assert len(valid) == len(rows) and list(valid.columns) == features.columns
    assert valid["year"].tolist() == [release_year(data.items[iid]) for iid in rows["iid"]]
    assert valid["genre=sci-fi"].tolist() == [float(iid in (4, 6)) for iid in rows["iid"]]
    demographics = valid[["gender", "age"]].to_numpy()
    by_user = dict(zip(rows["uid"], map(tuple, demographics), strict=True))
    assert by_user[1] == (1.0, 25.0) and by_user[4] == (1.0, 56.0)
    assert all(np.isnan(value) for value in by_user[5])  # not in the users table
    train = data.splits["train"].to_pandas()
    counts = train.groupby("uid").size()
    assert valid["user_count"].tolist() == [float(counts.get(uid, 0)) for uid in rows["uid"]]
    assert features.categorical == ["occupation"]


def test_train_rows_never_see_their_own_label() -> None:
    """Cross-fitting: flipping one train label leaves that row's label statistics unchanged."""
    data = noisy_data()
    before = build_features(data).frames["train"]
    train = data.splits["train"].to_pandas()
    train.loc[0, "label"] = 1 - train.loc[0, "label"]
    data.splits["train"] = frame_to_dataset(train)
    after = build_features(data).frames["train"]
    stats = ["user_rate", "item_rate", "user_genre_rate"]
    assert before.loc[0, stats].tolist() == after.loc[0, stats].tolist()
    assert not before[stats].equals(after[stats])  # other folds did learn from it


def test_groups_the_data_cannot_feed_are_left_out() -> None:
    data = tiny_ctr_data()  # no attributes, no users
    features = build_features(data)
    assert features.groups == ("ids", "year")
    with pytest.raises(ValueError, match=r"unknown feature group\(s\) \['titles'\]"):
        build_features(data, ["ids", "titles"])


@pytest.mark.parametrize(("model", "grid"), [("gbdt", SMALL_GBDT), ("logreg", {"C": [1e-4, 1.0]})])
def test_tuning_keeps_the_best_valid_auc(model: str, grid: dict) -> None:
    data = noisy_data()
    run = fit_content_baseline(data, model, grid=grid)
    aucs = [point["valid_auc"] for point in run.grid]
    assert len(run.grid) == int(np.prod([len(values) for values in grid.values()]))
    assert len(set(aucs)) > 1  # the grid matters here, so picking is tested
    best = run.grid[int(np.argmax(aucs))]
    assert run.best == {key: value for key, value in best.items() if key != "valid_auc"}
    rows = {split: data.splits[split].to_pandas() for split in ("valid", "test")}
    for split in ("valid", "test"):
        again = ctr_metrics(
            rows[split]["label"], run.scores[split], rows[split]["uid"], rows[split]["not_cold"]
        )
        assert again == run.metrics[split]
    assert run.metrics["valid"]["auc"] == pytest.approx(max(aucs), abs=5e-5)
    if model == "gbdt":
        assert 1 <= run.best["trees"] <= 30


def test_run_folder_pairs_with_compare_runs(tmp_path) -> None:
    data = noisy_data()
    run = fit_content_baseline(data, "logreg", grid={"C": [1.0]})
    row = run.row(command="python scripts/train_content.py", device="cpu", experiment="content-lr")
    check_row(row)
    assert row["method"] == "Content LR" and row["protocol"] == "full"
    assert (row["train_rows"], row["test_rows"]) == (240, 80)
    assert row["settings"]["features"] == ["ids", "user_genre", "year", "genres", "history", "demographics"]
    out = run.save(tmp_path / "content", row)
    report = json.loads((out / "metrics.json").read_text())
    assert report["row"]["test"]["auc"] == round(run.metrics["test"]["auc"], 4)
    assert report["grid"] == run.grid and report["features"] == run.columns
    test = read_scores(out, "test")
    assert test["uid"].tolist() == data.splits["test"].to_pandas()["uid"].tolist()
    assert np.allclose(test["score"], run.scores["test"])
    table = compare_runs([out, out], baseline=out, n_resamples=50)
    assert table["auc"].tolist() == pytest.approx([run.metrics["test"]["auc"]] * 2)


def test_script_writes_the_folder_and_the_results_row(tmp_path, load_script, monkeypatch, capsys) -> None:
    noisy_data().save(tmp_path / "split")
    assert load_split(tmp_path / "split").item_attributes == ATTRIBUTES
    out, results = tmp_path / "run", tmp_path / "results.json"
    argv = ["train_content.py", "--data", str(tmp_path / "split"), "--model", "logreg", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--results", str(results), "--experiment", "content-lr"])
    load_script("train_content").main()
    rows = json.loads(results.read_text())["rows"]
    assert [row["experiment"] for row in rows] == ["content-lr"]
    assert rows[0] == json.loads((out / "metrics.json").read_text())["row"]
    assert (out / "valid_scores.parquet").is_file() and "auc_warm" in capsys.readouterr().out
