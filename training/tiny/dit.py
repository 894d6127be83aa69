"""The causal Wan2.1 DiT in PyTorch, written to Reel's math (REFERENCE.md section 1, Reel's WanDiT.swift),
with Wan's parameter names so `state_dict()` is Reel's key layout.

Two ways to run it:
- `forward_packed`: a batch of packed "views", each a list of frame entries (latent frame, timestep,
  absolute position, prompt index) with an entry-level attention mask. One call computes everything a
  sequence of streaming passes computes (views.py builds the entries and the mask from Reel's cache
  rules), which is how training runs teacher forcing over the KV cache in parallel.
- `forward_cached`: one streaming pass over a `RingCache`, exactly as Reel runs it (tests check the two
  agree, and sample.py generates with it).

Latents are [..., C, h, w] (channels first, PyTorch's habit); Reel's are channel-last.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DiTConfig


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Wan's sinusoidal_embedding_1d: [cos | sin](t * 10000^(-i/half)), in float64 (reference) then float32."""
    half = dim // 2
    t64 = t.to(torch.float64)
    freqs = torch.pow(torch.tensor(10000.0, dtype=torch.float64, device=t.device),
                      -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    arg = t64[..., None] * freqs
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1).float()


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs given to (time, height, width): [c - 2(c//3), c//3, c//3] for c = head_dim/2."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def rope_angles(frame: torch.Tensor, row: torch.Tensor, col: torch.Tensor, head_dim: int, theta: float = 10000.0):
    """cos, sin [..., head_dim/2] for integer positions (float64 angles: positions are unbounded)."""
    parts = []
    for pos, pairs in zip((frame, row, col), rope_split(head_dim)):
        j = torch.arange(pairs, dtype=torch.float64, device=pos.device)
        freq = 1.0 / torch.pow(torch.tensor(theta, dtype=torch.float64, device=pos.device), j / pairs)
        parts.append(pos.to(torch.float64)[..., None] * freq)
    angle = torch.cat(parts, dim=-1)
    return torch.cos(angle).float(), torch.sin(angle).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, L, H, D] with adjacent pairs (x[2i], x[2i+1]) rotated; cos/sin [B, L, D/2]."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xf[..., 0], xf[..., 1]
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    out = torch.stack([a * c - b * s, a * s + b * c], dim=-1)
    return out.reshape(x.shape).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # Output in x's dtype so q, k, v agree under autocast (the reference multiplies after type_as).
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).type_as(x)


def layer_norm(x, eps):
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps).type_as(x)


class Attention(nn.Module):
    """Wan's self/cross attention parameters: q, k, v, o (with bias) and norm_q, norm_k over the whole dim."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)


class Block(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        d = c.dim
        self.c = c
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d ** 0.5)
        self.self_attn = Attention(d, c.eps)
        self.cross_attn = Attention(d, c.eps)
        self.norm3 = nn.LayerNorm(d, eps=c.eps, elementwise_affine=True)
        self.ffn = nn.Sequential(nn.Linear(d, c.ffn), nn.GELU(approximate="tanh"), nn.Linear(c.ffn, d))

    def heads(self, x):
        return x.reshape(*x.shape[:2], self.c.heads, self.c.dim // self.c.heads)

    def qkv(self, x, e0, cos, sin, n):
        """Modulated self-attention inputs. x [B, L, d], e0 [B, E, 6, d] per entry of n tokens."""
        B, L, d = x.shape
        m = (self.modulation[None] + e0).float()                           # [B, E, 6, d]
        h = layer_norm(x, self.c.eps).reshape(B, -1, n, d)
        h = (h * (1 + m[:, :, 1:2]) + m[:, :, 0:1]).reshape(B, L, d).type_as(x)
        a = self.self_attn
        q = apply_rope(self.heads(a.norm_q(a.q(h))), cos, sin)
        k = apply_rope(self.heads(a.norm_k(a.k(h))), cos, sin)             # cached already rotated
        v = self.heads(a.v(h))
        return q, k, v, m

    def finish(self, x, y, m, cross_k, cross_v, prompt_of_token, n):
        """Everything after self-attention: gate, cross-attention, FFN. y [B, L, H, D] attention output."""
        B, L, d = x.shape
        g = lambda i: m[:, :, i:i + 1]   # noqa: E731  [B, E, 1, d]
        y = self.self_attn.o(y.reshape(B, L, d))
        x = (x.reshape(B, -1, n, d) + y.reshape(B, -1, n, d) * g(2)).reshape(B, L, d).type_as(x)
        ca = self.cross_attn
        cq = self.heads(ca.norm_q(ca.q(self.norm3(x))))                    # [B, L, H, D]
        outs = []
        for p in range(cross_k.shape[1]):                                  # each prompt of the view
            outs.append(F.scaled_dot_product_attention(
                cq.transpose(1, 2), cross_k[:, p].transpose(1, 2), cross_v[:, p].transpose(1, 2)).transpose(1, 2))
        co = torch.stack(outs, dim=0)                                      # [P, B, L, H, D]
        idx = prompt_of_token[None, :, :, None, None].expand(1, B, L, *co.shape[3:])
        co = torch.gather(co, 0, idx)[0]
        x = x + ca.o(co.reshape(B, L, d))
        h = layer_norm(x, self.c.eps).reshape(B, -1, n, d)
        h = (h * (1 + g(4)) + g(3)).reshape(B, L, d).type_as(x)
        x = (x.reshape(B, -1, n, d) + self.ffn(h).reshape(B, -1, n, d) * g(5)).reshape(B, L, d)
        return x

    def cross_kv(self, ctx):
        """ctx [..., T, d] -> K, V [..., T, H, D] (cached per prompt)."""
        ca = self.cross_attn
        k, v = ca.norm_k(ca.k(ctx)), ca.v(ctx)
        shape = (*ctx.shape[:-1], self.c.heads, self.c.dim // self.c.heads)
        return k.reshape(shape), v.reshape(shape)


class Head(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.modulation = nn.Parameter(torch.randn(1, 2, c.dim) / c.dim ** 0.5)
        self.head = nn.Linear(c.dim, c.patch * c.patch * c.out_channels)


class WanDiT(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.c = c
        d, p = c.dim, c.patch
        self.patch_embedding = nn.Conv3d(c.in_channels, d, (1, p, p), (1, p, p))
        self.text_embedding = nn.Sequential(nn.Linear(c.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(c.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.head = Head(c)
        self.init_weights()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for m in self.text_embedding.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for m in self.time_embedding.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)     # Wan inits the output layer to zero

    # -- shared pieces ------------------------------------------------------------------------------
    def embed(self, latents):
        """latents [N, C, h, w] -> tokens [N, n, d] in (row, col) order."""
        x = self.patch_embedding(latents[:, :, None])                          # [N, d, 1, gh, gw]
        return x.flatten(2).transpose(1, 2)

    def time(self, t):
        """t [...] -> e [..., d], e0 [..., 6, d]."""
        e = self.time_embedding(sinusoid(t, self.c.freq_dim).to(self.patch_embedding.weight.dtype))
        e0 = self.time_projection(e).unflatten(-1, (6, self.c.dim))
        return e, e0

    def context(self, text):
        """text [..., T<=text_len, text_dim] (rows past the real tokens zero) -> [..., text_len, d]."""
        pad = self.c.text_len - text.shape[-2]
        if pad > 0:   # reference: zero-pad to text_len; cross-attention attends to every row, pads included
            text = F.pad(text, (0, 0, 0, pad))
        return self.text_embedding(text)

    def unpatchify(self, h, gh, gw):
        """[..., n, p*p*C] -> [..., C, gh*p, gw*p]; channel (q*p + r)*C + c -> pixel (row*p + q, col*p + r)."""
        p, C = self.c.patch, self.c.out_channels
        lead = h.shape[:-2]
        h = h.reshape(*lead, gh, gw, p, p, C)
        nd = len(lead)
        h = h.permute(*range(nd), nd + 4, nd, nd + 2, nd + 1, nd + 3)      # [..., C, gh, p, gw, p]
        return h.reshape(*lead, C, gh * p, gw * p)

    def output(self, x, e, n, gh, gw):
        """x [B, L, d], e [B, E, d] -> velocity [B, E, C, h, w]."""
        B, L, d = x.shape
        m = (self.head.modulation[None] + e[:, :, None]).float()             # [B, E, 2, d]
        h = layer_norm(x, self.c.eps).reshape(B, -1, n, d)
        h = (h * (1 + m[:, :, 1:2]) + m[:, :, 0:1]).type_as(x)
        return self.unpatchify(self.head.head(h), gh, gw)

    def positions(self, frames, gh, gw):
        """frames [B, E] absolute latent frames -> (frame, row, col) per token, each [B, E*n]."""
        B, E = frames.shape
        rows = torch.arange(gh, device=frames.device).repeat_interleave(gw)
        cols = torch.arange(gw, device=frames.device).repeat(gh)
        f = frames[:, :, None].expand(B, E, gh * gw).reshape(B, -1)
        return f, rows.repeat(E)[None].expand(B, -1), cols.repeat(E)[None].expand(B, -1)

    # -- training: packed views ---------------------------------------------------------------------
    def forward_packed(self, latents, t, frames, prompt_index, text, entry_mask):
        """latents [B, E, C, h, w]; t, frames, prompt_index [B, E]; text [B, P, T, text_dim];
        entry_mask [B, E, E] (query entry attends key entry). Returns velocity [B, E, C, h, w]."""
        B, E, C, hh, ww = latents.shape
        p = self.c.patch
        gh, gw = hh // p, ww // p
        n = gh * gw
        x = self.embed(latents.reshape(B * E, C, hh, ww)).reshape(B, E * n, -1)
        e, e0 = self.time(t)                                                   # [B, E, d], [B, E, 6, d]
        ctx = self.context(text)                                               # [B, P, text_len, d]
        cos, sin = rope_angles(*self.positions(frames, gh, gw), self.c.dim // self.c.heads)
        mask = entry_mask.repeat_interleave(n, 1).repeat_interleave(n, 2)[:, None]   # [B, 1, L, L]
        prompt_of_token = prompt_index.repeat_interleave(n, 1)
        for block in self.blocks:
            q, k, v, m = block.qkv(x, e0, cos, sin, n)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               attn_mask=mask).transpose(1, 2)
            ck, cv = block.cross_kv(ctx)
            x = block.finish(x, y, m, ck, cv, prompt_of_token, n)
        return self.output(x, e, n, gh, gw)

    # -- inference: one streaming pass over the ring cache ------------------------------------------
    def prompt_kv(self, text):
        """text [T, text_dim] -> per layer (K, V) [1, 1, text_len, H, D] (Reel's PromptContext)."""
        ctx = self.context(text[None])
        return [tuple(z[:, None] for z in b.cross_kv(ctx)) for b in self.blocks]

    def forward_cached(self, latents, t: float, start_frame: int, prompt_kv, cache: "RingCache",
                       needs_output: bool = True):
        """latents [F, C, h, w] at timestep t (all frames), writing their K/V into `cache` as Reel does."""
        Fn, C, hh, ww = latents.shape
        p = self.c.patch
        gh, gw = hh // p, ww // p
        n = gh * gw
        x = self.embed(latents).reshape(1, Fn * n, -1)
        e, e0 = self.time(torch.full((1, Fn), float(t), device=latents.device))
        frames = torch.arange(start_frame, start_frame + Fn, device=latents.device)[None]
        cos, sin = rope_angles(*self.positions(frames, gh, gw), self.c.dim // self.c.heads)
        plan = cache.plan(start_frame, Fn)
        prompt_of_token = torch.zeros(1, Fn * n, dtype=torch.long, device=latents.device)
        for i, block in enumerate(self.blocks):
            q, k, v, m = block.qkv(x, e0, cos, sin, n)
            cache.write(i, k, v, plan)
            if i == len(self.blocks) - 1 and not needs_output:
                break
            keys, values = cache.attended(i, plan)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2)).transpose(1, 2)
            ck, cv = prompt_kv[i]
            x = block.finish(x, y, m, ck, cv, prompt_of_token, n)
        cache.commit(plan)
        if not needs_output:
            return None
        return self.output(x, e, n, gh, gw)[0]


class RingCache:
    """Reel's WanKVCache: sink slots + a ring of window slots, keys stored rotated, positions unbounded.
    A pass attends to slots [0, min(max(end, endFrame), slots)) after writing its frames."""

    def __init__(self, layers, tokens_per_frame, heads, head_dim, sink_frames=3, window_frames=9,
                 device=None, dtype=torch.float32):
        self.n, self.sink, self.window = tokens_per_frame, sink_frames, window_frames
        shape = (1, (sink_frames + window_frames) * tokens_per_frame, heads, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.end_frame = 0

    @property
    def slots(self):
        return self.sink + self.window

    def slot(self, f):
        return f if f < self.sink else self.sink + (f - self.sink) % self.window

    def plan(self, start, frames):
        """(writes [(input frame, slot)], attended slots, advances end) by Reel's WanKVCache.plan rules."""
        end = start + frames
        recompute = end <= self.end_frame and start > 0
        horizon = max(end, self.end_frame)
        writes = [(f - start, self.slot(f)) for f in range(start, end)
                  if ((not recompute) if f < self.sink else f >= horizon - self.window)]
        return {"start": start, "frames": frames, "writes": writes, "attended": min(horizon, self.slots),
                "advances": not recompute}

    def write(self, layer, k, v, plan):
        n = self.n
        for src, dst in plan["writes"]:
            self.k[layer][:, dst * n:(dst + 1) * n] = k[:, src * n:(src + 1) * n]
            self.v[layer][:, dst * n:(dst + 1) * n] = v[:, src * n:(src + 1) * n]

    def attended(self, layer, plan):
        m = plan["attended"] * self.n
        return self.k[layer][:, :m], self.v[layer][:, :m]

    def commit(self, plan):
        if plan["advances"]:
            self.end_frame = max(self.end_frame, plan["start"] + plan["frames"])
