"""Speed of the LongLive v1.0 reference code on this GPU, for side-by-side ratios with `reel bench`.

Random weights of the real Wan2.1-T2V-1.3B causal model in bf16, 480x832, LongLive's own
CausalInferencePipeline (4 steps + clean pass per 3-frame block, 12-frame cache with a 3-frame sink),
SDPA attention (flash-attn is not installed). The text encoder is bypassed (a random 512-token
embedding) and nothing is decoded: the figures are the DiT's alone.

Usage (on the GPU machine): python3 tools/gpu/longlive_speed.py --longlive .ref/LongLive [--blocks 12]
"""
import argparse
import os
import sys
import time
import types

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--longlive", required=True)
ap.add_argument("--blocks", type=int, default=12)
args = ap.parse_args()
device = torch.device("cuda")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "dit"))
import longlive_shim  # noqa: E402

causal_model = longlive_shim.install(args.longlive, device)
from utils.scheduler import FlowMatchScheduler  # noqa: E402
from utils.wan_wrapper import WanDiffusionWrapper  # noqa: E402
from pipeline.causal_inference import CausalInferencePipeline  # noqa: E402

torch.manual_seed(0)
model = causal_model.CausalWanModel(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=1536,
                                    ffn_dim=8960, freq_dim=256, text_dim=4096, out_dim=16, num_heads=12,
                                    num_layers=30, local_attn_size=12, sink_size=3, qk_norm=True,
                                    cross_attn_norm=True, eps=1e-6).to(device, torch.bfloat16).eval()
wrapper = WanDiffusionWrapper.__new__(WanDiffusionWrapper)
torch.nn.Module.__init__(wrapper)
wrapper.model = model
wrapper.uniform_timestep = False
wrapper.scheduler = FlowMatchScheduler(shift=5.0, sigma_min=0.0, extra_one_step=True)
wrapper.scheduler.set_timesteps(1000, training=True)
wrapper.seq_len = 32760
emb = torch.randn(1, 512, 4096, device=device, dtype=torch.bfloat16)


class Encoder:
    def __call__(self, text_prompts):
        return {"prompt_embeds": emb}


class NoDecode:
    def decode_to_pixel(self, latent, use_cache=False):
        return latent


cfg = types.SimpleNamespace(denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=3,
                            model_kwargs=types.SimpleNamespace(local_attn_size=12, timestep_shift=5.0, sink_size=3),
                            context_noise=0)
pipe = CausalInferencePipeline(cfg, device, generator=wrapper, text_encoder=Encoder(), vae=NoDecode())


def run(blocks):
    noise = torch.randn(1, 3 * blocks, 16, 60, 104, device=device, dtype=torch.bfloat16)
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.no_grad():
        pipe.inference(noise, ["p"], return_latents=True)
    torch.cuda.synchronize()
    return time.perf_counter() - t


run(2)  # warm-up: kernels, allocator
torch.cuda.reset_peak_memory_stats()
short, long = run(4), run(4 + args.blocks)
per_block = (long - short) / args.blocks
print(f"LongLive v1.0 reference, H100 bf16 SDPA: steady-state {per_block * 1000:.0f} ms per block "
      f"= {12 / per_block:.1f} FPS DiT-only; first 4 blocks {short * 1000:.0f} ms; "
      f"peak memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB")
