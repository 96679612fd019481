"""Every reader turns bad input into a DataError naming the file, the line where one applies, and what was expected."""

from __future__ import annotations

import calendar
import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ccf_llm.data import DataError, process_amazon_book, process_movielens

JAN, FEB, MAR = (calendar.timegm((2000, month, 5, 0, 0, 0)) for month in (1, 2, 3))
RATINGS = [(1, 10, 5, JAN), (1, 20, 2, FEB), (2, 10, 4, MAR), (2, 20, 5, FEB)]
MOVIES = {10: "Alpha (1995)", 20: "Beta (1996)"}
WINDOWS = {"train_months": (0, 0), "valid_months": (1, 1), "test_months": (2, 2)}

# writer, ratings file, catalog file, separator, header lines
FORMATS = {
    "ml1m": ("ml1m", "ratings.dat", "movies.dat", "::", 0),
    "ml100k": ("ml100k", "u.data", "u.item", "\t", 0),
    "recbole": ("recbole", "toy.inter", "toy.item", "\t", 1),
}
CATALOG_SEPARATORS = {"ml1m": "::", "ml100k": "|"}

# The second rating record is replaced by these fields ("T" = a valid timestamp).
BAD_RECORDS = {
    "truncated line": (("1", "20", "2"), "line is truncated: 3 fields"),
    "non-numeric rating": (("1", "20", "abc", "T"), "rating 'abc' is not a finite number"),
    "NaN rating": (("1", "20", "nan", "T"), "rating 'nan' is not a finite number"),
    "empty rating": (("1", "20", "", "T"), "rating '' is not a finite number"),
    "negative user id": (("-1", "20", "2", "T"), "'-1' is negative"),
    "negative item id": (("1", "-20", "2", "T"), "'-20' is negative"),
    "fractional user id": (("1.5", "20", "2", "T"), "'1.5' is not an integer"),
    "non-numeric timestamp": (("1", "20", "2", "yesterday"), "timestamp 'yesterday' is not a finite number"),
    "negative timestamp": (("1", "20", "2", "-5"), "timestamp '-5' is negative"),
}


def movielens_folder(raw_files, fmt: str) -> Path:
    return getattr(raw_files, FORMATS[fmt][0])(RATINGS, MOVIES)


def raises(call: Callable[[], object], *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_base_files_process(raw_files, fmt: str) -> None:
    assert process_movielens(movielens_folder(raw_files, fmt), **WINDOWS).splits["train"].num_rows == 1


@pytest.mark.parametrize(
    ("fmt", "case"),
    # RecBole ids are tokens: "1.5" is a valid (string) id there.
    [
        (fmt, case)
        for fmt in FORMATS
        for case in BAD_RECORDS
        if (fmt, case) != ("recbole", "fractional user id")
    ],
)
def test_bad_rating_record(raw_files, fmt: str, case: str) -> None:
    _, ratings_name, _, sep, header = FORMATS[fmt]
    fields, problem = BAD_RECORDS[case]
    folder = movielens_folder(raw_files, fmt)
    line = sep.join(str(FEB) if f == "T" else f for f in fields)
    raw_files.edit(
        folder / ratings_name, lambda lines: [*lines[: header + 1], line, *lines[header + 2 :]], "latin-1"
    )
    raises(
        lambda: process_movielens(folder, **WINDOWS),
        f"{ratings_name}, line {header + 2}: ",
        problem,
        "; expected ",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_separator(raw_files, fmt: str) -> None:
    _, ratings_name, _, sep, _ = FORMATS[fmt]
    folder = movielens_folder(raw_files, fmt)
    raw_files.edit(folder / ratings_name, lambda lines: [line.replace(sep, ",") for line in lines], "latin-1")
    raises(
        lambda: process_movielens(folder, **WINDOWS),
        f"{ratings_name}, line 1: ",
        "separator (wrong separator?)",
        "expected",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_ratings_file(raw_files, fmt: str) -> None:
    _, ratings_name, *_ = FORMATS[fmt]
    folder = movielens_folder(raw_files, fmt)
    (folder / ratings_name).write_bytes(b"")
    raises(lambda: process_movielens(folder, **WINDOWS), f"{ratings_name}: file is empty; expected ")


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_catalog_file(raw_files, fmt: str) -> None:
    _, _, catalog_name, *_ = FORMATS[fmt]
    folder = movielens_folder(raw_files, fmt)
    (folder / catalog_name).unlink()
    raises(lambda: process_movielens(folder, **WINDOWS), f"{catalog_name}: file not found; expected ")


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_ratings_file(raw_files, fmt: str) -> None:
    _, ratings_name, *_ = FORMATS[fmt]
    folder = movielens_folder(raw_files, fmt)
    (folder / ratings_name).unlink()
    raises(lambda: process_movielens(folder, **WINDOWS), str(folder), "no ratings file; expected ratings.dat")


@pytest.mark.parametrize("fmt", FORMATS)
def test_catalog_missing_column(raw_files, fmt: str) -> None:
    _, _, catalog_name, *_ = FORMATS[fmt]
    folder = movielens_folder(raw_files, fmt)
    if fmt == "recbole":  # a header without the title column
        raw_files.edit(
            folder / catalog_name, lambda lines: ["item_id:token\tclass:token_seq", "10\tDrama", "20\tDrama"]
        )
        raises(
            lambda: process_movielens(folder, **WINDOWS),
            f"{catalog_name}, line 1: header lacks a movie_title",
        )
        return
    raw_files.edit(
        folder / catalog_name,
        lambda lines: [lines[0], CATALOG_SEPARATORS[fmt].join(["20", "Beta (1996)"])],
        "latin-1",
    )
    raises(
        lambda: process_movielens(folder, **WINDOWS),
        f"{catalog_name}, line 2: line is truncated: 2 fields",
        "expected",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_catalog_duplicate_and_negative_ids(raw_files, fmt: str) -> None:
    _, _, catalog_name, _, header = FORMATS[fmt]
    folder = movielens_folder(raw_files, fmt)
    catalog = folder / catalog_name
    raw_files.edit(catalog, lambda lines: [*lines, lines[header]], "latin-1")
    raises(
        lambda: process_movielens(folder, **WINDOWS),
        f"{catalog_name}, line {header + 3}: movie id 10 appears twice",
    )
    raw_files.edit(catalog, lambda lines: [*lines[:header], "-" + lines[header]], "latin-1")
    raises(
        lambda: process_movielens(folder, **WINDOWS),
        f"{catalog_name}, line {header + 1}: ",
        "'-10' is negative",
    )


def test_recbole_header_problems(raw_files) -> None:
    folder = movielens_folder(raw_files, "recbole")
    inter = folder / "toy.inter"
    raw_files.edit(
        inter,
        lambda lines: [
            "user_id:token\titem_id:token\ttimestamp:float",
            *(line.rsplit("\t", 2)[0] + "\t1" for line in lines[1:]),
        ],
    )
    raises(
        lambda: process_movielens(folder, **WINDOWS), "toy.inter, line 1: header lacks column(s) ['rating']"
    )
    raw_files.edit(inter, lambda lines: ["user_id\titem_id:token\trating:float\ttimestamp:float", *lines[1:]])
    raises(
        lambda: process_movielens(folder, **WINDOWS),
        "toy.inter, line 1: header field 'user_id' has no ':<type>' suffix",
    )
    raw_files.edit(inter, lambda lines: ["user_id:token\titem_id:token\trating:float\ttimestamp:float"])
    raises(lambda: process_movielens(folder, **WINDOWS), "toy.inter: no records after the header")
    inter.write_bytes(inter.read_bytes() + b"1\t10\t5\t\xff\n")
    raises(lambda: process_movielens(folder, **WINDOWS), "toy.inter, line 2: bytes are not valid utf-8")


def test_format_detection(raw_files, tmp_path: Path) -> None:
    raises(
        lambda: process_movielens(tmp_path / "absent"),
        "absent: folder not found; expected a MovieLens folder",
    )
    (tmp_path / "empty").mkdir()
    raises(lambda: process_movielens(tmp_path / "empty"), "empty: no ratings file")
    folder = movielens_folder(raw_files, "recbole")
    (folder / "other.inter").write_text("user_id:token\n")
    raises(lambda: process_movielens(folder), "several RecBole .inter files")


# ---- Amazon JSON lines -------------------------------------------------------------------------

REVIEW = {
    "reviewerID": "U1",
    "asin": "B1",
    "overall": 5.0,
    "unixReviewTime": calendar.timegm((2017, 3, 1, 0, 0, 0)),
}
BAD_REVIEW_LINES = {
    "wrong separator": ("U2\tB1\t5.0\t1488326400", "not valid JSON"),
    "truncated line": ('{"reviewerID": "U2", "asin": "B1", "ove', "not valid JSON"),
    "not an object": ("[1, 2]", "not a JSON object"),
    "non-numeric rating": (json.dumps({**REVIEW, "overall": "abc"}), "overall 'abc' is not a finite number"),
    "NaN rating": (json.dumps({**REVIEW, "overall": "NaN"}), "overall 'NaN' is not a finite number"),
    "null rating": (json.dumps({**REVIEW, "overall": None}), "field 'overall' is missing or null"),
    "missing column": (
        json.dumps({k: v for k, v in REVIEW.items() if k != "overall"}),
        "field 'overall' is missing or null",
    ),
    "negative user id": (json.dumps({**REVIEW, "reviewerID": "-7"}), "reviewerID '-7' is negative"),
    "negative timestamp": (json.dumps({**REVIEW, "unixReviewTime": -5}), "unixReviewTime -5 is negative"),
    "empty line": ("", "line is empty"),
}


def amazon_files(raw_files) -> tuple[Path, Path]:
    return raw_files.amazon([REVIEW, {**REVIEW, "reviewerID": "U2"}], [{"asin": "B1", "title": "Book"}])


@pytest.mark.parametrize("case", BAD_REVIEW_LINES)
def test_bad_review_line(raw_files, case: str) -> None:
    line, problem = BAD_REVIEW_LINES[case]
    reviews, meta = amazon_files(raw_files)
    raw_files.edit(reviews, lambda lines: [lines[0], line, *lines[2:]])
    raises(lambda: process_amazon_book(reviews, meta), "Books_5.json.gz, line 2: ", problem, "; expected ")


def test_amazon_file_problems(raw_files) -> None:
    reviews, meta = amazon_files(raw_files)
    raises(
        lambda: process_amazon_book(reviews.with_name("absent.json.gz"), meta),
        "absent.json.gz: file not found; expected ",
    )
    raw_files.write(meta, ['{"title": "no asin"}'])
    raises(lambda: process_amazon_book(reviews, meta), "meta_Books.json.gz, line 1: field 'asin' is missing")
    raw_files.write(meta, [])
    raises(lambda: process_amazon_book(reviews, meta), "meta_Books.json.gz: file is empty; expected ")
    reviews.write_bytes(gzip.compress(reviews.read_bytes() * 50)[:40])
    raises(lambda: process_amazon_book(reviews, reviews), "Books_5.json.gz", "unreadable compressed data")


def test_users_file_is_validated(raw_files) -> None:
    folder = raw_files.ml1m(RATINGS, MOVIES, users=[1, 2])
    raw_files.edit(folder / "users.dat", lambda lines: [*lines, lines[0]], "latin-1")
    raises(lambda: process_movielens(folder, **WINDOWS), "users.dat, line 3: user id 1 appears twice")
    raw_files.edit(folder / "users.dat", lambda lines: ["x::F::1::10::02139"], "latin-1")
    raises(
        lambda: process_movielens(folder, **WINDOWS), "users.dat, line 1: user id 'x' is not a finite number"
    )
