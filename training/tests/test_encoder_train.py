"""The tiny encoder recipe (training/tiny/encoder_train.py): its encoder is taehv.py's, its batched DiT
sampler is sample.py's loop, and a toy run trains, exports what Reel's TinyEncoder binds and beats the
untrained encoder."""
import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from training.tiny.encoder_train import (TinyEncoder, encoder_keys, generate_batch, load_shipped, main,
                                         prompt_kv_batch, stream_frames)
from training.tiny.export import decoder_keys
from training.tiny.config import DecoderConfig
from training.tiny.sample import encode_prompt, generate_from_embeddings
from training.tiny.tokenizer import Tokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(ROOT, "Models", "tiny")
FIXTURE = os.path.join(ROOT, "Tests", "ReelModelsTests", "Fixtures", "vae", "taehv_encoder.safetensors")


def nmse(a, b):
    return float(((a - b) ** 2).mean() / (b ** 2).mean())


@pytest.mark.skipif(not os.path.exists(FIXTURE), reason="no taehv encoder fixture")
def test_encoder_matches_taehv_reference():
    """The Swift TinyEncoder's parity fixture (taehv.py's encode_video, width 16): same keys, same latents."""
    t = load_file(FIXTURE)
    enc = TinyEncoder(16)
    enc.load_state_dict({k: v.float() for k, v in t.items() if k.startswith("encoder.")}, strict=True)
    assert {k: tuple(v.shape) for k, v in t.items() if k.startswith("encoder.")} == encoder_keys(16)
    video = t["input.video"]                                   # 13 frames: encode_video repeats the last to 16
    padded = torch.cat([video, video[:, -1:].expand(-1, 3, -1, -1, -1)], 1)
    with torch.no_grad():
        assert nmse(enc(padded), t["output.latents"]) < 1e-10


def test_stream_start_is_frame_zero_four_times():
    video = torch.rand(1, 5, 3, 8, 8)
    s = stream_frames(video)
    assert s.shape[1] == 8 and all(torch.equal(s[:, i], video[:, 0]) for i in range(4))
    assert torch.equal(s[:, 4:], video[:, 1:])                # latent 1 = frames 1..4


def test_batched_generation_is_the_streaming_loop():
    dev = torch.device("cpu")
    dit, t5, _, _, _ = load_shipped(MODELS, dev)
    tok = Tokenizer(MODELS)
    caps = ["a red circle moves left on a blue background", "a large green square bounces around on a white background"]
    after = ["a red square moves left on a blue background", "a large green square bounces around on a black background"]
    g = torch.Generator().manual_seed(0)
    noise = {(b, i): torch.randn(2, 3, 16, 4, 4, generator=g) for b in range(3) for i in range(-1, 3)}
    with torch.no_grad():
        z = generate_batch(dit, [prompt_kv_batch(dit, t5, tok, caps, dev), prompt_kv_batch(dit, t5, tok, after, dev)],
                           2, 3, 4, lambda b, i: noise[(b, i)])
        for j in range(2):
            e = [encode_prompt(t5, tok, caps[j], dev), encode_prompt(t5, tok, after[j], dev)]
            ref = generate_from_embeddings(dit, e, [2], 3, 4, lambda b, i: noise[(b, i)][j])
            assert nmse(z[j], ref) < 1e-8


def test_toy_recipe_trains_and_exports_swift_layout(tmp_path):
    out = tmp_path / "enc"
    main(["--out", str(out), "--toy", "--budget", "0", "--steps", "40", "--threads", "1"])
    path = out / "taehv.safetensors"
    with safe_open(str(path), "pt") as f:
        keys = {k: tuple(f.get_tensor(k).shape) for k in f.keys()}
        meta = f.metadata()
    enc = {k: v for k, v in keys.items() if k.startswith("encoder.")}
    assert enc == encoder_keys(8)                               # names and shapes TinyEncoder.swift binds
    dec = {k: v for k, v in keys.items() if not k.startswith("encoder.")}
    assert dec == decoder_keys(DecoderConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                for k, v in json.loads(meta["config"]).items()}))
    shipped = load_file(os.path.join(MODELS, "taehv.safetensors"))
    exported = load_file(str(path))
    shipped_decoder = [k for k in shipped if k.startswith("decoder.")]       # (the shipped file has its own encoder.*)
    assert shipped_decoder and all(torch.equal(shipped[k], exported[k]) for k in shipped_decoder)   # decoder untouched
    assert all(v.dtype == torch.float32 for v in exported.values())
    assert json.loads(meta["encoder_config"])["time_downscale"] == [2, 2, 1]
    r = json.load(open(out / "report.json"))["encoder"]
    ev = r["eval"]["dit_samples"]
    assert ev["trained"]["latent_relative_error"] < 0.97 * ev["untrained"]["latent_relative_error"], ev
    assert ev["trained"]["psnr_roundtrip_vs_dit_frames"] > ev["untrained"]["psnr_roundtrip_vs_dit_frames"], ev
    assert "reconstruction_only" in r["eval"]["rendered"] and r["training"]["steps"] == 40
