"""umT5 encoder in PyTorch with Wan's parameter names (`wan/modules/t5.py`, as Reel's UMT5Encoder binds them):
pre-norm RMS blocks, attention with no 1/sqrt(d) scaling and a learned relative position bias per
layer (umT5: not shared), gated-GELU(tanh) feed-forward, final RMS norm. Pads are masked as keys and
their output rows set to 0 (what Wan feeds the DiT); Reel runs the real tokens only, which is equal.
tests check it against transformers' UMT5EncoderModel.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TextConfig


class T5RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class T5Attention(nn.Module):
    def __init__(self, dim, heads, head_dim):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.q, self.k, self.v = (nn.Linear(dim, inner, bias=False) for _ in range(3))
        self.o = nn.Linear(inner, dim, bias=False)

    def forward(self, x, bias):
        B, L, _ = x.shape
        split = lambda t: t.reshape(B, L, self.heads, self.head_dim).transpose(1, 2)   # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = torch.einsum("bhid,bhjd->bhij", q.float(), k.float()) + bias        # no 1/sqrt(d) in T5
        out = torch.einsum("bhij,bhjd->bhid", scores.softmax(-1).type_as(v), v)
        return self.o(out.transpose(1, 2).reshape(B, L, -1))


class T5FeedForward(nn.Module):
    def __init__(self, dim, ffn):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, ffn, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(dim, ffn, bias=False)
        self.fc2 = nn.Linear(ffn, dim, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(x) * self.gate(x))


class T5RelativeEmbedding(nn.Module):
    def __init__(self, buckets, heads, max_distance):
        super().__init__()
        self.buckets, self.max_distance = buckets, max_distance
        self.embedding = nn.Embedding(buckets, heads)

    def forward(self, length, device):
        pos = torch.arange(length, device=device)
        rel = pos[None, :] - pos[:, None]                                   # key j - query i
        return self.embedding(relative_buckets(rel, self.buckets, self.max_distance)).permute(2, 0, 1)  # [H, L, L]


def relative_buckets(rel, buckets, max_distance):
    """Bidirectional T5 buckets (the upper half for j > i), log spaced past buckets/4, float32 log."""
    half = buckets // 2
    exact = half // 2
    out = (rel > 0).long() * half
    d = rel.abs()
    large = exact + (torch.log(d.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return out + torch.where(d < exact, d, large)


class T5Block(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.norm1 = T5RMSNorm(c.dim)
        self.attn = T5Attention(c.dim, c.heads, c.head_dim)
        self.norm2 = T5RMSNorm(c.dim)
        self.ffn = T5FeedForward(c.dim, c.ffn)
        self.pos_embedding = T5RelativeEmbedding(c.buckets, c.heads, c.max_distance)


class UMT5Encoder(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.c = c
        self.token_embedding = nn.Embedding(c.vocabulary, c.dim)
        self.blocks = nn.ModuleList(T5Block(c) for _ in range(c.layers))
        self.norm = T5RMSNorm(c.dim)
        nn.init.normal_(self.token_embedding.weight, std=1.0)

    def forward(self, ids, mask):
        """ids, mask [B, L] (mask: real tokens, </s> included) -> [B, L, dim] with pad rows 0."""
        x = self.token_embedding(ids)
        key_bias = torch.zeros(mask.shape, device=ids.device).masked_fill(~mask, float("-inf"))[:, None, None, :]
        for b in self.blocks:
            bias = b.pos_embedding(ids.shape[1], ids.device)[None] + key_bias
            x = x + b.attn(b.norm1(x), bias)
            x = x + b.ffn(b.norm2(x))
        return self.norm(x) * mask[..., None].to(x.dtype)


def tokenize(tokenizer, captions, max_tokens):
    """Token ids of captions (</s> appended) padded with 0, and the mask of real tokens."""
    rows = [tokenizer(c)[:max_tokens] for c in captions]
    L = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    mask = torch.zeros(len(rows), L, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = True
    return ids, mask
