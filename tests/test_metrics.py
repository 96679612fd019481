"""CTR metrics against hand-computed cases, the evaluate module, and the results file."""

import json
import math
from pathlib import Path

import evaluate
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ccf_llm.evaluation import split_metrics, upsert_result
from ccf_llm.evaluation.report import RENDERED_DOCUMENTS, render_readme, results_table
from ccf_llm.metrics import CTR_AUC_PATH, auc_interval, ctr_metrics, per_user_auc

# user 1: AUC 3/4; user 2: a tie, AUC 1/2; user 3: one row (skipped); user 4: one class (skipped).
USERS = [1, 1, 1, 1, 2, 2, 3, 4, 4]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 0]
SCORES = [0.9, 0.8, 0.3, 0.1, 0.2, 0.2, 0.5, 0.4, 0.6]
WARM = [1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_hand_computed_case():
    result = ctr_metrics(LABELS, SCORES, USERS, not_cold=WARM)
    # positives .9 .3 .2 .5 vs negatives .8 .1 .2 .4 .6: 5 + 2 + 1.5 + 3 = 11.5 of 20 pairs
    assert result["auc"] == pytest.approx(11.5 / 20)
    assert result["uauc"] == pytest.approx((0.75 + 0.5) / 2)
    assert result["n_users_uauc"] == 2
    assert result["auc_warm"] == pytest.approx(0.75)
    # cold: positives .2 .5 vs negatives .2 .4 .6: 0.5 + 2 = 2.5 of 6 pairs
    assert result["auc_cold"] == pytest.approx(2.5 / 6)


def test_skipped_users_and_single_class_subsets():
    users = per_user_auc(LABELS, SCORES, USERS)
    assert users.to_dict() == {1: 0.75, 2: 0.5}
    result = ctr_metrics([1, 0, 1], [0.3, 0.2, 0.1], [1, 1, 2], not_cold=[1, 1, 0])
    assert math.isnan(result["auc_cold"])  # the cold subset holds only a positive
    assert result["n_users_uauc"] == 1
    assert "auc_warm" not in ctr_metrics([1, 0], [0.3, 0.2], [1, 1])
    single = ctr_metrics([1, 1], [0.3, 0.2], [1, 2])
    assert math.isnan(single["auc"]) and math.isnan(single["uauc"]) and single["n_users_uauc"] == 0


def test_per_user_auc_matches_sklearn_loop():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 600)
    labels = rng.integers(0, 2, 600)
    scores = rng.integers(0, 5, 600) / 4  # many ties
    expected = {}
    for user in np.unique(users):
        rows = users == user
        if rows.sum() > 1 and 0 < labels[rows].sum() < rows.sum():
            expected[user] = roc_auc_score(labels[rows], scores[rows])
    got = per_user_auc(labels, scores, users)
    assert sorted(got.index) == sorted(expected)
    np.testing.assert_allclose(got.loc[list(expected)].to_numpy(), list(expected.values()))
    assert ctr_metrics(labels, scores, users)["uauc"] == pytest.approx(np.mean(list(expected.values())))


@pytest.mark.parametrize(
    ("labels", "scores", "users", "message"),
    [
        ([1, 0], [0.1, 0.2, 0.3], [1, 1], "differ in length"),
        ([1, 0], [0.1, float("nan")], [1, 1], "NaN"),
        ([1, 2], [0.1, 0.2], [1, 1], "0 or 1"),
        ([], [], [], "no rows"),
    ],
)
def test_bad_inputs(labels, scores, users, message):
    with pytest.raises(ValueError, match=message):
        ctr_metrics(labels, scores, users)


def test_evaluate_module_matches_library():
    metric = evaluate.load(CTR_AUC_PATH)
    assert metric.compute(predictions=SCORES, references=LABELS, user_ids=USERS) == pytest.approx(
        ctr_metrics(LABELS, SCORES, USERS)
    )
    warm_cold = evaluate.load(CTR_AUC_PATH, "warm_cold")
    for start in range(0, len(LABELS), 4):  # batched input gives the same numbers
        stop = start + 4
        warm_cold.add_batch(
            predictions=SCORES[start:stop], references=LABELS[start:stop],
            user_ids=USERS[start:stop], not_cold=WARM[start:stop],
        )  # fmt: skip
    assert warm_cold.compute() == pytest.approx(ctr_metrics(LABELS, SCORES, USERS, not_cold=WARM))


def _row(method: str, auc: float, experiment: str | None = None, test_rows: int = 7331, **settings) -> dict:
    metrics = {"auc": auc, "uauc": 0.6, "auc_warm": 0.7, "auc_cold": float("nan")}
    return {
        "method": method, "experiment": experiment, "protocol": "cpu", "train_rows": 10, "test_rows": test_rows,
        "settings": {"fusion": "gate", **settings}, "backbone": None, "device": "cpu", "seconds": 1.0,
        "command": "x", "valid": split_metrics(metrics, "valid"), "test": split_metrics(metrics, "test"),
    }  # fmt: skip


def _published(method: str, auc: float, name: str | None = None) -> dict:
    row = {"method": method, "protocol": "published", "source": "a paper", "backbone": "Vicuna-7B",
           "train_rows": 10, "test_rows": 7331, "test": {"auc": auc, "uauc": 0.6, "auc_warm": None, "auc_cold": None}}  # fmt: skip
    return row | ({"name": name, "settings": {"cf": name}} if name else {})


def test_upsert_result_replaces_the_row_with_the_same_key(tmp_path):
    path = tmp_path / "results" / "ml1m.json"
    upsert_result(path, _row("CCF-LLM", 0.61, experiment="ccf-llm"))
    upsert_result(path, _row("CCF-LLM", 0.70, fusion="add"))  # no experiment: family, protocol and settings
    upsert_result(path, _row("CCF-LLM", 0.65, experiment="ccf-llm", fusion="concat"))  # same experiment
    upsert_result(path, _row("CCF-LLM", 0.72, fusion="add"))
    content = json.loads(path.read_text())
    assert set(content) == {"dataset", "rows"} and content["dataset"] == "ml-1m"
    kept = [(row["experiment"], row["test"]["auc"]) for row in content["rows"]]
    assert kept == [("ccf-llm", 0.65), (None, 0.72)]
    assert list(content["rows"][0])[:4] == ["method", "experiment", "protocol", "train_rows"]
    assert content["rows"][0]["test"] == {"auc": 0.65, "uauc": 0.6, "auc_warm": 0.7, "auc_cold": None}
    assert content["rows"][0]["valid"] == {"auc": 0.65, "uauc": 0.6}
    assert [p.name for p in path.parent.iterdir()] == ["ml1m.json"]  # no temporary file left
    upsert_result(path, _published("CoLLM", 0.7295, name="CoLLM-MF"))
    upsert_result(path, _published("CoLLM", 0.7243, name="CoLLM-DIN"))  # other settings: a row of its own
    assert len(json.loads(path.read_text())["rows"]) == 4
    with pytest.raises(ValueError, match=r"'MF' misses \['experiment', 'train_rows', 'test_rows'"):
        upsert_result(path, {"method": "MF", "protocol": "full"})
    with pytest.raises(ValueError, match=r"'MF' misses \['experiment'"):
        upsert_result(path, {key: value for key, value in _row("MF", 0.6).items() if key != "experiment"})
    with pytest.raises(ValueError, match="protocol 'collm', expected one of"):
        upsert_result(path, _row("MF", 0.6) | {"protocol": "collm"})
    with pytest.raises(ValueError, match="test_rows must be a row count, got '7331'"):
        upsert_result(path, _row("MF", 0.6) | {"test_rows": "7331"})
    with pytest.raises(ValueError, match="source"):
        upsert_result(path, {key: value for key, value in _published("MF", 0.6).items() if key != "source"})
    with pytest.raises(ValueError, match="dataset"):
        upsert_result(path, _row("MF", 0.6), dataset="amazon-book")


def test_results_table_puts_each_familys_best_whole_split_row_beside_the_papers(tmp_path):
    """One line per family: the best row scored on the whole test split (a better one on a sample does not
    count), the family's published number beside it, a second published row of the family on its own line."""
    path = tmp_path / "ml1m.json"
    upsert_result(path, _row("CCF-LLM", 0.71, experiment="ccf-llm"))
    upsert_result(path, _row("CCF-LLM", 0.73, experiment="ccf-llm-year-tables"))
    upsert_result(path, _row("CCF-LLM", 0.80, experiment="sample", test_rows=2000))
    upsert_result(path, _row("MF <item> | x", 0.6) | {"protocol": "full"})
    upsert_result(path, _published("CoLLM", 0.7295, name="CoLLM-MF"))
    upsert_result(path, _published("CoLLM", 0.7243, name="CoLLM-DIN"))
    upsert_result(path, _published("MF <item> | x", 0.6482))
    upsert_result(path, _published("CCF-LLM", 0.75))
    lines = results_table(path).splitlines()
    assert lines[0].startswith("Ours: each method's best row in `results/ml1m.json`, every one scored on")
    assert "MF <item> | x trained on all train rows; CCF-LLM trained under the CPU protocol" in lines[0]
    assert "their LLM rows use Vicuna-7B" in lines[0]
    assert lines[4:] == [  # the README's family order; a family it does not know comes last
        "| CoLLM | – | – | – | – | – | – | 0.7295 (CoLLM-MF) | 0.6000 |",
        "| CoLLM-DIN | – | – | – | – | – | – | 0.7243 | 0.6000 |",
        "| CCF-LLM | `ccf-llm-year-tables` | 10 | 0.7300 | 0.6000 | 0.7000 | – | 0.7500 | 0.6000 |",
        "| MF &lt;item&gt; \\| x | – | 10 | 0.6000 | 0.6000 | 0.7000 | – | 0.6482 | 0.6000 |",
    ]


def _scored_rows(n: int = 600, seed: int = 0):
    """Labels, a weak scorer and a stronger one that shares the weak one's noise (a paired setting)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    shared_noise = rng.normal(size=n)
    weak = 0.5 * labels + shared_noise
    return labels, weak, weak + 0.3 * labels


def test_auc_interval_brackets_the_exact_auc():
    labels, weak, _ = _scored_rows()
    result = auc_interval(labels, weak, n_resamples=500)
    assert result["estimate"] == pytest.approx(roc_auc_score(labels, weak))
    assert result["low"] < result["estimate"] < result["high"]
    ties = np.round(weak)  # the bootstrap's own AUC counts ties as one half, like sklearn
    assert auc_interval(labels, ties, n_resamples=100)["estimate"] == pytest.approx(
        roc_auc_score(labels, ties)
    )


def test_paired_difference_is_surer_than_either_auc():
    """The stronger scorer wins reliably although the two AUC intervals overlap: the rows' noise cancels."""
    labels, weak, strong = _scored_rows()
    weak_auc, strong_auc = (auc_interval(labels, scores, n_resamples=500) for scores in (weak, strong))
    assert strong_auc["low"] < weak_auc["high"]  # unpaired, the intervals overlap
    difference = auc_interval(labels, strong, weak, n_resamples=500)
    assert difference["estimate"] == pytest.approx(strong_auc["estimate"] - weak_auc["estimate"])
    assert 0 < difference["low"] < difference["estimate"] < difference["high"]
    assert auc_interval(labels, strong, weak, n_resamples=500, seed=1)["low"] > 0  # not one lucky seed


def test_resampling_users_widens_the_interval_when_their_rows_share_leniency():
    """Rows of one user are not independent draws: a row bootstrap is too sure of itself there."""
    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 2000)
    leniency = rng.normal(0, 1.5, 40)[users]
    labels = (rng.random(2000) < 1 / (1 + np.exp(-leniency))).astype(int)
    scores = leniency + rng.normal(0, 2, 2000)
    by_rows, by_users = (auc_interval(labels, scores, groups=g, n_resamples=400) for g in (None, users))
    assert by_users["estimate"] == by_rows["estimate"]
    assert by_users["high"] - by_users["low"] > 1.5 * (by_rows["high"] - by_rows["low"])
    assert by_users["low"] < by_users["estimate"] < by_users["high"]


def test_the_same_ranking_differs_by_exactly_zero():
    """Two runs that rank the rows alike (a rerun, a monotone rescaling) get 0 and a zero interval, not NaN."""
    labels, weak, _ = _scored_rows(n=300)
    for groups in (None, np.arange(300) % 30):
        same = auc_interval(labels, weak, 2 * weak + 1, groups=groups, n_resamples=100)
        assert same == {"estimate": 0.0, "low": 0.0, "high": 0.0}


@pytest.mark.parametrize(
    ("labels", "scores", "baseline", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], None, "labels must be 0 or 1"),
        ([0, 1, 1], [0.1, 0.2], None, "differ in length"),
        ([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2], "differ in length"),
        ([1, 1, 1], [0.1, 0.2, 0.3], None, "both labels"),
    ],
)
def test_auc_interval_rejects_bad_input(labels, scores, baseline, message):
    with pytest.raises(ValueError, match=message):
        auc_interval(labels, scores, baseline)


def test_readme_numbers_are_rendered_from_the_committed_results():
    """Every measured table in README.md and docs/experiments.md is what ``scripts/update_readme.py`` renders
    from the result files; the README keeps its results table short, and every committed row of ours was scored
    on the whole test split."""
    root = Path(__file__).resolve().parents[1]
    for name in RENDERED_DOCUMENTS:
        text = (root / name).read_text()
        assert render_readme(text, root) == text, f"{name} is stale: run python scripts/update_readme.py"
    readme = (root / "README.md").read_text()
    assert "<!-- benchmarks -->" in readme
    table = readme.split("<!-- results:ml1m -->")[1].split("<!-- /results:ml1m -->")[0]
    assert len([line for line in table.splitlines() if line.startswith("| ")]) - 2 <= 15  # header and rule
    rows = json.loads((root / "results" / "ml1m.json").read_text())["rows"]
    assert {row["test_rows"] for row in rows} == {7331}, "a row scored on a test sample belongs in docs/"
