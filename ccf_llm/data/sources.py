"""One entry point per data source, so scripts and configs name a source instead of a function."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .amazon import process_amazon_book
from .movielens import process_movielens
from .recbole_default import load_default
from .schema import CTRData, load_split

# Each source's function; its parameters with defaults are the ``options`` that ``load_source`` passes on.
SOURCE_FUNCTIONS: dict[str, Callable[..., CTRData]] = {
    "split": load_split,
    "movielens": process_movielens,
    "amazon": process_amazon_book,
    "default": load_default,
}
SOURCES = tuple(SOURCE_FUNCTIONS)
# The team's copy of the ML-1M split, in the folder beside the repository.
SHARED_ML1M = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-1m"


def load_named(name: str, data_dir: str | os.PathLike | None = None) -> CTRData:
    """A data set as configs and scripts name it: ``default`` (RecBole's bundled ml-100k), ``ml1m`` (the CoLLM
    split in ``data_dir``, else ``$CCF_ML1M_DIR``, else the shared copy) or the path of a saved split folder."""
    if name == "default":
        return load_default()
    if name == "ml1m":
        return load_split(data_dir or os.environ.get("CCF_ML1M_DIR") or SHARED_ML1M)
    return load_split(name)


def source_options(source: str) -> tuple[str, ...]:
    """The ``options`` that ``load_source`` accepts for ``source``: its function's parameters with defaults."""
    if source not in SOURCE_FUNCTIONS:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    parameters = inspect.signature(SOURCE_FUNCTIONS[source]).parameters.values()
    return tuple(p.name for p in parameters if p.default is not inspect.Parameter.empty)


def load_source(
    source: str,
    *,
    path: str | os.PathLike | None = None,
    reviews: str | os.PathLike | None = None,
    meta: str | os.PathLike | None = None,
    **options: Any,
) -> CTRData:
    """``split``: a saved parquet split folder (``path``); ``movielens``: raw MovieLens files (``path``);
    ``amazon``: ``reviews`` + ``meta`` JSON lines; ``default``: RecBole's bundled ml-100k.

    ``options`` go to the source's function (e.g. ``max_train_rows``, ``label_threshold``, ``progress``).
    """
    accepted = source_options(source)
    unknown = sorted(set(options) - set(accepted))
    if unknown:  # named here rather than as a TypeError from inside the source's function
        raise ValueError(
            f"source {source!r} does not take {unknown}; it takes {list(accepted) or 'no options'}"
        )
    function = SOURCE_FUNCTIONS[source]
    if source == "amazon":
        if reviews is None or meta is None:
            raise ValueError("source 'amazon' needs both reviews and meta paths")
        return function(reviews, meta, **options)
    if source == "default":
        return function(**options)
    if path is None:
        raise ValueError(f"source {source!r} needs a path")
    return function(path, **options)


__all__ = ["SHARED_ML1M", "SOURCES", "load_named", "load_source", "source_options"]
