"""Strong check of process_movielens: rebuild a ``ratings.dat`` from the released split and reproduce it.

What the released split cannot give back, and how the rebuilt file fills it in:
- ratings: only labels are known, so label 1 -> rating 5 and label 0 -> rating 2;
- ratings before June 2001 (slots 0-13) and in February 2003 (slot 34): absent. Two stand-ins, from a
  user who has nothing inside the window, pin slot 0 to April 2000 (the ML-1M minimum timestamp) and
  test that slot 34 is cut. That the histories still match shows CoLLM's ``his`` ignores slots 0-13;
- GroupLens ids of the 26 users ``users.parquet`` could not match: any id between the neighbouring
  users' ids keeps the ascending order that defines ``uid``;
- the order of movies' first appearance in the real ``ratings.dat`` (which breaks equal timestamps):
  replaced by one global movie order consistent with all 9,570 tie groups of the split (a topological
  sort; a cycle would have refuted the rule). The tie order is therefore taken from the split itself,
  and the check for it is only that such an order exists; everything else is compared independently.
Given that, every column of every row (uid, iid, label, timestamp, his, title, not_cold) and the item
catalog must come out identical, with no relabelling.
"""

from __future__ import annotations

import shutil
from graphlib import TopologicalSorter
from pathlib import Path

import pandas as pd
import pytest

from ccf_llm.data import SPLITS, load_split, process_movielens

ML1M_FIRST_TIMESTAMP = 956703932  # 2000-04-25 23:05:32 UTC
ML1M_LAST_TIMESTAMP = 1046454590  # 2003-02-28 17:49:50 UTC, slot 34


@pytest.fixture(scope="module")
def released(ml1m_dir: Path) -> dict[str, pd.DataFrame]:
    data = load_split(ml1m_dir)
    return {split: data.splits[split].to_pandas() for split in SPLITS}


def grouplens_user_ids(users: pd.DataFrame) -> dict[int, int]:
    """uid -> GroupLens id; unmatched users get the previous id + 1 (the split leaves room for it)."""
    ids, previous = {}, 0
    for uid, user_id in zip(users["uid"], users["user_id"], strict=True):
        previous = previous + 1 if pd.isna(user_id) else int(user_id)
        ids[int(uid)] = previous
    values = list(ids.values())
    assert values == sorted(set(values)), "no room to keep the unmatched users in order"
    return ids


def movie_order_from_ties(rows: pd.DataFrame) -> dict[int, int]:
    """A first-appearance rank per iid that orders every (user, timestamp) tie as the split does."""
    graph = TopologicalSorter({int(iid): () for iid in rows["iid"].unique()})
    for _, tie in rows.groupby(["uid", "timestamp"], sort=False)["iid"]:
        for earlier, later in zip(tie.tolist(), tie.tolist()[1:], strict=False):
            graph.add(later, earlier)
    return {iid: rank for rank, iid in enumerate(graph.static_order())}  # raises CycleError if inconsistent


def write_ratings_dat(
    released: dict[str, pd.DataFrame], ml1m_dir: Path, folder: Path, movie_rank: dict[int, int]
) -> Path:
    rows = pd.concat(released.values(), ignore_index=True)
    users = pd.read_parquet(ml1m_dir / "users.parquet").sort_values("uid")
    user_ids = grouplens_user_ids(users)
    movie_ids = dict(pd.read_parquet(ml1m_dir / "items.parquet")[["iid", "movie_id"]].itertuples(index=False))
    outsider = max(user_ids.values()) + 1
    rows = rows.iloc[
        rows["iid"].map(movie_rank).argsort(kind="stable")
    ]  # file grouped by movie, in that rank order
    lines = [
        f"{user_ids[u]}::{movie_ids[i]}::{5 if y else 2}::{t}"
        for u, i, y, t in zip(rows["uid"], rows["iid"], rows["label"], rows["timestamp"], strict=True)
    ]
    lines += [f"{outsider}::1::5::{ML1M_FIRST_TIMESTAMP}", f"{outsider}::2::5::{ML1M_LAST_TIMESTAMP}"]
    folder.mkdir()
    (folder / "ratings.dat").write_text("".join(line + "\n" for line in lines), encoding="latin-1")
    for name in ("movies.dat", "users.dat"):
        shutil.copy(ml1m_dir / name, folder / name)
    return folder


def test_released_split_is_reproduced_exactly(
    released: dict[str, pd.DataFrame], ml1m_dir: Path, tmp_path: Path
) -> None:
    rows = pd.concat(released.values(), ignore_index=True)
    folder = write_ratings_dat(released, ml1m_dir, tmp_path / "ml-1m", movie_order_from_ties(rows))
    data = process_movielens(folder)

    assert data.info["first_month"] == "2000-04"
    for split in SPLITS:
        pd.testing.assert_frame_equal(data.splits[split].to_pandas(), released[split], check_dtype=False)
    shared_items = pd.read_parquet(ml1m_dir / "items.parquet")
    assert data.items == dict(zip(shared_items["iid"], shared_items["title"], strict=True))
    users = pd.read_parquet(ml1m_dir / "users.parquet").dropna(subset=["user_id"])
    rebuilt = data.users.set_index("uid").loc[users["uid"]]
    assert rebuilt["user_id"].tolist() == users["user_id"].tolist()
    assert rebuilt["zip"].tolist() == users["zip"].tolist()
