"""The video-to-video fine-tune's data and attention rule (training/tiny/v2v_train.py)."""
import numpy as np

from training.data.scenes import COLOUR_NAMES
from training.tiny.v2v_train import attends, sdv2_grid, sigma_of, v2v_clip, v2v_mask


def test_pairs_share_the_trajectory_and_differ_in_what_they_say():
    changed = 0
    for seed in range(40):
        c = v2v_clip(seed, latents=4, frame_size=128)
        s, t = c["source"], c["target"]
        for k in ("centre", "radius", "shape", "present"):
            assert np.array_equal(s[k], t[k]), k
        colour_changed = not np.array_equal(s["colour"], t["colour"])
        bg_changed = not np.array_equal(s["background"], t["background"])
        changed += colour_changed or bg_changed
        assert COLOUR_NAMES[int(t["colour"][0])] in c["caption"]
        # The source's object never takes a background colour of its own frame.
        assert int(s["colour"][0]) not in set(s["background"][0].tolist())
    assert 25 <= changed <= 40          # 15% of pairs keep the input as it is


def test_attention_follows_streamdiffusionv2s_cache():
    L = 2
    # The first block (frames 0-1) is one pass: each level sees its own frames 0-1 only.
    assert attends((0, 1), (0, 0), L, True) and not attends((0, 1), (1, 0), L, True)
    # Later frames see the first block's last-step keys, in every level's row.
    assert attends((0, 5), (1, 0), L, True) and not attends((0, 5), (0, 0), L, True)
    # Their own level's recent frames and themselves, nothing later, no other level.
    assert attends((0, 5), (0, 2), L, True) and attends((0, 5), (0, 5), L, True)
    assert not attends((0, 5), (0, 6), L, True) and not attends((0, 5), (1, 4), L, True)
    # Ring: slot 2 rotates (frames f-3..f); otherwise frame 2 stays and the window is f-2..f.
    assert not attends((0, 8), (0, 2), L, True) and attends((0, 8), (0, 5), L, True)
    assert attends((0, 8), (0, 2), L, False) and not attends((0, 8), (0, 5), L, False)
    m = v2v_mask(6, L)
    assert m.shape == (12, 12) and m.diagonal().all()


def test_sigmas_are_streamdiffusionv2s():
    t, _ = sdv2_grid()
    assert len(t) == 1000
    # docs/streamdiffusionv2.md section 3.
    for step, sigma in ((700, 0.700232), (500, 0.499719), (400, 0.400260), (200, 0.198347)):
        assert abs(sigma_of(step) - sigma) < 1e-6
