"""Speed of the LongLive 2.0 reference code (NVlabs/LongLive main), for side-by-side ratios with `reel bench
--model 5b`.

What runs, all of it the reference's own code from the checkout given by --longlive (unmodified; what is replaced
in-process is listed in tools/fixtures/dit/longlive2_shim.py):
- the model: `CausalWanModel` (wan_5b/modules/causal_model.py) in the Wan2.2-TI2V-5B configuration that
  `WanDiffusionWrapper` loads with `from_pretrained` (model_type ti2v, dim 3072, ffn 14336, 24 heads of 128,
  30 layers, 48 latent channels in and out, patch 1x2x2, freq_dim 256, text 4096 x 512, qk-norm, cross-attention
  norm, eps 1e-6; local_attn_size 32, sink_size 0, num_frame_per_block 8 as the wrapper passes them), built with
  the model's own init_weights (random weights) and cast to bf16, as inference.py casts the pipeline;
- wrapped by the reference's `WanDiffusionWrapper` (its `_call_model` / `forward`, flow -> x0 conversion) with the
  attributes its __init__ sets (built without `from_pretrained`);
- the loop: `CausalDiffusionInferencePipeline.inference` (pipeline/causal_diffusion_inference.py) configured from the
  shipped configs/inference.yaml (8 latent frames a block, local_attn_size 32, sink 8, multi-shot sink with RoPE
  offset 8, UniPC 4 steps with shift 5, guidance 1.0 so no CFG, streaming_vae false), only the latent size set
  (704x1280 -> latents 44x80, 880 tokens a latent frame, the config's own; --tiny: a small one). Each block: 4 UniPC
  steps over the KV cache + the clean pass at t = 0, as the loop does it.
- eager PyTorch as inference.py runs by default (`torch_compile` is unset in inference.yaml).

Bypassed / replaced:
- the text encoder (umT5-XXL): a stand-in returns, per prompt, a random [512, 4096] bf16 context whose first
  --prompt-tokens rows are random and the rest zero (WanTextEncoder's contract: padding rows zeroed, all 512 rows
  attended since context_lens is None). The loop encodes every block's prompt before the first block
  (`encode_prompt_blocks`), so a prompt switch costs the loop nothing but its scene-cut bookkeeping.
- the LoRA (rank 128, PEFT): not applied. inference.py's default (`merge_lora` false) runs it unmerged through
  PEFT, which adds two thin GEMMs per linear; Reel merges LoRA into the weights at load, so both sides here run the
  base weights only.
- attention: flash-attn where it imports (the reference's own `flash_attention`); otherwise PyTorch SDPA on
  [B, L, heads, d] with no mask (the shim; every inference call passes no lengths). Printed.
- RoPE and adaLN: the reference's Triton kernels (utils/rope_triton.py, utils/adaln_triton.py, its defaults) when
  running on CUDA and `triton` imports; the reference's eager paths (LLV2_TRITON_ROPE=0, LLV2_TRITON_ADALN=0) with
  --eager, on the CPU, or without Triton. Printed.
- decoding (--decode): the Wan2.2 VAE (`WanVAE_` of wan_5b/modules/vae2_2.py in `_video_vae`'s configuration:
  z 48, dim 160, decoder dim 256, [1, 2, 4, 4], temporal upsampling [True, True, False]) with random weights in bf16
  inside the reference's `WanVAEWrapper.decode_to_pixel`, called by the loop as inference.yaml configures it:
  `streaming_vae: false`, so the whole latent video is decoded after the last block (the VAE's `decode`: causal,
  one latent frame at a time through its feature cache). The main branch has no per-block decode for the Wan2.2
  VAE: `streaming_vae: true` calls `vae.model.cached_decode`, which only the MG-LightVAE wrapper defines
  (utils/lightvae_5b_wrapper.py); `WanVAE_` has none. Decoding frame by frame with a carried cache costs the same per
  latent frame whether it runs per block or at the end, so "decode per block" below is the decode time / blocks.

Measured (CUDA events on the default stream; on the CPU wall clock):
- the DiT time of each block: from the block's start (the loop creates its UniPC scheduler) to the next block's
  start, or to the end of the loop for the last block; includes the wrapper's per-call .item() syncs, the
  scheduler and the KV-cache bookkeeping. Steady state: median over blocks --warmup.. except the scene-cut block,
  as `reel bench` counts it. DiT-only FPS = 32 video frames / steady block time (8 latent frames give 32 frames
  through the Wan2.2 VAE's 4x temporal stride; the first block gives 29, i.e. 4F - 3 frames for F latent frames,
  inference.py's `(num_output_frames - 1) * 4 + 1`).
- first block latency: from just before `inference()` to the end of block 0, in the measured call (kernels warm)
  and in the first call of the process (cold: Triton autotune, cuBLAS/cuDNN handles, allocator growth).
- the scene cut (a prompt switch whose text starts with "The scene transitions. "): that block's time minus the
  steady median (the loop applies the shot RoPE offset and pins the block as the shot's sink).
- peak GPU memory: torch.cuda.max_memory_allocated over the measured call (weights, KV cache, activations), and
  with --decode also at the start of the decode.
- with --decode: the decode of the whole video, per block and per latent frame, and end-to-end FPS two ways:
  steady (32 frames / (steady DiT block + decode per block)) and the whole call (4F - 3 frames / the call's time).

The checkout (git-ignored, never committed), from the repository root:
  G=/work/.mirror/NVlabs+LongLive/repo; mkdir -p .ref/LongLive2
  git --git-dir=$G archive main | tar -x -C .ref/LongLive2 --exclude=assets
  git --git-dir=$G rev-parse main > .ref/LongLive2/COMMIT        # printed with the figures

Usage (GPU machine, repository root; diffusers and omegaconf must import: the GPU image lacks them, carry the wheels
as scripts/gpu/longlive2_side_by_side.sh says, which also runs `reel bench` beside this):
  python3 tools/gpu/longlive2_speed.py --longlive .ref/LongLive2 [--blocks 10 --warmup 4 --switch-block 6] [--decode]
  python3 tools/gpu/longlive2_speed.py --longlive .ref/LongLive2 --tiny --device cpu [--decode]   # a CPU smoke test
"""
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the loop wraps each block's steps in tqdm; before anything imports it
import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--longlive", required=True, help="an export of NVlabs/LongLive main")
ap.add_argument("--blocks", type=int, default=10, help="blocks of 8 latent frames in the measured call (as reel bench)")
ap.add_argument("--warmup", type=int, default=4, help="leading blocks left out of the steady state (reel bench's)")
ap.add_argument("--switch-block", type=int, default=6, help="block that starts a scene cut to a second prompt; 0: none")
ap.add_argument("--warmup-call-blocks", type=int, default=5, help="blocks of the untimed first call; 0: none")
ap.add_argument("--decode", action="store_true", help="also decode with the Wan2.2 VAE, as inference.yaml does")
ap.add_argument("--prompt-tokens", type=int, default=32, help="real (non-zero) rows of each 512-row context")
ap.add_argument("--device", default="cuda")
ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
ap.add_argument("--eager", action="store_true", help="the reference's eager RoPE/adaLN instead of its Triton kernels")
ap.add_argument("--sdpa", action="store_true", help="PyTorch SDPA even where flash-attn imports")
ap.add_argument("--tiny", action="store_true", help="a tiny random configuration (2 layers, dim 128, latents 8x8)")
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
assert args.blocks >= 2 and 0 <= args.warmup < args.blocks and 0 <= args.switch_block < args.blocks

device = torch.device(args.device)
cuda = device.type == "cuda"
dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

# Triton: the reference reads LLV2_TRITON_ROPE / LLV2_TRITON_ADALN when causal_model is imported (default on).
triton_note = ""
use_triton = cuda and not args.eager
if use_triton:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        use_triton, triton_note = False, f" (triton does not import: {exc})"
try:
    import flash_attn  # noqa: F401
    have_flash = True
except Exception:  # noqa: BLE001
    have_flash = False
use_sdpa = args.sdpa or not cuda or not have_flash

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "dit"))
import longlive2_shim  # noqa: E402

causal_model = longlive2_shim.install(args.longlive, eager=not use_triton, sdpa_attention=use_sdpa)
from omegaconf import OmegaConf  # noqa: E402
import utils.config as ll_config  # noqa: E402
from utils.scheduler import FlowMatchScheduler  # noqa: E402
from utils.wan_5b_wrapper import WanDiffusionWrapper, WanVAEWrapper  # noqa: E402
from wan_5b.modules import vae2_2  # noqa: E402
from pipeline.causal_diffusion_inference import CausalDiffusionInferencePipeline  # noqa: E402
from utils.dataset import DEFAULT_SCENE_CUT_PREFIX  # noqa: E402

if use_triton:  # the kernels are imported lazily inside forward: fail here, not mid-run
    import utils.rope_triton  # noqa: E402,F401
    import utils.adaln_triton  # noqa: E402,F401

# --- the model -----------------------------------------------------------------------------------------------
C = 48
if args.tiny:
    dim, ffn, heads, layers, text_dim, lat_h, lat_w = 128, 256, 2, 2, 64, 8, 8
    vae_dim, vae_dec_dim = 8, 16
else:
    dim, ffn, heads, layers, text_dim, lat_h, lat_w = 3072, 14336, 24, 30, 4096, 44, 80
    vae_dim, vae_dec_dim = 160, 256
# The pipeline sizes its caches from this table (the release's entry is the 5B's).
ll_config.wan_default_config["Wan2.2-TI2V-5B"].update(num_heads=heads, head_dim=dim // heads,
                                                       num_transformer_blocks=layers)
torch.manual_seed(args.seed)
t_build = time.perf_counter()
with torch.device(device):
    model = causal_model.CausalWanModel(
        model_type="ti2v", patch_size=(1, 2, 2), text_len=512, in_dim=C, dim=dim, ffn_dim=ffn, freq_dim=256,
        text_dim=text_dim, out_dim=C, num_heads=heads, num_layers=layers, local_attn_size=32, sink_size=0,
        num_frame_per_block=8, qk_norm=True, cross_attn_norm=True, eps=1e-6)
model = model.to(dtype=dtype).eval().requires_grad_(False)
n_params = sum(p.numel() for p in model.parameters())

wrapper = WanDiffusionWrapper.__new__(WanDiffusionWrapper)  # its __init__ loads from wan_models/: set what it sets
nn.Module.__init__(wrapper)
wrapper.model = model
wrapper.model.t_scale, wrapper.model.rope_method, wrapper.model.original_seq_len = 1.0, "linear", None
wrapper.uniform_timestep = False
wrapper.scheduler = FlowMatchScheduler(shift=5.0, sigma_min=0.0, extra_one_step=True)
wrapper.scheduler.set_timesteps(1000, training=True)
wrapper.seq_len = 28160
wrapper._compiled_model_call = None
wrapper.post_init()

vae = object()
if args.decode:
    import utils.wan_5b_wrapper as wan_5b_wrapper  # noqa: E402

    def random_video_vae(pretrained_path=None, **kw):  # stands in for _video_vae, which loads Wan2.2_VAE.pth
        with torch.device(device):
            return vae2_2.WanVAE_(dim=vae_dim, dec_dim=vae_dec_dim, z_dim=C, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                  attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)

    wan_5b_wrapper._video_vae = random_video_vae
    vae = WanVAEWrapper()  # its own __init__: the Wan2.2 latent mean/std, eval, no grad
    vae.model = vae.model.to(dtype=dtype)
    vae_params = sum(p.numel() for p in vae.model.decoder.parameters())


class TextEncoderStandIn:
    """WanTextEncoder's contract: prompt_embeds [n, 512, text_dim], rows past the prompt's tokens zero."""

    def __init__(self):
        self.table = {}

    def __call__(self, text_prompts):
        rows = []
        for text in text_prompts:
            if text not in self.table:
                e = torch.zeros(512, text_dim, device=device, dtype=dtype)
                e[:args.prompt_tokens] = torch.randn(args.prompt_tokens, text_dim, device=device, dtype=dtype)
                self.table[text] = e
            rows.append(self.table[text])
        return {"prompt_embeds": torch.stack(rows)}


cfg = ll_config.normalize_config(OmegaConf.load(os.path.join(args.longlive, "configs", "inference.yaml")))
cfg.image_or_video_shape = [1, 8 * args.blocks, C, lat_h, lat_w]
pipe = CausalDiffusionInferencePipeline(cfg, device, generator=wrapper, text_encoder=TextEncoderStandIn(), vae=vae)
assert pipe.num_frame_per_block == 8 and pipe.local_attn_size == 32 and pipe.sink_size == 8
assert pipe.sampling_steps == 4 and pipe.multi_shot_sink and not pipe.streaming_vae and pipe.guidance_scale == 1.0
if cuda:
    torch.cuda.synchronize()
build_seconds = time.perf_counter() - t_build


# --- timing hooks ---------------------------------------------------------------------------------------------
class Clock:
    def mark(self):
        if cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    @staticmethod
    def seconds(a, b):
        return a.elapsed_time(b) / 1000 if cuda else b - a

    @staticmethod
    def sync():
        if cuda:
            torch.cuda.synchronize()


clock = Clock()
marks = {}
scheduler_factory = pipe._initialize_sample_scheduler


def block_start(noise):  # the loop makes a fresh UniPC scheduler at the start of every block
    marks.setdefault("blocks", []).append(clock.mark())
    return scheduler_factory(noise)


pipe._initialize_sample_scheduler = block_start
if args.decode:
    decode_to_pixel = vae.decode_to_pixel

    def timed_decode(latent, use_cache=False):
        marks["decode_start"] = clock.mark()
        marks["peak_before_decode"] = torch.cuda.max_memory_allocated() if cuda else 0
        out = decode_to_pixel(latent, use_cache=use_cache)
        marks["decode_end"] = clock.mark()
        marks["decoded_frames"] = out.shape[1]
        return out

    vae.decode_to_pixel = timed_decode

first_prompt = "a red fox runs through fresh snow"
second_prompt = "a lighthouse on a cliff at dusk"


def prompts_for(blocks):
    s = args.switch_block
    if s <= 0 or s >= blocks:
        return [first_prompt] * blocks
    return [first_prompt] * s + [DEFAULT_SCENE_CUT_PREFIX + second_prompt] + [second_prompt] * (blocks - s - 1)


def run(blocks, decode):
    g = torch.Generator(device=device).manual_seed(args.seed + blocks)
    noise = torch.randn(1, 8 * blocks, C, lat_h, lat_w, generator=g, device=device, dtype=torch.float32).to(dtype)
    marks.clear()
    clock.sync()
    t0 = clock.mark()
    with torch.no_grad():
        out = pipe.inference(noise, text_prompts=[prompts_for(blocks)], return_latents=not decode)
    end = clock.mark()
    clock.sync()
    starts = marks["blocks"]
    assert len(starts) == blocks, (len(starts), blocks)
    loop_end = marks["decode_start"] if decode else end
    bounds = starts + [loop_end]
    r = {"blocks": [clock.seconds(bounds[i], bounds[i + 1]) for i in range(blocks)],
         "first": clock.seconds(t0, bounds[1]), "total": clock.seconds(t0, end),
         "finite": bool(torch.isfinite(out).all())}
    if decode:
        r["decode"] = clock.seconds(marks["decode_start"], marks["decode_end"])
        r["frames"] = marks["decoded_frames"]
        r["peak_before_decode"] = marks["peak_before_decode"]
    return r, out


def gb(x):
    return x / 1e9


# --- runs ---------------------------------------------------------------------------------------------------
cold = None
if args.warmup_call_blocks > 0:
    cold, latents = run(args.warmup_call_blocks, decode=False)
    if args.decode:  # the VAE's kernels, untimed: one block's latents (first-chunk path + a carried cache)
        with torch.no_grad():
            decode_to_pixel(latents[:, :8])
        clock.sync()
if cuda:
    torch.cuda.reset_peak_memory_stats()
res, _ = run(args.blocks, decode=args.decode)
peak = torch.cuda.max_memory_allocated() if cuda else 0

steady_ids = [b for b in range(args.warmup, args.blocks) if b != args.switch_block or args.switch_block == 0]
per_block = statistics.median(res["blocks"][b] for b in steady_ids)
frames_per_block = 4 * pipe.num_frame_per_block

if cuda:
    where = f"{torch.cuda.get_device_name(device)}"
else:
    where = f"CPU ({torch.get_num_threads()} threads)"
attn = ("flash-attn (the reference's own flash_attention)" if not use_sdpa else
        "PyTorch SDPA" + (" (flash-attn not installed)" if not have_flash else " (--sdpa)"))
rope_adaln = ("Triton kernels (utils/rope_triton.py, utils/adaln_triton.py)" if causal_model._TRITON_ROPE_ENABLED
              and causal_model._TRITON_ADALN_ENABLED else "eager paths (fp64 complex RoPE, nn.LayerNorm adaLN)"
              + (" (--eager)" if args.eager else "") + triton_note)
print("")
commit_file = os.path.join(args.longlive, "COMMIT")
commit = open(commit_file).read().strip()[:12] if os.path.exists(commit_file) else "commit unknown"
print(f"LongLive 2.0 reference ({args.longlive}, {commit}), torch {torch.__version__}, on {where}, "
      f"{args.dtype}, eager PyTorch (no torch.compile), random weights")
print(f"model: CausalWanModel ti2v, {layers} layers, dim {dim}, {heads} heads, ffn {ffn}, {C} channels, "
      f"{n_params / 1e9:.3f} B parameters{' (--tiny)' if args.tiny else ''}; built in {build_seconds:.1f} s")
print(f"geometry: {lat_h * 16}x{lat_w * 16} (latents {lat_h}x{lat_w}, {pipe.frame_seq_length} tokens a latent frame), "
      f"{pipe.num_frame_per_block} latent frames a block, window {pipe.local_attn_size} frames, sink "
      f"{pipe.sink_size}, {pipe.sampling_steps} UniPC steps + clean pass a block")
print(f"attention: {attn}")
print(f"RoPE / adaLN: {rope_adaln}")
print(f"text encoder bypassed: random 512x{text_dim} context, {args.prompt_tokens} non-zero rows; LoRA not applied")
print(f"blocks {args.blocks}, steady blocks {steady_ids}, scene cut at block {args.switch_block or 'none'}; "
      f"untimed first call {args.warmup_call_blocks} blocks")
print("DiT ms per block: " + " ".join(f"{s * 1000:.0f}" for s in res["blocks"]))
print(f"output latents finite: {res['finite']}")
print("")
print(f"DiT per block (8 latent frames): {per_block * 1000:.1f} ms")
print(f"DiT-only FPS (24 fps video, {frames_per_block} frames a block): {frames_per_block / per_block:.2f} fps")
print(f"first block latency (warm, measured call): {res['first'] * 1000:.1f} ms")
if cold is not None:
    print(f"first block latency (cold, first call of the process): {cold['first'] * 1000:.1f} ms")
if args.switch_block:
    cut = res["blocks"][args.switch_block]
    print(f"scene-cut block {args.switch_block}: {cut * 1000:.1f} ms "
          f"(prompt switch cost {1000 * (cut - per_block):+.1f} ms "
          f"against the steady block; prompts are encoded before the loop)")
if cuda:
    print(f"peak GPU memory (max_memory_allocated, measured call): {gb(peak):.2f} GB")
if args.decode:
    n_lat = 8 * args.blocks
    decode_per_block = res["decode"] / args.blocks
    print(f"Wan2.2 VAE decoder: {vae_params / 1e6:.1f} M parameters, whole video of {n_lat} latent frames decoded "
          f"after the loop (inference.yaml streaming_vae false) -> {res['frames']} frames")
    print(f"decode per block (whole-video decode / {args.blocks}): {decode_per_block * 1000:.1f} ms")
    print(f"decode per latent frame: {res['decode'] / n_lat * 1000:.1f} ms")
    print(f"end-to-end FPS (steady: {frames_per_block} / (DiT block + decode per block)): "
          f"{frames_per_block / (per_block + decode_per_block):.2f} fps")
    print(f"end-to-end FPS (whole call: {res['frames']} frames / {res['total']:.2f} s): "
          f"{res['frames'] / res['total']:.2f} fps")
    if cuda:
        print(f"peak GPU memory before the decode: {gb(res['peak_before_decode']):.2f} GB")
