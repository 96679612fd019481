"""The one row format every data source produces, and its on-disk parquet layout.

A split folder holds ``train/valid/test.parquet`` (columns :data:`ROW_COLUMNS`), ``items.parquet``
(``iid``, ``title``, optionally ``attributes`` text or pipe-separated ``genres``) and optionally
``users.parquet`` (``uid`` plus whatever is known: ``gender``, ``age``, ``occupation``, ...).
Ids follow CoLLM: ``0`` is padding, real ids start at 1, ``his`` starts with a padding ``0``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, DatasetDict

from ..atomic import replaced_atomically
from .attributes import genre_text, user_profiles

ROW_COLUMNS = ("uid", "iid", "label", "timestamp", "his", "title", "not_cold")
SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Bad input data: the message names the file (and line/column/id where known) and what was expected."""


@dataclass
class CTRData:
    """A CTR data set: the three splits, the item catalog (iid -> title), item attribute text (iid -> "comedy,
    crime"; items without attributes have no entry) and, where known, users."""

    splits: DatasetDict
    items: dict[int, str]
    users: pd.DataFrame | None = None
    name: str = "ctr"
    info: dict = field(default_factory=dict)
    item_attributes: dict[int, str] = field(default_factory=dict)

    def user_profiles(self) -> dict[int, str]:
        """uid -> profile sentence ("The user is a 25-34-year-old male programmer.") for users with one."""
        return user_profiles(self.users)

    def summary(self) -> pd.DataFrame:
        """Rows, users, items and positive rate per split (what ``prepare_data.py`` prints)."""
        rows = []
        for split in SPLITS:
            frame = self.splits[split].select_columns(["uid", "iid", "label", "not_cold"]).to_pandas()
            rows.append(
                {
                    "split": split,
                    "rows": len(frame),
                    "users": frame["uid"].nunique(),
                    "items": frame["iid"].nunique(),
                    "positive_rate": round(float(frame["label"].mean()), 4) if len(frame) else float("nan"),
                    "warm_rate": round(float(frame["not_cold"].mean()), 4) if len(frame) else float("nan"),
                }
            )
        return pd.DataFrame(rows)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the parquet layout; each file is written to a temporary name first, so a crash leaves no half file.

        Without users, an earlier save's ``users.parquet`` is removed: ``load_split`` would read it as these users.
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        frames = {split: self.splits[split].to_pandas() for split in SPLITS}
        frames["items"] = pd.DataFrame(
            {
                "iid": list(self.items),
                "title": list(self.items.values()),
                "attributes": [self.item_attributes.get(iid, "") for iid in self.items],
            }
        )
        if self.users is not None:
            frames["users"] = self.users
        else:
            (out / "users.parquet").unlink(missing_ok=True)
        for name, frame in frames.items():
            with replaced_atomically(out / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
        return out


def _read_parquet(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a parquet file with columns {list(required)})")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({err})") from err
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected {list(required)}")
    return frame


def frame_to_dataset(frame: pd.DataFrame) -> Dataset:
    """Keep exactly the row columns, with stable dtypes (``his`` as a list of int64).

    Built through pyarrow directly: converting ``his`` element by element in Python dominated the
    time of every data source.
    """
    columns = {
        column: pa.array(frame[column].to_numpy(dtype="int64"))
        for column in ROW_COLUMNS
        if column not in ("his", "title")
    }
    columns["his"] = pa.array(frame["his"].tolist(), type=pa.list_(pa.int64()))
    columns["title"] = pa.array(frame["title"].astype(str).tolist(), type=pa.large_string())
    return Dataset(pa.table({column: columns[column] for column in ROW_COLUMNS}))


def load_split(path: str | os.PathLike) -> CTRData:
    """Read a split folder (e.g. ``../shared/data/ml-1m``) into :class:`CTRData`."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: split folder not found (expected train/valid/test/items.parquet inside)")
    frames = {split: _read_parquet(root / f"{split}.parquet", ROW_COLUMNS) for split in SPLITS}
    items_frame = _read_parquet(root / "items.parquet", ("iid", "title"))
    _check_ids(items_frame, "iid", root / "items.parquet", "an integer item id >= 1")
    _fail_at(root / "items.parquet", items_frame, items_frame["iid"].duplicated(), "iid", "unique item ids")
    _fail_at(root / "items.parquet", items_frame, items_frame["title"].isna(), "title", "a title")
    splits = {}
    for split, frame in frames.items():
        check_rows(frame, root / f"{split}.parquet", set(items_frame["iid"].astype("int64")))
        splits[split] = frame_to_dataset(frame)
    items = {
        int(iid): str(title) for iid, title in zip(items_frame["iid"], items_frame["title"], strict=True)
    }
    users = None
    if (root / "users.parquet").is_file():
        users = _read_parquet(root / "users.parquet", ("uid",))
    attributes = item_attribute_column(items_frame, root / "items.parquet")
    return CTRData(
        splits=DatasetDict(splits), items=items, users=users, name=root.name, item_attributes=attributes
    )


def item_attribute_column(items_frame: pd.DataFrame, path: Path) -> dict[int, str]:
    """``attributes`` (text as written) or ``genres`` (pipe-separated) of items.parquet; neither: no attributes."""
    column = next((name for name in ("attributes", "genres") if name in items_frame.columns), None)
    if column is None:
        return {}
    values = items_frame[column]
    bad = values.notna() & ~values.map(lambda value: isinstance(value, str))
    _fail_at(path, items_frame, bad, column, "text (or null for an item without attributes)")
    texts = values.map(genre_text) if column == "genres" else values.fillna("").str.strip()
    return {int(iid): text for iid, text in zip(items_frame["iid"], texts, strict=True) if text}


def _fail_at(path: Path, frame: pd.DataFrame, bad: pd.Series, column: str, expected: str) -> None:
    """Raise for the first flagged row, naming its (0-based) position, column and value."""
    flagged = np.flatnonzero(np.asarray(bad, dtype=bool))
    if flagged.size:
        row, value = int(flagged[0]), frame[column].iloc[flagged[0]]
        value = value.tolist() if hasattr(value, "tolist") else value  # numpy scalars/arrays read plainly
        raise DataError(f"{path}, row {row}: {column} {value!r} is invalid; expected {expected}")


def _check_ids(frame: pd.DataFrame, column: str, path: Path, expected: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    _fail_at(path, frame, ~np.isfinite(values) | (values % 1 != 0) | (values < 1), column, expected)
    return values.astype("int64")


def check_rows(frame: pd.DataFrame, path: Path, items: set[int]) -> None:
    """A split's rows follow the schema: ids >= 1 and in the catalog, 0/1 labels, titles, integer histories."""
    if frame.empty:
        raise DataError(f"{path}: no rows; expected at least one row in every split")
    _fail_at(path, frame, frame["title"].isna(), "title", "a title")
    _check_ids(frame, "uid", path, "an integer user id >= 1")
    iids = _check_ids(frame, "iid", path, "an integer item id >= 1")
    _fail_at(path, frame, ~iids.isin(items), "iid", "an item id listed in items.parquet")
    for column in ("label", "not_cold"):
        values = pd.to_numeric(frame[column], errors="coerce")
        _fail_at(path, frame, ~values.isin([0, 1]), column, "0 or 1")
    stamps = pd.to_numeric(frame["timestamp"], errors="coerce").astype("float64")
    _fail_at(path, frame, ~np.isfinite(stamps), "timestamp", "a finite number")
    known = np.zeros(max(items, default=0) + 1, dtype=bool)
    known[[0, *items]] = True

    def known_ids(values: object) -> bool:
        values = np.asarray(values, dtype="float64")
        inside = (values >= 0) & (values < len(known)) & (values % 1 == 0)
        return values.ndim == 1 and bool(inside.all()) and bool(known[values.astype(np.int64)].all())

    def bad_history(his: object) -> bool:
        try:
            return not known_ids(his)
        except (TypeError, ValueError):
            return True

    try:  # vectorised first; the row-by-row scan only runs to locate a problem
        clean = not frame["his"].isna().any() and known_ids(np.concatenate([*frame["his"], []]))
    except (TypeError, ValueError):
        clean = False
    if not clean:
        _fail_at(path, frame, frame["his"].map(bad_history), "his", "a list of item ids (0 = padding)")
