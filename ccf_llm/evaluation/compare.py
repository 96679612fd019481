"""How sure is a results row? Bootstrap intervals of runs' AUCs, and of their differences, on the rows they share.

A run folder (``scripts/train.py --output-dir``, ``scripts/score_cf.py --out``) holds ``<split>_scores.parquet``
(one row per scored example: ``uid``, ``label``, ``not_cold``, ``score``) and ``metrics.json`` (its results row).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import replaced_atomically
from ..metrics import auc_interval, ctr_metrics

ROW_COLUMNS = ("uid", "label", "not_cold")  # which example: the same in every run that scored these rows
SCORE_COLUMNS = (*ROW_COLUMNS, "score")
RESAMPLE_UNITS = ("users", "rows")


def scores_file(folder: str | os.PathLike, split: str) -> Path:
    return Path(folder) / f"{split}_scores.parquet"


def write_scores(folder: str | os.PathLike, split: str, rows: dict, scores: np.ndarray) -> None:
    """``<folder>/<split>_scores.parquet`` from a split's ``uid``/``label``/``not_cold`` columns and its scores."""
    frame = pd.DataFrame({column: np.asarray(rows[column]) for column in ROW_COLUMNS})
    frame["score"] = np.asarray(scores)
    with replaced_atomically(scores_file(folder, split)) as tmp:
        frame.to_parquet(tmp, index=False)


def read_scores(folder: str | os.PathLike, split: str = "test") -> pd.DataFrame:
    path = scores_file(folder, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no scores (a run folder of scripts/train.py or scripts/score_cf.py --out)"
        )
    frame = pd.read_parquet(path)
    missing = [column for column in SCORE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(SCORE_COLUMNS)}")
    return frame


def run_name(folder: str | os.PathLike) -> str:
    """The experiment of the folder's results row (rows of one method differ by it), else its method, else the
    folder's name."""
    metrics = Path(folder) / "metrics.json"
    if metrics.is_file():
        row = json.loads(metrics.read_text()).get("row", {})
        return row.get("experiment") or row.get("method") or Path(folder).name
    return Path(folder).name


def _check_same_rows(reference: pd.DataFrame, other: pd.DataFrame, where: str, reference_where: str) -> None:
    """Paired comparisons need the same examples in the same order (same config, same sample seed)."""
    if len(other) != len(reference):
        raise ValueError(
            f"{where}: {len(other)} rows, {reference_where}: {len(reference)}; not the same rows"
        )
    differ = np.flatnonzero((other["uid"].to_numpy() != reference["uid"].to_numpy())
                            | (other["label"].to_numpy() != reference["label"].to_numpy()))  # fmt: skip
    if differ.size:
        raise ValueError(
            f"{where}: row {differ[0]} (uid {other['uid'].iloc[differ[0]]}) differs from {reference_where}'s "
            f"(uid {reference['uid'].iloc[differ[0]]}); runs compare only on the same rows in the same order"
        )


def compare_runs(
    folders: Sequence[str | os.PathLike],
    baseline: str | os.PathLike | None = None,
    split: str = "test",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    resample: str = "users",
) -> pd.DataFrame:
    """One row per run: its AUC with a bootstrap interval, its UAUC and, given ``baseline``, AUC minus the
    baseline's on the same resamples (paired) with its interval, and the Spearman correlation of the two runs'
    scores (how much of the baseline's ranking the run keeps). Every run must have scored the same rows.
    ``resample``: "users" draws whole users (their rows are not independent), "rows" single rows (narrower)."""
    if not folders:
        raise ValueError("compare_runs: no run folders given")
    if resample not in RESAMPLE_UNITS:
        raise ValueError(f"compare_runs: resample must be one of {RESAMPLE_UNITS}, got {resample!r}")
    reference_folder = baseline if baseline is not None else folders[0]
    reference = read_scores(reference_folder, split)
    reference_where = str(scores_file(reference_folder, split))
    groups = reference["uid"].to_numpy() if resample == "users" else None
    options = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed, "groups": groups}
    table = []
    for folder in folders:
        scores = read_scores(folder, split)
        _check_same_rows(reference, scores, str(scores_file(folder, split)), reference_where)
        auc = auc_interval(scores["label"], scores["score"], **options)
        uauc = ctr_metrics(scores["label"], scores["score"], scores["uid"])["uauc"]
        row = {"method": run_name(folder), "rows": len(scores), "auc": auc["estimate"],
               "auc_low": auc["low"], "auc_high": auc["high"], "uauc": uauc}  # fmt: skip
        if baseline is not None:
            diff = auc_interval(scores["label"], scores["score"], reference["score"], **options)
            row |= {"minus_baseline": diff["estimate"], "diff_low": diff["low"], "diff_high": diff["high"],
                    "rank_correlation": scores["score"].corr(reference["score"], method="spearman")}  # fmt: skip
        table.append(row)
    return pd.DataFrame(table).set_index("method")
