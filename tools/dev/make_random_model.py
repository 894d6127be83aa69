"""A model folder with random weights of Reel's architectures, for smoke runs of `reel generate`.

The video it makes is noise-like (nothing is trained); it exercises the whole path: tokenizer ->
umT5 -> causal Wan DiT with KV cache and recache -> TAEHV tiny decoder -> video file.
Uses the tokenizer and TAEHV fixtures of the test suite.

Usage: python3 tools/dev/make_random_model.py --out /tmp/random-model [--dim 64 --layers 2]
"""
import argparse
import json
import math
import os
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--dim", type=int, default=64)
ap.add_argument("--heads", type=int, default=2)
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--text-dim", type=int, default=32)
args = ap.parse_args()
torch.manual_seed(0)
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
fixtures = os.path.join(root, "Tests", "ReelModelsTests", "Fixtures")
os.makedirs(args.out, exist_ok=True)


def rand(*shape, fan_in=None):
    return torch.randn(*shape) / math.sqrt(fan_in or shape[-1])


# Tokenizer (SentencePiece unigram, 3000 pieces) from the tokenizer parity fixture.
tok = os.path.join(fixtures, "tokenizer", "nfkc", "tokenizer.json")
shutil.copy(tok, os.path.join(args.out, "tokenizer.json"))
vocab = len(json.load(open(tok))["model"]["vocab"])

# umT5 encoder, Wan's key layout.
d, heads, hd, ffn = args.text_dim, 4, args.text_dim // 4, 2 * args.text_dim
t5 = {"token_embedding.weight": torch.randn(vocab, d), "norm.weight": torch.ones(d)}
for i in range(2):
    p = f"blocks.{i}."
    t5.update({p + "norm1.weight": torch.ones(d), p + "norm2.weight": torch.ones(d),
               p + "attn.q.weight": rand(heads * hd, d), p + "attn.k.weight": rand(heads * hd, d),
               p + "attn.v.weight": rand(heads * hd, d), p + "attn.o.weight": rand(d, heads * hd),
               p + "pos_embedding.embedding.weight": torch.randn(32, heads),
               p + "ffn.gate.0.weight": rand(ffn, d), p + "ffn.fc1.weight": rand(ffn, d),
               p + "ffn.fc2.weight": rand(d, ffn)})
save_file(t5, os.path.join(args.out, "text_encoder.safetensors"))

# Causal Wan DiT, Wan's key layout.
D, F = args.dim, 2 * args.dim
dit = {"patch_embedding.weight": 0.05 * rand(D, 16, 1, 2, 2, fan_in=64), "patch_embedding.bias": torch.zeros(D),
       "text_embedding.0.weight": rand(D, d), "text_embedding.0.bias": torch.zeros(D),
       "text_embedding.2.weight": rand(D, D), "text_embedding.2.bias": torch.zeros(D),
       "time_embedding.0.weight": rand(D, 256), "time_embedding.0.bias": torch.zeros(D),
       "time_embedding.2.weight": rand(D, D), "time_embedding.2.bias": torch.zeros(D),
       "time_projection.1.weight": rand(6 * D, D), "time_projection.1.bias": torch.zeros(6 * D),
       "head.modulation": 0.1 * torch.randn(1, 2, D), "head.head.weight": rand(64, D), "head.head.bias": torch.zeros(64)}
for i in range(args.layers):
    p = f"blocks.{i}."
    dit[p + "modulation"] = 0.1 * torch.randn(1, 6, D)
    for a in ["self_attn", "cross_attn"]:
        for m in "qkvo":
            dit[f"{p}{a}.{m}.weight"] = rand(D, D)
            dit[f"{p}{a}.{m}.bias"] = torch.zeros(D)
        dit[f"{p}{a}.norm_q.weight"] = torch.ones(D)
        dit[f"{p}{a}.norm_k.weight"] = torch.ones(D)
    dit.update({p + "norm3.weight": torch.ones(D), p + "norm3.bias": torch.zeros(D),
                p + "ffn.0.weight": rand(F, D), p + "ffn.0.bias": torch.zeros(F),
                p + "ffn.2.weight": rand(D, F), p + "ffn.2.bias": torch.zeros(D)})
save_file(dit, os.path.join(args.out, "dit.safetensors"))
json.dump({"heads": args.heads}, open(os.path.join(args.out, "reel.json"), "w"))

# TAEHV tiny decoder weights from the decoder parity fixture (random, small channel counts).
with safe_open(os.path.join(fixtures, "vae", "taehv_decoder.safetensors"), "pt") as f:
    taehv = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(("input.", "output."))}
save_file(taehv, os.path.join(args.out, "taehv.safetensors"))
print("wrote", args.out)
