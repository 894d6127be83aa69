"""Teacher-forced training views of Reel's streaming generation, as packed frame entries plus a mask.

Reel generates block b (3 latent frames) by 4 noisy passes and one clean pass, each attending to what
its KV cache holds (sink + rolling window, WanKVCache's rules) plus the pass's own frames; a prompt
switch first runs a recache pass (the window's clean latents under the new prompt). Every pass's keys
at layer l depend only on earlier passes' keys at layers <= l, so ONE forward over all passes of a
view, with an entry-level mask saying which cached frame version each pass sees, computes exactly what
the sequential passes compute. Clean passes take the ground-truth latents (teacher forcing); one
noisy pass per block takes a sampled step of the 4-step schedule and carries the loss.

A view is the video's sink block (latent frames 0-2) plus a run of R blocks starting at latent frame
P. P = 3 is the start of a video; a large P puts the run far away (RoPE positions up to thousands of
frames, as in long generation): the window before the run is then empty, so the first two run blocks
only warm the cache up and carry no loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLEAN, NOISY, RECACHE, PAD = 0, 1, 2, 3


@dataclass
class Pass:
    kind: int            # CLEAN, NOISY or RECACHE
    start: int           # absolute latent frame
    frames: int
    prompt: int          # index into the view's prompts
    loss: bool = False


@dataclass
class ViewLayout:
    """Entries (one per frame of each pass, in pass order) and the entry-level attention mask."""
    kind: np.ndarray     # [E]
    frame: np.ndarray    # [E] absolute latent frame (RoPE position, and which latent it holds)
    prompt: np.ndarray   # [E]
    loss: np.ndarray     # [E] bool: noisy entries whose prediction is trained
    mask: np.ndarray     # [E, E] bool: query entry attends key entry
    pass_id: np.ndarray  # [E] index of the entry's pass (a pass has one timestep)


def view_passes(P: int, run_blocks: int, switch_at: int | None, prompts: tuple[int, int, int],
                fpb: int = 3, window: int = 9, attention: int = 12) -> list[Pass]:
    """Passes of a view in time order. prompts = (sink's prompt, run's prompt, prompt after the switch),
    indices into the view's prompt list, whose entry 0 is the video's first prompt (block 0 was generated
    with it; the sink's keys may since have been recomputed with another by a recache at s <= 12).
    switch_at: latent frame of a block start inside the run where the prompt switches (with recache)."""
    passes = [Pass(NOISY, 0, fpb, 0, loss=True), Pass(CLEAN, 0, fpb, prompts[0])]
    warmup = 0 if P == fpb else 2
    prompt = prompts[1]
    for j in range(run_blocks):
        s = P + fpb * j
        if switch_at is not None and s == switch_at:
            prompt = prompts[2]
            n = min(attention, s)
            first = 0 if s - n == 0 else s - window
            passes.append(Pass(RECACHE, first, s - first, prompt))
        passes.append(Pass(NOISY, s, fpb, prompt, loss=j >= warmup))
        passes.append(Pass(CLEAN, s, fpb, prompt))
    return passes


def layout(passes: list[Pass], P: int, fpb: int = 3, sink: int = 3, window: int = 9) -> ViewLayout:
    """Runs Reel's cache rules (WanKVCache.plan) over the passes to find what each pass attends to."""
    slots = sink + window
    owner = [-1] * slots           # entry id held by each slot (-1: empty)
    end_frame = 0
    kinds, frames, prompts, losses, attends, pass_ids = [], [], [], [], [], []
    for pi, p in enumerate(passes):
        if p.start == P and P > fpb and end_frame < P:
            # Jump to the run: frames before P were generated (end advances) but are not in the view.
            end_frame = P
            for s in range(sink, slots):
                owner[s] = -1
        ids = list(range(len(kinds), len(kinds) + p.frames))
        for i in range(p.frames):
            kinds.append(p.kind)
            frames.append(p.start + i)
            prompts.append(p.prompt)
            losses.append(p.loss)
            pass_ids.append(pi)
        end = p.start + p.frames
        recompute = end <= end_frame and p.start > 0
        horizon = max(end, end_frame)
        for i, f in enumerate(range(p.start, end)):
            writable = (not recompute) if f < sink else f >= horizon - window
            if writable:
                owner[f if f < sink else sink + (f - sink) % window] = ids[i]
        visible = [o for o in owner[:min(horizon, slots)] if o >= 0]
        attends.append((ids, visible))
        if not recompute:
            end_frame = max(end_frame, end)
    E = len(kinds)
    mask = np.zeros((E, E), bool)
    for ids, visible in attends:
        for q in ids:
            mask[q, visible] = True
    return ViewLayout(np.array(kinds), np.array(frames), np.array(prompts), np.array(losses), mask, np.array(pass_ids))


def collate(layouts: list[ViewLayout]) -> dict[str, np.ndarray]:
    """Pads views to the same entry count; pad entries attend to themselves only and carry no loss."""
    E = max(len(v.kind) for v in layouts)
    B = len(layouts)
    out = {"kind": np.full((B, E), PAD), "frame": np.zeros((B, E), np.int64), "prompt": np.zeros((B, E), np.int64),
           "loss": np.zeros((B, E), bool), "mask": np.zeros((B, E, E), bool), "pass_id": np.zeros((B, E), np.int64)}
    for b, v in enumerate(layouts):
        e = len(v.kind)
        out["kind"][b, :e], out["frame"][b, :e], out["prompt"][b, :e], out["loss"][b, :e] = v.kind, v.frame, v.prompt, v.loss
        out["mask"][b, :e, :e] = v.mask
        out["pass_id"][b, :e] = v.pass_id
        out["pass_id"][b, e:] = v.pass_id.max() + 1 + np.arange(E - e)
        out["mask"][b, np.arange(e, E), np.arange(e, E)] = True
    return out
