"""A few CPU iterations of each recipe at toy sizes: losses go down; export writes what Reel binds."""
import dataclasses
import json
import os

import numpy as np
import torch
from safetensors import safe_open

from training.tiny.dataset import ae_clip, sample_view
from training.tiny.decoder import Encoder
from training.tiny.dit import WanDiT
from training.tiny.export import decoder_keys, dit_keys, export, text_keys
from training.tiny.tokenizer import Tokenizer
from training.tiny.train import Clock, dit_step, encode_views, object_cells, self_context_sources, toy_config, train_autoencoder
from training.tiny.views import CLEAN, NOISY, RECACHE, collate
from training.tiny.umt5 import UMT5Encoder

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(ROOT, "Models", "tiny")


def config():
    base = toy_config()
    return dataclasses.replace(base, text=dataclasses.replace(base.text, vocabulary=Tokenizer(MODELS).vocabulary))


def test_autoencoder_loss_goes_down():
    torch.manual_seed(0)
    cfg = config()
    clips = [ae_clip(s, latents=2, frame_size=cfg.video.frame_size) for s in range(2)]
    _, _, stats = train_autoencoder(cfg, clips, 2, Clock(None, 30), torch.device("cpu"), 2, None)
    assert stats["loss_last10"] < 0.75 * stats["loss_first"], stats


def test_dit_and_text_encoder_loss_goes_down():
    torch.manual_seed(0)
    cfg = config()
    dev = torch.device("cpu")
    views = [sample_view(s, run_blocks=3, frame_size=cfg.video.frame_size) for s in (0, 5)]
    latents = encode_views(views, Encoder(cfg.encoder).eval(), cfg, dev)
    latents = latents / latents.float().std()
    dit, t5 = WanDiT(cfg.dit), UMT5Encoder(cfg.text)
    tok = Tokenizer(MODELS)
    opt = torch.optim.AdamW(list(dit.parameters()) + list(t5.parameters()), lr=2e-3)
    losses = []
    for step in range(30):
        g = torch.Generator().manual_seed(step % 3)          # the same 3 noise draws, cycled
        loss = dit_step(dit, t5, tok, views, latents, [0, 1], cfg.schedule, dev, g, torch.Generator().manual_seed(step % 3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses


def test_self_context_sources_point_at_the_pass_that_made_the_frame():
    views = [sample_view(s, run_blocks=4) for s in range(40)]
    lay = collate([v["layout"] for v in views])
    src = self_context_sources(lay)
    mapped = 0
    for b in range(len(views)):
        for e in np.flatnonzero((lay["kind"][b] == CLEAN) | (lay["kind"][b] == RECACHE)):
            j = src[b, e]
            if j < 0:                    # only the warm-up blocks of far views lack a trained maker
                assert views[b]["P"] > 3 and not any(lay["loss"][b][(lay["kind"][b] == NOISY) & (lay["frame"][b] == lay["frame"][b, e])])
                continue
            assert lay["kind"][b, j] == NOISY and lay["loss"][b, j] and lay["frame"][b, j] == lay["frame"][b, e]
            mapped += 1
    assert mapped > 500


def test_self_context_rounds_run_and_change_the_loss():
    torch.manual_seed(0)
    cfg = config()
    dev = torch.device("cpu")
    views = [sample_view(s, run_blocks=3, frame_size=cfg.video.frame_size, p_contiguous=1.0) for s in (0, 5)]
    latents = encode_views(views, Encoder(cfg.encoder).eval(), cfg, dev)
    dit, t5, tok = WanDiT(cfg.dit), UMT5Encoder(cfg.text), Tokenizer(MODELS)
    with torch.no_grad():                # the head starts at zero: v = 0 whatever the context
        for p in dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    losses = [dit_step(dit, t5, tok, views, latents, [0, 1], cfg.schedule, dev, torch.Generator().manual_seed(1),
                       torch.Generator().manual_seed(1), self_rounds=r).item() for r in (0, 1, 2)]
    assert all(np.isfinite(losses)) and losses[0] != losses[1] != losses[2], losses


def test_object_cells_cover_the_object_on_the_torus():
    # A disc of radius 10 at the centre of a 128-pixel frame (grid 16: cells of 8 pixels), and one that
    # straddles the left edge; the second frame's disc is absent.
    objects = torch.tensor([[[64, 64, 10, 1], [0, 0, 0, 0]], [[2, 64, 10, 1], [2, 64, 10, 0]]], dtype=torch.float32)
    cells = object_cells(objects, 16, 128)
    assert cells[0, 8, 8] == 1 and cells[0, 7, 7] == 1 and cells[0, 0, 0] == 0 and cells[0, 8, 11] == 0
    assert cells[1, 8, 0] == 1 and cells[1, 8, 15] == 1 and cells[1, 8, 4] == 0       # wraps around
    assert 4 <= cells[0].sum() <= 16


def test_object_weight_changes_the_loss():
    torch.manual_seed(0)
    cfg = config()
    dev = torch.device("cpu")
    views = [sample_view(s, run_blocks=3, frame_size=cfg.video.frame_size, p_contiguous=1.0) for s in (0, 5)]
    assert views[0]["objects"].shape == (len(views[0]["latent_frames"]), 2, 4)
    latents = encode_views(views, Encoder(cfg.encoder).eval(), cfg, dev)
    dit, t5, tok = WanDiT(cfg.dit), UMT5Encoder(cfg.text), Tokenizer(MODELS)
    losses = [dit_step(dit, t5, tok, views, latents, [0, 1], cfg.schedule, dev, torch.Generator().manual_seed(1),
                       torch.Generator().manual_seed(1), object_weight=w).item() for w in (0.0, 4.0)]
    assert all(np.isfinite(losses)) and losses[0] != losses[1], losses


def test_export_has_the_keys_reel_binds(tmp_path):
    cfg = config()
    dit, t5 = WanDiT(cfg.dit), UMT5Encoder(cfg.text)
    from training.tiny.decoder import Decoder
    files = export(str(tmp_path), dit, t5, Decoder(cfg.decoder), metadata={"command": "test"})
    for name, expected in (("dit", dit_keys(cfg.dit)), ("text_encoder", text_keys(cfg.text)),
                           ("decoder", decoder_keys(cfg.decoder))):
        with safe_open(files[name], "pt") as f:
            assert {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()} == expected
            meta = f.metadata()
        if name == "dit":
            assert meta["heads"] == str(cfg.dit.heads) and json.loads(meta["config"])["dim"] == cfg.dit.dim


def test_full_size_weights_fit_the_budget():
    from training.tiny.config import TinyConfig
    cfg = TinyConfig()
    n = sum(int(np.prod(s)) for s in dit_keys(cfg.dit).values())
    n += sum(int(np.prod(s)) for s in text_keys(dataclasses.replace(cfg.text, vocabulary=400)).values())
    n += sum(int(np.prod(s)) for s in decoder_keys(cfg.decoder).values())
    assert n * 4 <= 40e6, n            # float32


def test_shipped_tokenizer():
    import sentencepiece as spm
    import tokenizers
    from training.tiny.tokenizer import corpus
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODELS, "spiece.model"))
    hf = tokenizers.Tokenizer.from_file(os.path.join(MODELS, "tokenizer.json"))
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    for text in corpus(300, seed=5):
        ids = sp.encode(text)
        assert ids + [1] == hf.encode(text).ids
        assert len(ids) == len(text.split())                   # one piece per word of the grammar
