"""Files written so that a process killed mid-write (a lost session, an OOM kill) never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it becomes ``path`` only when the block finishes."""
    target = Path(path)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)
