"""The whole experiment: data -> CF tables -> stage 1 (LoRA, text) -> stage 2 (ALG+GATE, hybrid) -> scores -> model
folder, and its results row."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from transformers import set_seed

from modeling_ccf import CCFLLMForCTR, use_bf16
from processing_ccf import CCFLLMProcessor

from ..atomic import write_text_atomically
from ..build import build_model, load_backbone, preferred_attention
from ..data import CTRData, load_named
from ..evaluation.compare import write_scores
from ..evaluation.gates import gate_statistics
from ..evaluation.rows import device_label, record_row, results_row
from ..metrics import ctr_metrics
from .config import ExperimentConfig, StageConfig
from .stages import stage_name
from .trainer import (
    TRAINABLE_FILE,
    WallClock,
    encode_dataset,
    load_weights_of,
    predict_scores,
    process_state,
    run_stage,
)

CFTables = tuple[torch.Tensor, torch.Tensor, str]  # user table, item table, the tables' name in a results row
MODEL_DIR = "model"


def subsample(config: ExperimentConfig, data: CTRData) -> CTRData:
    """The CPU protocol's rows for the LLM: the most recent train rows, fixed random valid/test samples."""
    splits = dict(data.splits)
    if config.max_train_rows and len(splits["train"]) > config.max_train_rows:
        train = splits["train"].select(np.argsort(splits["train"]["timestamp"], kind="stable"))
        splits["train"] = train.select(range(len(train) - config.max_train_rows, len(train)))
    for name, limit in (("valid", config.max_valid_rows), ("test", config.max_test_rows)):
        if limit and len(splits[name]) > limit:  # a fixed random sample, so every user can appear
            splits[name] = splits[name].shuffle(seed=config.sample_seed).select(range(limit))
    return dataclasses.replace(data, splits=DatasetDict(splits))


def cf_tables(config: ExperimentConfig, data: CTRData) -> CFTables:
    """Load the configured CF tables, or train ``cf_model`` on the whole train split and export them first. Their
    name is the folder's (``cf_dir``, e.g. the CF experiment's), or ``cf_model`` for tables trained here."""
    from ..cf import load_cf_tables, save_cf_tables, train_cf

    directory = Path(config.cf_dir) if config.cf_dir else Path(config.output_dir) / "cf"
    if not (directory / "cf_tables.safetensors").is_file():
        if config.cf_dir:
            raise FileNotFoundError(f"{directory / 'cf_tables.safetensors'} not found (cf_dir in the config)")
        if process_state().num_processes > 1:  # every process would train and write the same file
            raise RuntimeError(
                "a multi-process run needs ready CF tables: train them first (scripts/train_cf.py) and set cf_dir"
            )
        save_cf_tables(train_cf(config.cf_model, data, config.cf_settings), directory)
    users, items, _ = load_cf_tables(directory)
    needed = {
        "user": max(max(split["uid"]) for split in data.splits.values()) + 1,
        "item": max(*(max(split["iid"]) for split in data.splits.values()), *data.items) + 1,
    }
    for name, table in (("user", users), ("item", items)):
        if table.shape[0] < needed[name]:
            raise ValueError(
                f"{directory / 'cf_tables.safetensors'}: the {name} table has {table.shape[0]} rows, but the data "
                f"has {name} ids up to {needed[name] - 1} (needs {needed[name]} rows): tables of another data set?"
            )
    return users, items, directory.name if config.cf_dir else config.cf_model


def load_stage1_lora(model: CCFLLMForCTR, run_dir: str | Path) -> None:
    """Start from the stage-1 LoRA of a finished run (its ``stage1`` weights or its saved model folder)."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / "stage1" / TRAINABLE_FILE, run_dir / MODEL_DIR / "model.safetensors"):
        if candidate.is_file():
            lora = {k: v for k, v in load_file(candidate).items() if "lora_" in k}
            if not lora:
                raise ValueError(f"{candidate} holds no LoRA weights")
            expected = {name for name in model.state_dict() if "lora_" in name}
            load_weights_of(model, lora, expected, f"init_from={run_dir}: the LoRA in {candidate.name}")
            return
    raise FileNotFoundError(
        f"init_from={run_dir}: no stage1/{TRAINABLE_FILE} or {MODEL_DIR}/model.safetensors"
    )


def score_splits(
    model: CCFLLMForCTR,
    processor: CCFLLMProcessor,
    splits: dict[str, Dataset],
    batch_size: int,
    bf16: bool,
    out: Path,
) -> dict[str, dict]:
    """``ctr_metrics`` of each encoded split, keeping its scores in ``out/<split>_scores.parquet``. Every process
    scores (gathered); only the first writes."""
    model.eval()
    model.set_attn_implementation(preferred_attention(training=False))
    metrics = {}
    for split, rows in splits.items():
        scores = predict_scores(model, rows, processor, batch_size, bf16, out / "predict")
        metrics[split] = ctr_metrics(rows["label"], scores, rows["uid"], rows["not_cold"])
        if process_state().is_main_process:
            write_scores(out, split, rows, scores)
    return metrics


def evaluate_saved_model(
    model_dir: str | Path,
    config: ExperimentConfig,
    out: str | Path,
    splits: tuple[str, ...] = ("test",),
    processor_dir: str | Path | None = None,
    bf16: bool = False,
) -> dict[str, dict]:
    """Score a saved model folder on the config's rows of ``splits``: e.g. a CPU-protocol model, trained and
    tested on samples, on the whole test split (``configs/ml1m.yaml``). Prompts follow the processor saved in
    ``processor_dir`` (default: the model folder; a stage checkpoint has none, its run's model folder has)."""
    data = subsample(config, load_named(config.data, config.data_dir))
    # As a run scores: fp32 weights, under bf16 autocast with ``bf16``.
    model = CCFLLMForCTR.from_pretrained(model_dir, dtype=torch.float32)
    processor = CCFLLMProcessor.from_pretrained(processor_dir or model_dir)
    rows = {
        split: encode_dataset(data.splits[split], processor, desc=f"tokenizing {split}") for split in splits
    }
    return score_splits(model, processor, rows, config.stage2.eval_batch_size, bf16, Path(out))


def build_run_model(
    config: ExperimentConfig, data: CTRData, tables: CFTables | None
) -> tuple[CCFLLMForCTR, CCFLLMProcessor]:
    """The config's model (backbone + LoRA; with CF ``tables`` also those, frozen, and ALG/GATE) and processor."""
    needs_cf = tables is not None
    users, items, _ = tables if needs_cf else (None, None, None)
    backbone, tokenizer = load_backbone(config.backbone)
    model, processor = build_model(
        backbone,
        tokenizer,
        data.items,
        users,
        items,
        processor_kwargs={
            "attributes": data.item_attributes,
            "profiles": data.user_profiles() if config.user_profile else {},
            "item_attributes": config.item_attributes,
            "user_profile": config.user_profile,
            "max_history": config.max_history,
            "max_length": config.max_length,
            "history_item_tokens": config.history_item_tokens,
            "hybrid": needs_cf,
            "item_noun": "book" if "book" in data.name else "movie",
        },
        fusion=config.fusion,
        score_type=config.score_type,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules,
    )
    model.set_attn_implementation(preferred_attention())
    return model, processor


def train_stages(
    model: CCFLLMForCTR,
    processor: CCFLLMProcessor,
    encoded: Callable[[CCFLLMProcessor, str], Dataset],
    config: ExperimentConfig,
    out: Path,
    **stage_kwargs,
) -> dict[str, dict]:
    """The schedule (docs/design.md "Two stages"): stage 1 tunes LoRA on text prompts (or loads a finished run's),
    stage 2 tunes ALG + GATE on hybrid prompts; ``schedule: joint`` tunes both at once instead (ablation).
    Returns each stage's summary; an empty dict when nothing was trained (zero-shot)."""

    def stage(name: str, prompts: CCFLLMProcessor, settings: StageConfig, folder: str) -> dict:
        train, valid = encoded(prompts, "train"), encoded(prompts, "valid")
        return run_stage(model, name, prompts, train, valid, settings, out / folder, **stage_kwargs)

    if config.schedule == "joint":
        name = stage_name("joint", cf=config.stage2_tunes_cf)
        return {"joint": stage(name, processor, config.stage2, "joint")}
    stages = {}
    if config.init_from:
        load_stage1_lora(model, config.init_from)
        stages["stage1"] = {"init_from": config.init_from}
    elif config.stage1.epochs > 0:
        stages["stage1"] = stage("text", processor.with_settings(hybrid=False), config.stage1, "stage1")
    if model.fusion is not None and config.stage2.epochs > 0:
        name = stage_name("fusion", lora=config.stage2_tunes_lora, cf=config.stage2_tunes_cf)
        stages["stage2"] = stage(name, processor, config.stage2, "stage2")
    return stages


def run_experiment(config: ExperimentConfig, command: str, resume: bool = False) -> dict:
    """data -> CF tables -> stage 1 -> stage 2 -> scores -> model folder, then the results row (``command`` is the
    row's, unless the config names its experiment, whose command reruns it). Returns the run's summary."""
    set_seed(config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = WallClock.of_run(out, resume)
    bf16 = use_bf16(config.bf16)
    main = process_state().is_main_process

    full_data = load_named(config.data, config.data_dir)
    data = subsample(config, full_data)
    tables = cf_tables(config, full_data) if config.fusion != "text_only" else None
    model, processor = build_run_model(config, data, tables)
    encoded = encoder(data)
    stages = train_stages(
        model, processor, encoded, config, out, seed=config.seed, bf16=bf16, resume=resume, callbacks=(clock,)
    )
    splits = {split: encoded(processor, split) for split in ("valid", "test")}
    metrics = score_splits(model, processor, splits, config.stage2.eval_batch_size, bf16, out)
    if main:
        save_model_folder(out, model, processor, splits["test"])
        clock.write()

    cf_name = tables[2] if tables else None
    row = run_row(config, data, cf_name, stages, metrics, bf16, clock.seconds(), command)
    summary = {
        "row": row,
        "process_seconds": clock.process_seconds(),
        "stages": stages,
        "config": config.to_dict(),
    }
    if main:
        write_text_atomically(out / "metrics.json", json.dumps(summary, indent=2, default=float))
        record_row(config.results, row, config.data, data.name)
    return summary


def encoder(data: CTRData) -> Callable[[CCFLLMProcessor, str], Dataset]:
    """A split's rows tokenized by a processor, once per (processor, split): stage 1's text prompts and the
    hybrid ones of stage 2 and scoring."""

    @functools.cache
    def encoded(prompts: CCFLLMProcessor, split: str) -> Dataset:
        return encode_dataset(data.splits[split], prompts, desc=f"tokenizing {split}")

    return encoded


def save_model_folder(out: Path, model: CCFLLMForCTR, processor: CCFLLMProcessor, test: Dataset) -> None:
    """``out/model`` (what ``scripts/publish.py`` publishes) and the test rows' gate statistics beside it."""
    write_text_atomically(out / "gates.json", json.dumps(gate_statistics(model, processor, test)))
    model.save_pretrained(out / MODEL_DIR)
    processor.save_pretrained(out / MODEL_DIR)


def run_row(
    config: ExperimentConfig,
    data: CTRData,
    cf_name: str | None,
    stages: dict[str, dict],
    metrics: dict[str, dict],
    bf16: bool,
    seconds: float,
    command: str,
) -> dict:
    """The results row of a finished run: what sets it apart from rows of its method lives in ``settings``."""
    train_rows = len(data.splits["train"])
    settings = {
        "fusion": config.fusion,
        "cf": cf_name,
        "history_item_tokens": config.history_item_tokens,
        "item_attributes": config.item_attributes,
        "user_profile": config.user_profile,
        "stage2_tunes_lora": config.stage2_tunes_lora,
        "stage2_tunes_cf": config.stage2_tunes_cf,
        "schedule": config.schedule,
        "max_history": config.max_history,
        "bf16": bf16,
        "seed": config.seed,
        "stage1_rows": stage1_rows(config, stages, train_rows),
    }
    return results_row(
        method=config.method,
        experiment=config.experiment,
        command=command,
        sampled=bool(config.max_train_rows or config.max_valid_rows or config.max_test_rows),
        train_rows=train_rows if stages else 0,  # 0: nothing trained (zero-shot)
        test_rows=len(data.splits["test"]),
        settings=settings,
        backbone=Path(config.backbone).name if config.backbone else "SmolLM2-135M-Instruct",
        device=device_label(bf16),
        seconds=seconds,
        metrics=metrics,
        valid_rows=len(data.splits["valid"]),
    )


def stage1_rows(config: ExperimentConfig, stages: dict[str, dict], train_rows: int) -> int | None:
    """The rows stage 1 (LoRA on text) learnt from: this run's, or, with ``init_from``, that run's (None where its
    row is missing); 0 without a stage 1 (joint, zero-shot)."""
    if config.init_from:
        metrics = Path(config.init_from) / "metrics.json"
        if not metrics.is_file():
            return None
        row = json.loads(metrics.read_text())["row"]
        return row.get("settings", {}).get("stage1_rows", row.get("train_rows"))
    return train_rows if "stage1" in stages else 0


def summary_table(summary: dict) -> pd.DataFrame:
    row = summary["row"]
    return pd.DataFrame([{"split": split, **row[split]} for split in ("valid", "test")]).set_index("split")
