"""Writes clips as arrays: one .npz per clip (video uint8 [F, S, S, 3] and every ground-truth array) and
clips.jsonl (prompts, switch frames and kinds, per clip).

    python3 -m training.data.dump --out /tmp/clips --clips 16 --frames 97 --switches 1 --seed 0
"""
import argparse
import json
import os

import numpy as np

from .render import render
from .scenes import make_clip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=97)
    ap.add_argument("--switches", type=int, default=1)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-start", action="store_true")
    ap.add_argument("--unaligned", action="store_true", help="switch at any frame, not only at latent block starts")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "clips.jsonl"), "w") as index:
        for i in range(args.clips):
            clip = make_clip(args.seed * 1_000_003 + i, frames=args.frames, switches=args.switches, frame_size=args.size,
                             aligned=not args.unaligned, random_start=args.random_start)
            name = f"clip_{i:05d}.npz"
            np.savez_compressed(os.path.join(args.out, name), video=render(clip.truth, args.size), **clip.truth)
            index.write(json.dumps({"file": name, "prompts": clip.prompts, "switch_frames": clip.switch_frames,
                                    "switch_kinds": clip.switch_kinds, "fps": clip.fps, "size": args.size}) + "\n")
    print(f"wrote {args.clips} clips to {args.out}")


if __name__ == "__main__":
    main()
