"""Validated readers for the raw formats (GroupLens ``.dat``, ML-100K, RecBole atomic files, Amazon JSON lines).

Every reader turns a problem into a :class:`DataError` whose message names the file, the line (where one
applies) and what was expected, so a bad download fails loudly at the line that is wrong instead of
quietly producing a different split. All columns are checked the same way (:class:`Column`), whatever
the container format.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .schema import DataError

Kind = Literal["id", "token", "rating", "timestamp", "text"]


@dataclass(frozen=True)
class Column:
    """One field of a raw record.

    ``id``: non-negative integer. ``token``: non-empty string id (RecBole, Amazon), never a negative
    number. ``rating``: finite number. ``timestamp``: finite, non-negative seconds (stored as int64).
    ``text``: anything (titles, attributes).
    """

    name: str
    kind: Kind = "text"
    label: str = ""

    @property
    def words(self) -> str:
        return self.label or self.name.replace("_", " ")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail_first(
    bad: pd.Series,
    values: pd.Series,
    path: Path,
    first_line: int,
    column: Column,
    problem: str,
    expected: str,
) -> None:
    """Raise for the first flagged row; ``first_line`` is the file line of row position 0."""
    flagged = np.flatnonzero(bad.to_numpy(dtype=bool, na_value=True))
    if flagged.size:
        pos = int(flagged[0])
        raise DataError(
            f"{path}, line {first_line + pos}: {column.words} {_shown(values.iloc[pos])} {problem}; expected {expected}"
        )


def validate_columns(
    frame: pd.DataFrame, columns: Sequence[Column], path: Path, first_line: int, expected: str
) -> pd.DataFrame:
    """Check and convert each column by kind; row position ``i`` is file line ``first_line + i``."""
    out = frame.copy()
    for column in columns:
        values = frame[column.name]
        missing = values.isna()
        if column.kind == "text":
            _fail_first(missing, values, path, first_line, column, "is missing", expected)
            out[column.name] = values.astype(str)
            continue
        if column.kind == "token":
            if pd.api.types.infer_dtype(values, skipna=True) != "string":  # JSON may hold numbers
                values = values.map(str, na_action="ignore")
            tokens = values.str.strip()
            _fail_first(
                missing | tokens.eq(""), values, path, first_line, column, "is missing or empty", expected
            )
            numbers = pd.to_numeric(tokens, errors="coerce")
            _fail_first(numbers < 0, values, path, first_line, column, "is negative", expected)
            out[column.name] = tokens.astype(object)
            continue
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")  # tolerates surrounding blanks
        _fail_first(
            ~np.isfinite(numbers), values, path, first_line, column, "is not a finite number", expected
        )
        if column.kind in ("id", "timestamp"):
            _fail_first(numbers < 0, values, path, first_line, column, "is negative", expected)
        if column.kind == "id":
            _fail_first(numbers % 1 != 0, values, path, first_line, column, "is not an integer", expected)
        out[column.name] = numbers.astype("int64") if column.kind in ("id", "timestamp") else numbers
    return out


def _require_file(path: Path, expected: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected {expected}")


def read_lines(path: Path, encoding: str, expected: str) -> pd.Series:
    """The file's lines (no line endings) as an object Series; position ``i`` is line ``i + 1``."""
    _require_file(path, expected)
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: bytes are not valid {encoding}; expected {expected}") from err
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path}: file is empty; expected {expected}")
    return pd.Series(lines, dtype=object).str.rstrip("\r")


def split_fields(
    lines: pd.Series, sep: str, n_fields: int, path: Path, first_line: int, expected: str
) -> pd.DataFrame:
    """Split every line into exactly ``n_fields`` fields (wrong separators and truncated lines are errors)."""
    counts = lines.str.count(re.escape(sep)) + 1
    bad = np.flatnonzero((counts != n_fields).to_numpy())
    if bad.size:
        pos = int(bad[0])
        found = int(counts.iloc[pos])
        if not lines.iloc[pos].strip():
            problem = "is empty"
        elif found == 1:
            problem = f"has no {sep!r} separator (wrong separator?)"
        elif found < n_fields:
            problem = f"is truncated: {found} fields"
        else:
            problem = f"has {found} fields"
        raise DataError(
            f"{path}, line {first_line + pos}: line {problem}; expected {n_fields} {sep!r}-separated fields: {expected}"
        )
    # Counts are right, so the C parser can split; a multi-character separator becomes an unused control character.
    text = "\n".join(lines)
    if len(sep) > 1:
        single = next(char for char in "\x1f\x1e\x1d\x1c" if char not in text)
        text, sep = text.replace(sep, single), single
    frame = pd.read_csv(
        io.StringIO(text),
        sep=sep,
        header=None,
        names=range(n_fields),
        dtype=object,
        na_filter=False,
        quoting=csv.QUOTE_NONE,
        skip_blank_lines=False,
        engine="c",
    )
    if len(frame) != len(lines):
        raise DataError(f"{path}: a line holds a stray carriage return; expected {expected}")
    return frame


def read_delimited(
    path: Path, sep: str, columns: Sequence[Column | None], *, encoding: str, expected: str
) -> pd.DataFrame:
    """A header-less delimited file; ``None`` entries in ``columns`` are fields that are read but dropped."""
    lines = read_lines(path, encoding, expected)
    frame = split_fields(lines, sep, len(columns), path, 1, expected)
    kept = [column for column in columns if column is not None]
    frame = frame.iloc[:, [i for i, column in enumerate(columns) if column is not None]]
    frame.columns = [column.name for column in kept]
    return validate_columns(frame, kept, path, 1, expected)


def read_atomic(
    path: Path, required: Sequence[Column], optional: Sequence[Column] = (), *, keep_other: bool = False
) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, first line a typed header (``user_id:token  rating:float``).

    Columns are named without their type; ``keep_other`` keeps every unlisted column as text.
    """
    expected = "a tab-separated RecBole atomic file with a typed header including " + ", ".join(
        f"{column.name}:<type>" for column in required
    )
    lines = read_lines(path, "utf-8", expected)
    header = lines.iloc[0].split("\t")
    if len(header) == 1 and len(required) > 1:
        raise DataError(
            f"{path}, line 1: header has no tab separator (wrong separator?); expected {expected}"
        )
    names = []
    for field in header:
        name, colon, _ = field.partition(":")
        if not colon or not name:
            raise DataError(
                f"{path}, line 1: header field {_shown(field)} has no ':<type>' suffix; expected {expected}"
            )
        names.append(name)
    missing = [column.name for column in required if column.name not in names]
    if missing:
        raise DataError(f"{path}, line 1: header lacks column(s) {missing}; expected {expected}")
    if len(lines) == 1:
        raise DataError(f"{path}: no records after the header; expected {expected}")
    frame = split_fields(lines.iloc[1:].reset_index(drop=True), "\t", len(names), path, 2, expected)
    frame.columns = names
    listed = {column.name for column in (*required, *optional)}
    wanted = [*required, *(column for column in optional if column.name in names)]
    if keep_other:
        wanted += [Column(name) for name in names if name not in listed]
    return validate_columns(frame[[column.name for column in wanted]], wanted, path, 2, expected)


def _open_maybe_gzip(path: Path) -> io.BufferedIOBase:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def _json_chunks(path: Path, chunk_lines: int, expected: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, decoded lines) per chunk; gzip/decoding failures become DataError."""
    line_no = 1
    with _open_maybe_gzip(path) as handle:
        while True:
            try:
                raw = list(islice(handle, chunk_lines))
            except (OSError, EOFError, zlib.error) as err:
                raise DataError(
                    f"{path}, after line {line_no - 1}: unreadable compressed data ({err}); expected {expected}"
                ) from err
            if not raw:
                return
            lines = []
            for offset, item in enumerate(raw):
                try:
                    lines.append(item.decode("utf-8"))
                except UnicodeDecodeError as err:
                    raise DataError(
                        f"{path}, line {line_no + offset}: not valid UTF-8; expected {expected}"
                    ) from err
            yield line_no, lines
            line_no += len(raw)


def _locate_json_error(lines: list[str], path: Path, first_line: int, expected: str) -> None:
    for offset, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError as err:
            raise DataError(
                f"{path}, line {first_line + offset}: not valid JSON ({err}); expected {expected}"
            ) from err
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {first_line + offset}: not a JSON object; expected {expected}")


def read_json_lines(
    path: Path,
    required: Sequence[Column],
    optional: dict[str, str] | None = None,
    *,
    expected: str,
    chunk_lines: int = 200_000,
    progress: bool = False,
) -> pd.DataFrame:
    """One JSON object per line (optionally gzip-compressed), keeping only the named fields.

    Parsing goes through pandas chunk by chunk; when a chunk fails, its lines are re-read one by one to
    name the offending line. ``optional`` maps a field to the value used where it is absent.
    """
    _require_file(path, expected)
    optional = optional or {}
    names = [column.name for column in required] + list(optional)
    frames = []
    with tqdm(desc=path.name, unit=" lines", disable=not progress) as bar:
        for first_line, lines in _json_chunks(path, chunk_lines, expected):
            blank = [i for i, line in enumerate(lines) if not line.strip()]
            if blank:
                raise DataError(f"{path}, line {first_line + blank[0]}: line is empty; expected {expected}")
            try:
                chunk = pd.read_json(io.StringIO("".join(lines)), lines=True, dtype=False)
            except (ValueError, TypeError):  # pandas raises TypeError for lines that are not objects
                chunk = None
            if chunk is None or len(chunk) != len(lines):
                _locate_json_error(lines, path, first_line, expected)
                raise DataError(
                    f"{path}, lines {first_line}-{first_line + len(lines) - 1}: unparseable JSON; expected {expected}"
                )
            chunk = chunk.reindex(columns=names).astype(object)
            for field, default in optional.items():
                chunk[field] = chunk[field].where(chunk[field].notna(), default)
            for column in required:
                absent = chunk[column.name].isna()
                if absent.any():
                    pos = int(np.flatnonzero(absent.to_numpy())[0])
                    raise DataError(
                        f"{path}, line {first_line + pos}: field {column.name!r} is missing or null; expected {expected}"
                    )
            frames.append(validate_columns(chunk, required, path, first_line, expected))
            bar.update(len(lines))
    if not frames:
        raise DataError(f"{path}: file is empty; expected {expected}")
    return pd.concat(frames, ignore_index=True)
