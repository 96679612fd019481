"""MovieLens (GroupLens ML-1M ``.dat``, ML-100K ``u.*`` or RecBole atomic files) -> CoLLM's temporal CTR split.

The rules below are CoLLM's (``dataset/ml-1m/processing_ood.ipynb`` in zyang1580/CoLLM), checked
row for row against the released split in ``../shared/data/ml-1m`` (``tests/test_data_reconstruct.py``):

1. Ratings are inner-joined with the movie catalog; ratings of movies missing from it are dropped.
2. Month slot = calendar month in UTC, counted from the month of the earliest remaining rating
   (ML-1M: April 2000 = slot 0). Train = slots 14-23 (Jun 2001 - Mar 2002), valid = 24-28
   (Apr - Aug 2002), test = 29-33 (Sep 2002 - Jan 2003); slot 34 (Feb 2003) and slots 0-13 are dropped.
   No cold-start filtering.
3. label = 1 if rating >= 4 (``label_threshold``), else 0.
4. ``his`` is built only from the rows that are kept (slots 14-33): the first row of every user in
   the released split has ``his == [0]`` although most users rated movies before June 2001, and
   every ``his`` equals the user's earlier positives within the split exactly. Earlier positives of the
   same user come first in time order; valid/test rows see train positives; positives are appended
   after the row itself, so a row never sees its own item.
5. Rows are sorted by (GroupLens user id, timestamp) with a stable sort. Ties between equal timestamps
   of one user (26,379 of the 51,623 rows are in such ties) keep the order of the joined frame, which the
   pandas of the time grouped by movie in order of each movie's *first appearance in ratings.dat*
   (rows within one movie in file order). The released split is consistent with one such global movie
   order (a topological sort of its 9,570 tie groups has no cycle) and with no simpler rule (movie id
   order fits only 3,546 of them). We rebuild that order explicitly (stable sort by first-appearance
   rank), so the result does not depend on the installed pandas' merge ordering.
6. uid = rank of the GroupLens user id among users with a kept row (ascending, from 1); iid = order of
   first appearance of the movie in the sorted rows of all three splits (from 1); 0 is padding.
7. ``not_cold`` = 1 on train rows; on valid/test rows 1 iff both the user and the movie occur in train.
8. ``title`` = the ``movies.dat`` title as is (latin-1, e.g. ``"Shawshank Redemption, The (1994)"``).

Item attributes (``CTRData.item_attributes``, not part of CoLLM's split) are the genres, lower-case and
comma-separated: ``movies.dat``'s ``Animation|Children's|Comedy`` -> ``"animation, children's, comedy"``;
ML-100K's 19 ``u.item`` genre flags (0/1), named by ``u.genre`` where present, else by the fixed ML-100K
list; RecBole's space-separated ``genre`` (ML-1M) or ``class`` (ml-100k) ``token_seq``. The ``unknown``
genre and an empty genre field give no attributes.

ML-100K (``u.data`` tab-separated, ``u.item`` ``|``-separated, latin-1) follows the same rules; its
titles already carry the year. RecBole atomic files (``<name>.inter``/``.item``/``.user``, UTF-8, typed
headers) drop the year from ``movie_title``, so the title is rebuilt as ``"<movie_title> (<release_year>)"``
to match the GroupLens form; numeric RecBole tokens are read as integers so users sort numerically.
The default month slots only fit ML-1M (ML-100K spans Sep 1997 - Apr 1998 = slots 0-7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .attributes import genre_text
from .protocol import MonthRange, assign_month_splits, build_ctr_data, month_slots
from .readers import Column, read_atomic, read_delimited, read_lines, split_fields, validate_columns
from .schema import CTRData, DataError

logger = logging.getLogger(__name__)

_RATING_COLUMNS = (
    Column("user", "id", "user id"),
    Column("item", "id", "movie id"),
    Column("rating", "rating"),
    Column("timestamp", "timestamp"),
)
# The genre order of ML-100K's u.item flags, as u.genre lists it.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_FIRST_FLAG_FIELD = 6  # 1-based field of the first genre flag in u.item


@dataclass
class RawMovieLens:
    """Ratings (``user, item, rating, timestamp`` in file order), titles and attribute text by raw item id,
    optional users."""

    format: str
    name: str
    ratings_path: Path
    ratings: pd.DataFrame
    titles: pd.Series
    users: pd.DataFrame | None
    attributes: pd.Series


def _unique(frame: pd.DataFrame, column: str, path: Path, first_line: int, expected: str) -> pd.DataFrame:
    duplicated = np.flatnonzero(frame[column].duplicated().to_numpy())
    if duplicated.size:
        pos = int(duplicated[0])
        words = "movie id" if column == "item" else "user id"
        raise DataError(
            f"{path}, line {first_line + pos}: {words} {frame[column].tolist()[pos]!r} appears twice; expected {expected}"
        )
    return frame


def _titles(catalog: pd.DataFrame, path: Path, first_line: int, expected: str) -> pd.Series:
    catalog = _unique(catalog, "item", path, first_line, expected)
    return pd.Series(catalog["title"].to_numpy(), index=catalog["item"].to_numpy())


@dataclass(frozen=True)
class _DelimitedFile:
    name: str
    sep: str
    columns: tuple[Column | None, ...]
    expected: str

    def read(self, root: Path) -> pd.DataFrame:
        return read_delimited(
            root / self.name, self.sep, self.columns, encoding="latin-1", expected=self.expected
        )


_USER_ID = Column("user_id", "id", "user id")
_MOVIE_ID = Column("item", "id", "movie id")
# ratings, catalog, users (optional) of the two header-less GroupLens layouts
_GROUPLENS_LAYOUTS = {
    "grouplens-dat": (
        _DelimitedFile("ratings.dat", "::", _RATING_COLUMNS, "UserID::MovieID::Rating::Timestamp"),
        _DelimitedFile(
            "movies.dat",
            "::",
            (_MOVIE_ID, Column("title"), Column("genres")),
            "MovieID::Title::Genres (latin-1)",
        ),
        _DelimitedFile(
            "users.dat",
            "::",
            (_USER_ID, Column("gender"), Column("age"), Column("occupation"), Column("zip")),
            "UserID::Gender::Age::Occupation::Zip-code",
        ),
    ),
    "ml-100k": (
        _DelimitedFile("u.data", "\t", _RATING_COLUMNS, "user id<TAB>item id<TAB>rating<TAB>timestamp"),
        _DelimitedFile(
            "u.item",
            "|",
            (
                _MOVIE_ID,
                Column("title"),
                None,
                None,
                None,
                *(Column(f"genre{k}") for k in range(len(ML100K_GENRES))),
            ),
            "movie id|movie title|release date|video release date|IMDb URL|19 genre flags (24 fields, latin-1)",
        ),
        _DelimitedFile(
            "u.user",
            "|",
            (_USER_ID, Column("age"), Column("gender"), Column("occupation"), Column("zip")),
            "user id|age|gender|occupation|zip code",
        ),
    ),
}


def _ml100k_genre_names(root: Path) -> tuple[str, ...]:
    """The flag names from ``u.genre`` (``name|index`` lines, indices 0-18 in order), else the fixed list."""
    path = root / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    expected = (
        f"{len(ML100K_GENRES)} lines genre|index, indices 0-{len(ML100K_GENRES) - 1} in order (latin-1)"
    )
    lines = read_lines(path, "latin-1", expected)
    while len(lines) and not lines.iloc[-1].strip():  # GroupLens' file ends with a blank line
        lines = lines.iloc[:-1]
    if len(lines) != len(ML100K_GENRES):
        raise DataError(f"{path}: {len(lines)} genre lines; expected {expected}")
    columns = (Column("name"), Column("index", "id", "genre index"))
    frame = split_fields(lines, "|", 2, path, 1, expected)
    frame.columns = [column.name for column in columns]
    frame = validate_columns(frame, columns, path, 1, expected)
    wrong = np.flatnonzero(frame["index"].to_numpy() != np.arange(len(frame)))
    if wrong.size:
        line = int(wrong[0]) + 1
        raise DataError(
            f"{path}, line {line}: genre index {frame['index'].iloc[line - 1]} out of order; expected {expected}"
        )
    return tuple(frame["name"].str.strip())


def _ml100k_genres(catalog: pd.DataFrame, names: tuple[str, ...], path: Path, expected: str) -> pd.Series:
    """Attribute text per ``u.item`` row from its 0/1 genre flags; any other flag value is an error."""
    flags = catalog[[f"genre{k}" for k in range(len(names))]].apply(lambda column: column.str.strip())
    for k, name in enumerate(names):
        bad = np.flatnonzero(~flags.iloc[:, k].isin(["0", "1"]).to_numpy())
        if bad.size:
            pos = int(bad[0])
            raise DataError(
                f"{path}, line {pos + 1}, field {_FIRST_FLAG_FIELD + k} ({name} genre flag): "
                f"{flags.iloc[pos, k]!r} is not 0 or 1; expected {expected}"
            )
    on = flags.eq("1").to_numpy()
    return pd.Series([genre_text("|".join(np.asarray(names)[row])) for row in on], index=catalog.index)


def _read_grouplens(root: Path, fmt: str) -> RawMovieLens:
    ratings_file, catalog_file, users_file = _GROUPLENS_LAYOUTS[fmt]
    ratings = ratings_file.read(root)
    catalog_path = root / catalog_file.name
    catalog = catalog_file.read(root)
    titles = _titles(catalog, catalog_path, 1, catalog_file.expected)
    if fmt == "ml-100k":
        genres = _ml100k_genres(catalog, _ml100k_genre_names(root), catalog_path, catalog_file.expected)
    else:
        genres = catalog["genres"].map(genre_text)
    attributes = pd.Series(genres.to_numpy(), index=catalog["item"].to_numpy())
    users = None
    if (root / users_file.name).is_file():
        users = _unique(users_file.read(root), "user_id", root / users_file.name, 1, users_file.expected)
    return RawMovieLens(fmt, root.name, root / ratings_file.name, ratings, titles, users, attributes)


def _as_int_if_numeric(*columns: pd.Series) -> list[pd.Series]:
    """RecBole tokens become ints only when every token of every column is a plain non-negative integer."""
    if all(column.astype(str).str.fullmatch(r"\d+").all() for column in columns):
        return [column.astype("int64") for column in columns]
    return list(columns)


def _read_recbole(inter_path: Path) -> RawMovieLens:
    root, name = inter_path.parent, inter_path.stem
    inter = read_atomic(
        inter_path,
        (
            Column("user_id", "token", "user id"),
            Column("item_id", "token", "item id"),
            Column("rating", "rating"),
            Column("timestamp", "timestamp"),
        ),
    )
    item_path = root / f"{name}.item"
    items = read_atomic(
        item_path,
        (Column("item_id", "token", "item id"),),
        (Column("movie_title"), Column("title"), Column("release_year"), Column("genre"), Column("class")),
    )
    title_column = next((c for c in ("movie_title", "title") if c in items.columns), None)
    if title_column is None:
        raise DataError(
            f"{item_path}, line 1: header lacks a movie_title (or title) column; expected a RecBole .item file with titles"
        )
    titles = items[title_column].str.strip()
    if "release_year" in items.columns:
        year = items["release_year"].str.strip()
        suffix = " (" + year + ")"
        needs_year = year.ne("") & ~pd.Series(
            [t.endswith(s) for t, s in zip(titles, suffix, strict=True)], index=titles.index
        )
        titles = titles.where(~needs_year, titles + suffix)
    users = None
    user_path = root / f"{name}.user"
    if user_path.is_file():
        users = read_atomic(user_path, (Column("user_id", "token", "user id"),), keep_other=True)
        users = _unique(users, "user_id", user_path, 2, "a RecBole .user file with one row per user_id")
    id_columns = [
        inter["user_id"],
        inter["item_id"],
        items["item_id"],
        *([users["user_id"]] if users is not None else []),
    ]
    converted = _as_int_if_numeric(*id_columns)
    ratings = pd.DataFrame(
        {
            "user": converted[0],
            "item": converted[1],
            "rating": inter["rating"],
            "timestamp": inter["timestamp"],
        }
    )
    catalog = pd.DataFrame({"item": converted[2], "title": titles})
    if users is not None:
        users = users.assign(user_id=converted[3])
    titles_by_id = _titles(catalog, item_path, 2, "a RecBole .item file with one row per item_id")
    genre_column = next((c for c in ("genre", "class") if c in items.columns), None)  # ML-1M's, ml-100k's
    genres = items[genre_column].map(lambda raw: genre_text(raw, " ")).to_numpy() if genre_column else ""
    attributes = pd.Series(genres, index=converted[2].to_numpy(), dtype=object)
    return RawMovieLens("recbole", name, inter_path, ratings, titles_by_id, users, attributes)


def read_movielens(raw_dir: str | Path) -> RawMovieLens:
    """Detect the format from the files present (``ratings.dat``, ``u.data`` or one ``*.inter``) and read it."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise DataError(
            f"{root}: folder not found; expected a MovieLens folder (ratings.dat+movies.dat, u.data+u.item, or <name>.inter+<name>.item)"
        )
    for fmt, (ratings_file, *_) in _GROUPLENS_LAYOUTS.items():
        if (root / ratings_file.name).is_file():
            return _read_grouplens(root, fmt)
    inter = sorted(root.glob("*.inter"))
    if len(inter) == 1:
        return _read_recbole(inter[0])
    if len(inter) > 1:
        raise DataError(
            f"{root}: several RecBole .inter files ({[p.name for p in inter]}); expected exactly one"
        )
    raise DataError(
        f"{root}: no ratings file; expected ratings.dat+movies.dat (ML-1M), u.data+u.item (ML-100K) or <name>.inter+<name>.item (RecBole)"
    )


def _slot_words(bounds: MonthRange) -> str:
    return f"month slot {bounds[0]}" if bounds[0] == bounds[1] else f"month slots {bounds[0]}-{bounds[1]}"


def process_movielens(
    raw_dir: str | Path,
    label_threshold: float = 4,
    train_months: MonthRange = (14, 23),
    valid_months: MonthRange = (24, 28),
    test_months: MonthRange = (29, 33),
    max_history: int | None = None,
    max_train_rows: int | None = None,
) -> CTRData:
    """Raw MovieLens files -> CoLLM's split (see the module docstring for the exact rules).

    Month ranges are inclusive slot numbers counted from the data set's first month. ``max_history``
    keeps the last k items of ``his``; ``max_train_rows`` keeps only the most recent train rows.
    """
    raw = read_movielens(raw_dir)
    known = raw.ratings["item"].isin(raw.titles.index)
    dropped = int((~known).sum())
    if dropped:
        logger.warning("%s: dropped %d ratings of movies missing from the catalog", raw.ratings_path, dropped)
    ratings = raw.ratings[known]
    if ratings.empty:
        raise DataError(
            f"{raw.ratings_path}: no rating refers to a movie of the catalog; expected matching movie ids"
        )
    # CoLLM's pd.merge grouped rows by movie in order of first appearance; that order breaks timestamp ties.
    ratings = ratings.iloc[np.argsort(pd.factorize(ratings["item"])[0], kind="stable")]
    ranges = {"train": train_months, "valid": valid_months, "test": test_months}
    slots = month_slots(ratings["timestamp"])
    split = assign_month_splits(slots, ranges)
    first_month = pd.to_datetime(ratings["timestamp"].min(), unit="s", utc=True).strftime("%Y-%m")
    return build_ctr_data(
        ratings.assign(split=split)[split.notna()],
        raw.titles,
        name=raw.name,
        source=str(raw.ratings_path),
        windows={
            split_name: f"{_slot_words(bounds)}, slot 0 = {first_month}, data ends at slot {int(slots.max())}"
            for split_name, bounds in ranges.items()
        },
        label_threshold=label_threshold,
        max_history=max_history,
        max_train_rows=max_train_rows,
        users=raw.users,
        attributes=raw.attributes,
        info={
            "format": raw.format,
            "first_month": first_month,
            "ratings_read": len(raw.ratings),
            "ratings_dropped_no_title": dropped,
        },
    )


__all__ = ["RawMovieLens", "process_movielens", "read_movielens"]
