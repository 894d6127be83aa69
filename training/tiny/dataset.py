"""Training samples: autoencoder clips and DiT views, sampled with numpy (deterministic by seed) and
rendered with torch on the training device."""
from __future__ import annotations

import numpy as np
import torch

from ..data.render import render
from ..data.scenes import Segment, caption, make_clip, sample_attributes, sample_switch, simulate, timeline_state
from .views import layout, view_passes


def ae_clip(seed: int, latents: int, frame_size: int) -> dict:
    """A clip from the start of a video (4*latents - 3 frames): random start position, maybe a switch."""
    rng = np.random.default_rng(seed)
    clip = make_clip(int(rng.integers(1 << 62)), frames=4 * latents - 3, switches=int(rng.integers(0, 2)),
                     frame_size=frame_size, aligned=False, random_start=True, empty_prob=0.03)
    return clip.truth


def _concat_truth(truths: list[dict]) -> dict:
    return {k: np.concatenate([t[k] for t in truths]) for k in truths[0]}


def render_truth(truths: list[dict], frame_size: int, device, chunk: int = 2048) -> torch.Tensor:
    """Renders concatenated truth rows -> uint8 [N, 3, S, S] on `device`."""
    truth = _concat_truth(truths)
    n = truth["centre"].shape[0]
    out = torch.empty(n, 3, frame_size, frame_size, dtype=torch.uint8, device=device)
    for i in range(0, n, chunk):
        idx = np.arange(i, min(n, i + chunk))
        out[i:i + len(idx)] = (render(truth, frame_size, idx, device=device) * 255).round().to(torch.uint8).permute(0, 3, 1, 2)
    return out


def sample_view(seed: int, run_blocks: int = 6, frame_size: int = 128, p_contiguous: float = 0.5,
                max_block: int = 1400, p_switch: float = 0.6, p_earlier_switch: float = 0.5) -> dict:
    """A DiT training view (views.py): prompts, the latent frames it holds, the 4 video frames behind each
    latent frame, their ground truth, and the entry layout with Reel's cache rules."""
    rng = np.random.default_rng(seed)
    fpb = 3
    if rng.random() < p_contiguous:
        P = fpb
    else:
        P = fpb * int(np.exp(rng.uniform(np.log(4), np.log(max_block))))
    a0 = sample_attributes(rng)
    segments = [Segment(0, a0)]
    sink_prompt, run_prompt = 0, 0
    prompts = [a0]
    if P > fpb and rng.random() < p_earlier_switch:
        s0 = fpb * int(rng.integers(1, P // fpb))                 # latent block start, before the run
        f0 = 4 * s0 - 3
        a1, _ = sample_switch(rng, a0, timeline_state(segments, f0, frame_size), frame_size)
        segments.append(Segment(f0, a1))
        prompts.append(a1)
        run_prompt = 1
        if s0 <= 12:                                               # recache at s0 rewrote the sink
            sink_prompt = 1
    switch_at = None
    if rng.random() < p_switch:
        first = fpb if P == fpb else P + 3 * fpb
        options = list(range(first, P + fpb * run_blocks, fpb))
        if options:
            switch_at = int(rng.choice(options))
            f1 = 4 * switch_at - 3
            a2, _ = sample_switch(rng, segments[-1].attributes, timeline_state(segments, f1, frame_size), frame_size)
            segments.append(Segment(f1, a2))
            prompts.append(a2)
    after = len(prompts) - 1
    passes = view_passes(P, run_blocks, switch_at, (sink_prompt, run_prompt, after))
    lay = layout(passes, P)
    latent_frames = sorted(set(range(fpb)) | set(range(P, P + fpb * run_blocks)))
    groups = np.array([[0, 0, 0, 0] if k == 0 else list(range(4 * k - 3, 4 * k + 1)) for k in latent_frames])
    video_frames, inverse = np.unique(groups, return_inverse=True)
    truth = simulate(segments, video_frames, frame_size)
    index = {k: i for i, k in enumerate(latent_frames)}
    g = inverse.reshape(groups.shape)
    # The object in the first and last video frame behind each latent frame: centre x, y, radius, present.
    objects = np.stack([np.concatenate([truth["centre"][g[:, j]], truth["radius"][g[:, j], None],
                                        truth["present"][g[:, j], None]], -1) for j in (0, 3)], 1).astype(np.float32)
    return {"segments": segments, "objects": objects, "frame_size": frame_size, "prompts": [caption(a) for a in prompts], "latent_frames": np.array(latent_frames),
            "groups": inverse.reshape(groups.shape), "truth": truth, "layout": lay,
            "entry_latent": np.array([index[int(f)] for f in lay.frame]), "P": P, "switch_at": switch_at}
