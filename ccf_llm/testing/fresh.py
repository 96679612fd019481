"""The start of a script for a fresh ``python -I`` interpreter that refuses this repository's modules: a test
that runs a model folder after it proves the folder works on the remote code it carries."""

from __future__ import annotations

from ..publishing.showcase import BLOCKED

BLOCK_REPO_MODULES = f"""
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {tuple(sorted(BLOCKED))!r}:
            raise ImportError(f"{{name}} is blocked")

sys.meta_path.insert(0, Block())
"""
