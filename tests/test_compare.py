"""Bootstrap comparisons of run folders: scores on the same rows, paired differences, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ccf_llm.evaluation.compare import compare_runs, read_scores, write_scores
from ccf_llm.evaluation.report import intervals_table
from ccf_llm.metrics import ctr_metrics


def _run(folder, labels, scores, method=None, uids=None):
    folder.mkdir(parents=True)
    uids = np.arange(len(labels)) % 20 if uids is None else uids  # 20 users, for UAUC
    rows = {"uid": uids, "label": labels, "not_cold": np.ones_like(labels)}
    write_scores(folder, "test", rows, scores)
    if method:
        (folder / "metrics.json").write_text(json.dumps({"row": {"method": method}}))
    return folder


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    noise = rng.normal(size=400)
    return {
        "labels": labels,
        "baseline": _run(tmp_path / "base", labels, noise + 0.3 * labels, method="Base"),
        "better": _run(tmp_path / "better", labels, noise + 0.8 * labels, method="Better"),
        "unnamed": _run(tmp_path / "unnamed", labels, rng.normal(size=400)),
    }


def test_compare_runs_reports_each_auc_and_the_paired_difference(runs):
    table = compare_runs([runs["better"], runs["unnamed"]], baseline=runs["baseline"], n_resamples=300)
    assert list(table.index) == ["Better", "unnamed"]  # the row's method, else the folder's name
    better = read_scores(runs["better"])
    assert table.loc["Better", "auc"] == pytest.approx(roc_auc_score(better["label"], better["score"]))
    assert (table["auc_low"] < table["auc"]).all() and (table["auc"] < table["auc_high"]).all()
    by_user = ctr_metrics(better["label"], better["score"], better["uid"])
    assert table.loc["Better", "uauc"] == pytest.approx(by_user["uauc"]) and by_user["n_users_uauc"] == 20
    base_auc = roc_auc_score(runs["labels"], read_scores(runs["baseline"])["score"])
    assert table.loc["Better", "minus_baseline"] == pytest.approx(table.loc["Better", "auc"] - base_auc)
    assert table.loc["Better", "diff_low"] > 0 > table.loc["unnamed", "diff_high"]
    assert "minus_baseline" not in compare_runs([runs["better"]], n_resamples=100).columns
    itself = compare_runs([runs["baseline"]], baseline=runs["baseline"], n_resamples=100).loc["Base"]
    assert itself["minus_baseline"] == itself["diff_low"] == itself["diff_high"] == 0.0  # not NaN
    assert itself["rank_correlation"] == pytest.approx(1.0)
    # Better's scores are the baseline's noise plus more of the label; unnamed's are noise of their own.
    assert (
        table.loc["Better", "rank_correlation"] > 0.8 and abs(table.loc["unnamed", "rank_correlation"]) < 0.2
    )


def test_compare_runs_refuses_runs_on_other_rows(runs, tmp_path):
    labels = runs["labels"]
    shuffled = _run(tmp_path / "shuffled", labels, labels * 1.0, uids=np.arange(len(labels))[::-1])
    with pytest.raises(ValueError, match=r"shuffled/test_scores.parquet: row 0 \(uid 399\) differs"):
        compare_runs([shuffled], baseline=runs["baseline"])
    shorter = _run(tmp_path / "shorter", labels[:-1], labels[:-1] * 1.0)
    with pytest.raises(ValueError, match="399 rows"):
        compare_runs([runs["better"], shorter])
    with pytest.raises(FileNotFoundError, match=r"nothing/test_scores\.parquet: no scores"):
        compare_runs([tmp_path / "nothing"])
    pd.DataFrame({"uid": [1], "label": [1]}).to_parquet(runs["unnamed"] / "test_scores.parquet")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['not_cold', 'score'\]"):
        compare_runs([runs["unnamed"]])


def test_compare_runs_script_prints_and_writes_the_table(runs, tmp_path, load_script, capsys):
    out = tmp_path / "intervals.json"
    argv = [str(runs["better"]), "--baseline", str(runs["baseline"]), "--resamples", "200", "--out", str(out)]
    load_script("compare_runs").main(argv)
    assert "Better" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["command"].startswith("python scripts/compare_runs.py ") and written["resamples"] == 200
    assert [row["method"] for row in written["rows"]] == ["Better"] and written["rows"][0]["diff_low"] > 0
    assert written["resample"] == "users"  # the default: a user's rows are not independent
    table = intervals_table(out).splitlines()  # the README's rendering of the file
    interval = "95% interval (users resampled)"
    assert table[0] == f"| method | test AUC | {interval} | test UAUC | against | difference | {interval} |"
    row = written["rows"][0]
    assert table[2].startswith(
        f"| Better | {row['auc']:.4f} | {row['auc_low']:.4f} – {row['auc_high']:.4f} | {row['uauc']:.4f} | Base | +"
    )
    two = [
        str(runs["better"]),
        "--baseline",
        str(runs["baseline"]),
        str(runs["better"]),
        "--resamples",
        "200",
    ]
    load_script("compare_runs").main([*two, "--out", str(out)])
    against = json.loads(out.read_text())
    assert [row["baseline"] for row in against["rows"]] == ["Base", "Better"]
    assert against["rows"][1]["minus_baseline"] == 0  # a run against itself
    load_script("compare_runs").main([*argv, "--resample", "rows"])
    by_rows = json.loads(out.read_text())
    assert by_rows["resample"] == "rows" and by_rows["rows"][0]["auc"] == row["auc"]
    del by_rows["resample"]  # a file from before the option: it resampled rows
    by_rows["rows"][0]["diff_low"] = None  # a bootstrap that found no interval
    out.write_text(json.dumps(by_rows))
    old_table = intervals_table(out).splitlines()
    assert "95% interval (rows resampled)" in old_table[0] and "| – – +" in old_table[2]
    with pytest.raises(SystemExit, match=r"compare_runs: .*no scores"):
        load_script("compare_runs").main([str(tmp_path / "missing")])
