"""Writes the tiny model as Reel loads it, and checks the files against Reel's loaders' key rules.

Files (Models/tiny/):
  dit.safetensors           causal Wan DiT, Wan's original key names; metadata "heads" (Reel detects
                            dim/64 heads for dim 192 too), "config" (JSON of DiTConfig)
  text_encoder.safetensors  umT5 encoder, Wan's t5.py key names (token_embedding, blocks.N.attn.q, ...)
  taehv.safetensors         TAEHV decoder, taew2_1 key names (decoder.N...), time upscale [1, 2, 2]
  reel.json                 {"heads", "size", "fps"} (Reel's ModelFiles reads "heads")
  spiece.model, tokenizer.json  (tokenizer.py)
The names are the ones `reel generate --model FOLDER` looks for (ReelPipeline/ModelBundle.swift).

The expected key sets below are transcribed from Reel's binders (WanDiTWeights.swift `WanDiT.load`,
UMT5Encoder.swift `load`, TinyDecoder.swift `init(binder:)`): every key must be present with that
shape and no other key may exist (Reel's WeightBinder is strict both ways).
"""
from __future__ import annotations

import dataclasses
import json

import torch
from safetensors.torch import save_file

from .config import DecoderConfig, DiTConfig, TextConfig


def dit_keys(c: DiTConfig) -> dict[str, tuple]:
    d, p = c.dim, c.patch
    keys = {"patch_embedding.weight": (d, c.in_channels, 1, p, p), "patch_embedding.bias": (d,),
            "text_embedding.0.weight": (d, c.text_dim), "text_embedding.0.bias": (d,),
            "text_embedding.2.weight": (d, d), "text_embedding.2.bias": (d,),
            "time_embedding.0.weight": (d, c.freq_dim), "time_embedding.0.bias": (d,),
            "time_embedding.2.weight": (d, d), "time_embedding.2.bias": (d,),
            "time_projection.1.weight": (6 * d, d), "time_projection.1.bias": (6 * d,),
            "head.modulation": (1, 2, d), "head.head.weight": (p * p * c.out_channels, d),
            "head.head.bias": (p * p * c.out_channels,)}
    for i in range(c.layers):
        b = f"blocks.{i}"
        keys[f"{b}.modulation"] = (1, 6, d)
        for a in ("self_attn", "cross_attn"):
            for m in "qkvo":
                keys[f"{b}.{a}.{m}.weight"], keys[f"{b}.{a}.{m}.bias"] = (d, d), (d,)
            keys[f"{b}.{a}.norm_q.weight"] = keys[f"{b}.{a}.norm_k.weight"] = (d,)
        keys[f"{b}.norm3.weight"] = keys[f"{b}.norm3.bias"] = (d,)
        keys[f"{b}.ffn.0.weight"], keys[f"{b}.ffn.0.bias"] = (c.ffn, d), (c.ffn,)
        keys[f"{b}.ffn.2.weight"], keys[f"{b}.ffn.2.bias"] = (d, c.ffn), (d,)
    return keys


def text_keys(c: TextConfig) -> dict[str, tuple]:
    inner = c.heads * c.head_dim
    keys = {"token_embedding.weight": (c.vocabulary, c.dim), "norm.weight": (c.dim,)}
    for i in range(c.layers):
        b = f"blocks.{i}"
        keys.update({f"{b}.norm1.weight": (c.dim,), f"{b}.norm2.weight": (c.dim,),
                     f"{b}.attn.q.weight": (inner, c.dim), f"{b}.attn.k.weight": (inner, c.dim),
                     f"{b}.attn.v.weight": (inner, c.dim), f"{b}.attn.o.weight": (c.dim, inner),
                     f"{b}.pos_embedding.embedding.weight": (c.buckets, c.heads),
                     f"{b}.ffn.gate.0.weight": (c.ffn, c.dim), f"{b}.ffn.fc1.weight": (c.ffn, c.dim),
                     f"{b}.ffn.fc2.weight": (c.dim, c.ffn)})
    return keys


def decoder_keys(c: DecoderConfig) -> dict[str, tuple]:
    ch = c.channels
    keys = {"decoder.1.weight": (ch[0], c.latent_channels, 3, 3), "decoder.1.bias": (ch[0],),
            "decoder.22.weight": (3, ch[3], 3, 3), "decoder.22.bias": (3,)}
    for s in range(3):
        base, n = 3 + 6 * s, ch[s]
        for j in range(3):
            p = f"decoder.{base + j}.conv"
            keys.update({f"{p}.0.weight": (n, 2 * n, 3, 3), f"{p}.0.bias": (n,), f"{p}.2.weight": (n, n, 3, 3),
                         f"{p}.2.bias": (n,), f"{p}.4.weight": (n, n, 3, 3), f"{p}.4.bias": (n,)})
        keys[f"decoder.{base + 4}.conv.weight"] = (n * (1 if s == 0 else 2), n, 1, 1)
        keys[f"decoder.{base + 5}.weight"] = (ch[s + 1], n, 3, 3)
    return keys


def check_keys(tensors: dict[str, torch.Tensor], expected: dict[str, tuple], what: str) -> None:
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(tensors[k].shape) != tuple(expected[k]))
    if missing or extra or wrong:
        raise ValueError(f"{what}: missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes "
                         f"{[(k, tuple(tensors[k].shape), expected[k]) for k in wrong[:5]]}")


def _tensors(module, prefix_filter=None, dtype=torch.float32):
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in module.state_dict().items()
            if prefix_filter is None or k.startswith(prefix_filter)}


def export(out_dir: str, dit, t5, decoder, metadata: dict | None = None, dtype=torch.float32,
           frame_size: int = 128, fps: int = 16) -> dict[str, str]:
    import os
    os.makedirs(out_dir, exist_ok=True)
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    files = {}
    d = _tensors(dit, dtype=dtype)
    check_keys(d, dit_keys(dit.c), "dit")
    files["dit"] = os.path.join(out_dir, "dit.safetensors")
    save_file(d, files["dit"], metadata={**meta, "format": "pt", "heads": str(dit.c.heads), "text_len": str(dit.c.text_len),
                                          "config": json.dumps(dataclasses.asdict(dit.c))})
    t = _tensors(t5, dtype=dtype)
    check_keys(t, text_keys(t5.c), "text encoder")
    files["text_encoder"] = os.path.join(out_dir, "text_encoder.safetensors")
    save_file(t, files["text_encoder"], metadata={**meta, "format": "pt", "config": json.dumps(dataclasses.asdict(t5.c))})
    dec = _tensors(decoder, "decoder.", dtype=dtype)
    check_keys(dec, decoder_keys(decoder.c), "decoder")
    files["decoder"] = os.path.join(out_dir, "taehv.safetensors")
    save_file(dec, files["decoder"], metadata={**meta, "format": "pt", "time_upscale": "[1, 2, 2]",
                                                "config": json.dumps(dataclasses.asdict(decoder.c))})
    files["reel"] = os.path.join(out_dir, "reel.json")
    with open(files["reel"], "w") as f:
        json.dump({"heads": dit.c.heads, "size": f"{frame_size}x{frame_size}", "fps": fps}, f)
        f.write("\n")
    return files
