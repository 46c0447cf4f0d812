"""Slot attention carried over time (paper 4.3, docs/model.md; Locatello et al. 2020, as used by DIOD).

One iteration: attention logits k(H)·q(S)/sqrt(D) over the N tokens and K slots; softmax
over the SLOTS (slots compete for each token) gives the attention map W, which sums to 1
over slots and is the segmentation; W + eps renormalised over the tokens weights the mean of
v(H) each slot reads; a GRUCell and a residual MLP update the slots.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SlotAttention(nn.Module):
    def __init__(self, dim: int, mlp_hidden: int, eps: float, qkv_bias: bool = False):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.scale = 1.0 / math.sqrt(dim)
        self.norm_tokens = nn.LayerNorm(dim)
        self.to_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.norm_slots = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.gru = nn.GRUCell(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_hidden), nn.ReLU(inplace=True), nn.Linear(mlp_hidden, dim)
        )

    def keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k(H), v(H) for tokens (..., N, D); done once per frame for all iterations."""
        tokens = self.norm_tokens(tokens)
        return self.to_k(tokens), self.to_v(tokens)

    def attention(self, keys: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """W (B, N, K): softmax over slots of k·q / sqrt(D), computed in float32."""
        queries = self.to_q(self.norm_slots(slots))
        logits = torch.einsum("bnd,bkd->bnk", keys.float(), queries.float()) * self.scale
        return logits.softmax(dim=-1)

    def forward(
        self, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration: (keys, values (B, N, D), slots (B, K, D)) -> (new slots, W (B, N, K))."""
        attn = self.attention(keys, slots)
        weights = attn + self.eps
        weights = weights / weights.sum(dim=1, keepdim=True)  # weighted mean over tokens
        updates = torch.einsum("bnk,bnd->bkd", weights, values.float()).to(values.dtype)
        b, k, d = slots.shape
        slots = self.gru(updates.reshape(b * k, d), slots.reshape(b * k, d)).reshape(b, k, d)
        slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn
