"""``scripts/make_plots.py``: which finished runs it plots, and when it draws the GATE figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ccf_llm.evaluation.compare import write_scores


def _finished_run(folder: Path, method: str, gates: dict) -> None:
    """The files ``scripts/train.py`` leaves in a run folder that the figures read."""
    (folder / "stage1").mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"row": {"method": method}}))
    rng = np.random.default_rng(0)
    rows = {"uid": np.arange(40) // 4, "label": [0, 1] * 20, "not_cold": [True] * 40}
    write_scores(folder, "test", rows, rng.random(40))
    log = [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6, "eval_auc": 0.55}]
    (folder / "stage1" / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    (folder / "gates.json").write_text(json.dumps(gates))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    _finished_run(tmp_path / "runs" / "tallrec", "TALLRec (cpu-subsample)", {})
    _finished_run(
        tmp_path / "runs" / "big", "CCF-LLM (big) (cpu-subsample)", {"warm": [0.2, 0.9], "cold": [0.5, 0.5]}
    )
    return tmp_path / "runs"


def _make_plots(load_script, monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["make_plots.py", *args])
    load_script("make_plots").main()


def test_default_plots_the_main_rows_only(runs_dir, tmp_path, load_script, monkeypatch):
    _make_plots(load_script, monkeypatch, str(runs_dir), "--out", str(tmp_path / "figs"), "--prefix", "p_")
    assert sorted(path.name for path in (tmp_path / "figs").iterdir()) == [
        "p_roc.png",
        "p_training_curves.png",
    ]


def test_named_methods_are_plotted_with_the_gates_of_a_gated_run(
    runs_dir, tmp_path, load_script, monkeypatch, capsys
):
    out = tmp_path / "figs"
    methods = ["--method", "TALLRec (cpu-subsample)", "--method", "CCF-LLM (big) (cpu-subsample)"]
    _make_plots(load_script, monkeypatch, str(runs_dir), "--out", str(out), "--prefix", "p_", *methods)
    assert (out / "p_gates_warm_vs_cold.png").stat().st_size > 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1].split(": ", 1)[1])
    assert summary == {
        "warm_mean": 0.55,
        "cold_mean": 0.5,
        "min": 0.2,
        "max": 0.9,
        "max_warm_cold_difference": 0.4,
    }


def test_an_unknown_method_names_itself_and_the_finished_runs(runs_dir, tmp_path, load_script, monkeypatch):
    with pytest.raises(SystemExit, match=r"CoLLM \(cpu-subsample\).*finished: .*TALLRec"):
        _make_plots(
            load_script,
            monkeypatch,
            str(runs_dir),
            "--out",
            str(tmp_path),
            "--method",
            "CoLLM (cpu-subsample)",
        )
