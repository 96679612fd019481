"""Amazon reviews 2018 (Books) -> CoLLM's Amazon-Book CTR split.

Rules (CoLLM's ``dataset/amazon_book/processing_ood.ipynb``):

1. Metadata (``meta_Books.json.gz``): rows whose title contains ``getTime`` are unformatted and dropped;
   a missing title becomes ``""``; duplicated ``asin`` keep the *last* row.
   Item attributes (not CoLLM's) are the book's ``category`` list, HTML entities decoded, lower-case and
   comma-separated, without the root category ``Books`` that every book shares:
   ``["Books", "Literature &amp; Fiction"]`` -> ``"literature & fiction"``; no list, no attributes.
2. Reviews (``Books_5.json.gz`` or ``Books.json.gz``; ``reviewerID``, ``asin``, ``overall``,
   ``unixReviewTime``) are right-joined onto the metadata: reviews of books without metadata are
   dropped, and rows are grouped by book in metadata order (reviews of one book in file order). That
   order breaks timestamp ties and assigns the ids. Duplicate reviews are kept, as CoLLM keeps them.
3. Only reviews from ``year`` (2017, UTC) are kept. Users and books need *more than* ``min_ratings``
   reviews in that year. CoLLM counts both on the same year's data and filters once, so a user can end
   below the threshold after books are removed; that single pass is the default because it gives the
   published sizes. ``filter_to_fixed_point=True`` repeats the filter until nothing changes (every
   remaining user and book then has more than ``min_ratings`` reviews).
4. label = 1 if ``overall`` >= ``label_threshold`` (5; the CCF-LLM text says 4).
5. uid / iid = order of first appearance in the joined rows (from 1, 0 = padding).
6. Months 1-11 are train. December is sorted by time, the first half (rounded down) is valid and the
   rest test. CoLLM sorted with an unstable sort, so which of several December reviews with the *same*
   timestamp (Amazon times are whole days) fall on each side of the median cannot be reproduced; we
   sort stably (ties in joined order). Everything else follows ``his``/``not_cold`` as for ML-1M.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from .protocol import build_ctr_data
from .readers import Column, read_json_lines
from .schema import CTRData, DataError

REVIEW_COLUMNS = (
    Column("reviewerID", "token", "reviewerID"),
    Column("asin", "token", "asin"),
    Column("overall", "rating", "overall"),
    Column("unixReviewTime", "timestamp", "unixReviewTime"),
)


META_EXPECTED = 'one JSON object per line with "asin" (and "title", "category": a list of strings)'


def _category_text(value: object, path: Path, line: int) -> str:
    """A ``category`` list as attribute text; ``""`` stands for an absent or null field."""
    if isinstance(value, str) and not value:
        return ""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise DataError(
            f"{path}, line {line}: field 'category' {shown} is not a list of strings; expected {META_EXPECTED}"
        )
    names = (html.unescape(name).strip().lower() for name in value)
    return ", ".join(dict.fromkeys(name for name in names if name and name != "books"))


def read_amazon_meta(meta_path: str | Path, *, progress: bool = False) -> pd.DataFrame:
    """Book ``title`` and ``attributes`` by asin, cleaned as CoLLM does (``getTime`` rows dropped, last duplicate wins)."""
    path = Path(meta_path)
    meta = read_json_lines(
        path,
        (Column("asin", "token", "asin"),),
        {"title": "", "category": ""},
        expected=META_EXPECTED,
        progress=progress,
    )
    # rows are the file's lines in order (read_json_lines rejects blank lines), so row i is line i + 1
    attributes = [_category_text(value, path, line) for line, value in enumerate(meta["category"], start=1)]
    titles = meta["title"].astype(str)
    meta = meta.assign(title=titles, attributes=attributes)[~titles.str.contains("getTime", regex=False)]
    meta = meta.drop_duplicates(subset="asin", keep="last")
    return meta.set_index("asin")[["title", "attributes"]]


def _filter_active(reviews: pd.DataFrame, min_ratings: int, to_fixed_point: bool) -> tuple[pd.DataFrame, int]:
    """Keep users and books with more than ``min_ratings`` reviews; returns the rows and the passes made."""
    passes = 0
    while True:
        passes += 1
        user_counts = reviews["user"].map(reviews["user"].value_counts())
        item_counts = reviews["item"].map(reviews["item"].value_counts())
        kept = reviews[(user_counts > min_ratings) & (item_counts > min_ratings)]
        if not to_fixed_point or len(kept) == len(reviews):
            return kept, passes
        reviews = kept


def process_amazon_book(
    reviews_path: str | Path,
    meta_path: str | Path,
    label_threshold: float = 5,
    year: int = 2017,
    min_ratings: int = 20,
    filter_to_fixed_point: bool = False,
    max_history: int | None = None,
    max_train_rows: int | None = None,
    progress: bool = False,
) -> CTRData:
    """Amazon 2018 Books reviews + metadata -> CoLLM's split (rules in the module docstring)."""
    reviews_path = Path(reviews_path)
    meta = read_amazon_meta(meta_path, progress=progress)
    titles = meta["title"]
    reviews = read_json_lines(
        reviews_path,
        REVIEW_COLUMNS,
        expected='one JSON object per line with "reviewerID", "asin", "overall" (number), "unixReviewTime" (seconds)',
        progress=progress,
    ).rename(
        columns={"reviewerID": "user", "asin": "item", "overall": "rating", "unixReviewTime": "timestamp"}
    )
    n_read = len(reviews)
    book_rank = pd.Series(np.arange(len(titles)), index=titles.index)
    reviews = reviews[reviews["item"].isin(book_rank.index)]
    reviews = reviews.iloc[np.argsort(book_rank[reviews["item"]].to_numpy(), kind="stable")]
    when = pd.to_datetime(reviews["timestamp"], unit="s", utc=True)
    reviews = reviews[(when.dt.year == year).to_numpy()]
    in_year = len(reviews)
    reviews, passes = _filter_active(reviews, min_ratings, filter_to_fixed_point)
    if reviews.empty:
        raise DataError(
            f"{reviews_path}: no reviews left after keeping {year} and users/books with > {min_ratings} reviews "
            f"({n_read} read, {in_year} in {year}); expected a Books reviews file covering {year}"
        )
    month = pd.to_datetime(reviews["timestamp"], unit="s", utc=True).dt.month.to_numpy()
    split = np.where(month <= 11, "train", None).astype(object)
    december = np.flatnonzero(month == 12)
    december = december[np.argsort(reviews["timestamp"].to_numpy()[december], kind="stable")]
    half = len(december) // 2
    split[december[:half]] = "valid"
    split[december[half:]] = "test"
    return build_ctr_data(
        reviews.assign(split=split),
        titles,
        name=f"amazon-book-{year}",
        source=str(reviews_path),
        windows={
            "train": f"months 1-11 of {year}",
            "valid": f"first half of December {year}",
            "test": f"second half of December {year}",
        },
        label_threshold=label_threshold,
        id_order="source",
        max_history=max_history,
        max_train_rows=max_train_rows,
        attributes=meta["attributes"],
        info={
            "format": "amazon-2018-json",
            "reviews_read": n_read,
            "reviews_in_year": in_year,
            "min_ratings": min_ratings,
            "filter_passes": passes,
        },
    )


__all__ = ["process_amazon_book", "read_amazon_meta"]
