"""What the shared training loop needs from a CF backbone, and how rows become tensors.

A batch is a dict of tensors: ``uid``, ``iid``, ``label`` ([B]) and ``his`` ([B, L]: the row's most
recent ``L`` liked items, oldest first, left-padded with 0). Models that ignore history have L = 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]


class CFModel(nn.Module):
    """A CTR backbone: ``forward(batch)`` gives logits, ``export_tables`` the frozen tables for the LLM."""

    history_len: int = 0  # recent history items each row carries (0: the model ignores ``his``)

    @classmethod
    def from_data(cls, n_users: int, n_items: int, train: Batch, **settings) -> CFModel:
        """Build the model; backbones that need the training graph (LightGCN) override this."""
        return cls(n_users, n_items, **settings)

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
