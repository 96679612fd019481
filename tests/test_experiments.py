"""scripts/experiment.py: experiments as YAML files, run in dependency order, finished ones skipped, on tiny runs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from ccf_llm.experiments import commands, listing, load_experiments, run
from ccf_llm.testing.tiny_run import tiny_run_settings, write_tiny_run_inputs

REPO = Path(__file__).resolve().parents[1]
KEPT = [  # the experiments behind results/ml1m.json's rows, and the paper's ablations
    "tallrec", "ccf-llm", "collm", "ccf-llm-tuned-biases", "collm-tuned-biases", "ccf-llm-tune-lora",
    "ccf-llm-year-tables", "cf-mf", "cf-mf-bias", "cf-biases", "cf-biases-year", "cf-lightgcn", "cf-sasrec",
    "cf-din", "scalar-gate", "add", "concat", "no-history-tokens", "joint", "mf-tables", "tune-lora",
    "rows-8192", "tallrec-full", "ccf-llm-full", "collm-full",
]  # fmt: skip


def write(path: Path, values: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    """A checkout-like folder: the repository's scripts, a tiny base config and four experiments (a CF one, a
    stage-1 one, a stage-2 one reading both, and a variant of it)."""
    root = tmp_path_factory.mktemp("experiments")
    inputs = write_tiny_run_inputs(root / "inputs")
    (root / "scripts").symlink_to(REPO / "scripts")
    settings = tiny_run_settings(inputs, root / "unused", results=str(root / "results.json"))
    write(root / "configs" / "tiny.yaml", {key: value for key, value in settings.items() if key != "cf_dir"})
    folder = root / "configs" / "experiments"
    write(folder / "cf-tiny.yaml", {
        "description": "MF-bias on the tiny split", "kind": "cf", "base": "configs/tiny.yaml", "model": "mf",
        "bias": True, "settings": {"method": "MF-bias", "dim": 4, "max_epochs": 2, "min_epochs": 1},
    })  # fmt: skip
    write(folder / "text.yaml", {
        "description": "stage 1", "kind": "llm", "base": "configs/tiny.yaml",
        "settings": {"method": "TALLRec", "fusion": "text_only"},
    })  # fmt: skip
    write(folder / "hybrid.yaml", {
        "description": "stage 2 from text's LoRA", "kind": "llm", "base": "configs/tiny.yaml", "init_from": "text",
        "cf": "cf-tiny", "compare_with": ["cf-tiny", "text"], "settings": {"method": "CCF-LLM", "stage2.epochs": 1},
    })  # fmt: skip
    write(folder / "variant.yaml", {
        "description": "hybrid with add", "extends": "hybrid", "settings": {"fusion": "add", "stage2": {"weight_decay": 0.1}},
    })  # fmt: skip
    return root


def test_the_repository_experiments_resolve_and_validate(tmp_path: Path) -> None:
    """Every file under configs/experiments/ loads, its references resolve and its llm settings are settings of
    ExperimentConfig (commands() checks them); the best CPU row's command is the recorded one."""
    (tmp_path / "configs").symlink_to(REPO / "configs")  # a fresh checkout: no outputs yet
    (tmp_path / "scripts").symlink_to(REPO / "scripts")
    experiments = load_experiments(tmp_path)
    assert set(KEPT) <= set(experiments)
    steps = {name: commands(experiment, experiments, tmp_path) for name, experiment in experiments.items()}
    year = shlex.join(steps["ccf-llm-year-tables"][0])
    for part in ("--config configs/ml1m-cpu.yaml", "--set bf16=true", "--set max_train_rows=16384",
                 "--set stage2.evals_per_epoch=2", "--set history_item_tokens=false", "--set max_test_rows=null",
                 "--set experiment=ccf-llm-year-tables", "--cf-dir outputs/experiments/cf-biases-year",
                 "--init-from outputs/experiments/tallrec", "--output-dir outputs/experiments/ccf-llm-year-tables"):  # fmt: skip
        assert part in year, (part, year)
    assert shlex.join(steps["cf-biases-year"][0]).startswith(
        "python scripts/train_cf.py --model mf --bias --set dim=0 --set year_bias=true --grid --grid-name biases "
        "--data ml1m --out outputs/experiments/cf-biases-year"
    )  # the method (Biases) is the row's name, not a CF setting: --method, after
    assert "--init-from" not in shlex.join(steps["joint"][0]) and "schedule=joint" in shlex.join(
        steps["joint"][0]
    )
    assert experiments["collm"].settings["fusion"] == "cf_only" and experiments["collm"].cf == "cf-mf-bias"


def test_dry_run_prints_the_commands_in_dependency_order(tree: Path) -> None:
    said: list[str] = []
    run(["hybrid", "variant"], root=tree, dry_run=True, say=said.append)  # variant needs what hybrid needs
    assert [line.split(":")[0] for line in said if line.startswith("#")] == [
        "# cf-tiny", "# text", "# hybrid", "# variant",
    ]  # fmt: skip
    commands_said = [line for line in said if not line.startswith("#")]
    assert commands_said[0].startswith("python scripts/train_cf.py --model mf --bias --set dim=4 ")
    assert (
        "--out outputs/experiments/cf-tiny --quiet --experiment cf-tiny --method MF-bias" in commands_said[0]
    )
    assert commands_said[1] == (
        "python scripts/score_cf.py --cf-dir outputs/experiments/cf-tiny --config configs/tiny.yaml "
        "--out outputs/experiments/cf-tiny --experiment cf-tiny"
    )
    assert commands_said[3] == (
        "python scripts/train.py --config configs/tiny.yaml --set method=CCF-LLM --set stage2.epochs=1 "
        "--set experiment=hybrid --cf-dir outputs/experiments/cf-tiny --init-from outputs/experiments/text "
        "--output-dir outputs/experiments/hybrid --resume"
    )
    assert "--set fusion=add --set stage2.weight_decay=0.1 --set experiment=variant" in commands_said[4]
    assert not (tree / "outputs").exists()  # nothing ran


def test_bad_files_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "configs" / "experiments"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("method: x\n")
    good = {"description": "d", "kind": "llm", "base": "configs/base.yaml"}
    cases = [
        ({**good, "init_form": "x"}, r"a\.yaml: unknown key\(s\) \['init_form'\] for kind llm"),
        ({**good, "cf": "missing"}, r"a\.yaml: cf names 'missing', which has no file"),
        ({**good, "base": "configs/none.yaml"}, r"a\.yaml: base config configs/none.yaml not found"),
        ({**good, "kind": "gpu"}, r"a\.yaml: kind 'gpu'; expected one of llm, cf, content"),
        ({"extends": "a", "description": "d"}, r"a\.yaml: extends forms a cycle \(a -> a\)"),
        ({**good, "init_from": "a"}, r"experiments need each other in a cycle: a -> a"),
        ({**good, "settings": {"fusoin": "add"}}, r"a\.yaml: .*unknown setting\(s\) \['fusoin'\]"),
    ]
    for values, message in cases:
        write(folder / "a.yaml", values)
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            experiments = load_experiments(tmp_path)
            commands(experiments["a"], experiments, tmp_path)


def test_running_an_experiment_runs_what_it_needs_records_its_rows_and_skips_finished_ones(
    tree: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, load_script
) -> None:
    """The runner end to end on tiny runs: CF tables trained and scored, stage 1, then stage 2 reading both; each
    row names its experiment and the command that reruns it; --list shows the states; a rerun runs nothing."""
    monkeypatch.chdir(tree)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    experiment = load_script("experiment")
    experiment.main(["hybrid"])
    rows = {row["experiment"]: row for row in json.loads((tree / "results.json").read_text())["rows"]}
    assert set(rows) == {"cf-tiny", "text", "hybrid"}
    assert all(row["command"] == f"python scripts/experiment.py {name}" for name, row in rows.items())
    assert rows["hybrid"]["settings"]["cf"] == "cf-tiny" and rows["hybrid"]["settings"]["fusion"] == "gate"
    assert rows["hybrid"]["settings"]["stage1_rows"] == rows["text"]["train_rows"] == 96
    assert (rows["cf-tiny"]["method"], rows["cf-tiny"]["protocol"]) == ("MF-bias", "full")
    scored = json.loads((tree / "outputs/experiments/cf-tiny/metrics.json").read_text())["row"]
    assert scored["test"]["auc"] == pytest.approx(rows["cf-tiny"]["test"]["auc"], abs=1e-4)

    (tree / "outputs" / "experiments" / "variant").mkdir()
    capsys.readouterr()
    experiment.main(["--list"])
    states = {line.split()[0]: line.split()[2:4] for line in capsys.readouterr().out.splitlines()[1:]}
    assert states["variant"] == ["partial", "–"]
    assert states["hybrid"] == ["done", f"{rows['hybrid']['test']['auc']:.4f}"]
    assert states["cf-tiny"][0] == states["text"][0] == "done"

    experiment.main(["hybrid", "text"])
    said = capsys.readouterr().out.splitlines()
    assert said == [f"# {name}: done, skipped (outputs/experiments/{name}/metrics.json)" for name in
                    ("cf-tiny", "text", "hybrid")]  # fmt: skip
    experiment.main(["--compare", "--dry-run", "hybrid"])
    assert capsys.readouterr().out.strip() == (
        "python scripts/compare_runs.py outputs/experiments/hybrid --baseline outputs/experiments/cf-tiny "
        "outputs/experiments/text --out results/hybrid_intervals.json"
    )
    assert "variant" in listing(tree)
