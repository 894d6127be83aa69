"""Reel itself loads an exported model and computes what the PyTorch code computes: streaming
generation (one prompt; a switch with recache) from recorded noise, and the tiny decoder's frames.

Needs a built `reel` (REEL_BIN, else .build/debug/reel or .build/release/reel); skipped without one.
Random weights of a toy configuration (every parameter nonzero).
"""
import dataclasses
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from training.tiny.decoder import Decoder
from training.tiny.dit import WanDiT
from training.tiny.export import export
from training.tiny.sample import encode_prompt, generate_from_embeddings
from training.tiny.tokenizer import Tokenizer
from training.tiny.train import toy_config
from training.tiny.umt5 import UMT5Encoder

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(ROOT, "Models", "tiny")
PROMPTS = ["a large red circle moves left quickly on a blue and white background",
           "a large green circle moves left quickly on a blue and white background"]


def reel_binary():
    for p in (os.environ.get("REEL_BIN"), os.path.join(ROOT, ".build", "debug", "reel"),
              os.path.join(ROOT, ".build", "release", "reel")):
        if p and os.path.exists(p):
            return p
    pytest.skip("no reel binary (swift build, or set REEL_BIN)")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    reel = reel_binary()
    torch.manual_seed(0)
    tok = Tokenizer(MODELS)
    base = toy_config()
    cfg = dataclasses.replace(base, text=dataclasses.replace(base.text, vocabulary=tok.vocabulary))
    dit, t5, dec = WanDiT(cfg.dit).eval(), UMT5Encoder(cfg.text).eval(), Decoder(cfg.decoder).eval()
    for m in (dit, t5, dec):
        for p in m.parameters():
            p.data.normal_(0, 0.5 / max(1, p[0].numel()) ** 0.5 if p.dim() > 1 else 0.1)
    with torch.no_grad():
        dec.decoder[22].bias.fill_(0.5)                     # keep frames mostly inside [0, 1]
    folder = tmp_path_factory.mktemp("model")
    export(str(folder), dit, t5, dec, frame_size=32)
    for f in ("spiece.model", "tokenizer.json"):
        (folder / f).write_bytes(open(os.path.join(MODELS, f), "rb").read())
    return {"reel": reel, "folder": folder, "dit": dit, "t5": t5, "dec": dec, "tok": tok, "size": cfg.video.latent_size}


def run_both(m, tmp_path, prompts, switch_blocks, blocks):
    size = m["size"]
    g = torch.Generator().manual_seed(1)
    initial = torch.randn(3 * blocks, 16, size, size, generator=g)
    renoise = torch.randn(blocks, 3, 3, 16, size, size, generator=g)
    save_file({"initial": initial, "renoise": renoise}, str(tmp_path / "noise.safetensors"))
    with torch.no_grad():
        embeddings = [encode_prompt(m["t5"], m["tok"], p, "cpu") for p in prompts]
        ours = generate_from_embeddings(m["dit"], embeddings, switch_blocks, blocks, size,
                                        lambda b, s: initial[3 * b:3 * b + 3] if s < 0 else renoise[b, s])
    out = tmp_path / "latents.safetensors"
    args = [m["reel"], "generate", "--model", str(m["folder"]), "--latent-frames", str(3 * blocks), "--size", "32x32",
            "--noise", str(tmp_path / "noise.safetensors"), "-o", str(out), "--threads", "1"]
    if len(prompts) == 1:
        args += ["--prompt", prompts[0]]
    else:
        (tmp_path / "schedule.jsonl").write_text(json.dumps({"prompts": prompts}) + "\n")
        args += ["--schedule", str(tmp_path / "schedule.jsonl"), "--switch-frames", ",".join(str(3 * b) for b in switch_blocks)]
    subprocess.run(args, check=True, cwd=tmp_path, capture_output=True)
    theirs = next(iter(load_file(str(out)).values()))
    return ours, theirs


def nmse(a, b):
    return float(((a - b) ** 2).mean() / (b ** 2).mean())


def test_reel_generates_what_pytorch_generates(model, tmp_path):
    ours, theirs = run_both(model, tmp_path, PROMPTS[:1], [], 3)
    assert theirs.shape == ours.shape and nmse(theirs, ours) < 1e-8


def test_reel_switches_prompts_as_pytorch_does(model, tmp_path):
    ours, theirs = run_both(model, tmp_path, PROMPTS, [2], 4)         # switch at latent frame 6, with recache
    assert theirs.shape == ours.shape and nmse(theirs, ours) < 1e-8


def test_reel_decodes_what_pytorch_decodes(model, tmp_path):
    from PIL import Image
    latents = torch.randn(1, 6, 16, model["size"], model["size"], generator=torch.Generator().manual_seed(2))
    save_file({"latents": latents}, str(tmp_path / "lat.safetensors"))
    subprocess.run([model["reel"], "decode", "--latents", str(tmp_path / "lat.safetensors"), "--layout", "ntchw",
                    "--vae", str(model["folder"] / "taehv.safetensors"), "--tiny", "-o", str(tmp_path / "png"),
                    "--threads", "1"], check=True, cwd=tmp_path, capture_output=True)
    files = sorted(os.listdir(tmp_path / "png"))
    theirs = np.stack([np.asarray(Image.open(tmp_path / "png" / f).convert("RGB")) for f in files]).astype(np.float32)
    with torch.no_grad():
        ours = (model["dec"](latents).clamp(0, 1)[0].permute(0, 2, 3, 1) * 255).numpy()
    assert theirs.shape == ours.shape                                  # 4*6-3 = 21 frames
    assert np.abs(theirs - ours).max() <= 1.0
