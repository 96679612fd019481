"""load_split on the shared ML-1M split, and the parquet layout written by CTRData.save."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from ccf_llm.data import ROW_COLUMNS, SPLITS, DataError, load_source, load_split, source_options
from ccf_llm.testing.tiny_run import tiny_ctr_data


def test_shared_ml1m_split_has_the_published_sizes(ml1m_dir: Path) -> None:
    data = load_split(ml1m_dir)
    assert {split: data.splits[split].num_rows for split in SPLITS} == {
        "train": 33891,
        "valid": 10401,
        "test": 7331,
    }
    assert len(data.items) == 3255 and min(data.items) == 1  # 3,256 with the padding id 0
    assert len(data.users) == 838
    for split in SPLITS:
        assert data.splits[split].column_names == list(ROW_COLUMNS)
    train = data.splits["train"].to_pandas()
    assert train["his"].map(lambda his: his[0] == 0).all()
    assert train["not_cold"].eq(1).all()
    assert train["title"].iloc[0] == "Shawshank Redemption, The (1994)"


def test_save_round_trips(ml1m_dir: Path, tmp_path: Path) -> None:
    data = load_source("split", path=ml1m_dir)
    again = load_split(data.save(tmp_path / "copy"))
    for split in SPLITS:
        pd.testing.assert_frame_equal(again.splits[split].to_pandas(), data.splits[split].to_pandas())
    assert again.items == data.items
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [
        f"{n}.parquet" for n in ("items", "test", "train", "users", "valid")
    ]


def test_split_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split folder not found"):
        load_split(tmp_path / "nowhere")
    pd.DataFrame({"uid": [1]}).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"train\.parquet: missing column\(s\)"):
        load_split(tmp_path)


def test_split_source_takes_no_options(ml1m_dir: Path) -> None:
    with pytest.raises(ValueError, match="takes no options"):
        load_source("split", path=ml1m_dir, max_train_rows=5)


def test_sources_name_the_options_they_do_not_take(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"source 'movielens' does not take \['min_ratings'\]; it takes \[.*'max_train_rows'"
    ):
        load_source("movielens", path=tmp_path, min_ratings=5)
    assert "min_ratings" in source_options("amazon") and "train_months" not in source_options("amazon")
    assert source_options("split") == ()


def test_null_title_names_file_row_and_column(tmp_path: Path) -> None:
    """Not pyarrow's bare "Expected bytes, got a 'float' object" from building the dataset."""
    folder = tiny_ctr_data().save(tmp_path / "split")
    frame = pd.read_parquet(folder / "valid.parquet")
    frame.loc[2, "title"] = None
    frame.to_parquet(folder / "valid.parquet", index=False)
    message = f"{folder / 'valid.parquet'}, row 2: title nan is invalid; expected a title"
    with pytest.raises(DataError, match=re.escape(message)):
        load_split(folder)


def test_save_without_users_removes_an_older_users_file(tmp_path: Path) -> None:
    """Otherwise ``load_split`` would pair the new rows with the users of an earlier save."""
    with_users = tiny_ctr_data()
    with_users.users = pd.DataFrame({"uid": [1, 2], "gender": ["M", "F"]})
    folder = with_users.save(tmp_path / "split")
    assert load_split(folder).users is not None
    assert load_split(tiny_ctr_data(seed=1).save(folder)).users is None
    assert not (folder / "users.parquet").exists()
