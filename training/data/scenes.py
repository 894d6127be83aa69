"""Scenes, captions and their ground truth.

A scene is one object (shape, colour, size) moving on a plain or two-tone background. Its caption
comes from a small grammar:

    a [small|large] <colour> <shape> <motion> [slowly|quickly] on a <colour> [and <colour>] background

e.g. "a large red circle moves left quickly on a blue background",
     "a green triangle bounces around on a white and black background" (two-tone: top, then bottom).

Motions: "moves <dir>" for 8 directions wraps around the frame edges (the direction always holds),
"bounces left and right" / "bounces up and down" / "bounces around" reflect off the walls, "stays still".
A clip is a timeline of prompts: at a switch frame one attribute changes (colour, shape, motion or
speed, size, background) and the object carries on from where it is. The object starts at the frame
centre unless asked otherwise, so a video is a pure function of its prompts and switch frames: this is
what lets a few-step model trained by regression be sharp (training/README.md argues it).

Everything is numpy, deterministic by seed, and evaluated in closed form per prompt segment, so the
state at frame 10,000 costs no more than at frame 0. Units: pixels of a `frame_size` square frame,
video frames at 16 fps; y grows downwards.

Latent frames (Wan VAE / TAEHV stride 4): latent 0 is video frame 0, latent k >= 1 is video frames
4k-3 .. 4k. A switch at latent block start s (a multiple of 3) is a switch at video frame 4s-3.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 215, 40),
    "orange": (245, 140, 30), "purple": (140, 60, 190), "white": (245, 245, 245), "black": (20, 20, 20),
}
COLOUR_NAMES = list(COLOURS)
BACKGROUND_COLOURS = COLOUR_NAMES
SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
# Half-extent of the object as a fraction of the frame size ("" is the unnamed medium size).
SIZES: dict[str, float] = {"small": 0.08, "": 0.125, "large": 0.19}
# Pixels per video frame at a 128-pixel frame (scaled with the frame size).
SPEEDS: dict[str, float] = {"slowly": 0.75, "": 1.5, "quickly": 2.5}
_D = float(np.sqrt(0.5))
# name -> (mode, unit direction); y grows downwards.
MOTIONS: dict[str, tuple[str, tuple[float, float]]] = {
    "moves left": ("wrap", (-1.0, 0.0)), "moves right": ("wrap", (1.0, 0.0)),
    "moves up": ("wrap", (0.0, -1.0)), "moves down": ("wrap", (0.0, 1.0)),
    "moves up and left": ("wrap", (-_D, -_D)), "moves up and right": ("wrap", (_D, -_D)),
    "moves down and left": ("wrap", (-_D, _D)), "moves down and right": ("wrap", (_D, _D)),
    "bounces left and right": ("bounce", (1.0, 0.0)), "bounces up and down": ("bounce", (0.0, 1.0)),
    "bounces around": ("bounce", (_D, _D)),
    "stays still": ("still", (0.0, 0.0)),
}
MOTION_NAMES = list(MOTIONS)
SWITCH_KINDS = ("colour", "shape", "motion", "size", "background")
SWITCH_WEIGHTS = (0.3, 0.25, 0.3, 0.1, 0.05)


@dataclass(frozen=True)
class Attributes:
    """What a caption says."""
    shape: str
    colour: str
    size: str                       # "small", "" or "large"
    motion: str                     # a key of MOTIONS
    speed: str                      # "slowly", "" or "quickly" (ignored by "stays still")
    background: tuple[str, ...]     # (colour,) or (top, bottom)
    empty: bool = False             # no object: "an empty blue background"


def caption(a: Attributes) -> str:
    bg = " and ".join(a.background)
    if a.empty:
        return f"an empty {bg} background"
    size = f"{a.size} " if a.size else ""
    speed = f" {a.speed}" if a.speed and a.motion != "stays still" else ""
    return f"a {size}{a.colour} {a.shape} {a.motion}{speed} on a {bg} background"


def radius(a: Attributes, frame_size: int) -> float:
    return SIZES[a.size] * frame_size


def velocity(a: Attributes, frame_size: int) -> np.ndarray:
    """The canonical signed velocity (pixels per frame) of a caption's motion."""
    mode, (dx, dy) = MOTIONS[a.motion]
    s = 0.0 if mode == "still" else SPEEDS[a.speed] * frame_size / 128.0
    return np.array([dx * s, dy * s])


def sample_attributes(rng: np.random.Generator, empty_prob: float = 0.0, two_tone_prob: float = 0.35) -> Attributes:
    colour = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
    return Attributes(shape=SHAPES[rng.integers(len(SHAPES))], colour=colour,
                      size=list(SIZES)[rng.integers(len(SIZES))], motion=MOTION_NAMES[rng.integers(len(MOTION_NAMES))],
                      speed=list(SPEEDS)[rng.integers(len(SPEEDS))],
                      background=_sample_background(rng, colour, two_tone_prob),
                      empty=bool(rng.random() < empty_prob))


def _sample_background(rng, object_colour: str, two_tone_prob: float) -> tuple[str, ...]:
    choices = [c for c in BACKGROUND_COLOURS if c != object_colour]
    first = choices[rng.integers(len(choices))]
    if rng.random() < two_tone_prob:
        rest = [c for c in choices if c != first]
        return (first, rest[rng.integers(len(rest))])
    return (first,)


def _in_bounce_range(a: Attributes, position: np.ndarray, frame_size: int) -> bool:
    mode, direction = MOTIONS[a.motion]
    if mode != "bounce":
        return True
    r = radius(a, frame_size)
    return all(r <= p <= frame_size - r for p, d in zip(position, direction) if d != 0)


def sample_switch(rng: np.random.Generator, a: Attributes, position: np.ndarray, frame_size: int,
                  kinds=SWITCH_KINDS, weights=SWITCH_WEIGHTS) -> tuple[Attributes, str]:
    """A caption that differs from `a` in one attribute, valid for an object at `position`
    (a bouncing object must be inside its bounce range, no colour may clash with the background)."""
    p = np.array(weights, dtype=float)
    p /= p.sum()
    for _ in range(100):
        kind = kinds[rng.choice(len(kinds), p=p)]
        if kind == "colour":
            options = [c for c in COLOUR_NAMES if c != a.colour and c not in a.background]
            b = dataclasses.replace(a, colour=options[rng.integers(len(options))])
        elif kind == "shape":
            options = [s for s in SHAPES if s != a.shape]
            b = dataclasses.replace(a, shape=options[rng.integers(len(options))])
        elif kind == "motion":
            motion, speed = a.motion, a.speed
            while (motion, speed) == (a.motion, a.speed) or (motion == a.motion == "stays still"):
                motion = MOTION_NAMES[rng.integers(len(MOTION_NAMES))]
                speed = list(SPEEDS)[rng.integers(len(SPEEDS))]
            b = dataclasses.replace(a, motion=motion, speed=speed)
        elif kind == "size":
            options = [s for s in SIZES if s != a.size]
            b = dataclasses.replace(a, size=options[rng.integers(len(options))])
        else:
            b = dataclasses.replace(a, background=_sample_background(rng, a.colour, 0.35))
            if b.background == a.background:
                continue
        if _in_bounce_range(b, position, frame_size):
            return b, kind
    raise RuntimeError(f"no valid switch from {a} at {position}")


@dataclass
class Segment:
    start: int                      # first video frame with this prompt
    attributes: Attributes


def _advance_axis(mode: str, p0: float, v0: float, r: float, size: int, dt: np.ndarray):
    """Position and signed velocity along one axis, dt frames after (p0, v0)."""
    if mode == "still" or v0 == 0.0:
        return np.full(dt.shape, p0), np.zeros(dt.shape)
    if mode == "wrap":
        return np.mod(p0 + v0 * dt, size), np.full(dt.shape, v0)
    # Bounce: unfold the reflections into a coordinate u on a circle of length 2L.
    span = size - 2.0 * r
    speed = abs(v0)
    u0 = (p0 - r) if v0 > 0 else 2.0 * span - (p0 - r)
    m = np.mod(u0 + speed * dt, 2.0 * span)
    return r + np.where(m <= span, m, 2.0 * span - m), np.where(m < span, speed, -speed)


def simulate(timeline: list[Segment], frames: np.ndarray, frame_size: int = 128,
             start: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Ground truth at the given video frames (any order, any size) of a prompt timeline.

    Returns arrays indexed like `frames`: centre [N,2] and velocity [N,2] (pixels, pixels/frame),
    radius [N], shape / colour [N] (indices into SHAPES / COLOUR_NAMES), rgb [N,3] (uint8),
    background [N,2] (colour indices, top then bottom), present [N] (an object is drawn),
    crosses_edge [N] (the object's extent crosses a frame edge, so it shows on both sides),
    prompt [N] (index into the timeline).
    """
    frames = np.asarray(frames, dtype=np.int64)
    n = frames.shape[0]
    out = {"centre": np.zeros((n, 2), np.float32), "velocity": np.zeros((n, 2), np.float32),
           "radius": np.zeros(n, np.float32), "shape": np.zeros(n, np.int8), "colour": np.zeros(n, np.int8),
           "rgb": np.zeros((n, 3), np.uint8), "background": np.zeros((n, 2), np.int8),
           "present": np.zeros(n, bool), "crosses_edge": np.zeros(n, bool), "prompt": np.zeros(n, np.int16)}
    position = np.array(start if start is not None else (frame_size / 2.0, frame_size / 2.0), dtype=np.float64)
    v_prev = None
    prev = None
    for i, seg in enumerate(timeline):
        a = seg.attributes
        end = timeline[i + 1].start if i + 1 < len(timeline) else np.iinfo(np.int64).max
        v = velocity(a, frame_size)
        if prev is not None and prev.motion == a.motion and v_prev is not None:
            # The motion goes on: keep the direction a bounce had reached, take the (new) speed.
            v = np.where(v_prev != 0, np.sign(v_prev), np.sign(v)) * np.abs(v)
        mode = MOTIONS[a.motion][0]
        r = radius(a, frame_size)
        sel = (frames >= seg.start) & (frames < end)
        for axis in range(2):
            dt = (frames[sel] - seg.start).astype(np.float64)
            p, vel = _advance_axis(mode, position[axis], v[axis], r, frame_size, dt)
            out["centre"][sel, axis] = p
            out["velocity"][sel, axis] = vel
        out["radius"][sel] = r
        out["shape"][sel] = SHAPES.index(a.shape)
        out["colour"][sel] = COLOUR_NAMES.index(a.colour)
        out["rgb"][sel] = COLOURS[a.colour]
        bg = a.background if len(a.background) == 2 else a.background * 2
        out["background"][sel] = [COLOUR_NAMES.index(c) for c in bg]
        out["present"][sel] = not a.empty
        out["prompt"][sel] = i
        if i + 1 < len(timeline):
            dt = np.array([float(end - seg.start)])
            new_v = np.zeros(2)
            for axis in range(2):
                p, vel = _advance_axis(mode, position[axis], v[axis], r, frame_size, dt)
                position[axis], new_v[axis] = p[0], vel[0]
            v_prev, prev = new_v, a
    c, r = out["centre"], out["radius"][:, None]
    out["crosses_edge"] = out["present"] & np.any((c < r) | (c > frame_size - r), axis=1)
    return out


@dataclass
class Clip:
    """A clip: its prompts, the video frames where each later prompt starts, and per-frame truth."""
    prompts: list[str]
    attributes: list[Attributes]
    switch_frames: list[int]
    switch_kinds: list[str]
    truth: dict[str, np.ndarray]
    frame_size: int
    fps: int = 16

    @property
    def frames(self) -> int:
        return int(self.truth["centre"].shape[0])


def timeline_state(timeline: list[Segment], frame: int, frame_size: int, start=None) -> np.ndarray:
    return simulate(timeline, np.array([frame]), frame_size, start)["centre"][0].astype(np.float64)


def make_clip(seed: int, frames: int = 97, switches: int = 1, frame_size: int = 128, aligned: bool = True,
              random_start: bool = False, empty_prob: float = 0.0, min_gap_blocks: int = 1) -> Clip:
    """A clip of `frames` video frames with `switches` prompt switches at random frames.

    aligned: switches fall on latent block starts (video frame 4s-3 for s a positive multiple of 3),
    as Reel's generator switches prompts; otherwise on any frame >= 1.
    random_start: the object starts anywhere inside the frame instead of the centre.
    """
    rng = np.random.default_rng(seed)
    a = sample_attributes(rng, empty_prob=empty_prob)
    start = None
    if random_start:
        r = radius(a, frame_size)
        start = rng.uniform(r, frame_size - r, size=2)
    timeline = [Segment(0, a)]
    kinds = []
    if aligned:
        blocks = [4 * s - 3 for s in range(3, (frames + 3) // 4 + 1, 3) if 4 * s - 3 < frames]
        candidates = blocks[::max(1, min_gap_blocks)]
    else:
        candidates = list(range(1, frames))
    switches = 0 if a.empty else min(switches, len(candidates))
    at = sorted(rng.choice(candidates, size=switches, replace=False).tolist()) if switches else []
    for f in at:
        position = timeline_state(timeline, f, frame_size, start)
        b, kind = sample_switch(rng, timeline[-1].attributes, position, frame_size)
        timeline.append(Segment(int(f), b))
        kinds.append(kind)
    truth = simulate(timeline, np.arange(frames), frame_size, start)
    return Clip(prompts=[caption(s.attributes) for s in timeline], attributes=[s.attributes for s in timeline],
                switch_frames=at, switch_kinds=kinds, truth=truth, frame_size=frame_size)


def latent_to_video(k: int) -> range:
    """The video frames latent frame k stands for (Wan VAE / TAEHV temporal stride 4)."""
    return range(0, 1) if k == 0 else range(4 * k - 3, 4 * k + 1)
