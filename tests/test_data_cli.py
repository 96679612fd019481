"""scripts/prepare_data.py: thin CLI over load_source that prints the summary and saves the parquet layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccf_llm.data import load_split


@pytest.fixture(scope="module")
def prepare_data(load_script):
    return load_script("prepare_data")


def test_movielens_source_prints_summary_and_saves(
    prepare_data, raw_files, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    stamps = [946857600, 949536000, 952041600]  # Jan, Feb, Mar 2000 (UTC)
    folder = raw_files.ml1m(
        [(1, 10, 5, stamps[0]), (1, 20, 2, stamps[1]), (2, 10, 4, stamps[2])],
        {10: "A (1995)", 20: "B (1996)"},
        [1, 2],
    )
    out = tmp_path / "out"
    assert (
        prepare_data.main(
            [
                "--source",
                "movielens",
                "--path",
                str(folder),
                "--out",
                str(out),
                "--max-history",
                "3",
                "--train-months",
                "0",
                "0",
                "--valid-months",
                "1",
                "1",
                "--test-months",
                "2",
                "2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "split  rows  users  items  positive_rate  warm_rate" in printed
    assert f"saved to {out}" in printed
    saved = load_split(out)
    assert saved.splits["train"].num_rows == 1 and saved.items == {1: "A (1995)", 2: "B (1996)"}
    assert saved.users["user_id"].tolist() == [1, 2]


def test_errors_are_reported_without_traceback(
    prepare_data, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert prepare_data.main(["--source", "movielens", "--path", str(tmp_path / "absent")]) == 2
    assert "error: " in capsys.readouterr().err
    assert prepare_data.main(["--source", "amazon"]) == 2
    assert "needs both reviews and meta" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("source", "flags", "named"),
    [
        ("movielens", ["--path", "ml", "--min-ratings", "5"], "--min-ratings"),
        ("default", ["--min-ratings", "5"], "--min-ratings"),
        ("amazon", ["--reviews", "r.json", "--meta", "m.json", "--train-months", "1", "2"], "--train-months"),
        ("split", ["--path", "split", "--max-train-rows", "10"], "--max-train-rows"),
    ],
)
def test_an_option_the_source_does_not_take_is_a_usage_error(
    prepare_data, capsys: pytest.CaptureFixture, source: str, flags: list[str], named: str
) -> None:
    """Not a TypeError traceback from the source's function."""
    with pytest.raises(SystemExit) as exit_info:
        prepare_data.main(["--source", source, *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: " in err and f"error: {named} does not apply to --source {source}" in err
