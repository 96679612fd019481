"""The embedded default data: RecBole's bundled MovieLens-100K, split by CoLLM's month-slot protocol.

``pip install --no-deps recbole==1.2.1`` ships ``recbole/dataset_example/ml-100k`` (atomic files).
It is found through :func:`importlib.util.find_spec`, never by importing recbole (whose import pulls
in heavy dependencies we do not install).

ML-100K spans Sep 1997 - Apr 1998, i.e. month slots 0-7. Default slots: train 0-5 (Sep 1997 - Feb 1998),
valid 6 (Mar 1998), test 7 (Apr 1998); label = rating >= 4. Sizes with all train rows:

    train 77,985 rows (736 users, 1,608 items, 55.3 % positive)
    valid 12,656 rows (226 users, 1,280 items, 55.6 % positive, 18.7 % warm)
    test   9,359 rows (162 users, 1,327 items, 56.0 % positive, 14.4 % warm)

Most ML-100K users rate everything within a day, so a temporal split leaves few warm valid/test users
(any month split does); the histories still carry each user's earlier positives of the same month.
For a run of a few minutes on 2 CPU cores, pass e.g. ``max_train_rows=2000`` (the most recent 2,000
train rows; ids, titles, histories and warm flags are computed on all rows first).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .movielens import process_movielens
from .protocol import MonthRange
from .schema import CTRData, DataError

RECBOLE_INSTALL = "pip install --no-deps recbole==1.2.1"


def recbole_ml100k_dir() -> Path:
    """Folder of RecBole's bundled ``ml-100k`` atomic files, located without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"recbole is not installed, so its bundled ml-100k is missing; run `{RECBOLE_INSTALL}`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise DataError(
            f"{folder}: recbole's bundled ml-100k.inter is missing; reinstall with `{RECBOLE_INSTALL}`"
        )
    return folder


def load_default(
    max_train_rows: int | None = None,
    *,
    label_threshold: float = 4,
    train_months: MonthRange = (0, 5),
    valid_months: MonthRange = (6, 6),
    test_months: MonthRange = (7, 7),
    max_history: int | None = None,
) -> CTRData:
    """RecBole's ml-100k as a CTR split (sizes in the module docstring); ``max_train_rows`` keeps the most recent train rows."""
    data = process_movielens(
        recbole_ml100k_dir(),
        label_threshold=label_threshold,
        train_months=train_months,
        valid_months=valid_months,
        test_months=test_months,
        max_history=max_history,
        max_train_rows=max_train_rows,
    )
    data.name = "ml-100k-recbole"
    return data


__all__ = ["RECBOLE_INSTALL", "load_default", "recbole_ml100k_dir"]
