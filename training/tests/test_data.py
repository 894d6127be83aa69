"""The synthetic data generator: determinism, grammar, switches, motion rules, renderers, checker."""
import numpy as np
import pytest
import torch

from training.data import MOTIONS, SHAPES, SIZES, caption, make_clip, render
from training.data.checks import object_metrics
from training.data.scenes import COLOUR_NAMES, Segment, latent_to_video, sample_attributes, simulate


def test_deterministic_by_seed():
    a, b, c = make_clip(7, frames=49, switches=2), make_clip(7, frames=49, switches=2), make_clip(8, frames=49, switches=2)
    assert a.prompts == b.prompts and a.switch_frames == b.switch_frames
    for k in a.truth:
        np.testing.assert_array_equal(a.truth[k], b.truth[k])
    assert a.prompts != c.prompts or not np.array_equal(a.truth["centre"], c.truth["centre"])
    np.testing.assert_array_equal(render(a.truth), render(b.truth))


def test_captions_follow_the_grammar():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = sample_attributes(rng, empty_prob=0.1)
        text = caption(a)
        assert text.endswith(" background")
        if a.empty:
            assert text.startswith("an empty ")
            continue
        assert text.startswith("a ") and f" {a.colour} {a.shape} {a.motion}" in text
        assert a.colour not in a.background


def test_switches_change_one_attribute_at_aligned_frames():
    for seed in range(30):
        clip = make_clip(seed, frames=97, switches=2)
        assert len(clip.prompts) == len(clip.switch_frames) + 1
        for i, f in enumerate(clip.switch_frames):
            assert (f + 3) % 12 == 0 and f >= 9                 # video frame 4s-3, s a multiple of 3
            assert clip.truth["prompt"][f] == i + 1 and clip.truth["prompt"][f - 1] == i
            a, b = clip.attributes[i], clip.attributes[i + 1]
            changed = [k for k in ("shape", "colour", "size", "background") if getattr(a, k) != getattr(b, k)]
            changed += ["motion"] if (a.motion, a.speed) != (b.motion, b.speed) else []
            assert len(changed) == 1 and changed[0] == clip.switch_kinds[i]


def test_no_jump_at_switches_and_motion_rules():
    size = 128
    for seed in range(40):
        clip = make_clip(seed, frames=193, switches=3, random_start=True)
        c, v = clip.truth["centre"], clip.truth["velocity"]
        step = np.abs(np.diff(c, axis=0))
        step = np.minimum(step, size - step)                        # wrap-around is continuous on the torus
        assert step.max() <= 2.5 * 1.0001 + 1e-4, (seed, step.max())
        for i, a in enumerate(clip.attributes):
            rows = clip.truth["prompt"] == i
            mode, direction = MOTIONS[a.motion]
            if mode == "wrap":                                      # the caption's direction always holds
                assert np.all(np.sign(v[rows]) == np.sign(direction))
            if mode == "bounce":                                    # stays inside the walls
                r = SIZES[a.size] * size
                moving = [k for k in range(2) if direction[k] != 0]
                assert np.all(c[rows][:, moving] >= r - 1e-3) and np.all(c[rows][:, moving] <= size - r + 1e-3)
            if mode == "still":
                assert np.all(v[rows] == 0)


def test_closed_form_agrees_with_frame_stepping():
    clip = make_clip(3, frames=400, switches=3, aligned=False, random_start=True)
    timeline = [Segment(0, clip.attributes[0])] + [Segment(f, a) for f, a in zip(clip.switch_frames, clip.attributes[1:])]
    far = simulate(timeline, np.array([399, 10, 200]), 128, start=clip.truth["centre"][0])
    np.testing.assert_allclose(far["centre"], clip.truth["centre"][[399, 10, 200]], atol=1e-4)


def test_numpy_and_torch_renderers_agree():
    clip = make_clip(11, frames=25, switches=1, random_start=True)
    a = render(clip.truth).astype(np.float32)
    b = render(clip.truth, device="cpu").numpy() * 255
    assert np.abs(a - b).max() <= 0.5 + 1e-3


def test_checker_on_ground_truth_frames():
    for seed in range(15):
        clip = make_clip(seed, frames=49, switches=2, random_start=True)
        m = object_metrics(render(clip.truth), clip.truth, clip.frame_size)
        assert np.nanmax(m["centre_error"]) < 1.0
        assert m["found"][clip.truth["present"]].all()


def test_latent_frame_mapping():
    assert list(latent_to_video(0)) == [0]
    assert list(latent_to_video(1)) == [1, 2, 3, 4] and list(latent_to_video(3)) == [9, 10, 11, 12]
