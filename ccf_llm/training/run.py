"""The whole experiment: data -> CF tables -> stage 1 (LoRA, text) -> stage 2 (ALG+GATE, hybrid) -> test -> model folder."""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from transformers import set_seed

from modeling_ccf import CCFLLMForCTR, native_bf16
from processing_ccf import CCFLLMProcessor

from ..atomic import write_text_atomically
from ..build import build_model, load_backbone, preferred_attention
from ..data import CTRData, load_named
from ..evaluation import split_metrics, upsert_result
from ..evaluation.compare import write_scores
from ..evaluation.gates import gate_statistics
from ..metrics import ctr_metrics
from .config import ExperimentConfig, StageConfig
from .trainer import (
    TRAINABLE_FILE,
    WallClock,
    encode_dataset,
    load_weights_of,
    predict_scores,
    run_stage,
    world_size,
)

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
    return CTRData(DatasetDict(splits), data.items, data.users, data.name, data.info)


def cf_tables(config: ExperimentConfig, data: CTRData) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Load the configured CF tables, or train ``cf_model`` on the whole train split and export them first."""
    from ..cf import load_cf_tables, save_cf_tables, train_cf

    directory = Path(config.cf_dir) if config.cf_dir else Path(config.output_dir) / "cf"
    if not (directory / "cf_tables.safetensors").is_file():
        if config.cf_dir:
            raise FileNotFoundError(f"{directory / 'cf_tables.safetensors'} not found (cf_dir in the config)")
        if world_size() > 1:  # every process would train and write the same file
            raise RuntimeError(
                "a multi-process run needs ready CF tables: train them first (scripts/train_cf.py) and set cf_dir"
            )
        save_cf_tables(train_cf(config.cf_model, data, config.cf_settings), directory)
    users, items, info = load_cf_tables(directory)
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
    return users, items, info.get("model", config.cf_model)


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


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


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
        if is_main_process():
            write_scores(out, split, rows, scores)
    return metrics


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name (Linux), or None where the system does not say."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names and names[0] else None


def uses_bf16(config: ExperimentConfig) -> bool:
    """The config's ``bf16``, or where it is unset (None), whether bf16 is native on this machine. A ``bf16: true``
    on a CPU that emulates bf16 is kept (it may be there to match bf16 rows) but warned about: there, a SmolLM2
    training step takes minutes instead of seconds."""
    if config.bf16 is None:
        return native_bf16()
    if config.bf16 and not torch.cuda.is_available() and not native_bf16():
        warnings.warn(
            "bf16 is on, but this CPU has no native bf16 (AMX or AVX512-BF16) and emulates it, many times slower "
            "than fp32; set bf16: false (--set bf16=false) unless the run must match bf16 rows",
            stacklevel=2,
        )
    return config.bf16


def device_label(bf16: bool = False) -> str:
    """A results row's device: the GPU's name, or the CPU's model and cores (and bf16, whose CPU default depends on
    the machine, so a training row records it). CPUs differ in their bf16 kernels, so rows from two CPU models
    differ in their last digits even with the same seed."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    name = cpu_name()
    return f"cpu ({name + ', ' if name else ''}{os.cpu_count()} cores{', bf16' if bf16 else ''})"


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
    config: ExperimentConfig, data: CTRData, full_data: CTRData
) -> tuple[CCFLLMForCTR, CCFLLMProcessor, str | None]:
    """The config's model (backbone + LoRA; with CF also the frozen tables and ALG/GATE), its processor and the
    name of the CF model whose tables it reads (None for text-only prompts)."""
    needs_cf = config.fusion != "text_only"
    users, items, cf_name = cf_tables(config, full_data) if needs_cf else (None, None, None)
    backbone, tokenizer = load_backbone(config.backbone)
    model, processor = build_model(
        backbone,
        tokenizer,
        data.items,
        users,
        items,
        processor_kwargs={
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
    return model, processor, cf_name


def train_stages(
    model: CCFLLMForCTR,
    processor: CCFLLMProcessor,
    encoded: Callable[[CCFLLMProcessor, str], Dataset],
    config: ExperimentConfig,
    out: Path,
    **stage_kwargs,
) -> dict[str, dict]:
    """The schedule (DESIGN.md "Two stages"): stage 1 tunes LoRA on text prompts (or loads a finished run's),
    stage 2 tunes ALG + GATE on hybrid prompts; ``schedule: joint`` tunes both at once instead (ablation).
    Returns each stage's summary; an empty dict when nothing was trained (zero-shot)."""

    def stage(name: str, prompts: CCFLLMProcessor, settings: StageConfig, folder: str) -> dict:
        train, valid = encoded(prompts, "train"), encoded(prompts, "valid")
        return run_stage(model, name, prompts, train, valid, settings, out / folder, **stage_kwargs)

    if config.schedule == "joint":
        return {"joint": stage("joint", processor, config.stage2, "joint")}
    stages = {}
    if config.init_from:
        load_stage1_lora(model, config.init_from)
        stages["stage1"] = {"init_from": config.init_from}
    elif config.stage1.epochs > 0:
        stages["stage1"] = stage("text", processor.with_settings(hybrid=False), config.stage1, "stage1")
    if model.fusion is not None and config.stage2.epochs > 0:
        name = "fusion+lora" if config.stage2_tunes_lora else "fusion"
        stages["stage2"] = stage(name, processor, config.stage2, "stage2")
    return stages


def run_experiment(config: ExperimentConfig, command: str, resume: bool = False) -> dict:
    """Run every stage the config asks for, evaluate on valid/test, save the model folder, upsert the results row."""
    set_seed(config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A finished stage (its trainable weights saved) is reloaded by run_stage, not trained again.
    clock = WallClock(out, continued=resume or any(out.glob(f"*/{TRAINABLE_FILE}")))
    full_data = load_named(config.data, config.data_dir)
    data = subsample(config, full_data)
    model, processor, cf_name = build_run_model(config, data, full_data)
    bf16 = uses_bf16(config)

    @functools.cache
    def encoded(prompts: CCFLLMProcessor, split: str) -> Dataset:
        return encode_dataset(data.splits[split], prompts, desc=f"tokenizing {split}")

    stages = train_stages(
        model, processor, encoded, config, out, seed=config.seed, bf16=bf16, resume=resume, callbacks=(clock,)
    )
    main = is_main_process()
    splits = {split: encoded(processor, split) for split in ("valid", "test")}
    metrics = score_splits(model, processor, splits, config.stage2.eval_batch_size, bf16, out)
    if main:
        write_text_atomically(
            out / "gates.json", json.dumps(gate_statistics(model, processor, encoded(processor, "test")))
        )
        model.save_pretrained(out / MODEL_DIR)
        processor.save_pretrained(out / MODEL_DIR)
    process_seconds = clock.process_seconds()  # more than one entry when the run was continued
    row = {
        "method": config.method,
        "backbone": Path(config.backbone).name if config.backbone else "SmolLM2-135M-Instruct",
        "fusion": config.fusion,
        "cf": cf_name,
        "train_rows": len(data.splits["train"]) if stages else 0,  # 0: nothing trained (zero-shot)
        "device": device_label(bf16),
        "seconds": round(sum(process_seconds), 1),
        "command": command,
        "valid": split_metrics(metrics["valid"], "valid"),
        "test": split_metrics(metrics["test"], "test"),
    }
    summary = {"row": row, "process_seconds": process_seconds, "stages": stages, "config": config.to_dict()}
    if main:
        write_text_atomically(out / "metrics.json", json.dumps(summary, indent=2, default=float))
    if config.results and main:
        upsert_result(config.results, row, dataset="ml-1m" if config.data == "ml1m" else data.name)
    return summary


def summary_table(summary: dict) -> pd.DataFrame:
    row = summary["row"]
    return pd.DataFrame([{"split": split, **row[split]} for split in ("valid", "test")]).set_index("split")
