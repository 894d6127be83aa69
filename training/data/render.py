"""Rendering of ground truth to frames, with numpy (default) or torch (on the GPU while training).

Each pixel's coverage comes from the shape's signed distance, clip(0.5 - d, 0, 1), so edges are
anti-aliased and sub-pixel positions are visible. Distances wrap around the frame (a torus), which is
what "moves left" past the edge looks like. Two-tone backgrounds are the top half in the first colour
and the bottom half in the second.
"""
from __future__ import annotations

import numpy as np

from .scenes import COLOURS, COLOUR_NAMES, SHAPES

_PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32) / 255.0
_TRIANGLE_SLOPE = 1.8  # apex (0, -r), base corners (+-r, 0.8r)


def _xp(x):
    if isinstance(x, np.ndarray):
        return np
    import torch
    return torch


def _clip01(xp, x):
    return np.clip(x, 0.0, 1.0) if xp is np else xp.clamp(x, 0.0, 1.0)


def shape_distance(xp, shape: int, dx, dy, r):
    """Signed distance (pixels, negative inside) of shape index `shape` centred at 0 with half-extent r."""
    name = SHAPES[shape]
    ax, ay = abs(dx), abs(dy)
    if name == "circle":
        return xp.sqrt(dx * dx + dy * dy) - r
    if name == "square":
        return xp.maximum(ax, ay) - r
    if name == "diamond":
        return (ax + ay - r) * float(np.sqrt(0.5))
    if name == "triangle":
        k = _TRIANGLE_SLOPE
        return xp.maximum(dy - 0.8 * r, (k * ax - dy - r) / float(np.sqrt(k * k + 1)))
    if name == "cross":
        arm = 0.35 * r
        return xp.minimum(xp.maximum(ax - r, ay - arm), xp.maximum(ax - arm, ay - r))
    raise ValueError(name)


def render(truth: dict, frame_size: int = 128, index=None, device=None):
    """Frames of the ground truth rows `index` (all when None).

    numpy (device None): uint8 [N, S, S, 3]. torch (device given): float32 [N, S, S, 3] in [0, 1]
    on that device; the two agree to rounding (training/tests check it).
    """
    rows = slice(None) if index is None else index
    centre = np.asarray(truth["centre"][rows], np.float32)
    radius = np.asarray(truth["radius"][rows], np.float32)
    shape = np.asarray(truth["shape"][rows])
    colour = _PALETTE[np.asarray(truth["colour"][rows], np.int64)]
    background = _PALETTE[np.asarray(truth["background"][rows], np.int64)]     # [N, 2, 3]
    present = np.asarray(truth["present"][rows], np.float32)
    if device is None:
        xp = np
        asarray = lambda a: a  # noqa: E731
    else:
        import torch
        xp = torch
        asarray = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    n, s = centre.shape[0], frame_size
    grid = asarray(np.arange(s, dtype=np.float32) + 0.5)
    cx, cy = asarray(centre[:, 0])[:, None, None], asarray(centre[:, 1])[:, None, None]
    half = s / 2.0
    dx = (grid[None, None, :] - cx + half) % s - half                             # [N, 1, S]
    dy = (grid[None, :, None] - cy + half) % s - half                             # [N, S, 1]
    r = asarray(radius)[:, None, None]
    cover = asarray(np.zeros((n, s, s), np.float32))
    for k in range(len(SHAPES)):
        mine = asarray((shape == k).astype(np.float32))[:, None, None]
        if float(mine.sum()) == 0:
            continue
        cover = cover + mine * _clip01(xp, 0.5 - shape_distance(xp, k, dx, dy, r))
    cover = (cover * asarray(present)[:, None, None])[..., None]                  # [N, S, S, 1]
    top = asarray((np.arange(s) < s // 2).astype(np.float32))[None, :, None, None]
    bg = asarray(background[:, 0])[:, None, None, :] * top + asarray(background[:, 1])[:, None, None, :] * (1 - top)
    frames = bg * (1 - cover) + asarray(colour)[:, None, None, :] * cover
    if xp is np:
        return np.round(frames * 255.0).astype(np.uint8)
    return frames
