"""load_split on the shared ML-1M split, and the parquet layout written by CTRData.save."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ccf_llm.data import ROW_COLUMNS, SPLITS, DataError, load_source, load_split


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
