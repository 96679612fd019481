"""SASRec (Kang & McAuley 2018) as CoLLM uses it for CTR: the transformer state at the last position of
the row's recent history, dotted with the target item's embedding.

Shapes follow CoLLM's ML-1M model: 64 hidden units, 2 blocks, 1 head, dropout 0.2, 25 history items,
pre-norm queries, point-wise feed-forward, causal mask and zeroed padding (no key-padding mask: rows
with an empty history would otherwise attend to nothing).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Batch, CFModel


class SASRecBlock(nn.Module):
    """One CoLLM/pmixer SASRec block: x = LN(x) + Attn(LN(x), x); x = FFN(LN(x)) + LN(x)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.forward_norm = nn.LayerNorm(dim, eps=1e-8)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor, causal: Tensor, keep: Tensor) -> Tensor:
        query = self.attention_norm(x)
        x = query + self.attention(query, x, x, attn_mask=causal, need_weights=False)[0]
        x = self.forward_norm(x)
        return (x + self.feed_forward(x)) * keep


class SASRec(CFModel):
    """logit = h_L(history) . e_target; the exported user vector is h_L of the user's history."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        history_len: int = 25,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.history_len = history_len
        self.item_embedding = nn.Embedding(n_items, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(history_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SASRecBlock(dim, heads, dropout) for _ in range(blocks))
        self.last_norm = nn.LayerNorm(dim, eps=1e-8)
        causal = ~torch.tril(torch.ones(history_len, history_len, dtype=torch.bool))
        self.register_buffer("causal", causal, persistent=False)

    def encode(self, his: Tensor) -> Tensor:
        """[B, L] item ids (left-padded) -> [B, dim] state at the last position."""
        keep = (his != 0).unsqueeze(-1).float()
        x = self.item_embedding(his) * self.item_embedding.embedding_dim**0.5
        x = self.dropout(x + self.position_embedding.weight) * keep
        for block in self.blocks:
            x = block(x, self.causal, keep)
        return self.last_norm(x[:, -1])

    def forward(self, batch: Batch) -> Tensor:
        return (self.encode(batch["his"]) * self.item_embedding(batch["iid"])).sum(-1)

    @torch.no_grad()
    def export_tables(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """User row = encoded history, item row = item embedding: their dot product is the logit."""
        return self.encode(history), self.item_embedding.weight.clone()
