"""A content-aware non-LLM baseline: gradient-boosted trees (or logistic regression) on hand-made features.

It is what a practitioner tries first with the same inputs the LLM reads, so every LLM row is read against it.
Feature groups (:data:`FEATURE_GROUPS`), all computed without any CF model:

- ``ids``: the user's and the item's train like-rate (smoothed toward the train rate) and train row counts;
- ``user_genre``: the user's train like-rate on items sharing a genre with the candidate, and that row count;
- ``year``: the release year parsed from the title's trailing ``(1995)``;
- ``genres``: the candidate's genres, multi-hot (from ``CTRData.item_attributes``);
- ``history``: the history's length, the fraction of history items sharing a genre with the candidate and the
  cosine between the candidate's genre vector and the history's genre counts;
- ``demographics``: gender, age (ML-1M's band code or ML-100K's years) and occupation (categorical).

Label statistics of train rows come from the *other* folds of train (cross-fitting), so a train row never
sees its own label; valid and test rows use all of train. Models are fitted on train only, tuned on valid
(best valid AUC over a small grid; the GBDT's tree count is picked from its staged valid predictions) and
scored on the whole test split.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ..atomic import write_text_atomically
from ..data import SPLITS, CTRData
from ..evaluation import split_metrics
from ..evaluation.compare import ROW_COLUMNS, write_scores
from ..metrics import ctr_metrics

logger = logging.getLogger(__name__)

FEATURE_GROUPS = ("ids", "user_genre", "year", "genres", "history", "demographics")
GENRE_GROUPS = ("user_genre", "genres", "history")  # need item attributes
MODELS = ("gbdt", "logreg")
METHOD_NAMES = {"gbdt": "Content GBDT", "logreg": "Content LR"}
# Small grids: the point is a fair, cheap baseline, not a leaderboard entry.
GRIDS: dict[str, dict[str, list]] = {
    "gbdt": {"learning_rate": [0.03, 0.1], "max_leaf_nodes": [15, 63], "l2_regularization": [0.0, 1.0]},
    "logreg": {"C": [0.01, 0.1, 1.0, 10.0]},
}
GBDT_MAX_ITER = 300
STAGE_EVERY = 10  # the tree count is chosen in steps of this many trees: fine enough, and cheap
SMOOTHING = 10.0  # pseudo-rows of prior in every smoothed like-rate
FOLDS = 5
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def release_year(title: str) -> float:
    """The year of a MovieLens-style title ``"Heat (1995)"``; NaN when the title does not end in one."""
    match = _YEAR.search(title)
    return float(match.group(1)) if match else float("nan")


def attribute_list(text: str) -> list[str]:
    """``"comedy, crime"`` -> ``["comedy", "crime"]``; the empty attribute gives ``[]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def genre_matrix(item_attributes: Mapping[int, str], n_items: int) -> tuple[np.ndarray, list[str]]:
    """Multi-hot genres, row = item id (row 0 = padding, all zero), and the genre names (sorted)."""
    lists = {iid: attribute_list(text) for iid, text in item_attributes.items()}
    names = sorted({genre for genres in lists.values() for genre in genres})
    column = {name: k for k, name in enumerate(names)}
    matrix = np.zeros((n_items + 1, len(names)), dtype=np.float32)
    for iid, genres in lists.items():
        if iid <= n_items:
            matrix[iid, [column[genre] for genre in genres]] = 1.0
    return matrix, names


def history_overlap(his: Sequence[Sequence[int]], iids: np.ndarray, genres: np.ndarray) -> pd.DataFrame:
    """Per row: history length, share of history items with a genre of the candidate, genre-vector cosine.

    Padding (id 0) is not a history item; rows without history get NaN overlap (nothing to compare).
    """
    lengths = np.array([sum(1 for item in row if item) for row in his], dtype=np.int64)
    items = np.fromiter((item for row in his for item in row if item), dtype=np.int64, count=lengths.sum())
    row_of = np.repeat(np.arange(len(iids)), lengths)
    candidate = genres[iids]
    shares = ((genres[items] * candidate[row_of]).sum(axis=1) > 0).astype(np.float64)
    counts = np.zeros_like(candidate, dtype=np.float64)
    np.add.at(counts, row_of, genres[items])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.bincount(row_of, shares, minlength=len(iids)) / lengths
        norms = np.linalg.norm(counts, axis=1) * np.linalg.norm(candidate, axis=1)
        cosine = np.where(norms > 0, (counts * candidate).sum(axis=1) / norms, np.nan)
    share[lengths == 0] = np.nan
    cosine[lengths == 0] = np.nan
    return pd.DataFrame(
        {"history_length": lengths, "history_genre_share": share, "history_genre_cosine": cosine}
    )


def _rates(
    fit_keys: pd.Series, fit_labels: np.ndarray, keys: pd.Series, prior: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed like-rate and train count of each of ``keys`` from the ``fit`` rows (unseen keys: the prior)."""
    stats = (
        pd.DataFrame({"key": fit_keys.to_numpy(), "y": fit_labels}).groupby("key")["y"].agg(["sum", "count"])
    )
    positives = keys.map(stats["sum"]).fillna(0.0).to_numpy()
    count = keys.map(stats["count"]).fillna(0.0).to_numpy()
    return (positives + SMOOTHING * prior) / (count + SMOOTHING), count


def _user_genre_keys(uids: np.ndarray, iids: np.ndarray, genres: np.ndarray) -> tuple[np.ndarray, pd.Series]:
    """One (row, user-genre key) pair per genre of each row's candidate; key = uid * n_genres + genre."""
    rows, columns = np.nonzero(genres[iids])
    return rows, pd.Series(uids[rows].astype(np.int64) * genres.shape[1] + columns)


def _label_features(
    fit: pd.DataFrame, rows: pd.DataFrame, genres: np.ndarray, groups: Sequence[str]
) -> dict[str, np.ndarray]:
    """The label statistics of ``rows`` learned from ``fit`` (both with ``uid``, ``iid``, ``label``)."""
    labels = fit["label"].to_numpy(dtype=np.float64)
    base = float(labels.mean())
    out: dict[str, np.ndarray] = {}
    user_rate, user_count = _rates(fit["uid"], labels, rows["uid"], base)
    if "ids" in groups:
        item_rate, item_count = _rates(fit["iid"], labels, rows["iid"], base)
        out |= {
            "user_rate": user_rate,
            "user_count": user_count,
            "item_rate": item_rate,
            "item_count": item_count,
        }
    if "user_genre" in groups:
        fit_rows, fit_keys = _user_genre_keys(fit["uid"].to_numpy(), fit["iid"].to_numpy(), genres)
        row_of, keys = _user_genre_keys(rows["uid"].to_numpy(), rows["iid"].to_numpy(), genres)
        stats = (
            pd.DataFrame({"key": fit_keys, "y": labels[fit_rows]}).groupby("key")["y"].agg(["sum", "count"])
        )
        positives = np.bincount(row_of, keys.map(stats["sum"]).fillna(0.0).to_numpy(), minlength=len(rows))
        count = np.bincount(row_of, keys.map(stats["count"]).fillna(0.0).to_numpy(), minlength=len(rows))
        # toward the user's own rate: a user who likes everything likes every genre until shown otherwise
        out["user_genre_rate"] = (positives + SMOOTHING * user_rate) / (count + SMOOTHING)
        out["user_genre_count"] = count
    return out


def _cross_fitted(train: pd.DataFrame, genres: np.ndarray, groups: Sequence[str], seed: int) -> pd.DataFrame:
    """Label statistics of train rows, each fold's from the other folds, so no row sees its own label."""
    fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
    parts = []
    for k in range(FOLDS):
        inside = fold == k
        stats = _label_features(train[~inside], train[inside], genres, groups)
        parts.append(pd.DataFrame(stats, index=np.flatnonzero(inside)))
    return pd.concat(parts).sort_index()


def _demographics(users: pd.DataFrame) -> pd.DataFrame:
    """gender (M = 1, F = 0), numeric age and an occupation code per ``uid``; unknown values are NaN."""
    table = pd.DataFrame({"uid": users["uid"].to_numpy()})
    gender = users["gender"].astype("string").str.strip().str.upper() if "gender" in users else None
    table["gender"] = (
        gender.map({"M": 1.0, "F": 0.0}).astype("float64").to_numpy() if gender is not None else np.nan
    )
    table["age"] = pd.to_numeric(users["age"], errors="coerce").to_numpy() if "age" in users else np.nan
    if "occupation" in users:
        names = users["occupation"].astype("string").str.strip().str.lower()
        codes, _ = pd.factorize(names, sort=True)  # the same code for every split: one table of users
        table["occupation"] = np.where(codes >= 0, codes, np.nan)
    else:
        table["occupation"] = np.nan
    return table.set_index("uid")


@dataclass
class ContentFeatures:
    """Feature frames of the three splits (one row per split row, in split order) and which columns are categorical."""

    frames: dict[str, pd.DataFrame]
    groups: tuple[str, ...]
    categorical: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return list(self.frames["train"].columns)


def usable_groups(data: CTRData, groups: Sequence[str] = FEATURE_GROUPS) -> tuple[str, ...]:
    """``groups`` less those the data cannot feed (genre groups without item attributes, demographics without users)."""
    unknown = sorted(set(groups) - set(FEATURE_GROUPS))
    if unknown:
        raise ValueError(f"unknown feature group(s) {unknown}; expected some of {list(FEATURE_GROUPS)}")
    kept = []
    for group in groups:
        if group in GENRE_GROUPS and not data.item_attributes:
            logger.warning("%s: no item attributes, so no %s features", data.name, group)
        elif group == "demographics" and data.users is None:
            logger.warning("%s: no users table, so no demographics features", data.name)
        else:
            kept.append(group)
    return tuple(kept)


def build_features(data: CTRData, groups: Sequence[str] = FEATURE_GROUPS, seed: int = 0) -> ContentFeatures:
    """The feature frames of every split (groups in the module docstring; see :func:`usable_groups`)."""
    groups = usable_groups(data, groups)
    frames = {
        split: data.splits[split].select_columns(["uid", "iid", "label", "his"]).to_pandas()
        for split in data.splits
    }
    n_items = max(max(data.items, default=0), *(int(frame["iid"].max()) for frame in frames.values()))
    genres, names = genre_matrix(data.item_attributes, n_items)
    years = np.full(n_items + 1, np.nan)
    for iid, title in data.items.items():
        years[iid] = release_year(title)
    demographics = _demographics(data.users) if "demographics" in groups else None
    out = {}
    for split, rows in frames.items():
        if split == "train":
            labels = _cross_fitted(rows, genres, groups, seed)
        else:
            labels = pd.DataFrame(_label_features(frames["train"], rows, genres, groups))
        parts = [labels.reset_index(drop=True)]
        iids = rows["iid"].to_numpy()
        if "year" in groups:
            parts.append(pd.DataFrame({"year": years[iids]}))
        if "genres" in groups:
            parts.append(pd.DataFrame(genres[iids], columns=[f"genre={name}" for name in names]))
        if "history" in groups:
            parts.append(history_overlap(rows["his"].tolist(), iids, genres))
        if demographics is not None:
            parts.append(demographics.reindex(rows["uid"].to_numpy()).reset_index(drop=True))
        out[split] = pd.concat(parts, axis=1)
    categorical = ["occupation"] if demographics is not None else []
    return ContentFeatures(out, groups, categorical)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def _fit_gbdt(
    features: ContentFeatures, labels: dict[str, np.ndarray], params: Mapping, seed: int
) -> tuple[dict, Callable[[pd.DataFrame], np.ndarray]]:
    """Fit on train; the tree count is the staged one with the best valid AUC. Returns it and a scorer."""
    columns = features.columns
    model = HistGradientBoostingClassifier(
        max_iter=params.get("max_iter", GBDT_MAX_ITER),
        learning_rate=params["learning_rate"],
        max_leaf_nodes=params["max_leaf_nodes"],
        l2_regularization=params["l2_regularization"],
        categorical_features=[columns.index(name) for name in features.categorical] or None,
        early_stopping=False,  # its holdout would be a random tenth of train; valid decides instead
        random_state=seed,
    )
    model.fit(features.frames["train"], labels["train"])
    best_trees, best_auc = 0, -1.0
    for trees, scores in enumerate(model.staged_decision_function(features.frames["valid"]), start=1):
        if trees % STAGE_EVERY == 0 or trees == model.n_iter_:
            auc = _auc(labels["valid"], scores)
            if auc > best_auc:
                best_trees, best_auc = trees, auc

    def score(frame: pd.DataFrame) -> np.ndarray:
        staged = model.staged_decision_function(frame)
        return next(itertools.islice(staged, best_trees - 1, None))

    return {**params, "trees": best_trees}, score


def _fit_logreg(
    features: ContentFeatures, labels: dict[str, np.ndarray], params: Mapping, seed: int
) -> tuple[dict, Callable[[pd.DataFrame], np.ndarray]]:
    """Standardised numbers (missing ones imputed and flagged) plus one-hot categories, L2 logistic regression."""
    numeric = [name for name in features.columns if name not in features.categorical]
    prepare = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                numeric,
            ),
            *(
                [
                    (
                        "categorical",
                        make_pipeline(
                            SimpleImputer(strategy="constant", fill_value=-1),
                            OneHotEncoder(handle_unknown="ignore"),
                        ),
                        features.categorical,
                    )
                ]
                if features.categorical
                else []
            ),
        ]
    )
    model = make_pipeline(prepare, LogisticRegression(C=params["C"], max_iter=2000, random_state=seed))
    model.fit(features.frames["train"], labels["train"])
    return dict(params), model.decision_function


FITTERS = {"gbdt": _fit_gbdt, "logreg": _fit_logreg}


@dataclass
class ContentRun:
    """The tuned baseline: chosen settings, the grid's valid AUCs, scores and metrics of valid and test."""

    model: str
    groups: tuple[str, ...]
    columns: list[str]
    best: dict
    grid: list[dict]
    scores: dict[str, np.ndarray]
    metrics: dict[str, dict]
    rows: dict[str, pd.DataFrame]
    seed: int
    seconds: float

    def row(self, *, command: str, device: str, experiment: str | None = None) -> dict:
        """The results row (the layout of results/<dataset>.json): tuned settings apart, so reruns replace it."""
        return {
            "method": METHOD_NAMES[self.model],
            "experiment": experiment,
            "protocol": "full",
            "train_rows": len(self.rows["train"]),
            "test_rows": len(self.rows["test"]),
            "settings": {"model": self.model, "features": list(self.groups), "seed": self.seed},
            "backbone": None,
            "device": device,
            "seconds": round(self.seconds, 1),
            "command": command,
            "valid": split_metrics(self.metrics["valid"], "valid"),
            "test": split_metrics(self.metrics["test"], "test"),
            "tuned": self.best,
        }

    def save(self, out: str | os.PathLike, row: Mapping) -> Path:
        """``<split>_scores.parquet`` for valid and test (the LLM runs' layout) and ``metrics.json``."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for split, scores in self.scores.items():
            write_scores(folder, split, self.rows[split], scores)
        report = {"row": dict(row), "features": self.columns, "grid": self.grid}
        write_text_atomically(folder / "metrics.json", json.dumps(report, indent=2) + "\n")
        return folder


def grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of the grid's values, in the order the grid lists them."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def fit_content_baseline(
    data: CTRData,
    model: str = "gbdt",
    groups: Sequence[str] = FEATURE_GROUPS,
    grid: Mapping[str, Sequence] | None = None,
    seed: int = 0,
) -> ContentRun:
    """Fit every grid point on train, keep the best valid AUC, score valid and test with it."""
    if model not in FITTERS:
        raise ValueError(f"unknown model {model!r}; expected one of {list(MODELS)}")
    start = time.perf_counter()
    features = build_features(data, groups, seed)
    logger.info("features (%d): %s", len(features.columns), ", ".join(features.columns))
    splits = ("valid", "test")
    rows = {split: data.splits[split].select_columns(list(ROW_COLUMNS)).to_pandas() for split in SPLITS}
    labels = {split: rows[split]["label"].to_numpy(dtype=np.int64) for split in SPLITS}
    table, best = [], None
    points = grid_points(grid or GRIDS[model])
    for n, params in enumerate(points, start=1):
        settings, score = FITTERS[model](features, labels, params, seed)
        valid_scores = score(features.frames["valid"])
        auc = _auc(labels["valid"], valid_scores)
        table.append({**settings, "valid_auc": round(auc, 4)})
        logger.info("grid %d/%d %s: valid AUC %.4f", n, len(points), settings, auc)
        if best is None or auc > best[0]:
            best = (auc, settings, score, valid_scores)
    _, settings, score, valid_scores = best
    scores = {"valid": valid_scores, "test": score(features.frames["test"])}
    metrics = {
        split: ctr_metrics(rows[split]["label"], scores[split], rows[split]["uid"], rows[split]["not_cold"])
        for split in splits
    }
    return ContentRun(
        model,
        features.groups,
        features.columns,
        settings,
        table,
        scores,
        metrics,
        rows,
        seed,
        time.perf_counter() - start,
    )
