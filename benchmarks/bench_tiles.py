"""Steady-state seconds per frame of the propagation engine for several query-tile shapes and target-block
sizes, side by side.

    python benchmarks/bench_tiles.py --grid 60x110 --channels 256 --tiles auto,8x8,4x8 --blocks 1,2,4
    python benchmarks/bench_tiles.py --grid 60x110 --channels 256 --device cuda --tiles auto,20x22,30x55 --blocks 1,4,8

Random unit features (seed 0), default parameters; `auto` is the engine's own choice (kernels.choose_tile,
engine.DEFAULT_BLOCK). Used to check the per-device cost model (kernels.TILE_COSTS) on a given machine.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lpcache.config import PropagationParams  # noqa: E402
from lpcache.davis import parse_hw  # noqa: E402
from lpcache.propagation import iter_propagate, kernels  # noqa: E402
from bench_propagate import OUT_HW, first_mask  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="60x110")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--frames", type=int, default=26)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiles", default="auto,8x8,12x12")
    parser.add_argument("--blocks", default="auto", help="targets per block, e.g. 1,2,4 (auto: the engine's)")
    args = parser.parse_args()
    grid_hw, params = parse_hw(args.grid), PropagationParams()
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(args.frames, *grid_hw, args.channels)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    feats = torch.from_numpy(feats.astype(np.float16))
    mask = first_mask()
    print(f"device {args.device}, grid {args.grid}x{args.channels}, torch threads {torch.get_num_threads()}, "
          f"auto tile {kernels.choose_tile(grid_hw, params.radius, args.channels, args.device)}")
    for name in args.tiles.split(","):
        for block_name in args.blocks.split(","):
            tile = None if name == "auto" else parse_hw(name)
            block = None if block_name == "auto" else int(block_name)
            stamps = [time.perf_counter()]
            for _ in iter_propagate(feats, mask, [params], OUT_HW, device=args.device, tile_hw=tile, block=block):
                stamps.append(time.perf_counter())
            steady = np.diff(stamps)[params.video_len + 1:]
            print(f"tile {name:>7} block {block_name:>4}: steady {steady.mean() * 1000:8.1f} ms per frame "
                  f"({len(steady)} frames)", flush=True)


if __name__ == "__main__":
    main()
