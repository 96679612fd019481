"""Inputs for tiny end-to-end training runs: a generated CTR split, a tiny backbone folder and CF tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import DatasetDict
from safetensors.torch import save_file

from ..data import CTRData
from ..data.schema import frame_to_dataset
from .make_tiny import TINY_CATALOG, tiny_backbone, tiny_tokenizer

NUM_USERS = 6


def tiny_ctr_data(rows: dict[str, int] | None = None, seed: int = 0) -> CTRData:
    """Users 1..5 and the tiny catalog's items; the first half of the catalog is liked, so labels are learnable."""
    rows = rows or {"train": 96, "valid": 32, "test": 32}
    rng = np.random.default_rng(seed)
    splits, start = {}, 0
    for name, count in rows.items():
        iid = rng.integers(1, len(TINY_CATALOG) + 1, count)
        frame = pd.DataFrame(
            {
                "uid": rng.integers(1, NUM_USERS, count),
                "iid": iid,
                "label": (iid <= len(TINY_CATALOG) // 2).astype(int),
                "timestamp": start + np.arange(count),
                "his": [
                    [0, *rng.integers(1, len(TINY_CATALOG) + 1, rng.integers(0, 5)).tolist()]
                    for _ in range(count)
                ],
                "title": [TINY_CATALOG[i] for i in iid],
                "not_cold": (rng.random(count) < 0.7).astype(int) if name != "train" else np.ones(count, int),
            }
        )
        splits[name] = frame_to_dataset(frame)
        start += count
    return CTRData(DatasetDict(splits), dict(TINY_CATALOG), name="tiny")


def write_tiny_run_inputs(root: str | Path, model_type: str = "llama", cf_dim: int = 8) -> dict[str, Path]:
    """Write ``data/`` (split folder), ``llm/`` (backbone + tokenizer) and ``cf/`` (tables) under ``root``."""
    root = Path(root)
    paths = {"data": root / "data", "llm": root / "llm", "cf": root / "cf"}
    tiny_ctr_data().save(paths["data"])
    tokenizer = tiny_tokenizer()
    backbone = tiny_backbone(model_type, vocab_size=len(tokenizer))
    backbone.save_pretrained(paths["llm"])
    tokenizer.save_pretrained(paths["llm"])
    generator = torch.Generator().manual_seed(0)
    paths["cf"].mkdir(parents=True, exist_ok=True)
    tables = {
        "user_embeddings": torch.randn(NUM_USERS, cf_dim, generator=generator),
        "item_embeddings": torch.randn(len(TINY_CATALOG) + 1, cf_dim, generator=generator),
    }
    save_file(tables, paths["cf"] / "cf_tables.safetensors")
    info = {"model": "random", "dim": cf_dim, "n_users": NUM_USERS, "n_items": len(TINY_CATALOG) + 1}
    (paths["cf"] / "cf_config.json").write_text(json.dumps(info))
    return paths


def tiny_run_settings(inputs: dict[str, Path], output_dir: str | Path, **changes) -> dict:
    """``ExperimentConfig`` settings of a two-stage run on :func:`write_tiny_run_inputs`' files.

    Tiny random backbones have tiny logits: only a large learning rate moves them within a few steps. fp32 on
    every CPU: the tests compare scores across attention kernels, batch shapes and processes to 1e-4, which bf16
    (the default where it is native, e.g. AMX) does not hold.
    """
    stage1 = {"epochs": 3, "learning_rate": 0.05, "batch_size": 8, "eval_batch_size": 32, "warmup_ratio": 0.0}
    settings = {
        "method": "tiny",
        "data": str(inputs["data"]),
        "backbone": str(inputs["llm"]),
        "cf_dir": str(inputs["cf"]),
        "output_dir": str(output_dir),
        "max_length": 160,
        "lora_dropout": 0.0,
        "bf16": False,
        "stage1": stage1,
        "stage2": {**stage1, "learning_rate": 0.01},
    }
    return {**settings, **changes}
