"""Fine-tunes the shipped tiny DiT (and its umT5) for video-to-video with StreamDiffusionV2's schedule, while
it keeps training on LongLive's text-to-video views (training/README.md, "Video-to-video").

    python3 -m training.tiny.v2v_train --out DIR --budget 540                        # one GPU, ~9 minutes
    python3 -m training.tiny.v2v_train --out /tmp/v2v --toy --steps 4 --budget 0     # CPU smoke run (tests)

Why: the tiny model learnt text-to-video only, where the prompt decides everything. Fed an input video the
StreamDiffusionV2 way (the input's latent mixed with noise at scale s', the model told timestep 1000 s' - 100),
it either keeps the input as it is (s' <= 0.4: the prompt's colour never shows) or ignores it (s' >= 0.45: the
object is drawn where the prompt's video would have it, not where the input's is). A real StreamDiffusionV2
model is fine-tuned for the schedule; so is this one, on pairs the scene renderer makes exactly:

- a source clip and a target clip with the same object, size, shape and trajectory (random start), the
  target's colour and/or background changed (sometimes neither: a prompt that matches its input keeps it);
- the caption is the target's; the level-0 input is s' eps + (1 - s') z_source, timestep int(1000 s') - 100,
  sigma from the shift-8 grid nearest to it (docs/streamdiffusionv2.md sections 2-3), s' drawn over the noise
  scales a user may pick; levels 1.. (timesteps 500, 400, 200) take the re-noised x0 of the level before,
  from the target (teacher forcing) or from the model's own prediction without gradients (self forcing);
- one packed forward holds every level of a clip's 1-latent-frame blocks with StreamDiffusionV2's attention:
  level i of frame f sees the first block (frames 0-1, whose keys the sequential first block leaves from its
  last step), frame 2 and the 3 frames before f at level i (the sink refresh's fill artefact keeps sink slot 2
  in the eviction queue, section 7) and itself; frames past the sink sit at RoPE positions shifted by up to 40
  (the live API resets positions at frame 50);
- the loss is x0 MSE against the target's latent, object cells weighted as train.py does.

Every other step is a LongLive text-to-video step (train.py's dit_step on its views, self forcing as the
shipped recipe's stage 4 did), so text-to-video does not drift. The decoder and encoder stay frozen: latents
come from the shipped TAEHV encoder (Reel's encoder for --input / --image), run over each clip as one stream.

Evaluation (held-out clips, before and after): video-to-video per noise scale, streamed block by block as
Reel's StreamBatchGenerator runs it (per-level histories, same attention as training); object found in the
prompt's colour and background and its centre error against the input's trajectory; how often the input's own
colour survives instead; text-to-video on train.py's held-out timelines (PSNR, found, centre error).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np
import torch

from ..data.checks import object_metrics
from ..data.render import render
from ..data.scenes import (BACKGROUND_COLOURS, COLOUR_NAMES, COLOURS, Segment, caption, radius, sample_attributes,
                           simulate)
from .config import ScheduleConfig
from .dataset import render_truth, sample_view
from .decoder import Decoder
from .encoder_train import TinyEncoder, load_shipped, stream_frames
from .export import export
from .sample import generate
from .tokenizer import Tokenizer
from .train import Clock, dit_step, eval_timeline, lr_at, log, nanmedian, object_cells, parallel_map, psnr, text_batch

V2V_STEPS = (500, 400, 200)        # levels 1.. (level 0 is the adaptive step)


# -- StreamDiffusionV2's timesteps (docs/streamdiffusionv2.md section 3) -----------------------------------
def sdv2_grid():
    u = np.linspace(1, 0, 1001, dtype=np.float32)[:1000]
    sigma = (np.float32(8) * u / (1 + np.float32(7) * u)).astype(np.float32)
    return sigma * np.float32(1000), sigma


_T, _SIGMA = sdv2_grid()


def sigma_of(t: float) -> float:
    return float(_SIGMA[int(np.argmin(np.abs(_T - np.float32(t))))])


# -- data ---------------------------------------------------------------------------------------------------
def recolour(truth: dict, colour: int, background: tuple[int, int]) -> dict:
    out = dict(truth)
    out["colour"] = np.full_like(truth["colour"], colour)
    out["rgb"] = np.tile(np.array(COLOURS[COLOUR_NAMES[colour]], np.uint8), (len(truth["colour"]), 1))
    out["background"] = np.tile(np.array(background, truth["background"].dtype), (len(truth["colour"]), 1))
    return out


def v2v_clip(seed: int, latents: int, frame_size: int, p_same: float = 0.15) -> dict:
    """A target clip (random start, one prompt) and its source: the same trajectory, shape and size, with the
    object's colour and/or background changed (neither with probability p_same)."""
    rng = np.random.default_rng(seed)
    a = sample_attributes(rng, two_tone_prob=0.3)
    r = radius(a, frame_size)
    start = rng.uniform(r, frame_size - r, size=2)
    frames = np.arange(4 * latents - 3)
    target = simulate([Segment(0, a)], frames, frame_size, start)
    colour = COLOUR_NAMES.index(a.colour)
    bg = tuple(int(x) for x in target["background"][0])
    u = rng.random()
    if u >= p_same:
        change_colour = u < p_same + (1 - p_same) * 0.45
        change_bg = (not change_colour) or rng.random() < 0.35
        if change_colour:
            colour = int(rng.choice([i for i in range(len(COLOUR_NAMES)) if i != colour and i not in bg]))
        if change_bg:
            options = [i for i in range(len(BACKGROUND_COLOURS)) if i != colour]
            first = int(rng.choice(options))
            second = first if rng.random() < 0.65 else int(rng.choice([i for i in options if i != first]))
            bg = (first, second)
    return {"caption": caption(a), "target": target, "source": recolour(target, colour, bg), "start": start}


@torch.no_grad()
def encode_streams(enc: TinyEncoder, truths: list[dict], frame_size: int, device, from_start: bool,
                   chunk: int = 32) -> torch.Tensor:
    """Each truth's frames rendered and encoded as one stream -> [N, T, z, h, w] bf16. from_start: frame 0 is
    the stream's start (3 copies in front, Reel's rule); otherwise the frames continue a stream whose first
    latent is a warm-up (the caller drops it)."""
    out = []
    for i in range(0, len(truths), chunk):
        part = truths[i:i + chunk]
        frames = render_truth(part, frame_size, device).reshape(len(part), -1, 3, frame_size, frame_size)
        video = frames.float() / 255
        if from_start:
            video = stream_frames(video)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            out.append(enc(video).to(torch.bfloat16))
    return torch.cat(out)


WARMUP_LATENTS = 4


@torch.no_grad()
def encode_t2v_views(views: list[dict], enc: TinyEncoder, frame_size: int, device) -> torch.Tensor:
    """Latents of train.py's views ([V, F_view, z, h, w]), each run encoded as the stream Reel's encoder would
    see: from frame 0, or (a run far into the video) from WARMUP_LATENTS latents before it."""
    F_view = len(views[0]["latent_frames"])
    lat = torch.empty(len(views), F_view, 16, frame_size // 8, frame_size // 8, dtype=torch.bfloat16, device=device)
    near = [i for i, v in enumerate(views) if v["P"] == 3]
    far = [i for i, v in enumerate(views) if v["P"] != 3]
    if near:
        last = int(views[near[0]]["latent_frames"][-1])
        truths = [simulate(views[i]["segments"], np.arange(4 * last + 1), frame_size) for i in near]
        z = encode_streams(enc, truths, frame_size, device, from_start=True)             # [n, last+1, ...]
        for j, i in enumerate(near):
            lat[i] = z[j, torch.as_tensor(views[i]["latent_frames"], device=device)]
    if far:
        sink = encode_streams(enc, [simulate(views[i]["segments"], np.arange(9), frame_size) for i in far],
                              frame_size, device, from_start=True)                        # latents 0..2
        runs = []
        for i in far:
            P, last = views[i]["P"], int(views[i]["latent_frames"][-1])
            first = 4 * (P - WARMUP_LATENTS) - 3
            runs.append(simulate(views[i]["segments"], np.arange(first, 4 * last + 1), frame_size))
        z = encode_streams(enc, runs, frame_size, device, from_start=False)
        for j, i in enumerate(far):
            lat[i, :3] = sink[j]
            lat[i, 3:] = z[j, WARMUP_LATENTS:]
    return lat


# -- the packed video-to-video forward ------------------------------------------------------------------------
def attends(q: tuple[int, int], k: tuple[int, int], levels: int, ring: bool) -> bool:
    """Whether level q[0]'s pass over frame q[1] sees the keys of frame k[1] at level k[0] (module doc).
    ring: sink slot 2 rotates with the window (the fill artefact's steady state): frames f-3..f; otherwise
    frame 2 stays and the window is f-2..f."""
    (i, f), (j, g) = q, k
    if f <= 1:
        return j == i and g <= 1                       # the first block: one pass over frames 0-1
    if g <= 1:
        return j == levels - 1                         # its last step's keys, in every level's row
    if j != i or g > f:
        return False
    return f - 3 <= g if ring else (g == 2 or f - 2 <= g)


def v2v_mask(frames: int, levels: int, ring: bool = True) -> np.ndarray:
    """[E, E] entry mask, entries level-major (level i, frame f) -> i * frames + f."""
    E = levels * frames
    m = np.zeros((E, E), bool)
    for q in range(E):
        for k in range(E):
            m[q, k] = attends(divmod(q, frames), divmod(k, frames), levels, ring)
    return m


def v2v_forward(dit, x, t, positions, text, mask):
    """x [B, L, F, C, h, w] level inputs, t [B, L] timesteps -> velocity [B, L, F, C, h, w]."""
    B, L, Fn = x.shape[:3]
    tt = t[:, :, None].expand(B, L, Fn).reshape(B, L * Fn)
    frames = positions[:, None, :].expand(B, L, Fn).reshape(B, L * Fn)
    prompt_index = torch.zeros(B, L * Fn, dtype=torch.long, device=x.device)
    with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
        v = dit.forward_packed(x.reshape(B, L * Fn, *x.shape[3:]), tt, frames, prompt_index, text[:, None], mask)
    return v.float().reshape(x.shape)


def v2v_step(dit, t5, tok, clips, z_src, z_tgt, idx, device, g, gd, frames: int, object_weight: float,
             p_self: float = 0.5):
    """Loss of one batch of video-to-video clips (see the module doc)."""
    B = len(idx)
    levels = int(np.random.default_rng(int(torch.randint(1 << 30, (), generator=g))).choice([1, 2, 3, 4], p=[.2, .45, .2, .15]))
    src = z_src[idx, :frames].float()
    tgt = z_tgt[idx, :frames].float()
    s0 = 0.5 + 0.45 * torch.rand(B, generator=g)
    s_prime = s0 - 0.1 * torch.rand(B, generator=g)
    t0 = (1000 * s_prime).floor() - 100
    ts = torch.stack([t0] + [torch.full((B,), float(V2V_STEPS[i])) for i in range(levels - 1)], 1)     # [B, L]
    sig = torch.tensor([[sigma_of(float(x)) for x in row] for row in ts])
    ts, sig, s_prime = ts.to(device), sig.to(device), s_prime.to(device)
    shift = torch.randint(0, 41, (B,), generator=g)
    positions = torch.arange(frames)[None].expand(B, frames).clone()
    positions[:, 3:] += shift[:, None]
    positions = positions.to(device)
    ring = float(torch.rand((), generator=g)) < 0.7
    mask = torch.as_tensor(v2v_mask(frames, levels, ring), device=device)[None].expand(B, -1, -1)
    text = text_batch(t5, tok, [[clips[i]["caption"]] for i in idx], device)[:, 0]
    eps = torch.randn((B, levels) + src.shape[1:], generator=gd, device=device)
    sp = s_prime[:, None, None, None, None]
    x_first = sp * eps[:, 0] + (1 - sp) * src

    def inputs(x0_prev):
        xs = [x_first]
        for i in range(1, levels):
            s = sig[:, i][:, None, None, None, None]
            xs.append((1 - s) * x0_prev[:, i - 1] + s * eps[:, i])
        return torch.stack(xs, 1)

    teacher = tgt[:, None].expand(B, max(1, levels - 1), *tgt.shape[1:])
    x = inputs(teacher)
    if levels > 1 and float(torch.rand((), generator=g)) < p_self:
        with torch.no_grad():
            for i in range(1, levels):                      # level i's input from the model's level i-1 output
                v = v2v_forward(dit, x, ts, positions, text.detach(), mask)
                x0 = x - sig[:, :, None, None, None, None] * v
                x = inputs(torch.cat([x0[:, :levels - 1], teacher[:, levels - 1:]], 1))
    v = v2v_forward(dit, x, ts, positions, text, mask)
    pred = x - sig[:, :, None, None, None, None] * v
    err = ((pred - tgt[:, None]) ** 2).mean(3)                                           # [B, L, F, h, w]
    objects = np.zeros((B, frames, 2, 4), np.float32)
    for b, i in enumerate(idx):
        objects[b] = clips[i]["objects"][:frames]
    cells = object_cells(torch.as_tensor(objects, device=device), err.shape[-1], clips[idx[0]]["frame_size"])
    w = 1 + object_weight * cells[:, None]
    return ((err * w).sum((-1, -2)) / w.sum((-1, -2))).mean()


def clip_objects(truth: dict, latents: int) -> np.ndarray:
    """x, y, radius, present of the first and last video frame behind each latent frame: [T, 2, 4]."""
    first = [0] + [4 * k - 3 for k in range(1, latents)]
    last = [0] + [4 * k for k in range(1, latents)]
    rows = lambda fr: np.concatenate([truth["centre"][fr], truth["radius"][fr, None], truth["present"][fr, None]], -1)  # noqa: E731
    return np.stack([rows(first), rows(last)], 1).astype(np.float32)


# -- streaming evaluation ---------------------------------------------------------------------------------------
@torch.no_grad()
def stream_v2v(dit, t5, tok, caption_text: str, z_src: torch.Tensor, noise_scale: float, levels: int, seed: int,
               device, ring: bool = True) -> torch.Tensor:
    """Block by block (1 latent frame; the first block 2), level by level, each pass over its block together
    with every earlier entry its keys depend on (the attention rule of `attends`, recomputed from the stored
    level inputs: what a KV cache would hold). Returns x0 latents [T, z, h, w]."""
    T = z_src.shape[0]
    g = torch.Generator(device="cpu").manual_seed(seed)
    text = text_batch(t5, tok, [[caption_text]], device)[:, 0]
    steps = [0.0] + [float(s) for s in V2V_STEPS[:levels - 1]]
    inputs: dict[tuple[int, int], tuple[torch.Tensor, float]] = {}     # (level, frame) -> (input, timestep)
    out = []
    for f in range(T):
        if f == 1:
            continue                                   # frame 1 went with frame 0
        block = [0, 1] if f == 0 else [f]
        t0 = 700.0 if f == 0 else float(int(1000 * noise_scale) - 100)
        x = torch.stack([noise_scale * torch.randn(z_src.shape[1:], generator=g).to(device) + (1 - noise_scale) * z_src[b]
                         for b in block])
        for i in range(levels):
            t = t0 if i == 0 else steps[i]
            for k, b in enumerate(block):
                inputs[(i, b)] = (x[k], t)
            if f == 0:
                entries = [(i, 0), (i, 1)]
            else:
                entries = sorted({(levels - 1, 0), (levels - 1, 1)} | {(i, b) for b in range(2, f + 1)})
            E = len(entries)
            mask = torch.tensor([[attends(q, k, levels, ring) for k in entries] for q in entries], device=device)[None]
            lat = torch.stack([inputs[e][0] for e in entries])[None]
            tt = torch.tensor([[inputs[e][1] for e in entries]], device=device)
            pos = torch.tensor([[e[1] for e in entries]], device=device)
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                v = dit.forward_packed(lat, tt, pos, torch.zeros(1, E, dtype=torch.long, device=device), text[:, None], mask)
            mine = [entries.index((i, b)) for b in block]
            x0 = x - sigma_of(t) * v[0, mine].float()
            if i + 1 < levels:
                s = sigma_of(steps[i + 1])
                x = (1 - s) * x0 + s * torch.randn(x0.shape, generator=g).to(device)
        out.extend(list(x0))
    return torch.stack(out)


@torch.no_grad()
def evaluate_v2v(dit, t5, tok, enc, dec, device, clips: list[dict], scales, levels: int = 2) -> dict:
    dit.eval()
    t5.eval()
    S = clips[0]["frame_size"]
    z_src = encode_streams(enc, [c["source"] for c in clips], S, device, from_start=True).float()
    rows = {}
    for s in scales:
        found, err, kept, identity = [], [], [], []
        for k, c in enumerate(clips):
            lat = stream_v2v(dit, t5, tok, c["caption"], z_src[k], s, levels, seed=k, device=device)
            video = dec(lat[None]).clamp(0, 1)[0]
            frames = (video.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
            m = object_metrics(frames, c["target"], S)
            changed = not np.array_equal(c["source"]["colour"], c["target"]["colour"]) or \
                not np.array_equal(c["source"]["background"], c["target"]["background"])
            if changed:
                found.append(m["found"].mean())
                err.append(nanmedian(np.where(m["found"], m["centre_error"], np.nan)))
                kept.append(object_metrics(frames, c["source"], S)["found"].mean())
            else:
                identity.append(m["found"].mean())
        rows[str(s)] = {"found_prompt_colours": float(np.mean(found)), "centre_error_px_median": nanmedian(err),
                        "input_colours_kept": float(np.mean(kept)), "found_when_prompt_matches_input": float(np.mean(identity)) if identity else None,
                        "clips_changed": len(found), "clips_same": len(identity)}
    dit.train()
    t5.train()
    return rows


@torch.no_grad()
def evaluate_t2v(dit, t5, tok, dec, device, S: int, videos: int = 8, blocks: int = 8) -> dict:
    dit.eval()
    t5.eval()
    rows = []
    for k in range(videos):
        prompts, switches, truth = eval_timeline(k, blocks, 4 if k % 2 == 0 else None, S)
        lat = generate(dit, t5, tok, prompts, switches, blocks, S // 8, seed=k, schedule=ScheduleConfig(), device=device)
        video = dec(lat[None].float()).clamp(0, 1)[0]
        gt = render(truth, S, device=device).permute(0, 3, 1, 2)
        m = object_metrics((video.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy(), truth, S)
        rows.append({"psnr": psnr(video, gt), "found": float(m["found"].mean()), "centre": nanmedian(m["centre_error"])})
    dit.train()
    t5.train()
    return {"psnr_mean": float(np.mean([r["psnr"] for r in rows])), "object_found_mean": float(np.mean([r["found"] for r in rows])),
            "centre_error_px_median": nanmedian([r["centre"] for r in rows])}


# -- main -------------------------------------------------------------------------------------------------------
def load_shipped_parts(folder: str, device):
    """The DiT and umT5 of a folder that may lack taehv.safetensors (an --out of this script)."""
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("dit.safetensors", "text_encoder.safetensors"):
            os.symlink(os.path.abspath(os.path.join(folder, name)), os.path.join(tmp, name))
        shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "Models", "tiny", "taehv.safetensors"), tmp)
        return load_shipped(tmp, device)


def load_encoder(tensors: dict, device) -> TinyEncoder:
    width = int(tensors["encoder.0.weight"].shape[0])
    enc = TinyEncoder(width)
    enc.load_state_dict({k: v for k, v in tensors.items() if k.startswith("encoder.")})
    enc.to(device).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="Models/tiny", help="the shipped model to start from")
    ap.add_argument("--init", default=None, help="folder with dit.safetensors and text_encoder.safetensors to start from "
                    "(an earlier run of this script); the decoder, encoder and tokenizer stay --model's")
    ap.add_argument("--budget", type=float, default=540)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--toy", action="store_true", help="few, small batches: a CPU smoke run")
    ap.add_argument("--views", type=int, default=8192)
    ap.add_argument("--clips", type=int, default=4096)
    ap.add_argument("--clip-latents", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--object-weight", type=float, default=6.0)
    ap.add_argument("--v2v-fraction", type=float, default=0.5)
    ap.add_argument("--self-context", default="0.4,0.2")
    ap.add_argument("--eval-clips", type=int, default=24)
    ap.add_argument("--eval-scales", default="0.6,0.7,0.8,0.9")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.toy:
        args.views, args.clips, args.batch, args.eval_clips = 8, 8, 2, 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    S = 128
    views = parallel_map(sample_view, range(10 ** 6, 10 ** 6 + args.views), args.workers, run_blocks=6, frame_size=S)
    clips = parallel_map(v2v_clip, range(args.clips), args.workers, latents=args.clip_latents, frame_size=S)
    held = parallel_map(v2v_clip, range(10 ** 8, 10 ** 8 + args.eval_clips), args.workers, latents=12, frame_size=S)
    for c in clips:
        c["objects"] = clip_objects(c["target"], args.clip_latents)
    for c in clips + held:
        c["frame_size"] = S
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "v2v_train.log"), "w")
    log(f"device {device}; {len(views)} text-to-video views, {len(clips)} video-to-video clips in {time.time() - t0:.1f}s", logf)

    dit, t5, dec, taehv, _ = load_shipped(args.model, device)
    if args.init:
        d2, t2, _, _, _ = load_shipped_parts(args.init, device)
        dit.load_state_dict(d2.state_dict())
        t5.load_state_dict(t2.state_dict())
    enc = load_encoder(taehv, device)
    tok = Tokenizer(args.model)
    z_views = encode_t2v_views(views, enc, S, device)
    z_src = encode_streams(enc, [c["source"] for c in clips], S, device, from_start=True)
    z_tgt = encode_streams(enc, [c["target"] for c in clips], S, device, from_start=True)
    log(f"latents encoded ({time.time() - t0:.1f}s): views {tuple(z_views.shape)}, clips {tuple(z_src.shape)}", logf)

    scales = [float(s) for s in args.eval_scales.split(",")]
    report = {"command": "python3 -m training.tiny.v2v_train " + " ".join(sys.argv[1:] if argv is None else argv),
              "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}
    report["before"] = {"v2v": evaluate_v2v(dit, t5, tok, enc, dec, device, held, scales),
                        "t2v": evaluate_t2v(dit, t5, tok, dec, device, S, videos=2 if args.toy else 8,
                                            blocks=2 if args.toy else 8)}
    log(f"before: {json.dumps(report['before'])}", logf)

    for p in list(dit.parameters()) + list(t5.parameters()):
        p.requires_grad_(True)
    dit.train()
    t5.train()
    eval_reserve = 0 if args.toy or not args.budget else 75
    clock = Clock(max(1.0, args.budget - (time.time() - t0) - eval_reserve) if args.budget else None, args.steps)
    params = list(dit.parameters()) + list(t5.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    g = torch.Generator(device="cpu").manual_seed(5)
    gd = torch.Generator(device=device).manual_seed(6)
    self_context = tuple(float(x) for x in args.self_context.split(","))
    ema = {"t2v": None, "v2v": None}
    history = []
    sched = ScheduleConfig()
    while not clock.done():
        kind = "v2v" if float(torch.rand((), generator=g)) < args.v2v_fraction else "t2v"
        if kind == "v2v":
            idx = torch.randint(len(clips), (args.batch,), generator=g).tolist()
            loss = v2v_step(dit, t5, tok, clips, z_src, z_tgt, idx, device, g, gd, args.clip_latents, args.object_weight)
        else:
            idx = torch.randint(len(views), (args.batch,), generator=g).tolist()
            u = float(torch.rand((), generator=g))
            rounds = 1 if u < self_context[0] else 2 if u < sum(self_context) else 0
            loss = dit_step(dit, t5, tok, views, z_views, idx, sched, device, g, gd, self_rounds=rounds,
                            object_weight=args.object_weight)
        for group in opt.param_groups:
            group["lr"] = lr_at(args.lr, clock.fraction())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema[kind] = loss.item() if ema[kind] is None else 0.98 * ema[kind] + 0.02 * loss.item()
        if clock.step % 100 == 0:
            log(f"step {clock.step} {kind} loss {loss.item():.5f} ema {json.dumps({k: v and round(v, 5) for k, v in ema.items()})} "
                f"({(time.time() - clock.start) / max(1, clock.step):.3f} s/step)", logf)
            history.append((clock.step, {k: v and round(v, 5) for k, v in ema.items()}))
        clock.step += 1
    report["training"] = {"steps": clock.step, "ema": ema, "history": history, "lr": args.lr,
                          "object_weight": args.object_weight, "v2v_fraction": args.v2v_fraction}
    for p in params:
        p.requires_grad_(False)
    files = export(args.out, dit, t5, dec, metadata={"command": report["command"]})
    # The exported taehv.safetensors holds the decoder only: keep the shipped file (decoder + encoder).
    os.remove(files.pop("decoder"))
    report["after"] = {"v2v": evaluate_v2v(dit, t5, tok, enc, dec, device, held, scales),
                       "t2v": evaluate_t2v(dit, t5, tok, dec, device, S, videos=2 if args.toy else 8,
                                           blocks=2 if args.toy else 8)}
    log(f"after: {json.dumps(report['after'])}", logf)
    report["seconds"] = time.time() - t0
    with open(os.path.join(args.out, "v2v_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(f"done in {report['seconds']:.0f}s; files {json.dumps(files)}", logf)
    return report


if __name__ == "__main__":
    main()
