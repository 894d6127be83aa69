"""The video autoencoder: a TAEHV-structure decoder (Reel's TinyDecoder; keys `decoder.N...` as in
taew2_1) and a training-only encoder that makes the DiT's latents.

Decoder (REFERENCE.md section 3, madebyollin/taehv): Clamp(tanh(x/3)*3), conv z->c0, ReLU, then per
stage 3 MemBlocks (relu(conv(cat(x, x_prev)) -> relu -> conv -> relu -> conv + x), x_prev = the
block's input one frame earlier, zeros at the start), nearest x2, TGrow (1x1 conv C -> C*stride, output
frame t*stride + s takes channels [s*C, (s+1)*C)), conv to the next stage; ReLU, conv -> 3. Time upscale
[1, 2, 2]: latent k gives raw frames 4k..4k+3; the first 3 raw frames of a stream are trimmed, so latent
0 is video frame 0 and latent k >= 1 is frames 4k-3..4k. Output in [0, 1] (Reel clamps it).
Here all frames of a clip run at once (the parallel form); Reel streams it with one frame of memory
per MemBlock, which is the same function.

Encoder (not shipped): latent k = f(video frames 4k-3..4k) (frame 0 four times for k = 0), convs down
x8, then a non-affine BatchNorm so latents have zero mean and unit variance per channel (the DiT's
noise scale); its running statistics freeze in eval mode.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DecoderConfig, EncoderConfig


class Conv(nn.Conv2d):
    """3x3 (or 1x1) conv over every frame of [N, T, C, H, W]."""

    def __init__(self, cin, cout, k=3, bias=True):
        super().__init__(cin, cout, k, padding=k // 2, bias=bias)

    def forward(self, x):
        N, T = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (N, T))


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class ReLU(nn.Module):
    def forward(self, x):
        return F.relu(x)


class MemBlock(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv = nn.Sequential(Conv(2 * n, n), ReLU(), Conv(n, n), ReLU(), Conv(n, n))

    def forward(self, x):
        past = F.pad(x, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1]                  # previous frame's input, zeros first
        return F.relu(self.conv(torch.cat([x, past], dim=2)) + x)


class Upsample(nn.Module):
    def forward(self, x):
        N, T = x.shape[:2]
        return F.interpolate(x.flatten(0, 1), scale_factor=2, mode="nearest").unflatten(0, (N, T))


class TGrow(nn.Module):
    def __init__(self, n, stride):
        super().__init__()
        self.stride = stride
        self.conv = Conv(n, n * stride, k=1, bias=False)

    def forward(self, x):
        N, T, C, H, W = x.shape
        y = self.conv(x)                                                   # [N, T, C*stride, H, W]
        return y.reshape(N, T, self.stride, C, H, W).reshape(N, T * self.stride, C, H, W)


def tiny_decoder(c: DecoderConfig) -> nn.Sequential:
    c0, c1, c2, c3 = c.channels
    return nn.Sequential(
        Clamp(), Conv(c.latent_channels, c0), ReLU(),
        MemBlock(c0), MemBlock(c0), MemBlock(c0), Upsample(), TGrow(c0, 1), Conv(c0, c1, bias=False),
        MemBlock(c1), MemBlock(c1), MemBlock(c1), Upsample(), TGrow(c1, 2), Conv(c1, c2, bias=False),
        MemBlock(c2), MemBlock(c2), MemBlock(c2), Upsample(), TGrow(c2, 2), Conv(c2, c3, bias=False),
        ReLU(), Conv(c3, 3))


FRAMES_TO_TRIM = 3


class Decoder(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.c = c
        self.decoder = tiny_decoder(c)
        # Start as identities where the structure allows (a plain 22-layer ReLU net learns slowly otherwise):
        # each MemBlock's last conv at zero (the block passes x through), each TGrow copying its input.
        with torch.no_grad():
            for m in self.decoder:
                if isinstance(m, MemBlock):
                    m.conv[4].weight.zero_()
                    m.conv[4].bias.zero_()
                elif isinstance(m, TGrow):
                    n = m.conv.weight.shape[1]
                    m.conv.weight.copy_(torch.eye(n).repeat(m.stride, 1)[:, :, None, None])

    def forward(self, latents):
        """latents [N, T, z, h, w] from the start of a stream -> frames [N, 4T-3, 3, 8h, 8w], unclamped."""
        return self.decoder(latents)[:, FRAMES_TO_TRIM:]


class Encoder(nn.Module):
    def __init__(self, c: EncoderConfig):
        super().__init__()
        a, b, d, e = c.channels

        def res(n):
            return nn.Sequential(nn.Conv2d(n, n, 3, padding=1), nn.SiLU(), nn.Conv2d(n, n, 3, padding=1))

        self.stem = nn.Conv2d(12, a, 3, padding=1)
        self.down = nn.ModuleList([nn.Conv2d(a, b, 4, 2, 1), nn.Conv2d(b, d, 4, 2, 1), nn.Conv2d(d, e, 4, 2, 1)])
        self.res = nn.ModuleList([res(b), res(d), res(e)])
        self.out = nn.Conv2d(e, c.latent_channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(c.latent_channels, affine=False, momentum=0.01)

    def forward(self, groups):
        """groups [N, 4, 3, H, W] (the 4 video frames of each latent frame, in [0, 1]) -> [N, z, H/8, W/8]."""
        x = F.silu(self.stem(groups.flatten(1, 2) * 2 - 1))
        for down, res in zip(self.down, self.res):
            x = F.silu(down(x))
            x = x + res(x)
        return self.norm(self.out(x))


def frame_groups(video, first: bool = True):
    """video [N, F, 3, H, W] (F = 4T-3 when `first`, the stream's start) -> [N, T, 4, 3, H, W] groups of 4
    frames per latent frame; latent 0 gets frame 0 four times."""
    if first:
        video = torch.cat([video[:, :1].expand(-1, 3, -1, -1, -1), video], dim=1)
    N, F4 = video.shape[:2]
    return video.reshape(N, F4 // 4, 4, *video.shape[2:])
