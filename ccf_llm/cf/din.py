"""DIN (Zhou et al. 2018) as in CoLLM: user, target item and an attention-pooled history (attention
from a local activation unit over [q, h, q - h, q * h], unnormalised, with Dice), then an MLP.

CoLLM splits its embedding size over the three fields; here ``dim`` is the size of each field.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Batch, CFModel


class Dice(nn.Module):
    """Data-adaptive PReLU: p = sigmoid(BN(x)), out = p * x + alpha * (1 - p) * x (over the last axis)."""

    def __init__(self, features: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(features, eps=1e-8)
        self.alpha = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> Tensor:
        p = torch.sigmoid(self.norm(x.reshape(-1, x.shape[-1]))).reshape_as(x)
        return p * x + self.alpha * (1 - p) * x


def dice_mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear -> Dice -> Dropout between every pair of sizes, a plain Linear at the end."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [Dice(sizes[i + 1]), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class DIN(CFModel):
    """logit = MLP([e_i ; sum_j a(e_i, h_j) h_j ; e_u]); CoLLM: 10 history items, MLP 200-80-1, LAU 64-16."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 32,
        history_len: int = 10,
        attention_units: tuple[int, ...] = (64, 16),
        mlp_units: tuple[int, ...] = (200, 80),
        dropout: float = 0.0,
    ):
        super().__init__()
        self.history_len = history_len
        self.user_embedding = nn.Embedding(n_users, dim, padding_idx=0)
        self.item_embedding = nn.Embedding(n_items, dim, padding_idx=0)
        self.history_embedding = nn.Embedding(n_items, dim, padding_idx=0)
        self.attention = dice_mlp([4 * dim, *attention_units, 1], dropout=0.0)
        self.mlp = dice_mlp([3 * dim, *mlp_units, 1], dropout=dropout)
        for module in self.modules():  # CoLLM's init: Xavier normal everywhere, zero biases
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.xavier_normal_(module.weight)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for table in (self.user_embedding, self.item_embedding, self.history_embedding):
            table.weight.data[0] = 0

    def forward(self, batch: Batch) -> Tensor:
        item = self.item_embedding(batch["iid"])
        history = self.history_embedding(batch["his"])
        query = item.unsqueeze(1).expand_as(history)
        weights = self.attention(torch.cat([query, history, query - history, query * history], dim=-1))
        weights = weights.masked_fill(batch["his"].unsqueeze(-1) == 0, 0.0)
        pooled = (weights * history).sum(1)
        return self.mlp(torch.cat([item, pooled, self.user_embedding(batch["uid"])], dim=-1))[:, 0]

    @torch.no_grad()
    def export_tables(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """DIN scores with an MLP, so no dot product reproduces its logit. Its per-user, target-free
        analogue: user row [e_u ; mean of the history embeddings of the user's recent items], item row
        [e_i ; h_i] (the item in both of DIN's item tables); width 2 * dim."""
        mask = (history != 0).unsqueeze(-1).float()
        pooled = (self.history_embedding(history) * mask).sum(1) / mask.sum(1).clamp(min=1)
        user = torch.cat([self.user_embedding.weight, pooled], dim=1)
        item = torch.cat([self.item_embedding.weight, self.history_embedding.weight], dim=1)
        return user, item
