"""Matrix factorisation, CoLLM's default CF backbone, optionally with user / item / global biases.

CoLLM's MF has no biases and N(0, 1) initial embeddings (``nn.Embedding``'s default); with that init
the logits start huge and the model needs hundreds of epochs before weight decay shrinks them enough to
learn. ``init_std`` keeps the shape but starts small, which learns in tens of epochs (on ML-1M, 0.01
also gives the best valid AUC: rows of items never seen in training stay near zero instead of adding
noise to cold rows). Biases carry item popularity, which on ML-1M alone reaches test AUC .71.

``year_bias`` adds a learned bias per 5-year bin of the item's release year, read from its title: the one
piece of the prompt's text a linear model can use directly, and the only item signal of a cold item.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Batch, CFModel, CFSplits

# Release-year bins: 1900-04 -> 1, 1905-09 -> 2, ..., 2045 and later -> 30; 0: no year in the title.
FIRST_YEAR, YEAR_BIN_WIDTH, YEAR_BINS = 1900, 5, 30


def year_bins(years: Tensor) -> Tensor:
    """The 5-year bin of each release year (1..30, earlier years in 1); 0 (no year) stays 0."""
    bins = ((years - FIRST_YEAR) // YEAR_BIN_WIDTH).clamp(0, YEAR_BINS - 1) + 1
    return bins.masked_fill(years == 0, 0)


class MF(CFModel):
    """logit = p_u . q_i (+ b_u + b_i + b_0 with ``bias=True``; + c_year(i) when given ``item_years``)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 256,
        bias: bool = False,
        init_std: float = 0.01,
        item_years: Tensor | None = None,
    ):
        super().__init__()
        if item_years is not None and not bias:
            raise ValueError("MF: year biases join the item biases; set bias=True to use them")
        self.bias = bias
        self.user_embedding = nn.Embedding(n_users, dim, padding_idx=0)
        self.item_embedding = nn.Embedding(n_items, dim, padding_idx=0)
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=init_std)
            table.weight.data[0] = 0
        if bias:
            self.user_bias = nn.Embedding(n_users, 1, padding_idx=0)
            self.item_bias = nn.Embedding(n_items, 1, padding_idx=0)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
            self.global_bias = nn.Parameter(torch.zeros(()))
        self.year_bias = None
        if item_years is not None:
            # rebuilt from the titles, not saved with the weights
            self.register_buffer("item_year_bin", year_bins(item_years), persistent=False)
            self.year_bias = nn.Embedding(YEAR_BINS + 1, 1, padding_idx=0)
            nn.init.zeros_(self.year_bias.weight)

    @classmethod
    def from_data(cls, splits: CFSplits, year_bias: bool = False, **settings) -> MF:
        """``year_bias``: also learn a bias per release-year bin (the years come from the item titles)."""
        return cls(
            splits.n_users, splits.n_items, item_years=splits.item_years if year_bias else None, **settings
        )

    def forward(self, batch: Batch) -> Tensor:
        users, items = batch["uid"], batch["iid"]
        logits = (self.user_embedding(users) * self.item_embedding(items)).sum(-1)
        if self.bias:
            logits = logits + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0] + self.global_bias
        if self.year_bias is not None:
            logits = logits + self.year_bias(self.item_year_bin[items])[:, 0]
        return logits

    @torch.no_grad()
    def export_tables(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """Without biases: the embeddings. With biases: user row [p_u, b_u + b_0, 1], item row [q_i, 1, b_i]
        (b_i + c_year(i) with year biases).

        Either way ``user[u] @ item[i]`` equals the model's logit; row 0 (padding) is all zeros.
        """
        user, item = self.user_embedding.weight.clone(), self.item_embedding.weight.clone()
        if self.bias:
            ones_u, ones_i = torch.ones(len(user), 1), torch.ones(len(item), 1)
            item_bias = self.item_bias.weight
            if self.year_bias is not None:
                item_bias = item_bias + self.year_bias(self.item_year_bin)
            user = torch.cat([user, self.user_bias.weight + self.global_bias, ones_u], dim=1)
            item = torch.cat([item, ones_i, item_bias], dim=1)
            user[0], item[0] = 0, 0
        return user, item
