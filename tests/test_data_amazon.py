"""process_amazon_book on generated gzip JSON-lines files in the Amazon 2018 schema."""

from __future__ import annotations

import calendar
import gzip

import pytest

from ccf_llm.data import DataError, process_amazon_book


def day(year: int, month: int, dom: int) -> int:
    return calendar.timegm((year, month, dom, 0, 0, 0))  # Amazon review times are whole days


def review(user: str, asin: str, overall: float, stamp: int) -> dict:
    return {
        "overall": overall,
        "verified": True,
        "reviewerID": user,
        "asin": asin,
        "reviewText": "...",
        "unixReviewTime": stamp,
    }


META = [
    {"asin": "B2", "title": "Second Book", "also_buy": ["B1"]},
    {"asin": "B1", "title": "First Book"},
    {"asin": "B9", "title": "<script>getTime()</script>"},  # unformatted row: dropped
    {"asin": "B3"},  # no title: ""
    {"asin": "B2", "title": "Second Book (last duplicate wins)"},
]
REVIEWS = [
    review("U1", "B1", 5.0, day(2017, 1, 5)),
    review("U1", "B2", 4.0, day(2017, 2, 5)),
    review("U2", "B2", 5.0, day(2017, 3, 5)),
    review("U2", "B1", 5.0, day(2017, 3, 5)),  # tie with the line above
    review("U1", "B1", 5.0, day(2016, 12, 31)),  # other years are ignored
    review("U1", "B2", 5.0, day(2018, 1, 1)),
    review("U1", "B9", 5.0, day(2017, 4, 1)),  # book without usable metadata
    review("U1", "B2", 5.0, day(2017, 12, 1)),
    review("U2", "B1", 3.0, day(2017, 12, 2)),
    review("U1", "B1", 5.0, day(2017, 12, 2)),
    review("U3", "B3", 5.0, day(2017, 12, 31)),
    review("U2", "B2", 2.0, day(2017, 12, 3)),
]


def test_collm_amazon_rules(raw_files) -> None:
    data = process_amazon_book(*raw_files.amazon(REVIEWS, META), min_ratings=0)
    # Joined order follows the metadata (last B2 row sits after B1 and B3): B1, B3, B2.
    # Users by first appearance in it: U1 (B1, Jan), U2, U3. Books: B1 -> 1, B3 -> 2, B2 -> 3.
    assert data.items == {1: "First Book", 2: "", 3: "Second Book (last duplicate wins)"}
    train = [tuple(r.values()) for r in data.splits["train"]]
    assert train == [
        (1, 1, 1, day(2017, 1, 5), [0], "First Book", 1),
        (1, 3, 0, day(2017, 2, 5), [0, 1], "Second Book (last duplicate wins)", 1),
        (2, 1, 1, day(2017, 3, 5), [0], "First Book", 1),  # tie: B1 comes first in joined order
        (2, 3, 1, day(2017, 3, 5), [0, 1], "Second Book (last duplicate wins)", 1),
    ]
    # December, stably sorted by time: Dec 1 U1/B2, Dec 2 U2/B1, Dec 2 U1/B1, Dec 3 U2/B2, Dec 31 U3/B3.
    # Ties on Dec 2 keep joined order (B1 rows in file order: U2 then U1). First 5 // 2 = 2 rows -> valid.
    valid = [(r["uid"], r["iid"], r["label"], r["his"], r["not_cold"]) for r in data.splits["valid"]]
    test = [(r["uid"], r["iid"], r["label"], r["his"], r["not_cold"]) for r in data.splits["test"]]
    assert valid == [(1, 3, 1, [0, 1], 1), (2, 1, 0, [0, 1, 3], 1)]
    assert test == [(1, 1, 1, [0, 1, 3], 1), (2, 3, 0, [0, 1, 3], 1), (3, 2, 1, [0], 0)]


def test_categories_become_item_attributes(raw_files) -> None:
    meta = [
        {**META[0], "category": ["Books", "Mystery"]},  # replaced by the last B2 row below
        {**META[1], "category": ["Books", "Literature &amp; Fiction", "Classics", "Classics"]},
        META[2],
        {**META[3], "category": []},
        {**META[4], "category": ["Books", "Science Fiction & Fantasy"]},
    ]
    data = process_amazon_book(*raw_files.amazon(REVIEWS, meta), min_ratings=0)
    # iids: B1 -> 1, B3 -> 2 (no categories: no entry), B2 -> 3; the shared root category "Books" is left out
    assert data.item_attributes == {1: "literature & fiction, classics", 3: "science fiction & fantasy"}


@pytest.mark.parametrize("category", ["Books", ["Books", 3], {"a": 1}])
def test_category_must_be_a_list_of_strings(raw_files, category: object) -> None:
    meta = [*META[:3], {**META[3], "category": category}, META[4]]
    with pytest.raises(
        DataError, match=r"meta_Books\.json\.gz, line 4: field 'category' .* is not a list of strings"
    ):
        process_amazon_book(*raw_files.amazon(REVIEWS, meta), min_ratings=0)


def test_reads_plain_json_lines_too(raw_files) -> None:
    reviews, meta = raw_files.amazon(REVIEWS, META)
    plain = reviews.with_suffix("")
    raw_files.write(plain, gzip.decompress(reviews.read_bytes()).decode().splitlines())
    assert (
        process_amazon_book(plain, meta, min_ratings=0)
        .summary()
        .equals(process_amazon_book(reviews, meta, min_ratings=0).summary())
    )


def activity_reviews() -> list[dict]:
    """U1..U3 with 3 reviews each on A/B/C, plus U4 whose only other book D has 1 review.

    With min_ratings=2 (more than 2 needed): one pass counts on the same data, so D goes and U4
    (3 reviews: A, B, D) stays with 2 left; the fixed point then removes U4 too.
    """
    rows = [
        review(u, b, 5.0, day(2017, m, 1))
        for u in ("U1", "U2", "U3")
        for m, b in ((1, "A"), (2, "B"), (12, "C"))
    ]
    rows += [
        review("U4", "A", 5.0, day(2017, 3, 1)),
        review("U4", "B", 5.0, day(2017, 12, 2)),
        review("U4", "D", 5.0, day(2017, 4, 1)),
    ]
    rows += [review("U2", "C", 5.0, day(2017, 12, 3))]
    return rows


@pytest.mark.parametrize(("fixed_point", "users", "passes"), [(False, 4, 1), (True, 3, 3)])
def test_activity_filter(raw_files, fixed_point: bool, users: int, passes: int) -> None:
    meta = [{"asin": b, "title": f"Book {b}"} for b in "ABCD"]
    data = process_amazon_book(
        *raw_files.amazon(activity_reviews(), meta), min_ratings=2, filter_to_fixed_point=fixed_point
    )
    assert data.info["n_users"] == users
    assert data.info["filter_passes"] == passes
    assert "Book D" not in data.items.values()


def test_label_threshold_and_empty_result(raw_files) -> None:
    files = raw_files.amazon(REVIEWS, META)
    labels = [
        r["label"] for r in process_amazon_book(*files, min_ratings=0, label_threshold=4).splits["train"]
    ]
    assert labels == [1, 1, 1, 1]
    with pytest.raises(
        DataError, match=r"Books_5\.json\.gz: no reviews left after keeping 2017 and users/books with > 20"
    ):
        process_amazon_book(*files)
