"""A run's results row (the layout of ``results/<dataset>.json``), built here for LLM and CF runs alike."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .results import split_metrics, upsert_result


def experiment_command(name: str) -> str:
    """The command that reproduces an experiment's row (``configs/experiments/<name>.yaml``)."""
    return f"python scripts/experiment.py {name}"


def protocol(sampled: bool) -> str:
    """``cpu`` for the CPU protocol's subsampled rows, ``full`` for all train rows and whole splits."""
    return "cpu" if sampled else "full"


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name (Linux), or None where the system does not say."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names and names[0] else None


def device_label(bf16: bool = False, threads: int | None = None, gpu: bool | None = None) -> str:
    """A row's device: the GPU's name, or the CPU's model and cores (and bf16 and torch threads where they were
    set). CPUs differ in their bf16 kernels, so rows from two CPU models differ in their last digits even with the
    same seed. ``gpu=False``: a run that stays on the CPU (the CF models) on a GPU machine."""
    if torch.cuda.is_available() if gpu is None else gpu:
        return torch.cuda.get_device_name()
    name = cpu_name()
    extras = [f"{os.cpu_count()} cores"] + ["bf16"] * bf16
    extras += [f"{threads} torch thread{'s' * (threads != 1)}"] if threads else []
    return f"cpu ({', '.join([name, *extras] if name else extras)})"


def results_row(
    *,
    method: str,
    experiment: str | None,
    command: str,
    sampled: bool,
    train_rows: int,
    test_rows: int,
    settings: Mapping[str, Any],
    backbone: str | None,
    device: str,
    seconds: float,
    metrics: Mapping[str, Mapping[str, Any]],
    **extra: Any,
) -> dict:
    """The row of one finished run: ``metrics`` holds ``ctr_metrics`` of ``valid`` and ``test``. A run of an
    experiment records the experiment's command (the one that reruns it), not the script call it made."""
    return {
        "method": method,
        "experiment": experiment,
        "protocol": protocol(sampled),
        "train_rows": int(train_rows),
        "test_rows": int(test_rows),
        "settings": dict(settings),
        "backbone": backbone,
        "device": device,
        "seconds": round(seconds, 1),
        "command": experiment_command(experiment) if experiment else command,
        "valid": split_metrics(metrics["valid"], "valid"),
        "test": split_metrics(metrics["test"], "test"),
        **extra,
    }


def record_row(results: str | os.PathLike | None, row: Mapping[str, Any], data: str, data_name: str) -> None:
    """Upsert ``row`` into ``results`` (nothing when None); ``data`` as the config names it (``ml1m``, a folder)."""
    if results:
        upsert_result(results, row, dataset="ml-1m" if data == "ml1m" else data_name)
