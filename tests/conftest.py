"""Shared test fixtures: the shared ML-1M split, one torch thread, and writers of raw files in the real source formats."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import torch

Rating = tuple[object, object, object, object]  # user, item, rating, timestamp (as written)


def shared_data_dir() -> Path:
    """``../shared/data/ml-1m`` next to the repository root (the split is never copied into the repo)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-1m"


@pytest.fixture(scope="session")
def ml1m_dir() -> Path:
    """The shared ML-1M split; skipped when absent, a failure when ``CCF_REQUIRE_SHARED_DATA=1`` (CI)."""
    path = shared_data_dir()
    if not (path / "train.parquet").is_file():
        reason = f"shared ML-1M split not found at {path}"
        if os.environ.get("CCF_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{reason} and CCF_REQUIRE_SHARED_DATA=1")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module's tiny models: on the 2 shared cores, handing their small matrices
    between two contended threads costs many times the work itself."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], object]:
    """``load_script("train")`` imports ``scripts/train.py`` as a module (``scripts/`` is not a package)."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_script", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def _lines(sep: str, rows: Iterable[Sequence[object]]) -> list[str]:
    return [sep.join(str(value) for value in row) for row in rows]


class RawFiles:
    """Writes the raw formats the readers accept, so tests never need the real (unredistributable) files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, path: Path, lines: Sequence[str], encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(line + "\n" for line in lines).encode(encoding)
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        return path

    def edit(self, path: Path, change: Callable[[list[str]], list[str]], encoding: str = "utf-8") -> None:
        """Rewrite a (possibly gzipped) file's lines through ``change``."""
        data = path.read_bytes()
        text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode(encoding)
        self.write(path, change(text.splitlines()), encoding)

    def ml1m(
        self,
        ratings: Sequence[Rating],
        movies: Mapping[int, str],
        users: Sequence[int] = (),
        name: str = "ml-1m",
    ) -> Path:
        """GroupLens ``ratings.dat``/``movies.dat``/``users.dat`` (``::``-separated, latin-1)."""
        folder = self.root / name
        self.write(folder / "ratings.dat", _lines("::", ratings), "latin-1")
        self.write(
            folder / "movies.dat", _lines("::", ((i, t, "Drama") for i, t in movies.items())), "latin-1"
        )
        if users:
            self.write(
                folder / "users.dat", _lines("::", ((u, "F", 25, 7, "02139") for u in users)), "latin-1"
            )
        return folder

    def ml100k(
        self,
        ratings: Sequence[Rating],
        movies: Mapping[int, str],
        users: Sequence[int] = (),
        name: str = "ml-100k",
    ) -> Path:
        """``u.data`` (tab-separated), ``u.item`` (24 ``|`` fields) and ``u.user``, latin-1."""
        folder = self.root / name
        self.write(folder / "u.data", _lines("\t", ratings), "latin-1")
        flags = ["0"] * 19
        self.write(
            folder / "u.item",
            _lines(
                "|", ((i, t, "01-Jan-1995", "", "http://us.imdb.com/x", *flags) for i, t in movies.items())
            ),
            "latin-1",
        )
        if users:
            self.write(
                folder / "u.user", _lines("|", ((u, 25, "F", "writer", "02139") for u in users)), "latin-1"
            )
        return folder

    def recbole(
        self,
        ratings: Sequence[Rating],
        movies: Mapping[int, str],
        users: Sequence[int] = (),
        name: str = "toy",
    ) -> Path:
        """RecBole atomic files; titles split into ``movie_title`` and ``release_year`` as RecBole ships them."""
        folder = self.root / f"recbole-{name}"
        self.write(
            folder / f"{name}.inter",
            ["user_id:token\titem_id:token\trating:float\ttimestamp:float", *_lines("\t", ratings)],
        )
        item_rows = []
        for item, title in movies.items():
            match = re.fullmatch(r"(.*) \((\d{4})\)", title)
            item_rows.append((item, *(match.groups() if match else (title, "")), "Drama"))
        self.write(
            folder / f"{name}.item",
            [
                "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
                *_lines("\t", item_rows),
            ],
        )
        if users:
            self.write(
                folder / f"{name}.user",
                [
                    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
                    *_lines("\t", ((u, 25, "F", "writer", "02139") for u in users)),
                ],
            )
        return folder

    def amazon(
        self, reviews: Sequence[Mapping[str, object]], meta: Sequence[Mapping[str, object]]
    ) -> tuple[Path, Path]:
        """Gzipped ``Books_5.json.gz`` and ``meta_Books.json.gz``, one JSON object per line."""
        folder = self.root / "amazon"
        return (
            self.write(folder / "Books_5.json.gz", [json.dumps(r) for r in reviews]),
            self.write(folder / "meta_Books.json.gz", [json.dumps(m) for m in meta]),
        )


@pytest.fixture
def raw_files(tmp_path: Path) -> RawFiles:
    return RawFiles(tmp_path)
