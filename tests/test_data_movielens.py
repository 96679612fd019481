"""process_movielens on raw files the tests write in the three MovieLens formats."""

from __future__ import annotations

import calendar
import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccf_llm.data import DataError, load_split, process_movielens
from ccf_llm.data.movielens import ML100K_GENRES
from ccf_llm.data.protocol import build_ctr_data, month_slots


def ts(year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, minute, second))


WINDOWS = {"train_months": (1, 2), "valid_months": (3, 3), "test_months": (4, 4)}  # slot 0 = Jan 2000
MOVIES = {
    10: "Toy Story (1995)",
    20: "Café Society (1999)",  # latin-1 in GroupLens files, UTF-8 in RecBole's
    30: "Heat (1995)",
    40: "Only In Test (2001)",
    50: "Rated Outside The Window (1990)",
    99: "Amélie (2001)",
}
# File order matters: it decides ties (see the three ratings of user 3 at Feb 1 00:00:00).
RATINGS = [
    (7, 50, 5, ts(2000, 1, 15)),  # slot 0: fixes slot 0; user 7 has nothing in the window
    (5, 20, 2, ts(2000, 3, 10)),  # first appearance of movie 20
    (3, 30, 5, ts(2000, 2, 1)),  # first appearance of movie 30
    (3, 10, 4, ts(2000, 2, 1)),  # first appearance of movie 10
    (3, 20, 5, ts(2000, 2, 1)),
    (3, 99, 5, ts(2000, 1, 31, 23, 59, 59)),  # one second before the train window: not in any his
    (3, 40, 5, ts(2000, 5, 1)),  # test; movie 40 occurs only in test
    (5, 30, 1, ts(2000, 4, 30, 23, 59, 59)),  # valid; user 5 never likes anything
    (8, 10, 4, ts(2000, 4, 2)),  # valid; user 8 occurs only in valid
    (3, 50, 3, ts(2000, 6, 1)),  # slot 5: after the test window
    (9, 30, 5, ts(2000, 6, 2)),  # user 9 only after the window
]
USERS = [3, 5, 7, 8, 9]

# uid: users 3, 5, 8 -> 1, 2, 3. iid: first appearance in (user, time, tie) order: 20, 30, 10, 40 -> 1..4.
# The tie of user 3 is ordered by first appearance in the file (20, 30, 10), not by line (30, 10, 20)
# nor by movie id (10, 20, 30).
EXPECTED = {
    "train": [
        (1, 1, 1, ts(2000, 2, 1), [0], "Café Society (1999)", 1),
        (1, 2, 1, ts(2000, 2, 1), [0, 1], "Heat (1995)", 1),
        (1, 3, 1, ts(2000, 2, 1), [0, 1, 2], "Toy Story (1995)", 1),
        (2, 1, 0, ts(2000, 3, 10), [0], "Café Society (1999)", 1),
    ],
    "valid": [
        (2, 2, 0, ts(2000, 4, 30, 23, 59, 59), [0], "Heat (1995)", 1),
        (3, 3, 1, ts(2000, 4, 2), [0], "Toy Story (1995)", 0),
    ],
    "test": [(1, 4, 1, ts(2000, 5, 1), [0, 1, 2, 3], "Only In Test (2001)", 0)],
}


def rows(data, split: str) -> list[tuple]:
    return [tuple(row.values()) for row in data.splits[split]]


@pytest.mark.parametrize("fmt", ["ml1m", "ml100k", "recbole"])
def test_reproduces_collm_rules_in_every_format(raw_files, fmt: str) -> None:
    data = process_movielens(getattr(raw_files, fmt)(RATINGS, MOVIES, USERS), **WINDOWS)
    for split, expected in EXPECTED.items():
        assert rows(data, split) == expected, split
    assert data.items == {
        1: "Café Society (1999)",
        2: "Heat (1995)",
        3: "Toy Story (1995)",
        4: "Only In Test (2001)",
    }
    assert data.users["uid"].tolist() == [1, 2, 3]
    assert data.users["user_id"].tolist() == [3, 5, 8]
    assert data.info["first_month"] == "2000-01"


def test_latin1_bytes_are_decoded(raw_files) -> None:
    folder = raw_files.ml1m(RATINGS, MOVIES, USERS)
    assert "Café".encode("latin-1") in (folder / "movies.dat").read_bytes()
    assert process_movielens(folder, **WINDOWS).items[1] == "Café Society (1999)"


def test_recbole_string_tokens_sort_as_strings(raw_files) -> None:
    ratings = [(f"u{u}", f"m{i}", r, t) for u, i, r, t in RATINGS]
    movies = {f"m{i}": title for i, title in MOVIES.items()}
    data = process_movielens(raw_files.recbole(ratings, movies), **WINDOWS)
    assert rows(data, "test") == EXPECTED["test"]


def test_ratings_of_unknown_movies_are_dropped_before_slot_zero(
    raw_files, caplog: pytest.LogCaptureFixture
) -> None:
    early_unknown = (3, 777, 5, ts(1999, 12, 31))
    with caplog.at_level(logging.WARNING):
        data = process_movielens(raw_files.ml1m([early_unknown, *RATINGS], MOVIES), **WINDOWS)
    assert data.info["first_month"] == "2000-01"
    assert data.info["ratings_dropped_no_title"] == 1
    assert "dropped 1 ratings" in caplog.text
    assert rows(data, "train") == EXPECTED["train"]


def test_label_threshold(raw_files) -> None:
    data = process_movielens(raw_files.ml1m(RATINGS, MOVIES), label_threshold=2, **WINDOWS)
    assert [row[2] for row in rows(data, "train")] == [1, 1, 1, 1]
    assert rows(data, "valid")[0][2] == 0  # rating 1


@pytest.mark.parametrize(("max_history", "his"), [(None, [0, 1, 2, 3]), (2, [0, 2, 3]), (0, [0])])
def test_max_history_keeps_the_most_recent(raw_files, max_history: int | None, his: list[int]) -> None:
    data = process_movielens(raw_files.ml1m(RATINGS, MOVIES), max_history=max_history, **WINDOWS)
    assert rows(data, "test")[0][4] == his


def test_max_train_rows_keeps_recent_rows_and_the_full_train_warm_flags(raw_files) -> None:
    """Warm/cold refers to the full train split (docs/design.md), as in the LLM runs' own train subsample."""
    data = process_movielens(raw_files.ml1m(RATINGS, MOVIES), max_train_rows=1, **WINDOWS)
    assert rows(data, "train") == [EXPECTED["train"][-1]]  # user 5's March rating is the most recent
    assert rows(data, "valid") == EXPECTED["valid"]  # user 5 and movie 30 are in the full train: warm
    assert rows(data, "test") == EXPECTED["test"]  # histories still use every row


def test_month_slots_use_utc_calendar_months() -> None:
    stamps = pd.Series(
        [ts(2000, 4, 25, 23, 5, 32), ts(2000, 4, 30, 23, 59, 59), ts(2000, 5, 1), ts(2001, 6, 1)]
    )
    assert month_slots(stamps).tolist() == [0, 0, 1, 14]


def test_window_without_ratings_is_an_error(raw_files) -> None:
    with pytest.raises(
        DataError, match=r"ratings\.dat: no ratings fall in the test split \(month slots 14-23"
    ):
        process_movielens(
            raw_files.ml1m(RATINGS, MOVIES), train_months=(1, 2), valid_months=(3, 4), test_months=(14, 23)
        )


def test_overlapping_windows_are_rejected(raw_files) -> None:
    with pytest.raises(ValueError, match="overlap"):
        process_movielens(
            raw_files.ml1m(RATINGS, MOVIES), train_months=(1, 3), valid_months=(3, 3), test_months=(4, 4)
        )


events_strategy = st.lists(
    st.tuples(
        st.integers(1, 4),  # user
        st.integers(1, 6),  # item
        st.integers(1, 5),  # rating
        st.integers(0, 4),  # timestamp: few values, many ties
        st.sampled_from(["train", "valid", "test"]),
    ),
    min_size=3,
    max_size=40,
).filter(lambda events: {e[4] for e in events} == {"train", "valid", "test"})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(events_strategy)
def test_protocol_matches_a_plain_reference(events: list[tuple[int, int, int, int, str]]) -> None:
    frame = pd.DataFrame(events, columns=["user", "item", "rating", "timestamp", "split"])
    titles = pd.Series({item: f"movie {item}" for item in range(1, 7)})
    data = build_ctr_data(frame, titles, name="t", source="t", windows={}, label_threshold=4)

    order = sorted(range(len(events)), key=lambda k: (events[k][0], events[k][3], k))
    uid = {user: n + 1 for n, user in enumerate(sorted({e[0] for e in events}))}
    iid: dict[int, int] = {}
    liked: dict[int, list[int]] = {}
    expected: dict[str, list[tuple]] = {"train": [], "valid": [], "test": []}
    for k in order:
        user, item, rating, stamp, split = events[k]
        iid.setdefault(item, len(iid) + 1)
        his = [0, *liked.setdefault(user, [])]
        expected[split].append([uid[user], iid[item], int(rating >= 4), stamp, his, f"movie {item}"])
        if rating >= 4:
            liked[user].append(iid[item])
    train_users = {row[0] for row in expected["train"]}
    train_items = {row[1] for row in expected["train"]}
    for split, split_rows in expected.items():
        warm = [split == "train" or (row[0] in train_users and row[1] in train_items) for row in split_rows]
        assert rows(data, split) == [(*row, int(w)) for row, w in zip(split_rows, warm, strict=True)]
    assert data.items == {n: f"movie {item}" for item, n in iid.items()}
    assert np.array_equal(sorted(data.items), np.arange(1, len(iid) + 1))


GENRES = {  # raw movie id -> genres, as GroupLens lists them
    10: ["Animation", "Children's", "Comedy"],
    20: ["Comedy", "Drama"],
    30: ["Action", "Crime", "Thriller"],
    40: [],  # no genre: no attributes
    50: ["Drama"],
    99: ["Comedy", "Romance"],
}
# iids: 20, 30, 10, 40 -> 1..4 (EXPECTED above); movie 40 has no entry
EXPECTED_ATTRIBUTES = {1: "comedy, drama", 2: "action, crime, thriller", 3: "animation, children's, comedy"}


def with_genres(raw_files, fmt: str):
    """The test folder of ``fmt`` with GENRES written in that format's own way."""
    folder = getattr(raw_files, fmt)(RATINGS, MOVIES, USERS)
    if fmt == "ml1m":

        def change(lines: list[str]) -> list[str]:
            fields = [line.split("::") for line in lines]
            return ["::".join([i, t, "|".join(GENRES[int(i)])]) for i, t, _ in fields]

        raw_files.edit(folder / "movies.dat", change, "latin-1")
    elif fmt == "ml100k":

        def change(lines: list[str]) -> list[str]:
            out = []
            for line in lines:
                fields = line.split("|")
                flags = [str(int(name in GENRES[int(fields[0])])) for name in ML100K_GENRES]
                out.append("|".join([*fields[:5], *flags]))
            return out

        raw_files.edit(folder / "u.item", change, "latin-1")
    else:
        (item_file,) = folder.glob("*.item")

        def change(lines: list[str]) -> list[str]:
            rows = [line.split("\t") for line in lines[1:]]
            return [lines[0], *("\t".join([*row[:3], " ".join(GENRES[int(row[0])])]) for row in rows)]

        raw_files.edit(item_file, change)
    return folder


@pytest.mark.parametrize("fmt", ["ml1m", "ml100k", "recbole"])
def test_genres_become_item_attributes_in_every_format(raw_files, fmt: str) -> None:
    data = process_movielens(with_genres(raw_files, fmt), **WINDOWS)
    assert data.item_attributes == EXPECTED_ATTRIBUTES
    assert {"gender", "age", "occupation"} <= set(data.users.columns)


def test_item_attributes_survive_a_split_folder(raw_files, tmp_path) -> None:
    data = process_movielens(with_genres(raw_files, "ml1m"), **WINDOWS)
    assert load_split(data.save(tmp_path / "split")).item_attributes == EXPECTED_ATTRIBUTES


def test_ml100k_genre_names_come_from_u_genre(raw_files) -> None:
    folder = with_genres(raw_files, "ml100k")
    names = ["unknown", "Shooting", *ML100K_GENRES[2:]]  # renamed: the flags are read by u.genre's names
    raw_files.write(folder / "u.genre", [*(f"{name}|{k}" for k, name in enumerate(names)), ""], "latin-1")
    attributes = process_movielens(folder, **WINDOWS).item_attributes
    assert attributes[2] == "shooting, crime, thriller"
    lines = [f"{name}|{k}" for k, name in enumerate(ML100K_GENRES)]
    lines[3], lines[4] = lines[4], lines[3]
    raw_files.write(folder / "u.genre", lines, "latin-1")
    with pytest.raises(DataError, match=r"u\.genre, line 4: genre index 4 out of order; expected 19 lines"):
        process_movielens(folder, **WINDOWS)
    raw_files.write(folder / "u.genre", lines[:-1], "latin-1")
    with pytest.raises(DataError, match=r"u\.genre: 18 genre lines; expected 19"):
        process_movielens(folder, **WINDOWS)


def test_ml100k_genre_flags_must_be_0_or_1(raw_files) -> None:
    folder = with_genres(raw_files, "ml100k")

    def change(lines: list[str]) -> list[str]:
        fields = lines[2].split("|")
        fields[7] = "2"  # field 8: Adventure
        return [*lines[:2], "|".join(fields), *lines[3:]]

    raw_files.edit(folder / "u.item", change, "latin-1")
    with pytest.raises(
        DataError, match=r"u\.item, line 3, field 8 \(Adventure genre flag\): '2' is not 0 or 1"
    ):
        process_movielens(folder, **WINDOWS)


def test_recbole_ml1m_genre_column(raw_files) -> None:
    """RecBole's ml-1m names the genres ``genre``; its ml-100k names them ``class``."""
    folder = with_genres(raw_files, "recbole")
    (item_file,) = folder.glob("*.item")
    raw_files.edit(item_file, lambda lines: [lines[0].replace("class:", "genre:"), *lines[1:]])
    assert process_movielens(folder, **WINDOWS).item_attributes == EXPECTED_ATTRIBUTES
    raw_files.edit(item_file, lambda lines: [line.rsplit("\t", 1)[0] for line in lines])
    assert process_movielens(folder, **WINDOWS).item_attributes == {}
