"""Two processes (``accelerate launch --multi_gpu --num_processes 2``, DDP over gloo on the CPU) train one tiny
two-stage run: one run, not two copies; every evaluation row scored exactly once, in split order (distributed
samplers pad the last shard with duplicates); scores equal to scoring the saved model in one process; files
written once, by the main process.

Training itself is not compared with a one-process run: the two shards see their rows in another order, so the
weights differ slightly (max |score difference| ~1e-2 on this tiny run); evaluation is what must agree.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ccf_llm.data import load_split
from ccf_llm.evaluation import split_metrics
from ccf_llm.metrics import ctr_metrics
from ccf_llm.testing.tiny_run import tiny_run_settings, write_tiny_run_inputs
from ccf_llm.training.trainer import encode_dataset, predict_scores
from modeling_ccf import CCFLLMForCTR
from processing_ccf import CCFLLMProcessor

REPO = Path(__file__).resolve().parents[1]
PROCESSES = 2
# Per-device batch 4 = the one-process batch of 8; an evaluation batch of 3 leaves the shards uneven (32 rows).
STAGE = {
    "epochs": 2,
    "learning_rate": 0.05,
    "batch_size": 4,
    "eval_batch_size": 3,
    "warmup_ratio": 0.0,
    "evals_per_epoch": 2,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("distributed")
    inputs = write_tiny_run_inputs(root / "inputs")
    out = root / "run"
    config = tiny_run_settings(
        inputs,
        out,
        method="tiny (2 processes)",
        results=str(root / "results.json"),
        stage1=STAGE,
        stage2={**STAGE, "learning_rate": 0.01},
    )
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # the CPU (gloo) even on a GPU machine
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(PROCESSES),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        str(REPO / "scripts" / "train.py"), "--config", str(root / "config.yaml"),
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-5000:]
    return {"out": out, "data": inputs["data"], "results": root / "results.json", "output": output}


def test_two_processes_train_one_run(run: dict) -> None:
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in run["output"]  # not two copies of the run
    steps_per_epoch = math.ceil(96 / (STAGE["batch_size"] * PROCESSES))
    for stage in ("stage1", "stage2"):
        state = json.loads((run["out"] / stage / "trainer_state.json").read_text())
        assert state["global_step"] == STAGE["epochs"] * steps_per_epoch
        evaluations = [entry for entry in state["log_history"] if "eval_auc" in entry]
        assert len(evaluations) == STAGE["epochs"] * STAGE["evals_per_epoch"]
    rows = json.loads(run["results"].read_text())["rows"]
    assert [row["method"] for row in rows] == ["tiny (2 processes)"]  # written once
    assert not list(run["out"].glob(".*.tmp"))


def test_every_evaluation_row_is_scored_once_in_split_order(run: dict) -> None:
    data = load_split(run["data"])
    for split in ("valid", "test"):
        scores = pd.read_parquet(run["out"] / f"{split}_scores.parquet")
        rows = data.splits[split].select_columns(["uid", "label", "not_cold"]).to_pandas()
        assert len(scores) == len(rows) == 32
        pd.testing.assert_frame_equal(scores[["uid", "label", "not_cold"]], rows, check_dtype=False)


def test_two_process_scores_equal_one_process_scores_of_the_saved_model(
    run: dict, tmp_path: Path, one_thread
) -> None:
    model = CCFLLMForCTR.from_pretrained(run["out"] / "model", dtype=torch.float32).eval()
    processor = CCFLLMProcessor.from_pretrained(run["out"] / "model")
    test = encode_dataset(load_split(run["data"]).splits["test"], processor, desc="tokenizing test")
    one_process = predict_scores(model, test, processor, 8, False, tmp_path / "predict")
    two_processes = pd.read_parquet(run["out"] / "test_scores.parquet")["score"].to_numpy()
    np.testing.assert_allclose(two_processes, one_process, rtol=0, atol=1e-5)
    summary = json.loads((run["out"] / "metrics.json").read_text())
    metrics = ctr_metrics(test["label"], one_process, test["uid"], test["not_cold"])
    assert summary["row"]["test"] == split_metrics(metrics, "test")
