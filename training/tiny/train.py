"""Trains the whole tiny model in one command and exports what Reel loads (training/README.md).

    python3 -m training.tiny.train --out Models/tiny --budget 540        # GPU machine, ~9 minutes
    python3 -m training.tiny.train --toy --out /tmp/toy --steps 20        # CPU smoke run (tests use it)

Stages, each bounded by wall-clock time (so the total holds on any GPU) or by --steps:
 1. autoencoder: the TAEHV-structure decoder and a training encoder on rendered clips;
 2. latents of the DiT views (views.py) with the frozen encoder;
 3. DiT + umT5 encoder jointly: teacher-forced views of Reel's streaming passes, x0 regression at the 4
    warped steps (and some continuous t), prompt switches with recache;
 4. evaluation with the streaming sampler against ground truth, export, report (report.json).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data.checks import object_metrics
from ..data.render import render
from ..data.scenes import Segment, caption, sample_attributes, sample_switch, simulate, timeline_state
from .config import (DecoderConfig, DiTConfig, EncoderConfig, ScheduleConfig, TextConfig, TinyConfig, VideoConfig,
                     warped_timesteps)
from .dataset import ae_clip, render_truth, sample_view
from .decoder import Decoder, Encoder, frame_groups
from .dit import WanDiT
from .export import export
from .sample import generate
from .tokenizer import Tokenizer
from .umt5 import UMT5Encoder, tokenize
from .views import CLEAN, NOISY, PAD, RECACHE, collate


def small_config() -> TinyConfig:
    """64 x 64 video, a 4-layer DiT: a configuration a CPU can train far enough to see the method work."""
    return TinyConfig(video=VideoConfig(frame_size=64), decoder=DecoderConfig(channels=(32, 24, 16, 16)),
                      encoder=EncoderConfig(channels=(16, 32, 48, 64)),
                      text=TextConfig(dim=64, heads=2, head_dim=32, ffn=128, layers=2),
                      dit=DiTConfig(dim=128, ffn=384, heads=2, layers=4, text_dim=64))


def toy_config() -> TinyConfig:
    return TinyConfig(video=VideoConfig(frame_size=32), decoder=DecoderConfig(channels=(8, 8, 8, 8)),
                      encoder=EncoderConfig(channels=(8, 8, 8, 8)),
                      text=TextConfig(dim=32, heads=2, head_dim=16, ffn=64, layers=1),
                      dit=DiTConfig(dim=64, ffn=128, heads=1, layers=2, text_dim=32))


class Clock:
    def __init__(self, seconds: float | None, steps: int | None):
        self.seconds, self.steps, self.start, self.step = seconds, steps, time.time(), 0

    def fraction(self) -> float:
        f = []
        if self.seconds:
            f.append((time.time() - self.start) / self.seconds)
        if self.steps:
            f.append(self.step / self.steps)
        return max(f)

    def done(self) -> bool:
        return self.fraction() >= 1.0


def lr_at(base: float, fraction: float, warmup: float = 0.03) -> float:
    if fraction < warmup:
        return base * fraction / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (fraction - warmup) / (1 - warmup))))


def parallel_map(fn, seeds, workers: int, **kw):
    if workers <= 1:
        return [fn(int(s), **kw) for s in seeds]
    # fork: the workers only run numpy, and no CUDA context exists yet (sampling runs before any CUDA call);
    # spawn would re-import torch in every worker.
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        return list(ex.map(_call, [(fn, int(s), kw) for s in seeds], chunksize=max(1, len(seeds) // (workers * 4))))


def _call(args):
    fn, s, kw = args
    return fn(s, **kw)


def nanmedian(a) -> float:
    """Median of the finite entries; NaN (and no warning) when there are none."""
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def log(msg: str, file=None):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if file:
        file.write(line + "\n")
        file.flush()


# -- 1. autoencoder ---------------------------------------------------------------------------------
def train_autoencoder(cfg: TinyConfig, clips: list[dict], clip_latents: int, clock: Clock, device, batch: int, logf):
    S = cfg.video.frame_size
    frames = render_truth(clips, S, device).reshape(len(clips), 4 * clip_latents - 3, 3, S, S)
    enc, dec = Encoder(cfg.encoder).to(device), Decoder(cfg.decoder).to(device)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    g = torch.Generator(device="cpu").manual_seed(1)
    amp = device.type == "cuda"
    ema = None
    losses = []
    while not clock.done():
        idx = torch.randint(len(clips), (batch,), generator=g)
        video = frames[idx.to(device)].float() / 255                                     # [B, F, 3, S, S]
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            z = enc(frame_groups(video).flatten(0, 1))                                   # [B*T, z, h, w]
            z = z.unflatten(0, (batch, clip_latents))
            sigma = torch.rand(batch, 1, 1, 1, 1, device=device) * 0.2
            out = dec(z + sigma * torch.randn_like(z))
        loss = F.mse_loss(out.float(), video) + 0.5 * F.l1_loss(out.float(), video)
        for group in opt.param_groups:
            group["lr"] = lr_at(1e-3, clock.fraction())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        losses.append(loss.item())
        if clock.step % 100 == 0:
            log(f"ae step {clock.step} loss {loss.item():.5f} ema {ema:.5f} "
                f"({(time.time() - clock.start) / max(1, clock.step):.3f} s/step)", logf)
        clock.step += 1
    # Exact latent statistics for eval mode: a cumulative average over fresh batches.
    enc.norm.reset_running_stats()
    enc.norm.momentum = None
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
        for i in range(0, min(len(clips), 40 * batch), batch):
            enc(frame_groups(frames[i:i + batch].float() / 255).flatten(0, 1))
    enc.eval()
    dec.eval()
    return enc, dec, {"steps": clock.step, "loss_ema": ema, "loss_first": losses[0],
                      "loss_last10": float(np.mean(losses[-10:]))}


@torch.no_grad()
def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.float().clamp(0, 1), b.float()).item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


# -- 2. latents of the views -------------------------------------------------------------------------
@torch.no_grad()
def encode_views(views: list[dict], enc: Encoder, cfg: TinyConfig, device, chunk: int = 64) -> torch.Tensor:
    S = cfg.video.frame_size
    F_view = len(views[0]["latent_frames"])
    out = torch.empty(len(views), F_view, cfg.video.latent_channels, cfg.video.latent_size, cfg.video.latent_size,
                      dtype=torch.bfloat16, device=device)
    for i in range(0, len(views), chunk):
        part = views[i:i + chunk]
        frames = render_truth([v["truth"] for v in part], S, device)                      # [sum N, 3, S, S] uint8
        offsets = np.cumsum([0] + [len(v["truth"]["centre"]) for v in part])[:-1]
        groups = torch.as_tensor(np.concatenate([v["groups"] + o for v, o in zip(part, offsets)]), device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            z = enc(frames[groups].float() / 255)                                          # [chunk*F, z, h, w]
        out[i:i + len(part)] = z.reshape(len(part), F_view, *z.shape[1:]).to(torch.bfloat16)
    return out


# -- 3. DiT + text encoder ----------------------------------------------------------------------------
def text_batch(t5: UMT5Encoder, tok, prompts: list[list[str]], device):
    """prompts [B][<=3] -> text [B, 3, L, dim] (rows past each caption's tokens zero)."""
    flat = [p[min(j, len(p) - 1)] for p in prompts for j in range(3)]
    unique = sorted(set(flat))
    ids, mask = tokenize(tok, unique, t5.c.max_tokens)
    enc = t5(ids.to(device), mask.to(device))                                             # [U, L, dim]
    where = torch.tensor([unique.index(p) for p in flat], device=device)
    return enc[where].reshape(len(prompts), 3, *enc.shape[1:])


def self_context_sources(lay: dict) -> np.ndarray:
    """For each CLEAN / RECACHE entry, the NOISY entry of the same view that generates its frame (-1: none,
    or a warm-up block of a far view, whose prediction lacks the context streaming would have had)."""
    kind, frame, loss = lay["kind"], lay["frame"], lay["loss"]
    src = np.full(kind.shape, -1, np.int64)
    for b in range(kind.shape[0]):
        maker = {int(frame[b, e]): e for e in np.flatnonzero((kind[b] == NOISY) & loss[b])}
        for e in np.flatnonzero((kind[b] == CLEAN) | (kind[b] == RECACHE)):
            src[b, e] = maker.get(int(frame[b, e]), -1)
    return src


def object_cells(objects: torch.Tensor, grid: int, frame_size: int, margin: float = 6.0) -> torch.Tensor:
    """objects [..., 2, 4] (x, y, radius, present of the first and last video frame behind a latent frame)
    -> [..., grid, grid] 1 where a latent cell's centre lies within radius + margin pixels of either disc
    (on the torus: objects wrap around the edges)."""
    cell = frame_size / grid
    centres = (torch.arange(grid, device=objects.device, dtype=torch.float32) + 0.5) * cell
    def axis(c):                                                           # [..., 2, grid] toroidal distance
        d = (centres - c[..., None]).abs()
        return torch.minimum(d, frame_size - d)
    dx, dy = axis(objects[..., 0]), axis(objects[..., 1])
    inside = dx[..., None, :] ** 2 + dy[..., :, None] ** 2 <= ((objects[..., 2] + margin) ** 2)[..., None, None]
    inside = inside & (objects[..., 3] > 0)[..., None, None]
    return inside.any(-3).float()


def dit_step(dit, t5, tok, views, latents, batch_idx, sched, device, g, gd, p_continuous=0.25, context_noise=0.03,
             self_rounds: int = 0, object_weight: float = 0.0):
    """Loss of one batch of views. g: CPU generator (timesteps), gd: generator on `device` (noise).

    self_rounds > 0 replaces the teacher-forced context by the model's own output (exposure bias is what
    makes a teacher-forced autoregressive model drift): each round, without gradients, every trained noisy
    pass predicts its block's x0 from the schedule's last step (sigma 0.625: the step whose prediction the
    sampler keeps) over the current context, and the clean and recache passes of those frames then take
    that prediction instead of the ground truth. Two rounds let errors compound across blocks, as they do
    when streaming. The loss still compares with the ground truth, so the model learns to correct its own
    errors rather than to copy them.

    object_weight > 0 weighs the latent cells that cover the object (1 + object_weight) against the
    background (1): the object is ~5% of a frame, so a plain MSE learns the background first and the
    object (what the prompt is mostly about) last."""
    ts, sigmas = warped_timesteps(sched.steps, sched.shift)
    lay = collate([views[i]["layout"] for i in batch_idx])
    B, E = lay["kind"].shape
    kind = torch.as_tensor(lay["kind"], device=device)
    entry_latent = np.zeros((B, E), np.int64)
    for b, i in enumerate(batch_idx):
        e = len(views[i]["entry_latent"])
        entry_latent[b, :e] = views[i]["entry_latent"]
    x0 = latents[torch.as_tensor(batch_idx, device=device)[:, None], torch.as_tensor(entry_latent, device=device)].float()
    x0 = x0 * (kind != PAD)[..., None, None, None]
    # One timestep per noisy pass: a step of the 4-step schedule, or (sometimes) a continuous shifted t.
    passes = lay["pass_id"]
    step = torch.randint(len(ts), (B, int(passes.max()) + 1), generator=g)
    u = torch.rand(B, int(passes.max()) + 1, generator=g)
    cont = sched.shift * u / (1 + (sched.shift - 1) * u)
    use_cont = torch.rand(B, int(passes.max()) + 1, generator=g) < p_continuous
    sig_pass = torch.where(use_cont, cont, torch.tensor(sigmas)[step])
    sigma = torch.gather(sig_pass, 1, torch.as_tensor(passes)).to(device)
    noisy = kind == NOISY
    sigma = torch.where(noisy, sigma, torch.zeros_like(sigma))
    t = sigma * 1000.0
    eps = torch.randn(x0.shape, generator=gd, device=device)
    s = sigma[..., None, None, None]
    aug = torch.rand(B, E, 1, 1, 1, generator=gd, device=device) * context_noise
    x_in = torch.where(noisy[..., None, None, None], (1 - s) * x0 + s * eps, x0 + aug * eps * (kind != PAD)[..., None, None, None])
    text = text_batch(t5, tok, [views[i]["prompts"] for i in batch_idx], device)
    frames = torch.as_tensor(lay["frame"], device=device)
    prompt_index = torch.as_tensor(lay["prompt"], device=device)
    entry_mask = torch.as_tensor(lay["mask"], device=device)
    if self_rounds:
        src = torch.as_tensor(self_context_sources(lay), device=device)
        has_src = (src >= 0)[..., None, None, None]
        s_last = torch.where(noisy, torch.full_like(sigma, sigmas[-1]), torch.zeros_like(sigma))[..., None, None, None]
        context = x_in
        with torch.no_grad():
            text_ng = text.detach()
            for _ in range(self_rounds):
                x_t = torch.where(noisy[..., None, None, None], (1 - s_last) * x0 + s_last * eps, context)
                with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                    v_ng = dit.forward_packed(x_t, s_last[..., 0, 0, 0] * 1000.0, frames, prompt_index, text_ng, entry_mask)
                pred = x_t - s_last * v_ng.float()
                own = torch.gather(pred, 1, src.clamp(min=0)[..., None, None, None].expand_as(pred))
                context = torch.where(has_src, own, context)
        x_in = torch.where(noisy[..., None, None, None], x_in, context)
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        v = dit.forward_packed(x_in, t, frames, prompt_index, text, entry_mask)
    pred = x_in - s * v.float()
    w = torch.as_tensor(lay["loss"], device=device).float()
    err = ((pred - x0) ** 2).mean(2)                                                      # [B, E, h, w]
    if object_weight:
        objects = np.zeros((B, E, 2, 4), np.float32)
        for b, i in enumerate(batch_idx):
            e = len(views[i]["entry_latent"])
            objects[b, :e] = views[i]["objects"][views[i]["entry_latent"]]
        cells = object_cells(torch.as_tensor(objects, device=device), err.shape[-1], views[batch_idx[0]]["frame_size"])
        pixel_w = 1 + object_weight * cells
        per_entry = (err * pixel_w).sum((2, 3)) / pixel_w.sum((2, 3))
    else:
        per_entry = err.mean((2, 3))
    return (per_entry * w).sum() / w.sum().clamp(min=1)


def train_dit(cfg, dit, t5, tok, views, latents, clock: Clock, device, batch, lr, logf, self_context=(0.0, 0.0),
              object_weight: float = 0.0):
    params = list(dit.parameters()) + list(t5.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    g = torch.Generator(device="cpu").manual_seed(2)
    gd = torch.Generator(device=device).manual_seed(3)
    ema = None
    history = []
    while not clock.done():
        idx = torch.randint(len(views), (batch,), generator=g).tolist()
        u = float(torch.rand((), generator=g))
        rounds = 1 if u < self_context[0] else 2 if u < self_context[0] + self_context[1] else 0
        if clock.fraction() < 0.1:
            rounds = 0                       # the model's own output means nothing yet
        loss = dit_step(dit, t5, tok, views, latents, idx, cfg.schedule, device, g, gd, self_rounds=rounds,
                        object_weight=object_weight)
        for group in opt.param_groups:
            group["lr"] = lr_at(lr, clock.fraction())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if clock.step % 100 == 0:
            log(f"dit step {clock.step} loss {loss.item():.5f} ema {ema:.5f} "
                f"({(time.time() - clock.start) / max(1, clock.step):.3f} s/step)", logf)
            history.append((clock.step, round(ema, 5)))
        clock.step += 1
    return {"steps": clock.step, "loss_ema": ema, "history": history}


# -- 4. evaluation -----------------------------------------------------------------------------------
def eval_timeline(seed: int, blocks: int, switch_block: int | None, frame_size: int):
    """Prompts, switch blocks and ground truth of a held-out video (seeds far from training's)."""
    rng = np.random.default_rng(10 ** 9 + seed)
    a = sample_attributes(rng)
    segments = [Segment(0, a)]
    switches = []
    if switch_block is not None:
        f = 4 * (3 * switch_block) - 3
        b, _ = sample_switch(rng, a, timeline_state(segments, f, frame_size), frame_size)
        segments.append(Segment(f, b))
        switches.append(switch_block)
    frames = 4 * 3 * blocks - 3
    return [caption(s.attributes) for s in segments], switches, simulate(segments, np.arange(frames), frame_size)


@torch.no_grad()
def evaluate(cfg, dit, t5, tok, enc, dec, device, videos: int = 8, blocks: int = 8, long_blocks: int = 100, logf=None,
             samples: dict | None = None):
    """samples (optional dict) receives, for the first 4 videos, one frame per block: rows ground truth,
    autoencoder reconstruction, generation ([3, blocks, S, S, 3] uint8)."""
    dit.eval()
    t5.eval()
    S = cfg.video.frame_size
    rows = []
    for k in range(videos):
        prompts, switches, truth = eval_timeline(k, blocks, 4 if k % 2 == 0 else None, S)
        lat = generate(dit, t5, tok, prompts, switches, blocks, cfg.video.latent_size, seed=k, schedule=cfg.schedule,
                       device=device)
        video = dec(lat[None].float()).clamp(0, 1)[0]                                      # [F, 3, S, S]
        gt = (render(truth, S, device=device)).permute(0, 3, 1, 2)
        z_true = enc(frame_groups(gt[None]).flatten(0, 1)).float()                         # [3*blocks, C, h, w]
        recon = dec(z_true[None]).clamp(0, 1)[0]
        frames_u8 = (video.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
        m = object_metrics(frames_u8, truth, S)
        m_recon = object_metrics((recon.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy(), truth, S)
        lat_err = [float(((lat[3 * b:3 * b + 3].float() - z_true[3 * b:3 * b + 3]) ** 2).sum()
                         / (z_true[3 * b:3 * b + 3] ** 2).sum()) for b in range(blocks)]
        if samples is not None and k < 4:
            pick = [min(12 * b + 6, video.shape[0] - 1) for b in range(blocks)]
            samples[f"video{k}"] = np.stack([(gt[pick].permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy(),
                                             (recon[pick].permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy(),
                                             frames_u8[pick]])
        per_block = [psnr(video[max(0, 12 * b - 3):12 * b + 9], gt[max(0, 12 * b - 3):12 * b + 9]) for b in range(blocks)]
        rows.append({"prompts": prompts, "switch_blocks": switches, "psnr": psnr(video, gt),
                     "psnr_autoencoder": psnr(recon, gt), "psnr_per_block": [round(p, 2) for p in per_block],
                     "found_per_block": [round(float(m["found"][max(0, 12 * b - 3):12 * b + 9].mean()), 2)
                                         for b in range(blocks)],
                     "centre_error_px_per_block": [round((nanmedian(m["centre_error"][max(0, 12 * b - 3):12 * b + 9])), 1)
                                                   for b in range(blocks)],
                     "centre_error_px_median": (nanmedian(m["centre_error"])),
                     "object_found": float(m["found"].mean()),
                     "object_found_autoencoder": float(m_recon["found"].mean()),
                     "latent_relative_error_per_block": [round(e, 4) for e in lat_err]})
        log(f"eval {k}: psnr {rows[-1]['psnr']:.2f} (autoencoder {rows[-1]['psnr_autoencoder']:.2f}) "
            f"centre error {rows[-1]['centre_error_px_median']:.2f}px found {rows[-1]['object_found']:.2f} "
            f"(autoencoder {rows[-1]['object_found_autoencoder']:.2f}) latent error per block "
            f"{rows[-1]['latent_relative_error_per_block']} found per block {rows[-1]['found_per_block']} {prompts}", logf)
    # Long horizon: one prompt for long_blocks blocks; quality of the last blocks against ground truth.
    prompts, _, truth = eval_timeline(99, long_blocks, None, S)
    lat = generate(dit, t5, tok, prompts, [], long_blocks, cfg.video.latent_size, seed=99, schedule=cfg.schedule, device=device)
    tail = 8 * 3
    video = dec(lat[None].float()).clamp(0, 1)[0]
    gt = render(truth, S, device=device).permute(0, 3, 1, 2)
    frames_u8 = (video.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
    m = object_metrics(frames_u8, truth, S)
    n = video.shape[0]
    long = {"blocks": long_blocks, "frames": int(n), "prompt": prompts[0],
            "psnr_first_96_frames": psnr(video[:96], gt[:96]), "psnr_last_96_frames": psnr(video[-96:], gt[-96:]),
            "centre_error_px_median_last_96": (nanmedian(m["centre_error"][-96:])),
            "object_found_last_96": float(m["found"][-96:].mean()),
            "object_found_first_96": float(m["found"][:96].mean())}
    if samples is not None:
        samples["long"] = frames_u8[::max(1, n // 16)][:16]
    log(f"long run: {json.dumps(long)}", logf)
    dit.train()
    t5.train()
    summary = {"psnr_mean": float(np.mean([r["psnr"] for r in rows])),
               "psnr_autoencoder_mean": float(np.mean([r["psnr_autoencoder"] for r in rows])),
               "centre_error_px_median": (nanmedian([r["centre_error_px_median"] for r in rows])),
               "object_found_mean": float(np.mean([r["object_found"] for r in rows])),
               "object_found_autoencoder_mean": float(np.mean([r["object_found_autoencoder"] for r in rows])),
               "latent_relative_error_mean": float(np.mean([np.mean(r["latent_relative_error_per_block"]) for r in rows]))}
    return {"summary": summary, "videos": rows, "long": long}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="Models/tiny")
    ap.add_argument("--tokenizer", default="Models/tiny", help="folder with spiece.model / tokenizer.json")
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole run (stages share it)")
    ap.add_argument("--steps", type=int, default=None, help="cap each training stage at this many steps")
    ap.add_argument("--toy", action="store_true", help="tiny sizes for a CPU smoke run")
    ap.add_argument("--small", action="store_true", help="64x64, 4-layer DiT: a CPU-sized check of the method")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--views", type=int, default=16384)
    ap.add_argument("--ae-clips", type=int, default=3072)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ae-batch", type=int, default=24)
    ap.add_argument("--run-blocks", type=int, default=6)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--eval-videos", type=int, default=8)
    ap.add_argument("--eval-long-blocks", type=int, default=100)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="dtype of the exported weights")
    ap.add_argument("--init", default=None,
                    help="checkpoint.pt of an earlier run: keeps its autoencoder (no autoencoder stage) and goes on "
                         "training its DiT and text encoder for the whole budget")
    ap.add_argument("--object-weight", type=float, default=4.0,
                    help="extra loss weight of the latent cells covering the object (dit_step)")
    ap.add_argument("--self-context", default="0.4,0.2",
                    help="probabilities of 1 and 2 self-context rounds per DiT step (dit_step); 0,0 is pure teacher forcing")
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = toy_config() if args.toy else small_config() if args.small else TinyConfig()
    tok = Tokenizer(args.tokenizer)
    cfg = dataclasses.replace(base, text=dataclasses.replace(base.text, vocabulary=tok.vocabulary))
    S = cfg.video.frame_size

    # Data first, in forked CPU workers, before anything touches CUDA.
    clip_latents = 4
    clips = parallel_map(ae_clip, range(args.ae_clips), args.workers, latents=clip_latents, frame_size=S)
    views = parallel_map(sample_view, range(args.views), args.workers, run_blocks=args.run_blocks, frame_size=S)
    sampled = time.time() - t0

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "w")
    log(f"device {device}, torch {torch.__version__}, tokenizer via {tok.backend} (vocabulary {tok.vocabulary}), "
        f"config {json.dumps(dataclasses.asdict(cfg))}", logf)
    log(f"sampled {len(clips)} autoencoder clips and {len(views)} DiT views in {sampled:.1f}s", logf)

    budget_left = args.budget - (time.time() - t0)
    eval_reserve = 45 if not args.toy else 0
    if args.small:
        eval_reserve = 240
    init = torch.load(args.init, map_location="cpu") if args.init else None
    if init is not None:
        same = lambda c: {**c, "dit": {k: v for k, v in c["dit"].items() if k != "text_len"}}   # noqa: E731
        if same(init["config"]) != same(dataclasses.asdict(cfg)):      # text_len shapes no weight
            raise SystemExit(f"{args.init} was trained with another configuration: {init['config']}")
        enc, dec = Encoder(cfg.encoder).to(device), Decoder(cfg.decoder).to(device)
        enc.load_state_dict(init["encoder"])
        dec.load_state_dict(init["decoder"])
        enc.eval()
        dec.eval()
        ae_stats = {"from": args.init, **init.get("autoencoder", {})}
    else:
        ae_clock = Clock(0.25 * budget_left if args.budget else None, args.steps)
        enc, dec, ae_stats = train_autoencoder(cfg, clips, clip_latents, ae_clock, device, args.ae_batch, logf)
    log(f"autoencoder: {ae_stats}", logf)
    for p in list(enc.parameters()) + list(dec.parameters()):
        p.requires_grad_(False)

    latents = encode_views(views, enc, cfg, device)
    log(f"view latents {tuple(latents.shape)}: mean {latents.float().mean():.3f} std {latents.float().std():.3f} "
        f"({time.time() - t0:.1f}s elapsed)", logf)

    dit = WanDiT(cfg.dit).to(device)
    t5 = UMT5Encoder(cfg.text).to(device)
    if init is not None:
        dit.load_state_dict(init["dit"])
        t5.load_state_dict(init["text_encoder"])
    n_dit = sum(p.numel() for p in dit.parameters())
    n_t5 = sum(p.numel() for p in t5.parameters())
    n_dec = sum(p.numel() for p in dec.parameters())
    log(f"parameters: dit {n_dit}, text encoder {n_t5}, decoder {n_dec}", logf)
    dit_clock = Clock(max(1.0, args.budget - (time.time() - t0) - eval_reserve) if args.budget else None, args.steps)
    self_context = tuple(float(x) for x in args.self_context.split(","))
    if len(self_context) != 2 or min(self_context) < 0 or sum(self_context) > 1:
        ap.error("--self-context takes two probabilities that sum to at most 1, e.g. 0.4,0.2")
    dit_stats = train_dit(cfg, dit, t5, tok, views, latents, dit_clock, device, args.batch, args.lr, logf,
                          self_context=self_context, object_weight=args.object_weight)
    log(f"dit: steps {dit_stats['steps']} loss_ema {dit_stats['loss_ema']}", logf)
    if init is not None:
        dit_stats["earlier"] = init.get("dit_stats")
    torch.save({"config": dataclasses.asdict(cfg), "dit": dit.state_dict(), "text_encoder": t5.state_dict(),
                "encoder": enc.state_dict(), "decoder": dec.state_dict(), "autoencoder": ae_stats,
                "dit_stats": dit_stats}, os.path.join(args.out, "checkpoint.pt"))

    report = {"config": dataclasses.asdict(cfg), "device": str(device),
              "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
              "parameters": {"dit": n_dit, "text_encoder": n_t5, "decoder": n_dec},
              "autoencoder": ae_stats, "dit": dit_stats}
    dtype = torch.float32 if args.dtype == "f32" else torch.bfloat16
    files = export(args.out, dit, t5, dec, metadata={"command": "python3 -m training.tiny.train " + " ".join(sys.argv[1:] if argv is None else argv)},
                   dtype=dtype, frame_size=S)
    log(f"exported {list(files)} to {args.out}", logf)
    report["files"] = {k: {"path": v, "bytes": os.path.getsize(v)} for k, v in files.items()}
    samples = {}
    report["eval"] = evaluate(cfg, dit, t5, tok, enc, dec, device, videos=args.eval_videos,
                              blocks=8 if not args.toy else 3, long_blocks=args.eval_long_blocks, logf=logf,
                              samples=samples)
    np.savez_compressed(os.path.join(args.out, "samples.npz"), **samples)
    report["seconds"] = time.time() - t0
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(f"done in {report['seconds']:.0f}s: {json.dumps(report['eval']['summary'])}; files "
        f"{json.dumps(report['files'])}", logf)
    return report


if __name__ == "__main__":
    main()
