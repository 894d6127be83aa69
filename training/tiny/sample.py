"""Streaming generation in PyTorch, the loop of Reel's StreamingGenerator (LongLive's
interactive_causal_inference): per block of 3 latent frames, 4 warped flow-matching steps over the ring
cache then a clean pass at t = 0; a prompt switch first re-caches the window with the new prompt.
Used to evaluate the trained model; Reel's own loop is the product."""
from __future__ import annotations

import torch

from .config import ScheduleConfig, warped_timesteps
from .dit import RingCache, WanDiT
from .umt5 import UMT5Encoder, tokenize


@torch.no_grad()
def encode_prompt(t5: UMT5Encoder, tokenizer, text: str, device) -> torch.Tensor:
    ids, mask = tokenize(tokenizer, [text], t5.c.max_tokens)
    return t5(ids.to(device), mask.to(device))[0, : int(mask.sum())]          # real tokens only, as Reel runs it


@torch.no_grad()
def generate(dit: WanDiT, t5: UMT5Encoder, tokenizer, prompts: list[str], switch_blocks: list[int], blocks: int,
             latent_size: int, seed: int = 0, schedule: ScheduleConfig = ScheduleConfig(), recache: bool = True,
             device="cpu") -> torch.Tensor:
    """Latents [3*blocks, C, h, w] for caption prompts; prompt i+1 starts at block switch_blocks[i]."""
    embeddings = [encode_prompt(t5, tokenizer, p, device) for p in prompts]
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape = (schedule.frames_per_block, dit.c.in_channels, latent_size, latent_size)
    draw = lambda block, step: torch.randn(shape, generator=g).to(device)   # noqa: E731
    return generate_from_embeddings(dit, embeddings, switch_blocks, blocks, latent_size, draw, schedule, recache, device)


@torch.no_grad()
def generate_from_embeddings(dit: WanDiT, embeddings: list[torch.Tensor], switch_blocks: list[int], blocks: int,
                             latent_size: int, draw, schedule: ScheduleConfig = ScheduleConfig(), recache: bool = True,
                             device="cpu") -> torch.Tensor:
    """The streaming loop. embeddings: text-encoder outputs [tokens, text_dim] (real tokens); draw(block, step)
    gives the block's initial noise (step -1) and the re-noise after step 0..2, each [3, C, h, w]."""
    c = dit.c
    ts, sigmas = warped_timesteps(schedule.steps, schedule.shift)
    n = (latent_size // c.patch) ** 2
    cache = RingCache(c.layers, n, c.heads, c.dim // c.heads, schedule.sink_frames, schedule.window_frames, device=device)
    contexts = [dit.prompt_kv(e.to(device)) for e in embeddings]
    prompt = 0
    fpb = schedule.frames_per_block
    out = []
    for b in range(blocks):
        s = b * fpb
        if prompt + 1 < len(contexts) and b == switch_blocks[prompt]:
            prompt += 1
            count = min(schedule.attention_frames, s)
            if recache and count > 0:
                # Reel / LongLive global-sink recache: frames that would land in the sink are dropped
                # unless the span starts at frame 0.
                first = 0 if s - count == 0 else s - schedule.window_frames
                recent = torch.cat(out, 0)[first:s]
                dit.forward_cached(recent, 0.0, first, contexts[prompt], cache, needs_output=False)
        x = draw(b, -1)
        x0 = x
        for i, (t, sigma) in enumerate(zip(ts, sigmas)):
            v = dit.forward_cached(x, t, s, contexts[prompt], cache).float()
            x0 = x - sigma * v
            if i + 1 < len(ts):
                x = (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * draw(b, i)
        dit.forward_cached(x0, 0.0, s, contexts[prompt], cache, needs_output=False)
        out.append(x0)
    return torch.cat(out, 0)
