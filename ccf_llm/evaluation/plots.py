"""Figures for ``results/``: ROC curves, training curves and the GATE's text-vs-CF lean for warm/cold rows."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .compare import read_scores


def plot_roc(runs: dict[str, Path], out: Path) -> Path:
    """ROC of each run's test scores (``<run>/test_scores.parquet``)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, run in runs.items():
        scores = read_scores(run, "test")
        fpr, tpr, _ = roc_curve(scores["label"], scores["score"])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(scores['label'], scores['score']):.4f})")
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ML-1M test ROC")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out)


def plot_training_curves(runs: dict[str, Path], out: Path) -> Path:
    """Training loss and valid AUC against step for every stage of every run (``trainer_state.json``)."""
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, run in runs.items():
        for state_file in sorted(run.glob("*/trainer_state.json")):
            history = json.loads(state_file.read_text())["log_history"]
            label = f"{name} / {state_file.parent.name}"
            losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
            aucs = [(h["step"], h["eval_auc"]) for h in history if "eval_auc" in h]
            if losses:
                loss_ax.plot(*zip(*losses, strict=True), label=label)
            if aucs:
                auc_ax.plot(*zip(*aucs, strict=True), marker="o", label=label)
    loss_ax.set(xlabel="step", ylabel="train BCE", title="training loss")
    auc_ax.set(xlabel="step", ylabel="valid AUC", title="valid AUC")
    auc_ax.legend(fontsize=6)
    return _save(fig, out)


def plot_gates(gates_file: Path, out: Path) -> Path:
    """Mean candidate-item gate per dimension (1 = text, 0 = CF), warm vs cold rows, sorted by the warm value."""
    gates = json.loads(gates_file.read_text())
    fig, ax = plt.subplots(figsize=(8, 3.5))
    order = np.argsort(gates["warm"]) if "warm" in gates else None
    for name, values in gates.items():
        values = np.asarray(values)
        values = values[order] if order is not None and len(values) == len(order) else values
        ax.plot(values, label=f"{name} rows (mean {values.mean():.3f})", linewidth=0.8)
    ax.set(xlabel="embedding dimension (sorted by warm gate)", ylabel="gate a (text share)", ylim=(0, 1))
    ax.set_title("GATE: text vs CF share of the candidate item's fused vector")
    ax.legend()
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
