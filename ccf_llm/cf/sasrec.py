"""SASRec (Kang & McAuley 2018) as CoLLM uses it for CTR: the transformer state at the last position of
the row's recent history, dotted with the target item's embedding.

Shapes follow CoLLM's ML-1M model: 64 hidden units, 2 blocks, 1 head, dropout 0.2, 25 history items,
pre-norm queries, point-wise feed-forward, causal mask and zeroed padding (no key-padding mask: rows
with an empty history would otherwise attend to nothing). Only the last position is read, so the last
block computes its queries and feed-forward for that position alone (same result, ~30 % less work on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Batch, CFModel


class SASRecBlock(nn.Module):
    """One CoLLM/pmixer SASRec block: q = LN(x); x = q + Attn(q, x); x = LN(x); x = x + FFN(x)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.attention_norm = nn.LayerNorm(dim, eps=1e-8)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.attention_out = nn.Linear(dim, dim)
        self.forward_norm = nn.LayerNorm(dim, eps=1e-8)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim), nn.Dropout(dropout)
        )

    def attend(self, query: Tensor, x: Tensor, visible: Tensor | None) -> Tensor:
        """Multi-head attention of ``query`` [B, Q, d] over ``x`` [B, T, d]; ``visible`` [Q, T] or None (all)."""
        (batch, length, dim), heads = x.shape, self.heads
        q = self.query(query).view(batch, -1, heads, dim // heads).transpose(1, 2)
        k, v = self.key_value(x).view(batch, length, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, dropout_p=dropout)
        return self.attention_out(out.transpose(1, 2).reshape(batch, -1, dim))

    def forward(self, x: Tensor, visible: Tensor, keep: Tensor, last_only: bool = False) -> Tensor:
        query = self.attention_norm(x[:, -1:] if last_only else x)
        x = query + self.attend(query, x, None if last_only else visible)  # the last position sees all
        x = self.forward_norm(x)
        return (x + self.feed_forward(x)) * (keep[:, -1:] if last_only else keep)


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
        # std dim^-1/2: the scaled input (x sqrt(dim)) has unit entries and the initial logits (a unit-entry
        # state dotted with a target row) are O(1); nn.Embedding's N(0, 1) starts them at ~+-8 and the
        # model then spends many epochs unlearning that, as CoLLM's N(0, 1) MF does.
        nn.init.normal_(self.item_embedding.weight, std=dim**-0.5)
        self.item_embedding.weight.data[0] = 0
        self.position_embedding = nn.Embedding(history_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SASRecBlock(dim, heads, dropout) for _ in range(blocks))
        self.last_norm = nn.LayerNorm(dim, eps=1e-8)
        visible = torch.tril(torch.ones(history_len, history_len, dtype=torch.bool))
        self.register_buffer("visible", visible, persistent=False)

    def encode(self, his: Tensor) -> Tensor:
        """[B, L] item ids (left-padded) -> [B, dim] state at the last position."""
        keep = (his != 0).unsqueeze(-1).float()
        x = self.item_embedding(his) * self.item_embedding.embedding_dim**0.5
        x = self.dropout(x + self.position_embedding.weight) * keep
        for i, block in enumerate(self.blocks):
            x = block(x, self.visible, keep, last_only=i == len(self.blocks) - 1)
        return self.last_norm(x[:, -1])

    def forward(self, batch: Batch) -> Tensor:
        return (self.encode(batch["his"]) * self.item_embedding(batch["iid"])).sum(-1)

    @torch.no_grad()
    def export_tables(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """User row = encoded history, item row = item embedding: their dot product is the logit."""
        return self.encode(history), self.item_embedding.weight.clone()
