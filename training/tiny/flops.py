"""FLOPs per video frame of the tiny model on Reel's inference path, against a 2-core CPU budget.

    python3 -m training.tiny.flops

Counts multiply-adds as 2 FLOPs, steady state (a full window), one prompt (cross-attention K/V are
computed once per prompt and cached, so they are not counted), recache not counted (one extra
12-frame forward per prompt switch).
"""
from .config import TinyConfig


def dit_forward_flops(c, tokens_q: int, tokens_k: int, text_len: int) -> dict:
    d, f = c.dim, c.ffn
    linear = 2 * tokens_q * (4 * d * d + 2 * d * d + 2 * d * f)       # self q,k,v,o + cross q,o + ffn
    self_attn = 4 * tokens_q * tokens_k * d                            # QK^T and PV
    cross_attn = 4 * tokens_q * text_len * d
    per_layer = {"linear": linear, "self_attention": self_attn, "cross_attention": cross_attn}
    total = {k: v * c.layers for k, v in per_layer.items()}
    total["embed_head"] = 2 * tokens_q * (c.in_channels * c.patch ** 2 * d + d * c.out_channels * c.patch ** 2)
    return total


def decoder_flops_per_latent(channels, latent_hw: int, z: int = 16) -> int:
    """TAEHV decoder (3 MemBlocks per stage, nearest x2 + TGrow [1, 2, 2] + conv between stages)."""
    c0, c1, c2, c3 = channels
    hw = latent_hw * latent_hw
    conv = lambda cin, cout, pixels, frames: 2 * 9 * cin * cout * pixels * frames   # noqa: E731
    mem = lambda c, pixels, frames: 3 * (conv(2 * c, c, pixels, frames) + 2 * conv(c, c, pixels, frames))  # noqa: E731
    total = conv(z, c0, hw, 1) + mem(c0, hw, 1)
    total += 2 * c0 * c0 * 4 * hw + conv(c0, c1, 4 * hw, 1) + mem(c1, 4 * hw, 1)          # stage 0 -> 1 (TGrow x1)
    total += 2 * c1 * 2 * c1 * 16 * hw + conv(c1, c2, 16 * hw, 2) + mem(c2, 16 * hw, 2)   # TGrow x2
    total += 2 * c2 * 2 * c2 * 64 * hw + conv(c2, c3, 64 * hw, 4) + conv(c3, 3, 64 * hw, 4)
    return total


def report(cfg: TinyConfig = TinyConfig(), gflops_per_s: float = 50.0) -> dict:
    v, s, d = cfg.video, cfg.schedule, cfg.dit
    n = (v.latent_size // d.patch) ** 2                   # tokens per latent frame
    q = s.frames_per_block * n
    k = s.attention_frames * n
    fwd = dit_forward_flops(d, q, k, d.text_len)
    forward = sum(fwd.values())
    forwards_per_block = len(s.steps) + 1                  # 4 steps + clean pass (the clean pass skips the last layer's output)
    video_frames_per_block = s.frames_per_block * v.temporal_stride
    dit_per_frame = forward * forwards_per_block / video_frames_per_block
    dec_per_frame = decoder_flops_per_latent(cfg.decoder.channels, v.latent_size) / v.temporal_stride
    total = dit_per_frame + dec_per_frame
    return {"tokens_per_latent_frame": n, "dit_forward_gflop": forward / 1e9,
            "dit_forward_parts_gflop": {k2: v2 / 1e9 for k2, v2 in fwd.items()},
            "dit_gflop_per_video_frame": dit_per_frame / 1e9, "decoder_gflop_per_video_frame": dec_per_frame / 1e9,
            "total_gflop_per_video_frame": total / 1e9,
            f"fps_at_{gflops_per_s:g}_gflops": gflops_per_s * 1e9 / total}


if __name__ == "__main__":
    import json
    for rate in (50.0, 100.0):
        print(json.dumps(report(gflops_per_s=rate), indent=1))
