"""Files written so that a process killed mid-write (a lost session, an OOM kill) never leaves half a file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it becomes ``path`` only when the block finishes.

    The writer creates the temporary file itself, so the result gets the usual umask permissions
    (``tempfile.mkstemp`` would leave it readable by its owner only).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)
