"""The packed training forward computes exactly what Reel's sequential streaming passes compute."""
import numpy as np
import torch

from training.tiny.config import DiTConfig
from training.tiny.dit import RingCache, WanDiT
from training.tiny.views import CLEAN, NOISY, RECACHE, collate, layout, view_passes


def run_both(P, run_blocks, switch_at, prompts):
    torch.manual_seed(0)
    c = DiTConfig(dim=64, ffn=96, heads=1, layers=2, text_dim=16)
    dit = WanDiT(c).eval()
    for p in dit.parameters():
        p.data.normal_(0, 0.2)
    lay = layout(view_passes(P, run_blocks, switch_at, prompts), P)
    E = len(lay.kind)
    h = w = 4
    x = torch.randn(E, 16, h, w)
    t = torch.where(torch.as_tensor(lay.kind) == NOISY, torch.rand(E) * 1000, torch.zeros(E))
    # one timestep per pass
    for pid in np.unique(lay.pass_id):
        idx = np.nonzero(lay.pass_id == pid)[0]
        t[idx] = float(t[idx[0]])
    texts = torch.randn(3, 7, 16)
    with torch.no_grad():
        packed = dit.forward_packed(x[None], t[None], torch.as_tensor(lay.frame)[None], torch.as_tensor(lay.prompt)[None],
                                    texts[None], torch.as_tensor(lay.mask)[None])[0]
        cache = RingCache(c.layers, (h // 2) * (w // 2), c.heads, c.dim // c.heads)
        kvs = [dit.prompt_kv(texts[i]) for i in range(3)]
        seq = torch.zeros_like(packed)
        for pid in np.unique(lay.pass_id):
            idx = np.nonzero(lay.pass_id == pid)[0]
            out = dit.forward_cached(x[idx], float(t[idx[0]]), int(lay.frame[idx[0]]), kvs[int(lay.prompt[idx[0]])], cache)
            seq[idx] = out
    return lay, packed, seq


def check(P, run_blocks, switch_at, prompts=(0, 0, 1)):
    lay, packed, seq = run_both(P, run_blocks, switch_at, prompts)
    noisy = lay.kind == NOISY
    err = ((packed[noisy] - seq[noisy]) ** 2).mean() / (seq[noisy] ** 2).mean()
    assert err < 1e-10, err


def test_packed_equals_sequential_without_switch():
    check(3, 5, None)               # the window rolls from block 4 on (frames 0-2 stay as the sink)


def test_packed_equals_sequential_with_recache_rewriting_the_sink():
    check(3, 5, 9)                  # s = 9 <= 12: the recache pass covers frames 0..8, sink included


def test_packed_equals_sequential_with_recache_keeping_the_sink():
    check(3, 6, 15, prompts=(0, 1, 2))   # s = 15: frames 6..14 recached, old sink kept


def test_far_view_layout():
    P = 3 * 500
    lay = layout(view_passes(P, 6, P + 12, (0, 1, 2)), P)
    first_run = np.nonzero(lay.frame == P)[0][0]
    assert lay.mask[first_run, :3].sum() == 0 and lay.mask[first_run, 3:6].all()  # sees the sink's clean pass
    assert not lay.loss[(lay.frame >= P) & (lay.frame < P + 6)].any()              # warm-up blocks
    assert lay.loss[(lay.kind == NOISY) & (lay.frame >= P + 6)].all()
    # every query sees at most sink + window (12 frames)
    assert lay.mask.sum(1).max() <= 12
    assert (lay.kind == RECACHE).sum() == 9


def test_collate_pads_with_self_attending_entries():
    a = layout(view_passes(3, 2, None, (0, 0, 0)), 3)
    b = layout(view_passes(3, 4, 6, (0, 0, 1)), 3)
    out = collate([a, b])
    assert out["mask"].shape[1] == len(b.kind)
    assert out["mask"][0].any(1).all() and not out["loss"][0, len(a.kind):].any()
