"""A simple image-analysis checker of what a frame shows, validated on the generator's own frames
(tests: on ground-truth renders the centre error is ~0 and the colour is always found). It is the
seed of `reel eval`: the object's colour, position (hence motion), and presence.

For each frame: pixels whose colour is nearer the object's expected colour than to either background
colour (and within `tolerance` of it) form the object mask; its centroid is the object centre, taken on
the torus (circular mean) because objects wrap around the edges.
"""
from __future__ import annotations

import numpy as np

from .scenes import COLOURS, COLOUR_NAMES

_PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32)


def object_masks(frames: np.ndarray, colour: np.ndarray, background: np.ndarray, tolerance: float = 90.0) -> np.ndarray:
    """frames uint8 [N,S,S,3]; colour [N], background [N,2] colour indices -> bool [N,S,S]."""
    f = frames.astype(np.float32)
    d_obj = np.linalg.norm(f - _PALETTE[colour][:, None, None, :], axis=-1)
    d_bg = np.minimum(np.linalg.norm(f - _PALETTE[background[:, 0]][:, None, None, :], axis=-1),
                      np.linalg.norm(f - _PALETTE[background[:, 1]][:, None, None, :], axis=-1))
    return (d_obj < d_bg) & (d_obj < tolerance)


def circular_centroid(mask: np.ndarray) -> np.ndarray:
    """Centre [N,2] (x, y) of each mask on the torus; NaN where the mask is empty."""
    n, s, _ = mask.shape
    angle = (np.arange(s) + 0.5) / s * 2 * np.pi
    out = np.full((n, 2), np.nan, np.float32)
    for axis, profile in ((0, mask.sum(1)), (1, mask.sum(2))):          # x: column sums, y: row sums
        w = profile.astype(np.float64)
        total = w.sum(1)
        c, si = (w * np.cos(angle)).sum(1), (w * np.sin(angle)).sum(1)
        a = np.mod(np.arctan2(si, c), 2 * np.pi)
        out[:, axis] = np.where(total > 0, a / (2 * np.pi) * s, np.nan)
    return out


def toroidal_error(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    d = np.abs(a - b)
    d = np.minimum(d, size - d)
    return np.sqrt((d ** 2).sum(-1))


def object_metrics(frames: np.ndarray, truth: dict, frame_size: int) -> dict:
    """Per frame: centre error (pixels, on the torus), object area found / expected, for present objects,
    and whether the object is found (an area of 0.3 to 3 times the expected one: a frame flooded with
    the object's colour does not count)."""
    present = truth["present"].astype(bool)
    masks = object_masks(frames, truth["colour"].astype(np.int64), truth["background"].astype(np.int64))
    centre = circular_centroid(masks)
    # The triangle's centroid lies 0.2r below its reference centre (apex at -r, base at +0.8r).
    offset = np.where(np.asarray(truth["shape"]) == 2, 0.2 * truth["radius"], 0.0)
    expected_centre = np.stack([truth["centre"][:, 0], truth["centre"][:, 1] + offset], -1)
    err = toroidal_error(centre, expected_centre, frame_size)
    expected = np.array([_area(s, r) for s, r in zip(truth["shape"], truth["radius"])])
    area = masks.sum((1, 2)) / np.maximum(expected, 1)
    return {"centre_error": np.where(present, err, np.nan), "area_ratio": np.where(present, area, np.nan),
            "found": present & (area > 0.3) & (area < 3.0)}


def _area(shape: int, r: float) -> float:
    from .scenes import SHAPES
    name = SHAPES[int(shape)]
    return {"circle": np.pi * r * r, "square": 4 * r * r, "diamond": 2 * r * r, "triangle": 1.8 * r * r,
            "cross": 4 * 0.35 * r * r * 2 - (0.7 * r) ** 2}[name]
