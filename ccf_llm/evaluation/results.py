"""The shared results file (``results/<dataset>.json``): one row per method, updated in place.

Layout::

    {"dataset": "ml-1m", "protocol": "collm",
     "rows": [{"method", "backbone", "fusion", "cf", "train_rows", "device", "seconds", "command",
               "valid": {"auc", "uauc"}, "test": {"auc", "uauc", "auc_warm", "auc_cold"}}]}

Several scripts (and parallel runs) write to the same file, so a write replaces only the row of its
own method, holds an exclusive lock (a file in the temp dir) while it reads and rewrites, and goes
through a temporary file plus ``os.replace`` (a crash never leaves half a file).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomically

ROW_KEYS = (
    "method", "backbone", "fusion", "cf", "train_rows", "device", "seconds", "command", "valid", "test",
)  # fmt: skip
VALID_KEYS = ("auc", "uauc")
TEST_KEYS = ("auc", "uauc", "auc_warm", "auc_cold")


def _number(value: Any) -> float | None:
    """Rounded float; NaN becomes ``null`` because JSON has no NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


def split_metrics(metrics: Mapping[str, Any], split: str) -> dict[str, float | None]:
    """The ``valid`` or ``test`` sub-dict of a row from a :func:`ccf_llm.metrics.ctr_metrics` result."""
    keys = {"valid": VALID_KEYS, "test": TEST_KEYS}[split]
    return {key: _number(metrics.get(key)) for key in keys}


def upsert_result(
    path: str | os.PathLike, row: Mapping[str, Any], dataset: str = "ml-1m", protocol: str = "collm"
) -> dict:
    """Insert ``row`` into the results file, replacing the row with the same ``method``; returns the content."""
    missing = [key for key in ROW_KEYS if key not in row]
    if missing:
        raise ValueError(f"results row misses {missing}; expected keys {list(ROW_KEYS)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Parallel runs (e.g. ablations on one GPU) update the same file; the lock lives outside its folder.
    key = hashlib.sha1(str(target.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"ccf_llm-results-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _upsert_locked(target, row, dataset, protocol)


def _upsert_locked(target: Path, row: Mapping[str, Any], dataset: str, protocol: str) -> dict:
    if target.is_file():
        content = json.loads(target.read_text())
        if content.get("dataset") != dataset or content.get("protocol") != protocol:
            raise ValueError(
                f"{target}: holds dataset={content.get('dataset')!r} protocol={content.get('protocol')!r}, "
                f"not {dataset!r}/{protocol!r}"
            )
    else:
        content = {"dataset": dataset, "protocol": protocol, "rows": []}
    new_row = {key: row[key] for key in ROW_KEYS} | {k: v for k, v in row.items() if k not in ROW_KEYS}
    methods = [old.get("method") for old in content["rows"]]
    if row["method"] in methods:  # keep the row's place, so diffs of the file stay readable
        content["rows"][methods.index(row["method"])] = new_row
    else:
        content["rows"].append(new_row)

    write_text_atomically(target, json.dumps(content, indent=2) + "\n")
    return content
