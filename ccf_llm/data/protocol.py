"""CoLLM's split protocol, shared by every raw source: labels, time order, ids, histories, warm flags.

A source reader hands over its ratings as ``events`` (columns ``user``, ``item``, ``rating``,
``timestamp``, ``split``) *in source order*: the row order that CoLLM's pandas code had when it sorted
by (user, timestamp), which decides ties between equal timestamps and, for ``id_order="source"``, the ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Literal

import numpy as np
import pandas as pd
from datasets import DatasetDict

from .schema import SPLITS, CTRData, DataError, frame_to_dataset

MonthRange = tuple[int, int]


def month_slots(timestamps: pd.Series) -> pd.Series:
    """Calendar-month index (UTC) counted from the month of the earliest timestamp (slot 0)."""
    when = pd.to_datetime(timestamps, unit="s", utc=True)
    months = when.dt.year * 12 + when.dt.month
    return months - months.min()


def check_month_ranges(ranges: Mapping[str, MonthRange]) -> None:
    """Inclusive ``(first, last)`` slot ranges, one per split, that do not overlap."""
    spans = []
    for split, bounds in ranges.items():
        if (
            len(bounds) != 2
            or not all(isinstance(b, (int, np.integer)) for b in bounds)
            or bounds[0] > bounds[1]
        ):
            raise ValueError(
                f"{split} months must be an inclusive (first, last) pair of ints, got {bounds!r}"
            )
        spans.append((int(bounds[0]), int(bounds[1]), split))
    spans.sort()
    for (_, last, split), (first, _, other) in pairwise(spans):
        if first <= last:
            raise ValueError(f"{split} and {other} month ranges overlap")


def assign_month_splits(slots: pd.Series, ranges: Mapping[str, MonthRange]) -> pd.Series:
    """Split name per row by its month slot; rows outside every range get ``None``."""
    check_month_ranges(ranges)
    split = pd.Series(None, index=slots.index, dtype=object)
    for name, (first, last) in ranges.items():
        split[slots.between(first, last)] = name
    return split


def _histories(
    users: np.ndarray, items: np.ndarray, labels: np.ndarray, max_history: int | None
) -> list[list[int]]:
    """CoLLM's ``his``: a leading 0, then the user's earlier positive items, oldest first."""
    out: list[list[int]] = []
    liked: list[int] = []
    previous = None
    for user, item, label in zip(users.tolist(), items.tolist(), labels.tolist(), strict=True):
        if user != previous:
            liked, previous = [], user
        kept = liked if max_history is None else liked[-max_history:] if max_history else []
        out.append([0, *kept])
        if label:
            liked.append(item)
    return out


def build_ctr_data(
    events: pd.DataFrame,
    titles: pd.Series,
    *,
    name: str,
    source: str,
    windows: Mapping[str, str],
    label_threshold: float,
    id_order: Literal["sorted", "source"] = "sorted",
    max_history: int | None = None,
    max_train_rows: int | None = None,
    users: pd.DataFrame | None = None,
    attributes: pd.Series | None = None,
    info: Mapping | None = None,
) -> CTRData:
    """Turn split-tagged ratings into :class:`CTRData` the way CoLLM's notebooks do.

    ``titles`` maps raw item id -> title (its index must cover every rated item); ``attributes`` maps raw
    item id -> attribute text ("comedy, crime"), and items it lacks or gives ``""`` get no attributes.

    - label = rating >= ``label_threshold``;
    - rows are ordered by (raw user, timestamp), ties kept in source order (a stable sort);
    - ids start at 1 (0 = padding). ``sorted``: users by ascending raw id, items by first appearance
      in that order (CoLLM ML-1M). ``source``: both by first appearance in source order (CoLLM Amazon);
    - ``his`` runs over all three splits, so valid/test rows see the user's train positives;
    - ``max_history`` keeps the last k history items (after the leading 0); None keeps all;
    - ``max_train_rows`` keeps only the most recent train rows (ids, histories and warm flags are unaffected);
    - ``not_cold`` = 1 for train rows and for valid/test rows whose user and item are both in the full train
      split, before ``max_train_rows``: the same flags as ``ccf_llm.training.run.subsample`` keeps.
    """
    if max_history is not None and max_history < 0:
        raise ValueError(f"max_history must be >= 0 or None, got {max_history}")
    if max_train_rows is not None and max_train_rows < 1:
        raise ValueError(f"max_train_rows must be >= 1 or None, got {max_train_rows}")
    for split in SPLITS:
        if not (events["split"] == split).any():
            raise DataError(f"{source}: no ratings fall in the {split} split ({windows[split]})")

    events = events.reset_index(drop=True)
    untitled = ~events["item"].isin(titles.index)
    if untitled.any():
        raise DataError(f"{source}: item {events['item'][untitled].iloc[0]!r} has ratings but no title")
    user_codes = pd.factorize(events["user"], sort=True)[0]
    timestamps = events["timestamp"].to_numpy(dtype=np.int64)
    source_rank = np.arange(len(events))
    order = np.lexsort((source_rank, timestamps, user_codes))

    if id_order == "sorted":
        uid = pd.factorize(events["user"].to_numpy()[order])[0] + 1
        iid = pd.factorize(events["item"].to_numpy()[order])[0] + 1
        uid_by_row, iid_by_row = np.empty_like(uid), np.empty_like(iid)
        uid_by_row[order], iid_by_row[order] = uid, iid
    elif id_order == "source":
        uid_by_row = pd.factorize(events["user"])[0] + 1
        iid_by_row = pd.factorize(events["item"])[0] + 1
    else:
        raise ValueError(f"id_order must be 'sorted' or 'source', got {id_order!r}")

    rows = pd.DataFrame(
        {
            "uid": uid_by_row,
            "iid": iid_by_row,
            "label": (events["rating"].to_numpy() >= label_threshold).astype(np.int64),
            "timestamp": timestamps,
            "title": events["item"].map(titles).to_numpy(dtype=object),
            "split": events["split"].to_numpy(),
        }
    ).iloc[order]
    rows["his"] = _histories(
        rows["uid"].to_numpy(), rows["iid"].to_numpy(), rows["label"].to_numpy(), max_history
    )

    train = rows[rows["split"] == "train"]
    warm = rows["uid"].isin(set(train["uid"])) & rows["iid"].isin(set(train["iid"]))
    rows["not_cold"] = ((rows["split"] == "train") | warm).astype(np.int64)

    if max_train_rows is not None:  # after the warm flags, set on the full train split (docs/design.md)
        recent = (
            train.assign(rank=source_rank[train.index])
            .sort_values(["timestamp", "rank"])
            .index[-max_train_rows:]
        )
        rows = rows[(rows["split"] != "train") | rows.index.isin(recent)]

    item_ids = pd.Series(iid_by_row, index=events["item"].to_numpy()).groupby(level=0).first()
    items = dict(
        sorted(zip(item_ids.to_numpy().tolist(), titles.reindex(item_ids.index).astype(str), strict=True))
    )
    item_attributes = {}
    if attributes is not None:
        texts = attributes.reindex(item_ids.index)
        item_attributes = {
            int(iid): str(text)
            for iid, text in zip(item_ids.to_numpy().tolist(), texts, strict=True)
            if isinstance(text, str) and text
        }
    splits = DatasetDict({split: frame_to_dataset(rows[rows["split"] == split]) for split in SPLITS})

    user_table = None
    if users is not None:
        ids = pd.Series(uid_by_row, index=events["user"].to_numpy()).groupby(level=0).first()
        user_table = (
            pd.DataFrame({"uid": ids.to_numpy(), "user_id": ids.index})
            .merge(users, on="user_id", how="left")
            .sort_values("uid")
            .reset_index(drop=True)
        )
    meta = {
        "source": source,
        "label_threshold": label_threshold,
        "windows": dict(windows),
        "id_order": id_order,
        "max_history": max_history,
        "max_train_rows": max_train_rows,
        "n_users": int(uid_by_row.max()),
        "n_items": int(iid_by_row.max()),
        **(info or {}),
    }
    return CTRData(
        splits=splits,
        items=items,
        users=user_table,
        name=name,
        info=meta,
        item_attributes=dict(sorted(item_attributes.items())),
    )
