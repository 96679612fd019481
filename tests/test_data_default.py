"""The embedded default data: RecBole's bundled ml-100k, found without importing recbole."""

from __future__ import annotations

import calendar
import importlib.util
import re
import sys

import pytest

from ccf_llm.data import RECBOLE_INSTALL, SPLITS, DataError, load_default, load_source, recbole_ml100k_dir


@pytest.fixture(scope="module")
def default_data():
    if importlib.util.find_spec("recbole") is None:
        pytest.skip(f"recbole not installed ({RECBOLE_INSTALL})")
    return load_default(max_train_rows=2000)


def test_default_split_sizes(default_data) -> None:
    sizes = {split: default_data.splits[split].num_rows for split in SPLITS}
    assert sizes == {"train": 2000, "valid": 12656, "test": 9359}
    assert default_data.name == "ml-100k-recbole"
    assert default_data.info["first_month"] == "1997-09"
    assert default_data.info["n_users"] == 943 and default_data.info["n_items"] == 1682
    assert default_data.items[default_data.splits["train"][0]["iid"]].endswith(")")  # "<title> (<year>)"
    assert "recbole" not in sys.modules  # located by find_spec only


def test_genres_and_user_attributes(default_data) -> None:
    """ml-100k.item's ``class`` token_seq is the genre list; ml-100k.user carries age, gender, occupation."""
    by_title = {title: iid for iid, title in default_data.items.items()}
    attributes = default_data.item_attributes
    assert attributes[by_title["Toy Story (1995)"]] == "animation, children's, comedy"
    assert attributes[by_title["GoldenEye (1995)"]] == "action, adventure, thriller"
    assert len(attributes) >= 0.99 * len(default_data.items)  # a few movies are "unknown" only
    assert all(text == text.lower() and text.strip() for text in attributes.values())
    first = default_data.users.iloc[0]
    assert (first["age"], first["gender"], first["occupation"]) == ("24", "M", "technician")


def test_max_train_rows_keeps_the_most_recent(default_data) -> None:
    train = default_data.splits["train"].to_pandas()
    valid_start = default_data.splits["valid"].to_pandas()["timestamp"].min()
    assert train["timestamp"].max() < valid_start
    assert train["timestamp"].min() >= calendar.timegm(
        (1998, 2, 1, 0, 0, 0)
    )  # all from slot 5, February 1998


def test_missing_recbole_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=re.escape(RECBOLE_INSTALL)):
        recbole_ml100k_dir()
    with pytest.raises(DataError, match="recbole is not installed"):
        load_source("default")
