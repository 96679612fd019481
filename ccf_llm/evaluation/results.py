"""The shared results file (``results/<dataset>.json``): one row per experiment and setting, updated in place.

Layout::

    {"dataset": "ml-1m",
     "rows": [{"method", "experiment", "protocol", "train_rows", "test_rows", "settings", "backbone", "device",
               "seconds", "command", "valid": {"auc", "uauc"}, "test": {"auc", "uauc", "auc_warm", "auc_cold"}}]}

``method`` is the family alone (``CCF-LLM``, ``CoLLM``, ``MF-bias``...); what sets a row apart from others of its
family lives in ``settings``. ``protocol`` is ``full`` (all train rows), ``cpu`` (the CPU protocol of
docs/reproduce.md) or ``published`` (a paper's number: ``source`` instead of ``experiment`` and ``command``).

Several scripts (and parallel runs) write to the same file, so a write replaces only the row with its own key
(:func:`row_key`), holds an exclusive lock (a file in the temp dir) while it reads and rewrites, and goes
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
    "method", "experiment", "protocol", "train_rows", "test_rows", "settings", "backbone", "device", "seconds",
    "command", "valid", "test",
)  # fmt: skip
PUBLISHED_KEYS = ("method", "protocol", "source", "backbone", "train_rows", "test_rows", "test")
PROTOCOLS = ("full", "cpu", "published")
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


def row_key(row: Mapping[str, Any]) -> tuple:
    """What identifies a row: its experiment when it has one, else its family, protocol and settings."""
    if row.get("experiment"):
        return ("experiment", row["experiment"])
    return (row["method"], row["protocol"], json.dumps(row.get("settings") or {}, sort_keys=True))


def check_row(row: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming what a row lacks or holds wrongly."""
    protocol = row.get("protocol")
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"results row {row.get('method')!r}: protocol {protocol!r}, expected one of {PROTOCOLS}"
        )
    expected = PUBLISHED_KEYS if protocol == "published" else ROW_KEYS
    missing = [key for key in expected if key not in row]
    if missing:
        raise ValueError(
            f"results row {row.get('method')!r} misses {missing}; expected keys {list(expected)}"
        )
    for key in ("train_rows", "test_rows"):
        if not isinstance(row[key], int) or isinstance(row[key], bool) or row[key] < 0:
            raise ValueError(f"results row {row['method']!r}: {key} must be a row count, got {row[key]!r}")
    if protocol != "published" and not isinstance(row["settings"], Mapping):
        raise ValueError(
            f"results row {row['method']!r}: settings must be a mapping, got {row['settings']!r}"
        )


def upsert_result(path: str | os.PathLike, row: Mapping[str, Any], dataset: str = "ml-1m") -> dict:
    """Insert ``row`` into the results file, replacing the row with the same :func:`row_key`; returns the content."""
    check_row(row)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Parallel runs (e.g. ablations on one GPU) update the same file; the lock lives outside its folder.
    key = hashlib.sha1(str(target.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"ccf_llm-results-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _upsert_locked(target, row, dataset)


def _upsert_locked(target: Path, row: Mapping[str, Any], dataset: str) -> dict:
    if target.is_file():
        content = json.loads(target.read_text())
        if content.get("dataset") != dataset:
            raise ValueError(f"{target}: holds dataset {content.get('dataset')!r}, not {dataset!r}")
    else:
        content = {"dataset": dataset, "rows": []}
    order = PUBLISHED_KEYS if row["protocol"] == "published" else ROW_KEYS
    new_row = {key: row[key] for key in order} | {k: v for k, v in row.items() if k not in order}
    keys = [row_key(old) for old in content["rows"]]
    if row_key(row) in keys:  # keep the row's place, so diffs of the file stay readable
        content["rows"][keys.index(row_key(row))] = new_row
    else:
        content["rows"].append(new_row)

    write_text_atomically(target, json.dumps(content, indent=2) + "\n")
    return content
