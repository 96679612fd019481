"""What the shared training loop needs from a CF backbone, and how rows become tensors.

A batch is a dict of tensors: ``uid``, ``iid``, ``label`` ([B]) and ``his`` ([B, L]: the row's most
recent ``L`` liked items, oldest first, left-padded with 0). Models that ignore history have L = 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]
# MovieLens titles end with the release year: "Shawshank Redemption, The (1994)"
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass
class CFSplits:
    """Train / valid / test rows as tensors, with each user's history as of the end of the train split."""

    train: Batch
    valid: Batch
    test: Batch
    user_history: Tensor  # [n_users, history_len]
    n_users: int
    n_items: int
    item_years: Tensor  # [n_items] release year read from the title, 0 where the title has none


class CFModel(nn.Module):
    """A CTR backbone: ``forward(batch)`` gives logits, ``export_tables`` the frozen tables for the LLM."""

    history_len: int = 0  # recent history items each row carries (0: the model ignores ``his``)

    @classmethod
    def from_data(cls, splits: CFSplits, **settings) -> CFModel:
        """Build the model; backbones that need more of the data (LightGCN's graph, MF's years) override this."""
        return cls(splits.n_users, splits.n_items, **settings)

    def forward(self, batch: Batch) -> Tensor:
        raise NotImplementedError

    def export_tables(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """User table [n_users, d] and item table [n_items, d]; ``history`` is each user's recent history."""
        raise NotImplementedError


def pad_histories(histories: Iterable[Iterable[int]], length: int) -> Tensor:
    """The last ``length`` non-pad items of each history, left-padded with 0 (CoLLM's SASRec layout)."""
    histories = list(histories)
    out = np.zeros((len(histories), length), dtype=np.int64)
    if length == 0:
        return torch.from_numpy(out)
    for row, his in enumerate(histories):
        items = [int(i) for i in his if i][-length:]
        if items:
            out[row, length - len(items) :] = items
    return torch.from_numpy(out)


def release_years(titles: Mapping[int, str], n_items: int) -> Tensor:
    """[n_items] years that end the titles (``"... (1994)"``), 0 for items without one (and for padding)."""
    years = torch.zeros(n_items, dtype=torch.long)
    for iid, title in titles.items():
        match = _TITLE_YEAR.search(title)
        if match:
            years[iid] = int(match.group(1))
    return years
