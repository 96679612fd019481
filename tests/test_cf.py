"""CF backbones on a tiny generated data set: they overfit it, are deterministic, and export tables."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import DatasetDict

from ccf_llm.cf import (
    METHOD_NAMES,
    encode_splits,
    grid_search,
    load_cf_model,
    load_cf_tables,
    save_cf_tables,
    train_cf,
)
from ccf_llm.cf import train as cf_train
from ccf_llm.cf.base import release_years
from ccf_llm.cf.mf import year_bins
from ccf_llm.cf.train import predict, split_settings
from ccf_llm.data import CTRData
from ccf_llm.data.schema import frame_to_dataset
from ccf_llm.evaluation.compare import compare_runs, read_scores, run_name

N_USERS, N_ITEMS = 12, 18
FAST = {"dim": 16, "lr": 0.05, "weight_decay": 0.0, "batch_size": 256, "max_epochs": 30, "patience": 30}
SETTINGS = {
    "mf": FAST,
    "mf_bias": FAST,
    "lightgcn": FAST,
    "sasrec": {**FAST, "history_len": 6, "dropout": 0.0},
    "din": {**FAST, "history_len": 6},
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


@pytest.fixture(scope="module")
def tiny() -> CTRData:
    """Users like exactly the items of their own parity; every user rates every item in random order."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, N_USERS):
        liked = [0]
        for step, item in enumerate(rng.permutation(np.arange(1, N_ITEMS))):
            label = int(user % 2 == item % 2)
            rows.append((user, int(item), label, step, list(liked), f"item {item}", 1))
            liked += [int(item)] * label
    frame = pd.DataFrame(rows, columns=["uid", "iid", "label", "timestamp", "his", "title", "not_cold"])
    split = frame_to_dataset(frame)  # train = valid = test: the test is about fitting, not generalising
    items = {i: f"item {i}" for i in range(1, N_ITEMS)}
    return CTRData(splits=DatasetDict(train=split, valid=split, test=split), items=items, name="tiny")


@pytest.fixture(scope="module")
def runs(tiny):
    """Every backbone trained on the tiny data."""
    return {key: train_cf(key, tiny, settings, progress=False) for key, settings in SETTINGS.items()}


@pytest.mark.parametrize("key", list(SETTINGS))
def test_overfits_tiny_data(runs, key):
    run = runs[key]
    assert run.valid["auc"] > 0.95, run.curve
    assert run.valid["uauc"] > 0.95
    assert run.settings["lr"] == 0.05 and run.best_epoch <= run.epochs


@pytest.mark.parametrize("key", list(SETTINGS))
def test_deterministic_with_fixed_seed(tiny, key):
    short = {**SETTINGS[key], "max_epochs": 3}
    first, second = (train_cf(key, tiny, short, progress=False) for _ in range(2))
    assert first.curve == second.curve
    tables = [run.model.export_tables(run.user_history) for run in (first, second)]
    assert all(torch.equal(a, b) for a, b in zip(*tables, strict=True))


@pytest.mark.parametrize("key", list(SETTINGS))
def test_tables_round_trip(runs, key, tmp_path):
    run = runs[key]
    save_cf_tables(run, tmp_path)
    user, item, config = load_cf_tables(tmp_path)
    expected_user, expected_item = run.model.export_tables(run.user_history)
    assert user.dtype == item.dtype == torch.float32
    assert torch.equal(user, expected_user) and torch.equal(item, expected_item)
    assert user.shape[0] == config["n_users"] == N_USERS and item.shape[0] == config["n_items"] == N_ITEMS
    assert config["model"] == run.name and config["valid"]["auc"] == run.valid["auc"]
    width = {"mf_bias": 18, "din": 32}.get(key, 16)  # MF+bias: [p, b, 1]; DIN: two tables side by side
    assert config["dim"] == user.shape[1] == item.shape[1] == width


def test_bias_weight_decay_applies_to_the_biases_alone(tiny):
    """Parameters named "bias" get ``bias_weight_decay`` when it is set; everything else ``weight_decay``."""
    model = train_cf(
        "mf_bias", tiny, {**FAST, "max_epochs": 1, "bias_weight_decay": 0.5}, progress=False
    ).model
    groups = cf_train._parameter_groups(model, cf_train.TrainConfig(weight_decay=1e-2, bias_weight_decay=0.5))
    names = {id(p): n for n, p in model.named_parameters()}
    decays = {names[id(p)]: group["weight_decay"] for group in groups for p in group["params"]}
    assert decays == {
        "user_embedding.weight": 1e-2,
        "item_embedding.weight": 1e-2,
        "user_bias.weight": 0.5,
        "item_bias.weight": 0.5,
        "global_bias": 0.5,
    }
    (shared,) = cf_train._parameter_groups(model, cf_train.TrainConfig(weight_decay=1e-2))
    assert shared["weight_decay"] == 1e-2 and len(shared["params"]) == len(decays)


def test_failed_export_keeps_the_old_one(runs, tmp_path, monkeypatch):
    """A failure while writing (here the second file) leaves the previous complete export as it was."""
    save_cf_tables(runs["mf"], tmp_path, grid=[{"dim": 16}])
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save_file(*args, **kwargs)

    real_save_file = cf_train.save_file
    monkeypatch.setattr(cf_train, "save_file", fail_second)
    with pytest.raises(OSError, match="disk full"):
        save_cf_tables(runs["din"], tmp_path)
    # the same files with the same bytes, and no temporary files
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert sorted(before) == ["cf_config.json", "cf_model.safetensors", "cf_tables.safetensors", "grid.json"]


def test_export_killed_while_swapping_files_leaves_no_tables(runs, tmp_path, monkeypatch):
    """``cf_tables.safetensors`` marks a finished export: once the first new file is in place, it is gone
    until the last, so an interrupted swap makes the next run retrain instead of pairing old and new files."""
    save_cf_tables(runs["mf"], tmp_path)
    real_replace = os.replace

    def fail_after_config(source, target):
        real_replace(source, target)
        if Path(target).name == "cf_config.json":
            raise KeyboardInterrupt  # e.g. a kill between two renames

    monkeypatch.setattr(os, "replace", fail_after_config)
    with pytest.raises(KeyboardInterrupt):
        save_cf_tables(runs["din"], tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cf_config.json", "cf_model.safetensors"]
    monkeypatch.setattr(os, "replace", real_replace)
    save_cf_tables(runs["din"], tmp_path)
    assert load_cf_tables(tmp_path)[2]["model"] == "din"


@pytest.mark.parametrize("key", ["mf", "mf_bias", "lightgcn", "sasrec"])
def test_exported_dot_product_is_the_logit(runs, tiny, key):
    run = runs[key]
    splits = encode_splits(tiny, run.model.history_len)
    user, item = run.model.export_tables(run.user_history)
    rows = splits.train
    rows = {**rows, "his": run.user_history[rows["uid"]]}  # score with the exported history
    run.model.eval()
    with torch.no_grad():
        logits = run.model(rows)
    np.testing.assert_allclose((user[rows["uid"]] * item[rows["iid"]]).sum(-1), logits, rtol=1e-4, atol=1e-4)
    assert not user[0].any() or key == "sasrec"  # padding row


def test_biases_alone_export_two_columns_whose_product_is_the_logit(tiny, tmp_path):
    """MF-bias with ``dim=0`` (the "biases tables" an LLM run may read): user [b_u + b_0, 1], item [1, b_i]."""
    run = train_cf("mf_bias", tiny, {**FAST, "dim": 0, "max_epochs": 3}, progress=False)
    save_cf_tables(run, tmp_path)
    user, item, config = load_cf_tables(tmp_path)
    assert config["dim"] == user.shape[1] == item.shape[1] == 2
    assert torch.equal(user[1:, 1], torch.ones(N_USERS - 1))
    assert torch.equal(item[1:, 0], torch.ones(N_ITEMS - 1))
    rows = encode_splits(tiny, run.model.history_len).train
    run.model.eval()
    with torch.no_grad():
        logits = run.model(rows)
    np.testing.assert_allclose((user[rows["uid"]] * item[rows["iid"]]).sum(-1), logits, rtol=1e-5, atol=1e-5)


def test_release_years_come_from_the_end_of_the_titles():
    titles = {
        1: "Heat (1995)",
        2: "Seven (a.k.a. Se7en) (1995) ",
        3: "1984 (no year)",
        5: "Metropolis (1899)",
    }
    years = release_years(titles, 7)
    assert years.tolist() == [0, 1995, 1995, 0, 0, 1899, 0]
    # 1995 -> (1995 - 1900) // 5 + 1; 1899 -> bin 1
    assert year_bins(years).tolist() == [0, 20, 20, 0, 0, 1, 0]
    assert year_bins(torch.tensor([2100])).tolist() == [30]


def test_year_biases_score_cold_items_by_release_year(tmp_path):
    """Everyone likes the old films. Items 13-17 never appear in train: user + item biases alone cannot rank them,
    the year biases can; they join the item column of the d = 0 tables, whose product stays the logit."""
    items = {i: f"film {i} ({1950 if i % 2 else 1995})" for i in range(1, N_ITEMS)}
    frames = {}
    for split, catalog in (("train", range(1, 13)), ("test", range(13, N_ITEMS))):
        rows = [
            (u, i, i % 2, i, [0], items[i], int(split == "train")) for u in range(1, N_USERS) for i in catalog
        ]
        frames[split] = frame_to_dataset(pd.DataFrame(rows, columns=["uid", "iid", "label", "timestamp", "his",
                                                                     "title", "not_cold"]))  # fmt: skip
    data = CTRData(
        DatasetDict(train=frames["train"], valid=frames["train"], test=frames["test"]), items, name="years"
    )
    settings = {**FAST, "dim": 0, "max_epochs": 20}
    plain, with_years = (
        train_cf("mf_bias", data, {**settings, "year_bias": on}, progress=False) for on in (False, True)
    )
    assert plain.test["auc"] == 0.5 and with_years.test["auc"] == 1.0
    save_cf_tables(with_years, tmp_path)
    user, item, config = load_cf_tables(tmp_path)
    assert config["dim"] == 2 and config["settings"]["year_bias"]
    rows = encode_splits(data).test
    np.testing.assert_allclose((user[rows["uid"]] * item[rows["iid"]]).sum(-1), predict(with_years.model, rows),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    model, _ = load_cf_model(tmp_path, data)  # the bins are rebuilt from the titles, the biases loaded
    np.testing.assert_array_equal(predict(model, rows), predict(with_years.model, rows))
    with pytest.raises(ValueError, match="year biases join the item biases; set bias=True"):
        train_cf("mf", data, {**settings, "year_bias": True}, progress=False)


def test_learning_rates_given_as_yaml_strings_are_numbers():
    """YAML reads ``1e-3`` (no dot) as a string: a command line's ``--set lr=1e-3`` still trains."""
    _, config = split_settings({"lr": "1e-3", "weight_decay": "0", "bias_weight_decay": "1e-5"})
    assert (config.lr, config.weight_decay, config.bias_weight_decay) == (1e-3, 0.0, 1e-5)
    assert split_settings({"bias_weight_decay": None})[1].bias_weight_decay is None
    with pytest.raises(ValueError, match="lr must be a number, got 'fast'"):
        split_settings({"lr": "fast"})


def test_user_history_is_train_only(tiny):
    splits = encode_splits(tiny, 4)
    frame = tiny.splits["train"].to_pandas()
    last = frame[frame.uid == 3].iloc[-1]
    liked = [i for i in last["his"] if i] + ([int(last["iid"])] if last["label"] else [])
    assert splits.user_history[3].tolist() == liked[-4:]
    assert not splits.user_history[0].any()


def test_grid_search_keeps_the_best_valid_run(tiny):
    best, table = grid_search("mf", tiny, {**FAST, "max_epochs": 2}, {"dim": [2, 8]}, progress=False)
    assert [row["dim"] for row in table] == [2, 8]
    assert best.valid["auc"] == max(row["valid_auc"] for row in table)
    assert best.settings["dim"] == table[[row["valid_auc"] for row in table].index(best.valid["auc"])]["dim"]


def test_unknown_model_and_missing_tables(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown CF model"):
        train_cf("ncf", tiny)
    with pytest.raises(FileNotFoundError, match="cf_tables"):
        load_cf_tables(tmp_path)


@pytest.mark.slow
def test_mf_bias_on_ml1m_beats_popularity_floor(ml1m_dir):
    """On the real split MF with biases reaches the popularity level (item popularity alone reaches .7094)."""
    from ccf_llm.data import load_split

    run = train_cf("mf_bias", load_split(ml1m_dir), {"dim": 16, "max_epochs": 15}, progress=False)
    assert run.test["auc"] > 0.70 and run.valid["auc"] > 0.71
    assert run.test["n_users_uauc"] > 200


@pytest.mark.parametrize("key", list(SETTINGS))
def test_saved_model_reproduces_the_run_scores(runs, tiny, key, tmp_path):
    """``load_cf_model`` rebuilds the backbone with its weights: the same logits as the trained run."""
    run = runs[key]
    save_cf_tables(run, tmp_path)
    model, config = load_cf_model(tmp_path, tiny)
    assert config["model"] == key and type(model) is type(run.model) and not model.training
    rows = encode_splits(tiny, run.model.history_len).test
    np.testing.assert_array_equal(predict(model, rows), predict(run.model, rows))


def test_load_cf_model_names_what_is_wrong(runs, tiny, tmp_path):
    save_cf_tables(runs["din"], tmp_path)
    fewer_items = CTRData(
        splits=DatasetDict(
            {name: split.filter(lambda row: row["iid"] < N_ITEMS - 1) for name, split in tiny.splits.items()}
        ),
        items={i: t for i, t in tiny.items.items() if i < N_ITEMS - 1},
        name="fewer items",
    )
    with pytest.raises(
        ValueError, match=r"cf_config.json: trained with 12 user and 18 item rows.*fewer items"
    ):
        load_cf_model(tmp_path, fewer_items)
    (tmp_path / "cf_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"cf_model.safetensors: missing .*rerun scripts/train_cf.py"):
        load_cf_model(tmp_path, tiny)


@pytest.mark.parametrize("key", ["mf_bias", "din"])  # din: its logit is an MLP, not the tables' dot product
def test_score_cf_script_reproduces_the_cf_run_on_the_config_rows(
    runs, tiny, key, tmp_path, monkeypatch, load_script
):
    """scripts/score_cf.py scores the CF model on an LLM config's rows: on all rows it gives the CF run's own
    numbers; with a sample it scores (and says) just the sampled rows. Its row goes to the run folder, not to the
    results file (a CF model's row is its training run's)."""
    import json
    import sys

    import yaml

    save_cf_tables(runs[key], tmp_path / "cf")
    tiny.save(tmp_path / "data")
    results = tmp_path / "results.json"
    score_cf = load_script("score_cf")
    rows_of = ("all", "sample")
    for name, limit in zip(rows_of, (None, 10), strict=True):
        config = {"data": str(tmp_path / "data"), "results": str(results), "max_test_rows": limit}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        argv = ["score_cf.py", "--cf-dir", str(tmp_path / "cf"), "--config", str(tmp_path / f"{name}.yaml")]
        monkeypatch.setattr(sys, "argv", [*argv, "--method", name, "--out", str(tmp_path / name)])
        score_cf.main()
    rows = {name: json.loads((tmp_path / name / "metrics.json").read_text())["row"] for name in rows_of}
    assert not results.exists()
    assert rows["all"]["test"]["auc"] == pytest.approx(runs[key].test["auc"], abs=1e-4)
    kept = compare_runs([tmp_path / "all"], n_resamples=100)  # --out: a run folder, as a training run's
    assert kept.loc["all", "auc"] == pytest.approx(rows["all"]["test"]["auc"], abs=1e-4)
    assert len(read_scores(tmp_path / "sample")) == 10  # the sampled rows only
    assert rows["all"]["test"]["uauc"] == pytest.approx(runs[key].test["uauc"], abs=1e-4)
    assert rows["sample"]["test_rows"] == 10 and rows["all"]["test_rows"] == len(tiny.splits["test"])
    assert (rows["sample"]["protocol"], rows["all"]["protocol"]) == ("cpu", "full")
    monkeypatch.setattr(sys, "argv", [*argv, "--experiment", "cf-tiny", "--out", str(tmp_path / "named")])
    score_cf.main()  # the last config (a sample); an experiment's scores are named by the experiment
    named = json.loads((tmp_path / "named" / "metrics.json").read_text())["row"]
    assert named["command"] == "python scripts/experiment.py cf-tiny"
    assert run_name(tmp_path / "named") == "cf-tiny"
    model_name = METHOD_NAMES[load_cf_tables(tmp_path / "cf")[2]["model"]]
    assert named["method"] == f"{model_name} (cpu-subsample rows)"


def test_train_cf_script_searches_the_named_grid(tiny, tmp_path, monkeypatch, capsys, load_script):
    """--grid-name picks a grid of the file (the biases-alone grid is not MF-bias's); a name the file lacks is an
    error naming the file and the grids it has, before anything is trained or written."""
    import json
    import sys

    tiny.save(tmp_path / "data")
    grids = tmp_path / "grids.yaml"
    grids.write_text("mf_bias:\n  dim: [2, 4]\nbiases:\n  weight_decay: [0.0, 1.0e-3]\n")
    train_cf_script = load_script("train_cf")
    argv = ["train_cf.py", "--model", "mf", "--bias", "--set", "dim=0", "--set", "max_epochs=2", "min_epochs=1",
            "--data-dir", str(tmp_path / "data"), "--grid", "--grid-file", str(grids), "--no-results", "--quiet"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [*argv, "--grid-name", "biases", "--out", str(tmp_path / "biases")])
    train_cf_script.main()
    table = json.loads((tmp_path / "biases" / "grid.json").read_text())
    assert [row["weight_decay"] for row in table] == [0.0, 1.0e-3]
    assert load_cf_tables(tmp_path / "biases")[0].shape[1] == 2  # d = 0 kept: [b_u + b_0, 1]
    monkeypatch.setattr(sys, "argv", [*argv, "--grid-name", "bias", "--out", str(tmp_path / "typo")])
    with pytest.raises(SystemExit, match=r"grids.yaml has no grid 'bias' \(it has: mf_bias, biases\)"):
        train_cf_script.main()
    assert not (tmp_path / "typo").exists()
    monkeypatch.setattr(sys, "argv", [*argv, "--set", "dim", "--out", str(tmp_path / "malformed")])
    with pytest.raises(SystemExit):  # a usage error (exit 2), before anything is trained or written
        train_cf_script.main()
    assert "--set expects KEY=VALUE, got 'dim'" in capsys.readouterr().err
    assert not (tmp_path / "malformed").exists()
