"""Trains a TAEHV-structure ENCODER for the shipped tiny model (Models/tiny), so Reel's TinyEncoder can
turn video into latents the tiny DiT understands (video-to-video, image-to-video). training/README.md,
section "The tiny encoder".

    python3 -m training.tiny.encoder_train --out DIR --budget 520            # one GPU, ~9 minutes
    python3 -m training.tiny.encoder_train --out /tmp/enc --budget 600 --small --threads 2   # CPU check
    python3 -m training.tiny.encoder_train --out /tmp/enc --budget 0 --toy --steps 40        # tests

The encoder that made the DiT's training latents is lost, and it had another structure (4 frames ->
1 latent, BatchNorm). Here everything shipped is frozen (DiT, umT5, decoder) and a new encoder is fitted
to them:

 1. DiT samples: the frozen DiT generates latent videos with Reel's streaming loop (sample.py's, batched;
    random captions of the grammar, half with a prompt switch + recache), the frozen decoder decodes
    them, the frames are rounded to 8 bits (what Reel's encoder is fed);
 2. training, two losses on each step:
    (a) latent regression E(D(z)) ~= z on those samples (MSE on the unit-variance latents): it puts the
        encoder's latents where the DiT's own latents are - the decoder is not injective, and an encoder
        trained for reconstruction alone may use latents the DiT never makes;
    (b) reconstruction D(E(x)) ~= x (MSE + 0.5 L1 on pixels, through the frozen decoder) on rendered
        scenes (training/data, random starts, switches): the real input of video-to-video, which lies a
        little off the decoder's image manifold;
    loss = (a) + rec_weight * (b). A second encoder trained on (b) alone, on the same batches, is kept
    as the known-wrong contrast; the untrained encoder is the other.
 3. evaluation on held-out DiT samples (latent MSE / relative error, round trip D(E(D(z))) vs D(z)) and
    held-out rendered scenes (PSNR of D(E(x)) against the shipped autoencoder's 29.9 dB on the very same
    eval videos, per-channel latent statistics, and the frozen DiT's denoising error on the encoder's
    latents - the direct test of "in the DiT's distribution");
 4. export: `taehv.safetensors` = the shipped file's decoder tensors unchanged + `encoder.*` in taew2_1's
    layout as Reel's TinyEncoder binds it; `report.json` = the shipped report + an "encoder" section.

Stream start: Reel's TinyEncoder follows taehv.py (latent j = stream frames 4j..4j+3, every MemBlock
remembers its previous input frame from the stream's start). Reel prepends 3 copies of frame 0, so latent
0 is frame 0 four times and latent k is frames 4k-3..4k - the rule of the lost encoder (decoder.py's
frame_groups) and of the decoder's trim. Training encodes exactly that stream, causally, from its start.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ..data.render import render
from ..data.scenes import Segment, caption, sample_attributes, sample_switch, simulate, timeline_state
from .config import DecoderConfig, DiTConfig, ScheduleConfig, TextConfig, warped_timesteps
from .dataset import ae_clip, render_truth
from .decoder import Decoder, MemBlock, ReLU
from .dit import RingCache, WanDiT, rope_angles
from .export import check_keys, decoder_keys
from .tokenizer import Tokenizer
from .train import eval_timeline  # train.py's held-out videos: report.json's "eval" measured the lost encoder on them
from .umt5 import UMT5Encoder, tokenize

TIME_DOWNSCALE = (2, 2, 1)          # taew2_1's TPool strides: 4 frames per latent
FIRST_FRAME_COPIES = 3              # Reel prepends frame 0 three times: latent 0 = frame 0 x 4


# -- the encoder (taehv.py's TAEHV.encoder, any width) ----------------------------------------------------
class FrameConv(nn.Conv2d):
    """3x3 (or 1x1) conv, padding k//2, over every frame of [N, T, C, H, W] (taehv's `conv`)."""

    def __init__(self, cin, cout, k=3, stride=1, bias=True):
        super().__init__(cin, cout, k, stride=stride, padding=k // 2, bias=bias)

    def forward(self, x):
        N, T = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (N, T))


class TPool(nn.Module):
    """taehv's TPool: `stride` consecutive frames -> one, a 1x1 conv over their channels stacked in frame
    order (input channel s*C + c is channel c of the group's frame s)."""

    def __init__(self, n, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n * stride, n, 1, bias=False)

    def forward(self, x):
        N, T, C, H, W = x.shape
        s = self.stride
        return self.conv(x.reshape(N * (T // s), s * C, H, W)).unflatten(0, (N, T // s))


def tiny_encoder(width: int, latent_channels: int = 16, time_down=TIME_DOWNSCALE) -> nn.Sequential:
    """`encoder.N` of taew2_1 (Reel's TinyEncoder reads this layout):
    0 conv 3->c, 1 ReLU, then per stage TPool, conv c->c stride 2 (no bias), 3 MemBlocks; 17 conv c->z."""
    c = width
    layers = [FrameConv(3, c), ReLU()]
    for stride in time_down:
        layers += [TPool(c, stride), FrameConv(c, c, stride=2, bias=False), MemBlock(c), MemBlock(c), MemBlock(c)]
    layers.append(FrameConv(c, latent_channels))
    return nn.Sequential(*layers)


class TinyEncoder(nn.Module):
    """Frames in [0, 1] -> latents, the parallel form of taehv's encoder (MemBlock memory = the block's
    input one frame earlier, zeros at the stream's start), which equals its sequential/streaming form."""

    def __init__(self, width: int = 32, latent_channels: int = 16, time_down=TIME_DOWNSCALE):
        super().__init__()
        self.width, self.latent_channels, self.time_down = width, latent_channels, tuple(time_down)
        self.encoder = tiny_encoder(width, latent_channels, time_down)
        # Start near identities (as the decoder's recipe does): each MemBlock passes its input through,
        # each TPool averages its frames.
        with torch.no_grad():
            for m in self.encoder:
                if isinstance(m, MemBlock):
                    m.conv[4].weight.zero_()
                    m.conv[4].bias.zero_()
                elif isinstance(m, TPool):
                    eye = torch.eye(width) / m.stride
                    m.conv.weight.copy_(eye.repeat(1, m.stride)[:, :, None, None])

    @property
    def frames_per_latent(self) -> int:
        return int(np.prod(self.time_down))

    def forward(self, frames):
        """frames [N, 4T, 3, H, W] in [0, 1], from the start of a stream -> latents [N, T, z, H/8, W/8]."""
        return self.encoder(frames)

    def encode_video(self, video):
        """video [N, 4T-3, 3, H, W] in [0, 1], frame 0 first -> [N, T, z, h, w] as Reel encodes it: frame 0
        three more times in front, so latent 0 sees frame 0 four times and latent k frames 4k-3..4k."""
        return self(stream_frames(video))


def stream_frames(video):
    return torch.cat([video[:, :1].expand(-1, FIRST_FRAME_COPIES, -1, -1, -1), video], dim=1)


def encoder_keys(width: int, latent_channels: int = 16, time_down=TIME_DOWNSCALE) -> dict[str, tuple]:
    """The keys and shapes Reel's TinyEncoder binds (TinyEncoder.swift `init(binder:)`, strict: every
    `encoder.*` key bound, no other)."""
    c = width
    keys = {"encoder.0.weight": (c, 3, 3, 3), "encoder.0.bias": (c,),
            "encoder.17.weight": (latent_channels, c, 3, 3), "encoder.17.bias": (latent_channels,)}
    for s, stride in enumerate(time_down):
        base = 2 + 5 * s
        keys[f"encoder.{base}.conv.weight"] = (c, c * stride, 1, 1)
        keys[f"encoder.{base + 1}.weight"] = (c, c, 3, 3)
        for j in range(2, 5):
            p = f"encoder.{base + j}.conv"
            keys.update({f"{p}.0.weight": (c, 2 * c, 3, 3), f"{p}.0.bias": (c,), f"{p}.2.weight": (c, c, 3, 3),
                         f"{p}.2.bias": (c,), f"{p}.4.weight": (c, c, 3, 3), f"{p}.4.bias": (c,)})
    return keys


# -- the shipped model, frozen --------------------------------------------------------------------------
def load_shipped(folder: str, device):
    """Models/tiny's DiT, umT5 and decoder (their state-dict names are the exported names) + the raw
    tensors and metadata of taehv.safetensors (the export keeps them)."""

    def read(name):
        with safe_open(os.path.join(folder, name), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}

    d, dmeta = read("dit.safetensors")
    t, tmeta = read("text_encoder.safetensors")
    v, vmeta = read("taehv.safetensors")
    dcfg = DecoderConfig(**{k: tuple(x) if isinstance(x, list) else x for k, x in json.loads(vmeta["config"]).items()})
    dit = WanDiT(DiTConfig(**json.loads(dmeta["config"])))
    dit.load_state_dict(d)
    t5 = UMT5Encoder(TextConfig(**json.loads(tmeta["config"])))
    t5.load_state_dict(t)
    dec = Decoder(dcfg)
    dec.load_state_dict({k: x for k, x in v.items() if k.startswith("decoder.")})
    for m in (dit, t5, dec):
        m.to(device).eval()
        for p in m.parameters():
            p.requires_grad_(False)
    return dit, t5, dec, v, vmeta


# -- batched streaming generation (sample.py's loop, B videos at once) ---------------------------------
def batched_cache(dit: WanDiT, B: int, n: int, schedule: ScheduleConfig, device) -> RingCache:
    c = dit.c
    cache = RingCache(c.layers, n, c.heads, c.dim // c.heads, schedule.sink_frames, schedule.window_frames, device=device)
    shape = (B, *cache.k[0].shape[1:])
    cache.k = [torch.zeros(shape, device=device) for _ in range(c.layers)]
    cache.v = [torch.zeros(shape, device=device) for _ in range(c.layers)]
    return cache


def prompt_kv_batch(dit: WanDiT, t5: UMT5Encoder, tok, captions: list[str], device):
    """Per layer (K, V) [B, 1, text_len, H, D]; the same rows as sample.encode_prompt + dit.prompt_kv per
    caption (umT5 masks its padding; rows past the tokens are zero, as the DiT pads them)."""
    ids, mask = tokenize(tok, captions, t5.c.max_tokens)
    text = t5(ids.to(device), mask.to(device))
    ctx = dit.context(text[:, :dit.c.text_len])
    return [tuple(z[:, None] for z in b.cross_kv(ctx)) for b in dit.blocks]


def forward_cached_batch(dit: WanDiT, latents, t: float, start_frame: int, prompt_kv, cache: RingCache,
                         needs_output: bool = True):
    """dit.forward_cached for B streams that run the same passes: latents [B, F, C, h, w]."""
    B, Fn, C, hh, ww = latents.shape
    p = dit.c.patch
    gh, gw = hh // p, ww // p
    n = gh * gw
    x = dit.embed(latents.flatten(0, 1)).reshape(B, Fn * n, -1)
    e, e0 = dit.time(torch.full((B, Fn), float(t), device=latents.device))
    frames = torch.arange(start_frame, start_frame + Fn, device=latents.device)[None].expand(B, -1)
    cos, sin = rope_angles(*dit.positions(frames, gh, gw), dit.c.dim // dit.c.heads)
    plan = cache.plan(start_frame, Fn)
    prompt_of_token = torch.zeros(B, Fn * n, dtype=torch.long, device=latents.device)
    for i, block in enumerate(dit.blocks):
        q, k, v, m = block.qkv(x, e0, cos, sin, n)
        cache.write(i, k, v, plan)
        if i == len(dit.blocks) - 1 and not needs_output:
            break
        keys, values = cache.attended(i, plan)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2)).transpose(1, 2)
        ck, cv = prompt_kv[i]
        x = block.finish(x, y, m, ck, cv, prompt_of_token, n)
    cache.commit(plan)
    return dit.output(x, e, n, gh, gw) if needs_output else None


@torch.no_grad()
def generate_batch(dit, contexts: list, switch_block: int | None, blocks: int, latent_size: int, draw,
                   schedule: ScheduleConfig = ScheduleConfig(), device="cpu"):
    """sample.generate_from_embeddings for B videos at once (every video switches at the same block).
    contexts: batched prompt K/V before and (if switching) after the switch. draw(block, step) ->
    [B, 3, C, h, w]. Returns latents [B, 3*blocks, C, h, w]."""
    ts, sigmas = warped_timesteps(schedule.steps, schedule.shift)
    B = contexts[0][0][0].shape[0]
    cache = batched_cache(dit, B, (latent_size // dit.c.patch) ** 2, schedule, device)
    fpb = schedule.frames_per_block
    prompt, out = 0, []
    for b in range(blocks):
        s = b * fpb
        if switch_block is not None and prompt == 0 and b == switch_block:
            prompt = 1
            count = min(schedule.attention_frames, s)
            if count > 0:
                first = 0 if s - count == 0 else s - schedule.window_frames
                recent = torch.cat(out, 1)[:, first:s]
                forward_cached_batch(dit, recent, 0.0, first, contexts[1], cache, needs_output=False)
        x = draw(b, -1)
        x0 = x
        for i, (t, sigma) in enumerate(zip(ts, sigmas)):
            v = forward_cached_batch(dit, x, t, s, contexts[prompt], cache).float()
            x0 = x - sigma * v
            if i + 1 < len(ts):
                x = (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * draw(b, i)
        forward_cached_batch(dit, x0, 0.0, s, contexts[prompt], cache, needs_output=False)
        out.append(x0)
    return torch.cat(out, 1)


def random_timelines(rng: np.random.Generator, B: int, blocks: int, frame_size: int, p_switch: float = 0.5):
    """Captions from the data grammar for B videos; with probability p_switch all of them switch (one
    attribute, as training/data does) at one random block."""
    switch = int(rng.integers(1, blocks)) if blocks > 1 and rng.random() < p_switch else None
    before, after = [], []
    for _ in range(B):
        a = sample_attributes(rng, empty_prob=0.03)
        before.append(caption(a))
        if switch is not None:
            f = 4 * (3 * switch) - 3
            b = a if a.empty else sample_switch(rng, a, timeline_state([Segment(0, a)], f, frame_size), frame_size)[0]
            after.append(caption(b))
    return before, (after if switch is not None else None), switch


@torch.no_grad()
def dit_samples(dit, t5, dec, tok, videos: int, blocks: int, latent_size: int, batch: int, seed: int, device,
                deadline: float | None = None, schedule: ScheduleConfig = ScheduleConfig(), log=print):
    """videos latent videos of the frozen DiT [V, 3*blocks, C, h, w] (f32) and their decoded frames
    [V, 12*blocks-3, 3, S, S] (uint8), with captions. Stops early at `deadline` (time.time())."""
    rng = np.random.default_rng(seed)
    g = torch.Generator(device="cpu").manual_seed(seed)
    S = latent_size * 8
    lats, frames, caps = [], [], []
    done = 0
    while done < videos:
        B = min(batch, videos - done)
        before, after, switch = random_timelines(rng, B, blocks, S)
        ctx = [prompt_kv_batch(dit, t5, tok, before, device)]
        if after is not None:
            ctx.append(prompt_kv_batch(dit, t5, tok, after, device))
        shape = (B, schedule.frames_per_block, dit.c.in_channels, latent_size, latent_size)
        z = generate_batch(dit, ctx, switch, blocks, latent_size, lambda b, i: torch.randn(shape, generator=g).to(device),
                           schedule, device)
        for i in range(0, B, 16):
            v = dec(z[i:i + 16]).clamp(0, 1)
            frames.append((v * 255).round().to(torch.uint8))
        lats.append(z.float())
        caps += [[c] if after is None else [c, after[j]] for j, c in enumerate(before)]
        done += B
        if deadline is not None and time.time() > deadline:
            log(f"dit samples: stopping at {done} videos (time)")
            break
    return torch.cat(lats), torch.cat(frames), caps


# -- training --------------------------------------------------------------------------------------------
def pixel_loss(out, x):
    return F.mse_loss(out.float(), x) + 0.5 * F.l1_loss(out.float(), x)


def lr_at(base: float, fraction: float, warmup: float = 0.03) -> float:
    if fraction < warmup:
        return base * max(fraction, 1e-3) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (fraction - warmup) / (1 - warmup))))


def train(enc, contrast, dec, lat_pool, frame_pool, clip_pool, clock, device, args, logf):
    """Trains `enc` on (a) + rec_weight * (b) and `contrast` (or None) on (b) alone, same batches."""
    amp = device.type == "cuda"
    opts = [(m, torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=0.0)) for m in (enc, contrast) if m is not None]
    g = torch.Generator(device="cpu").manual_seed(1)
    hist, ema = [], {}
    V, R = lat_pool.shape[0], clip_pool.shape[0]
    while not clock.done():
        iv = torch.randint(V, (args.batch,), generator=g).to(device)
        ir = torch.randint(R, (args.rec_batch,), generator=g).to(device)
        z = lat_pool[iv]                                                          # [B, T, C, h, w]
        video = frame_pool[iv].float() / 255                                       # [B, 4T-3, 3, S, S]
        clips = clip_pool[ir].float() / 255
        lr = lr_at(args.lr, clock.fraction())
        losses = {}
        for which, (m, opt) in zip(("enc", "contrast"), opts):
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                rec = pixel_loss(dec(m.encode_video(clips)), clips)
                if which == "enc":
                    lat = F.mse_loss(m.encode_video(video).float(), z)
                    loss = lat + args.rec_weight * rec
                    losses.update(latent_mse=lat.item(), rec=rec.item())
                else:
                    loss = rec
                    losses["contrast_rec"] = rec.item()
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
        for k, v in losses.items():
            ema[k] = v if k not in ema else 0.97 * ema[k] + 0.03 * v
        if clock.step % args.log_every == 0:
            hist.append([clock.step, {k: round(v, 5) for k, v in ema.items()}])
            log(f"step {clock.step} " + " ".join(f"{k} {v:.5f}" for k, v in ema.items())
                + f" ({(time.time() - clock.start) / max(1, clock.step):.3f} s/step)", logf)
        clock.step += 1
    enc.eval()
    if contrast is not None:
        contrast.eval()
    return {"steps": clock.step, "ema": ema, "history": hist}


# -- evaluation --------------------------------------------------------------------------------------------
def psnr(a, b) -> float:
    mse = F.mse_loss(a.float().clamp(0, 1), b.float()).item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


@torch.no_grad()
def denoise_error(dit, t5, tok, z, captions: list[str], switch_block: int | None, step: int, seed: int, device,
                  schedule: ScheduleConfig = ScheduleConfig()):
    """How well the frozen DiT knows latents z [T, C, h, w] (T = 3*blocks) of a video with its captions:
    teacher-forced over Reel's cache (clean pass of each block's z, recache at the switch), each block is
    noised to the sampler's step `step` and the DiT's x0 compared with z. Returns (relative squared error,
    MSE per element); the MSE is the fair comparison between encoders (the DiT's latents have unit variance,
    and a relative error flatters latents of a wrong, large scale)."""
    ts, sigmas = warped_timesteps(schedule.steps, schedule.shift)
    ctx = [prompt_kv_batch(dit, t5, tok, [c], device) for c in captions]
    cache = batched_cache(dit, 1, (z.shape[-1] // dit.c.patch) ** 2, schedule, device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    fpb, prompt, num, den = schedule.frames_per_block, 0, 0.0, 0.0
    for b in range(z.shape[0] // fpb):
        s = b * fpb
        if switch_block is not None and prompt == 0 and b == switch_block and len(ctx) > 1:
            prompt = 1
            count = min(schedule.attention_frames, s)
            first = 0 if s - count == 0 else s - schedule.window_frames
            forward_cached_batch(dit, z[None, first:s], 0.0, first, ctx[1], cache, needs_output=False)
        zb = z[None, s:s + fpb]
        sigma = sigmas[step]
        xt = (1 - sigma) * zb + sigma * torch.randn(zb.shape, generator=g).to(device)
        x0 = xt - sigma * forward_cached_batch(dit, xt, ts[step], s, ctx[prompt], cache).float()
        forward_cached_batch(dit, zb, 0.0, s, ctx[prompt], cache, needs_output=False)
        num += float(((x0 - zb) ** 2).sum())
        den += float((zb ** 2).sum())
    return num / den, num / z.numel()


def channel_stats(z):
    """z [..., C, h, w] -> mean |per-channel mean|, per-channel std min/max, overall std."""
    zc = z.float().transpose(0, -3).reshape(z.shape[-3], -1)
    m, s = zc.mean(1), zc.std(1)
    return {"abs_channel_mean": round(float(m.abs().mean()), 4), "channel_std_min": round(float(s.min()), 4),
            "channel_std_max": round(float(s.max()), 4), "std": round(float(z.float().std()), 4)}


@torch.no_grad()
def evaluate(encoders: dict, dit, t5, dec, tok, held_lat, held_frames, held_caps, args, device, shipped_eval, logf,
             samples: dict):
    S = args.frame_size
    out = {"dit_samples": {}, "rendered": {}}
    # 1. held-out DiT samples
    ref = (held_frames.float() / 255)
    out["dit_samples"]["latent_stats_dit"] = channel_stats(held_lat)
    for name, enc in encoders.items():
        zs, frames = [], []
        for i in range(0, held_lat.shape[0], 4):
            z = enc.encode_video(ref[i:i + 4]).float()
            zs.append(z)
            frames.append(dec(z).clamp(0, 1))
        z = torch.cat(zs)
        err = (z - held_lat) ** 2
        out["dit_samples"][name] = {
            "latent_mse": float(err.mean()), "latent_relative_error": float(err.sum() / (held_lat ** 2).sum()),
            "latent_relative_error_first_latent": float(err[:, 0].sum() / (held_lat[:, 0] ** 2).sum()),
            "psnr_roundtrip_vs_dit_frames": psnr(torch.cat(frames), ref), "latent_stats": channel_stats(z)}
    # 2. held-out rendered scenes (train.py's eval videos)
    rows = {name: [] for name in encoders}
    blocks = args.eval_blocks
    for k in range(args.eval_videos):
        prompts, switches, truth = eval_timeline(k, blocks, (blocks // 2 if blocks > 1 else None) if k % 2 == 0 else None, S)
        gt = render(truth, S, device=device).permute(0, 3, 1, 2)[None].float()         # [1, F, 3, S, S]
        gt = (gt * 255).round() / 255                                                     # 8-bit, as Reel reads video
        pick = [min(12 * b + 6, gt.shape[1] - 1) for b in range(blocks)]
        if k < 2:
            samples[f"render{k}_truth"] = (gt[0, pick].permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
        for name, enc in encoders.items():
            z = enc.encode_video(gt).float()
            recon = dec(z).clamp(0, 1)
            row = {"psnr": psnr(recon, gt), "latents": z[0].cpu()}
            if args.denoise_check:
                row["dit_x0_error"] = denoise_error(dit, t5, tok, z[0], prompts, switches[0] if switches else None,
                                                    step=3, seed=k, device=device)
            rows[name].append(row)
            if k < 2:
                samples[f"render{k}_{name}"] = (recon[0, pick].permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
    for name in encoders:
        r = rows[name]
        out["rendered"][name] = {"psnr_mean": float(np.mean([x["psnr"] for x in r])),
                                 "psnr_per_video": [round(x["psnr"], 2) for x in r],
                                 "latent_stats": channel_stats(torch.stack([x["latents"] for x in r]))}
        if args.denoise_check:
            out["rendered"][name]["dit_x0_relative_error_t625"] = float(np.mean([x["dit_x0_error"][0] for x in r]))
            out["rendered"][name]["dit_x0_mse_t625"] = float(np.mean([x["dit_x0_error"][1] for x in r]))
    if shipped_eval and args.frame_size == 128 and blocks == 8:
        vids = shipped_eval["videos"][:args.eval_videos]
        out["rendered"]["lost_autoencoder_reference"] = {
            "psnr_mean": float(np.mean([v["psnr_autoencoder"] for v in vids])),
            "psnr_per_video": [round(v["psnr_autoencoder"], 2) for v in vids],
            "note": "report.json eval: the lost training encoder + this decoder on the same held-out videos"}
    if args.denoise_check:
        # Reference: the DiT's denoising error on its own samples (the distribution it was trained on).
        errs = [denoise_error(dit, t5, tok, held_lat[i], held_caps[i], None if len(held_caps[i]) == 1 else
                              args.held_switch[i], step=3, seed=i, device=device) for i in range(min(4, held_lat.shape[0]))]
        out["dit_samples"]["dit_x0_relative_error_t625_on_own_samples"] = float(np.mean([e[0] for e in errs]))
        out["dit_samples"]["dit_x0_mse_t625_on_own_samples"] = float(np.mean([e[1] for e in errs]))
    return out


class Clock:
    def __init__(self, seconds: float | None, steps: int | None):
        self.seconds, self.steps, self.start, self.step = seconds, steps, time.time(), 0

    def fraction(self) -> float:
        f = [0.0]
        if self.seconds:
            f.append((time.time() - self.start) / self.seconds)
        if self.steps:
            f.append(self.step / self.steps)
        return max(f)

    def done(self) -> bool:
        return self.fraction() >= 1.0


def log(msg: str, file=None):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if file:
        file.write(line + "\n")
        file.flush()


def export_encoder(out_dir: str, enc: TinyEncoder, shipped: dict, meta: dict, extra_meta: dict) -> str:
    """A copy of the shipped taehv.safetensors (decoder tensors and metadata unchanged) + `encoder.*`."""
    enc_t = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in enc.state_dict().items()}
    check_keys(enc_t, encoder_keys(enc.width, enc.latent_channels, enc.time_down), "encoder")
    dec_t = {k: v for k, v in shipped.items() if k.startswith("decoder.")}
    cfg = DecoderConfig(**{k: tuple(x) if isinstance(x, list) else x for k, x in json.loads(meta["config"]).items()})
    check_keys(dec_t, decoder_keys(cfg), "decoder")
    path = os.path.join(out_dir, "taehv.safetensors")
    save_file({**dec_t, **enc_t}, path, metadata={**meta, **{k: str(v) for k, v in extra_meta.items()}})
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="Models/tiny", help="the shipped tiny model (frozen)")
    ap.add_argument("--budget", type=float, default=520, help="seconds for the whole run; 0: bounded by --steps")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--small", action="store_true", help="CPU-sized run of the full-size recipe")
    ap.add_argument("--toy", action="store_true", help="64x64 frames (8x8 latents), width 8: the test's smoke run")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--width", type=int, default=None, help="encoder width (default 32; toy 8)")
    ap.add_argument("--dit-videos", type=int, default=None, help="training DiT samples (default 1536; small 24; toy 4)")
    ap.add_argument("--dit-blocks", type=int, default=None, help="blocks of 3 latents per DiT sample (6; small 3; toy 2)")
    ap.add_argument("--gen-batch", type=int, default=128)
    ap.add_argument("--clips", type=int, default=None, help="rendered training clips (default 3072; small 64; toy 8)")
    ap.add_argument("--clip-latents", type=int, default=6)
    ap.add_argument("--batch", type=int, default=None, help="DiT samples per step (8; small 2)")
    ap.add_argument("--rec-batch", type=int, default=None, help="rendered clips per step (8; small 2)")
    ap.add_argument("--rec-weight", type=float, default=1.0, help="weight of (b) reconstruction against (a) latents")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--no-contrast", action="store_true", help="skip the reconstruction-only encoder")
    ap.add_argument("--eval-videos", type=int, default=None, help="held-out rendered videos (8; small 2; toy 2)")
    ap.add_argument("--eval-dit-videos", type=int, default=None, help="held-out DiT samples (32; small 4; toy 2)")
    ap.add_argument("--eval-blocks", type=int, default=None, help="blocks per held-out video (8; toy 2)")
    ap.add_argument("--log-every", type=int, default=None)
    args = ap.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    mode = "toy" if args.toy else "small" if args.small else "gpu"
    defaults = {"gpu": dict(width=32, dit_videos=1536, dit_blocks=6, clips=3072, batch=8, rec_batch=8, eval_videos=8,
                            eval_dit_videos=32, eval_blocks=8, log_every=100, frame_size=128, reserve=50),
                "small": dict(width=32, dit_videos=16, dit_blocks=2, clips=32, batch=1, rec_batch=1, eval_videos=2,
                              eval_dit_videos=3, eval_blocks=8, log_every=10, frame_size=128, reserve=150),
                "toy": dict(width=8, dit_videos=4, dit_blocks=2, clips=8, batch=2, rec_batch=2, eval_videos=2,
                            eval_dit_videos=2, eval_blocks=2, log_every=5, frame_size=64, reserve=0)}[mode]
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if mode != "gpu":
        args.clip_latents = min(args.clip_latents, 3)
    args.denoise_check = mode != "toy"
    S = args.frame_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "w")
    command = "python3 -m training.tiny.encoder_train " + " ".join(sys.argv[1:] if argv is None else argv)
    dit, t5, dec, shipped, meta = load_shipped(args.models, device)
    tok = Tokenizer(args.models)
    shipped_report = None
    if os.path.exists(os.path.join(args.models, "report.json")):
        with open(os.path.join(args.models, "report.json")) as f:
            shipped_report = json.load(f)
    log(f"{mode} run on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), torch "
        f"{torch.__version__}; {json.dumps({k: v for k, v in vars(args).items()})}", logf)
    latent_size = S // 8

    # 1. DiT samples (training pool, then held-out ones from other seeds) and rendered clips
    deadline = t0 + 0.2 * args.budget if args.budget else None
    lat_pool, frame_pool, _ = dit_samples(dit, t5, dec, tok, args.dit_videos, args.dit_blocks, latent_size,
                                          args.gen_batch, seed=1, device=device, deadline=deadline,
                                          log=lambda m: log(m, logf))
    held = []
    rng_held = np.random.default_rng(12345)
    args.held_switch = []
    for i in range(args.eval_dit_videos):      # batch 1 so each held-out video has its own switch block
        before, after, switch = random_timelines(rng_held, 1, args.eval_blocks, S)
        ctx = [prompt_kv_batch(dit, t5, tok, before, device)] + ([prompt_kv_batch(dit, t5, tok, after, device)] if after else [])
        g = torch.Generator(device="cpu").manual_seed(10 ** 6 + i)
        shape = (1, 3, dit.c.in_channels, latent_size, latent_size)
        held.append(generate_batch(dit, ctx, switch, args.eval_blocks, latent_size,
                                   lambda b, j: torch.randn(shape, generator=g).to(device), device=device))
        args.held_switch.append(switch)
        held[-1] = (held[-1].float(), before + (after or []))
    held_lat = torch.cat([h[0] for h in held])
    held_caps = [h[1] for h in held]
    with torch.no_grad():
        held_frames = torch.cat([(dec(held_lat[i:i + 8]).clamp(0, 1) * 255).round().to(torch.uint8)
                                 for i in range(0, held_lat.shape[0], 8)])
    clips = [ae_clip(10 ** 7 + s, latents=args.clip_latents, frame_size=S) for s in range(args.clips)]
    clip_pool = render_truth(clips, S, device).reshape(args.clips, 4 * args.clip_latents - 3, 3, S, S)
    log(f"data: {lat_pool.shape[0]} DiT samples {tuple(lat_pool.shape)} (latent std {lat_pool.std():.3f}), "
        f"{held_lat.shape[0]} held out, {args.clips} rendered clips of {4 * args.clip_latents - 3} frames "
        f"({time.time() - t0:.1f}s)", logf)

    # 2. training
    torch.manual_seed(0)
    untrained = TinyEncoder(args.width).to(device)
    enc = TinyEncoder(args.width).to(device)
    enc.load_state_dict(untrained.state_dict())
    contrast = None
    if not args.no_contrast:
        contrast = TinyEncoder(args.width).to(device)
        contrast.load_state_dict(untrained.state_dict())
    untrained.eval()
    n_params = sum(p.numel() for p in enc.parameters())
    left = args.budget - (time.time() - t0) - args.reserve if args.budget else None
    if left is not None and left < 5:
        left = 5
    clock = Clock(left, args.steps)
    log(f"encoder width {args.width}: {n_params} parameters; training for {left and round(left)} s / "
        f"{args.steps} steps", logf)
    stats = train(enc, contrast, dec, lat_pool, frame_pool, clip_pool, clock, device, args, logf)
    log(f"trained {stats['steps']} steps in {time.time() - clock.start:.0f}s: {stats['ema']}", logf)

    # 3. export first (so a late evaluation cannot lose it), then evaluation
    path = export_encoder(args.out, enc, shipped, meta, {
        "encoder_config": json.dumps({"width": args.width, "latent_channels": 16, "time_downscale": list(TIME_DOWNSCALE),
                                      "first_frame_copies": FIRST_FRAME_COPIES}),
        "encoder_command": command})
    log(f"exported {path} ({os.path.getsize(path)} bytes)", logf)
    encoders = {"trained": enc, "untrained": untrained}
    if contrast is not None:
        encoders["reconstruction_only"] = contrast
    samples = {}
    ev = evaluate(encoders, dit, t5, dec, tok, held_lat, held_frames, held_caps, args, device,
                  shipped_report.get("eval") if shipped_report else None, logf, samples)
    section = {"command": command, "device": str(device),
               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None, "mode": mode,
               "config": {"width": args.width, "latent_channels": 16, "time_downscale": list(TIME_DOWNSCALE),
                          "first_frame_copies": FIRST_FRAME_COPIES, "parameters": n_params,
                          "rec_weight": args.rec_weight, "lr": args.lr, "batch": args.batch, "rec_batch": args.rec_batch,
                          "dit_videos": int(lat_pool.shape[0]), "dit_blocks": args.dit_blocks, "clips": args.clips,
                          "clip_latents": args.clip_latents, "frame_size": S},
               "training": stats, "eval": ev, "seconds": time.time() - t0,
               "files": {"taehv": {"path": path, "bytes": os.path.getsize(path)}}}
    report = dict(shipped_report) if shipped_report and mode != "toy" else {}
    report["encoder"] = section
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    np.savez_compressed(os.path.join(args.out, "samples.npz"), **samples)
    summary = {name: {"dit_latent_rel_err": round(v["latent_relative_error"], 4),
                      "render_psnr": round(ev["rendered"][name]["psnr_mean"], 2),
                      **({"dit_x0_mse": round(ev["rendered"][name]["dit_x0_mse_t625"], 4)}
                         if args.denoise_check else {})}
               for name, v in ev["dit_samples"].items() if name in encoders}
    log(f"done in {time.time() - t0:.0f}s: {json.dumps(summary)}", logf)
    log(f"eval: {json.dumps(ev)}", logf)
    return report


if __name__ == "__main__":
    main()
