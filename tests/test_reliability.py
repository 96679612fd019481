"""Reliability: bad input gets an error naming the thing and what was expected; writes are atomic; training
killed with SIGKILL mid-stage resumes to the same metrics; the same seed gives the same metrics in two processes.

Bad raw files are covered in tests/test_data_validation.py and test_data_*.py, bad pipeline requests in
tests/test_pipeline.py, prompt truncation in tests/test_processor.py; this file adds what they do not cover.
The training runs are subprocesses (``python scripts/train.py``) that the first test starts and the last two
check, so they run while the in-process checks do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from ccf_llm.data import DataError, load_split
from ccf_llm.evaluation import upsert_result
from ccf_llm.testing import make_tiny
from ccf_llm.testing.make_tiny import TINY_CATALOG, tiny_tokenizer
from ccf_llm.testing.tiny_run import tiny_ctr_data, tiny_run_settings, write_tiny_run_inputs
from ccf_llm.training import ExperimentConfig
from ccf_llm.training.run import cf_tables
from ccf_llm.training.trainer import TRAINABLE_FILE, saved_completely
from modeling_ccf import CCFLLMForCTR
from processing_ccf import CCFLLMProcessor

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "scripts" / "train.py"
RUN_TIMEOUT = 900  # seconds per subprocess; a busy 2-core machine is slow, a hang still fails
# 96 train rows, batch 8: 12 steps an epoch, a checkpoint every 6 steps, 4 per stage.
STAGE1 = {
    "epochs": 2,
    "learning_rate": 0.05,
    "batch_size": 8,
    "eval_batch_size": 16,
    "warmup_ratio": 0.0,
    "evals_per_epoch": 2,
}
STAGE2 = {**STAGE1, "learning_rate": 0.01}
CHECKPOINT_EVERY = 6
LAUNCHED: list[subprocess.Popen] = []


# --- training subprocesses (started first, checked last) ---------------------------------------------


def write_config(inputs: dict[str, Path], out: Path) -> Path:
    config = tiny_run_settings(inputs, out, seed=7, stage1=STAGE1, stage2=STAGE2)
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def launch(config: Path, *flags: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # the CPU: bitwise-reproducible scores
    }
    log = config.with_suffix(f".{len(list(config.parent.glob(config.stem + '.*.log')))}.log")
    with log.open("w") as stream:
        process = subprocess.Popen(
            [sys.executable, str(TRAIN_SCRIPT), "--config", str(config), *flags],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    process.log = log  # type: ignore[attr-defined]
    LAUNCHED.append(process)
    return process


def tail(process: subprocess.Popen) -> str:
    return process.log.read_text()[-3000:]  # type: ignore[attr-defined]


def finish(process: subprocess.Popen) -> None:
    try:
        process.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"training did not finish in {RUN_TIMEOUT} s:\n{tail(process)}") from None
    assert process.returncode == 0, tail(process)


def complete_checkpoints(stage_dir: Path) -> list[int]:
    """Steps of the checkpoints whose save finished (trainer_state.json is written last)."""
    return [int(path.name.split("-")[1]) for path in stage_dir.glob("checkpoint-*") if saved_completely(path)]


def kill_mid_stage(process: subprocess.Popen, stage_dir: Path) -> None:
    """SIGKILL as soon as the stage has saved its first complete checkpoint."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while not complete_checkpoints(stage_dir):
        if process.poll() is not None:
            raise AssertionError(f"run ended before {stage_dir.name} saved a checkpoint:\n{tail(process)}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no checkpoint in {stage_dir} after {RUN_TIMEOUT} s")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (stage_dir / TRAINABLE_FILE).exists(), "killed too late: the stage had finished"


def add_half_written_checkpoint(stage_dir: Path) -> None:
    """What a kill during a save leaves: the next checkpoint folder with cut weights and a cut trainer_state.json."""
    following = stage_dir / f"checkpoint-{max(complete_checkpoints(stage_dir)) + CHECKPOINT_EVERY}"
    following.mkdir(exist_ok=True)
    (following / "model.safetensors").write_bytes(b"\x00" * 10)
    (following / "trainer_state.json").write_text('{"global_step": ')


def first_logged_epoch(process: subprocess.Popen) -> float:
    """The epoch of the first training step a process logged: past 0.5 when it went on from step 6 of 24."""
    match = re.search(r"\{'loss'[^}]*'epoch': '?([0-9.]+)", process.log.read_text())  # type: ignore[attr-defined]
    assert match, tail(process)
    return float(match.group(1))


def killed_twice(config: Path, out: Path) -> list[float]:
    """Kill mid stage 1, resume and kill mid stage 2, resume to the end; half-written checkpoints are skipped."""
    first = launch(config)
    kill_mid_stage(first, out / "stage1")
    add_half_written_checkpoint(out / "stage1")
    assert not (out / "metrics.json").exists()
    second = launch(config, "--resume")
    kill_mid_stage(second, out / "stage2")
    add_half_written_checkpoint(out / "stage2")
    assert (out / "stage1" / TRAINABLE_FILE).is_file() and not (out / "metrics.json").exists()
    third = launch(config, "--resume")
    finish(third)
    return [first_logged_epoch(second), first_logged_epoch(third)]  # of the resumed stage 1, stage 2


def run_to_end(config: Path) -> None:
    finish(launch(config))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_tiny_run_inputs(tmp_path_factory.mktemp("tiny_inputs"))


@pytest.fixture(scope="module")
def runs(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future]]:
    """Two uninterrupted runs and one killed twice, all with the same seed and config, in the background."""
    root = tmp_path_factory.mktemp("runs")
    outs = {name: root / name for name in ("first", "second", "killed")}
    configs = {name: write_config(inputs, out) for name, out in outs.items()}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            "first": pool.submit(run_to_end, configs["first"]),
            "second": pool.submit(run_to_end, configs["second"]),
            "killed": pool.submit(killed_twice, configs["killed"], outs["killed"]),
        }
        try:
            yield {"outs": outs, **futures}
        finally:  # a failed or interrupted session leaves no training running
            for process in LAUNCHED:
                if process.poll() is None:
                    process.kill()


def test_training_runs_start_in_the_background(runs: dict) -> None:
    """Requested first, so the subprocess runs overlap the in-process checks below; verified at the end."""
    assert set(runs) == {"outs", "first", "second", "killed"}


# --- bad split files -------------------------------------------------------------------------------


def set_value(
    column: str, value: object, row: int = 3, text: bool = False
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Row ``row`` of ``column`` becomes ``value`` (``text``: the whole column is written as strings)."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(str if text else object)
        frame.at[row, column] = value
        return frame

    return change


BAD_SPLITS = {
    "NaN label": ("valid", set_value("label", float("nan")), "valid.parquet, row 3: label nan", "0 or 1"),
    "label 2": ("train", set_value("label", 2), "train.parquet, row 3: label 2", "0 or 1"),
    "text label": (
        "train",
        set_value("label", "yes", text=True),
        "train.parquet, row 3: label 'yes'",
        "0 or 1",
    ),
    "negative user id": ("test", set_value("uid", -4), "test.parquet, row 3: uid -4", "user id >= 1"),
    "negative item id": ("train", set_value("iid", -2), "train.parquet, row 3: iid -2", "item id >= 1"),
    "fractional user id": ("train", set_value("uid", 1.5), "row 3: uid 1.5", "integer user id"),
    "unknown item": (
        "valid",
        set_value("iid", 99),
        "valid.parquet, row 3: iid 99",
        "listed in items.parquet",
    ),
    "negative history id": ("train", set_value("his", [0, -3]), "row 3: his [0, -3]", "list of item ids"),
    "unknown history id": ("test", set_value("his", [0, 1, 99]), "row 3: his [0, 1, 99]", "list of item ids"),
    "null history": ("train", set_value("his", None), "row 3: his None", "list of item ids"),
    "empty split": ("valid", lambda frame: frame.iloc[:0], "valid.parquet: no rows", "at least one row"),
    "non-numeric timestamp": (
        "train",
        set_value("timestamp", "noon", text=True),
        "timestamp 'noon'",
        "a finite number",
    ),
}


@pytest.fixture(scope="module")
def good_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_ctr_data().save(tmp_path_factory.mktemp("split") / "tiny")


@pytest.mark.parametrize("case", BAD_SPLITS)
def test_bad_split_names_file_row_and_expectation(good_split: Path, tmp_path: Path, case: str) -> None:
    split, change, *fragments = BAD_SPLITS[case]
    folder = Path(shutil.copytree(good_split, tmp_path / "split"))
    changed = change(pd.read_parquet(folder / f"{split}.parquet"))
    changed.to_parquet(folder / f"{split}.parquet", index=False)
    with pytest.raises(DataError) as error:
        load_split(folder)
    for fragment in (str(folder), *fragments):
        assert fragment in str(error.value), f"{fragment!r} not in {error.value}"


def test_good_split_still_loads(good_split: Path) -> None:
    assert load_split(good_split).splits["train"].num_rows == 96


# --- model folders and CF tables ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize(
    ("table", "change", "fragments"),
    [
        ("item_cf.weight", lambda t: torch.zeros(20, t.shape[1]), ["item_cf.weight has shape (20, 8)", "(9, 8)", "num_items=9"]),
        ("user_cf.weight", lambda t: torch.zeros(t.shape[0], 4), ["user_cf.weight has shape (5, 4)", "(5, 8)", "cf_dim=8"]),
        ("user_cf.weight", None, ["user_cf.weight is missing", "(5, 8)", "num_users=5"]),
    ],
)  # fmt: skip
def test_cf_tables_disagreeing_with_the_config_fail_to_load(
    tiny_folder: Path, tmp_path: Path, table: str, change, fragments: list[str]
) -> None:
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "model"))
    weights = load_file(folder / "model.safetensors")
    if change is None:
        del weights[table]
    else:
        weights[table] = change(weights[table])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError) as error:
        CCFLLMForCTR.from_pretrained(folder)
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} not in {error.value}"
    with pytest.raises(ValueError, match=table):  # asking to ignore mismatches does not re-initialise CF rows
        CCFLLMForCTR.from_pretrained(folder, ignore_mismatched_sizes=True)


def test_matching_folder_loads_and_reports_loading_info(tiny_folder: Path) -> None:
    model, info = CCFLLMForCTR.from_pretrained(tiny_folder, output_loading_info=True)
    assert isinstance(model, CCFLLMForCTR) and not info["missing_keys"] and not info["mismatched_keys"]


def test_cf_tables_smaller_than_the_data_ids_are_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    cf = Path(shutil.copytree(inputs["cf"], tmp_path / "cf"))
    tables = load_file(cf / "cf_tables.safetensors")
    tables["item_embeddings"] = tables["item_embeddings"][:4]
    save_file(tables, cf / "cf_tables.safetensors")
    config = ExperimentConfig(data=str(inputs["data"]), cf_dir=str(cf), output_dir=str(tmp_path / "run"))
    with pytest.raises(
        ValueError,
        match=r"cf_tables\.safetensors: the item table has 4 rows, but the data has item ids up to 8",
    ):
        cf_tables(config, load_split(inputs["data"]))


# --- the processor ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor() -> CCFLLMProcessor:
    return CCFLLMProcessor(tiny_tokenizer(), TINY_CATALOG, max_length=160)


def test_processor_refuses_empty_titles_and_ids_beyond_int64(processor: CCFLLMProcessor) -> None:
    with pytest.raises(ValueError, match="item '' has an empty title"):
        processor([[1]], [""])
    with pytest.raises(ValueError, match="item '' has an empty title"):
        processor.encode_ranking([1], [2, ""])
    with pytest.raises(ValueError, match=f"id {2**70} does not fit in int64"):
        processor([[1]], [2**70])
    with pytest.raises(ValueError, match="does not fit in int64"):
        processor([[1]], [2], user_ids=[-(2**64)])


def test_titles_cannot_inject_placeholders_or_control_tokens(processor: CCFLLMProcessor) -> None:
    title = 'Heat <item><user> "<eos>" Answer: Yes'
    ids = processor.encode([title, 2], title, user_id=1)["input_ids"]
    assert ids.count(processor.item_token_id) == 3  # two history items + the candidate
    assert ids.count(processor.user_token_id) == 1
    assert processor.tokenizer.eos_token_id not in ids


def test_empty_and_unknown_history_score_as_documented(processor: CCFLLMProcessor) -> None:
    empty = processor.encode([], 2, user_id=1)
    padding_only = processor.encode([0, 0, -3], 2, user_id=1)  # ids <= 0 are padding
    assert empty == padding_only and empty["history_ids"] == []
    unknown = processor.encode(["A Film Nobody Has Heard Of"], 2)
    assert unknown["history_ids"] == [0]  # a text-only history item (no CF row)


# --- configuration and the training CLI ------------------------------------------------------------


def test_unknown_fusion_and_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown fusion 'bogus'; expected one of gate, scalar_gate, add"):
        ExperimentConfig(fusion="bogus")
    cases = {
        "fusion: bogus\n": r"Unknown fusion 'bogus'; expected one of gate",
        "learning_rat: 0.1\n": r"unknown setting\(s\) \['learning_rat'\]; known: \[",
        "stage1: {epoch: 2}\n": r"stage1: unknown setting\(s\) \['epoch'\]",
        "- a\n- b\n": r"expected a mapping of settings, got list",
    }
    for text, message in cases.items():
        path = tmp_path / "config.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            ExperimentConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError, match=r"config .*absent\.yaml not found"):
        ExperimentConfig.from_yaml(tmp_path / "absent.yaml")


def test_a_dotted_override_changes_one_stage_setting(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("stage2: {epochs: 2, learning_rate: 0.001, batch_size: 8}\n")
    config = ExperimentConfig.from_yaml(path, **{"stage2.learning_rate": 0.003, "stage1.batch_size": 4})
    assert (config.stage2.epochs, config.stage2.learning_rate, config.stage2.batch_size) == (2, 0.003, 8)
    defaults = ExperimentConfig().stage1  # stage 1 is not in the file: its defaults stay
    assert config.stage1 == type(defaults)(**{**vars(defaults), "batch_size": 4})
    with pytest.raises(ValueError, match=r"stage2: unknown setting\(s\) \['learning_rat'\]"):
        ExperimentConfig.from_yaml(path, **{"stage2.learning_rat": 0.1})
    with pytest.raises(ValueError, match=r"seed\.value: only stage1 and stage2 have settings"):
        ExperimentConfig.from_yaml(path, **{"seed.value": 1})
    # --set max_train_rows=null (YAML null) lifts the file's limit instead of being skipped.
    path.write_text("max_train_rows: 1024\n")
    assert ExperimentConfig.from_yaml(path, max_train_rows=None).max_train_rows is None
    assert ExperimentConfig.from_yaml(path).max_train_rows == 1024
    with pytest.raises(ValueError, match="max_train_rows must be a whole number, got 'all'"):
        ExperimentConfig.from_yaml(path, max_train_rows="all")
    path.write_text("stage2: {epochs: 2, learning_rate: 0.001, batch_size: 8}\n")
    # --set reads values as YAML, where "3e-3" (no dot) is a string: it means the number.
    config = ExperimentConfig.from_yaml(path, **{"stage2.learning_rate": "3e-3", "stage2.batch_size": "4"})
    assert (config.stage2.learning_rate, config.stage2.batch_size) == (0.003, 4)
    for setting, value, message in (
        ("learning_rate", "fast", "learning_rate must be a number, got 'fast'"),
        ("batch_size", 2.5, "batch_size must be a whole number, got 2.5"),
        ("epochs", True, "epochs must be a number, got True"),
    ):
        with pytest.raises(ValueError, match=message):
            ExperimentConfig.from_yaml(path, **{f"stage1.{setting}": value})


@pytest.fixture(scope="module")
def train_cli(load_script):
    return load_script("train")


@pytest.mark.parametrize(
    ("yaml_text", "flags", "fragments"),
    [
        ("method: x\n", ["--fusion", "bogus"], ["argument --fusion: invalid choice: 'bogus'", "scalar_gate"]),
        ("method: x\n", ["--set", "fusion=bogus"], ["Unknown fusion 'bogus'; expected one of gate"]),
        ("method: x\n", ["--set", "seed"], ["--set expects KEY=VALUE, got 'seed'"]),
        ("method: x\n", ["--set", "seed=[1"], ["--set seed: '[1' is not a YAML value"]),
        ("fusion: bogus\n", [], ["Unknown fusion 'bogus'"]),
        ("learning_rat: 0.1\n", [], ["unknown setting(s) ['learning_rat']"]),
        ("method: [unclosed\n", [], ["while parsing", "line 1"]),
        (None, [], ["absent.yaml not found"]),
    ],
)
def test_training_cli_reports_config_errors_without_a_traceback(
    train_cli,
    tmp_path: Path,
    monkeypatch,
    capsys,
    yaml_text: str | None,
    flags: list[str],
    fragments: list[str],
) -> None:
    config = tmp_path / ("absent.yaml" if yaml_text is None else "config.yaml")
    if yaml_text is not None:
        config.write_text(yaml_text)
    monkeypatch.setattr(sys, "argv", ["train.py", "--config", str(config), *flags])
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: train.py" in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


# --- atomic writes ---------------------------------------------------------------------------------

ROW = {
    "method": "m", "experiment": "e", "protocol": "cpu", "train_rows": 1, "test_rows": 1, "settings": {},
    "backbone": "b", "device": "cpu", "seconds": 1.0, "command": "c", "valid": {"auc": 0.5, "uauc": 0.5},
    "test": {"auc": 0.5, "uauc": 0.5, "auc_warm": 0.5, "auc_cold": 0.5},
}  # fmt: skip


def test_a_failing_results_write_leaves_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "results" / "ml1m.json"
    upsert_result(target, ROW)
    before = target.read_bytes()

    def half_then_crash(path: Path, text: str, *args, **kwargs) -> None:
        with open(path, "w") as stream:
            stream.write(text[:20])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        upsert_result(target, {**ROW, "experiment": "other"})
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == ["ml1m.json"]


def test_atomic_writes_keep_the_usual_permissions(tmp_path: Path) -> None:
    """A temporary file from ``mkstemp`` is owner-only; the committed results file must stay readable."""
    umask = os.umask(0o022)
    try:
        upsert_result(tmp_path / "ml1m.json", ROW)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "ml1m.json").stat().st_mode) == 0o644


def test_a_failing_data_save_leaves_the_previous_files(good_split: Path, tmp_path: Path, monkeypatch) -> None:
    folder = Path(shutil.copytree(good_split, tmp_path / "split"))
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    data = load_split(folder)
    original = pd.DataFrame.to_parquet

    def half_then_crash(frame, path, *args, **kwargs) -> None:
        if "test" in Path(path).name:  # train and valid were written (unchanged); test fails half-way
            Path(path).write_bytes(b"PAR1 half")
            raise OSError("disk full")
        original(frame, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        data.save(folder)
    monkeypatch.undo()
    assert {path.name for path in folder.iterdir()} == set(before)  # no temporary files left
    assert (folder / "test.parquet").read_bytes() == before["test.parquet"]
    assert load_split(folder).splits["test"].num_rows == 32


# --- the training runs (started by the first test) ----------------------------------------------


def row(out: Path) -> dict:
    summary = json.loads((out / "metrics.json").read_text())
    return {split: summary["row"][split] for split in ("valid", "test")}


def test_killed_mid_stage_then_resumed_ends_with_the_same_metrics(runs: dict) -> None:
    resumed_at = runs["killed"].result()
    assert all(epoch > 0.5 for epoch in resumed_at), resumed_at  # each went on from its checkpoint
    runs["first"].result()
    reference, resumed = runs["outs"]["first"], runs["outs"]["killed"]
    for stage in ("stage1", "stage2"):  # each resumed stage ends with the uninterrupted stage's weights
        expected, got = (
            load_file(reference / stage / TRAINABLE_FILE),
            load_file(resumed / stage / TRAINABLE_FILE),
        )
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)
    assert row(resumed) == row(reference)
    summaries = {out: json.loads((out / "metrics.json").read_text()) for out in (reference, resumed)}
    assert len(summaries[reference]["process_seconds"]) == 1
    assert len(summaries[resumed]["process_seconds"]) == 3  # the row's wall time counts all three processes
    for summary in summaries.values():
        assert summary["row"]["seconds"] == round(sum(summary["process_seconds"]), 1) > 0
    scores = {out: pd.read_parquet(out / "test_scores.parquet") for out in (reference, resumed)}
    np.testing.assert_allclose(scores[resumed]["score"], scores[reference]["score"], rtol=0, atol=1e-5)


def test_same_seed_same_metrics_in_two_processes(runs: dict) -> None:
    runs["first"].result()
    runs["second"].result()
    first, second = runs["outs"]["first"], runs["outs"]["second"]
    assert row(first) == row(second)
    for split in ("valid", "test"):
        a, b = (pd.read_parquet(out / f"{split}_scores.parquet") for out in (first, second))
        pd.testing.assert_frame_equal(a, b)  # bitwise: same scores, same row order
    names = {path.name for path in (first / "model").iterdir()}
    assert "model.safetensors" in names and not [
        n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))
    ]
