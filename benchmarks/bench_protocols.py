"""Each protocol's propagation: lpcache's engine vs the protocol's dense reference structure, side by side.

    python benchmarks/bench_protocols.py                                   # all four, default geometry and frames
    python benchmarks/bench_protocols.py --protocols dino,vfs --frames 12
    python benchmarks/bench_protocols.py --frames 4                        # smoke run
    python benchmarks/bench_protocols.py --frames seed=8                   # the seed's reference: ~30 s/target
    python benchmarks/bench_protocols.py --protocols vfs --set vfs.radius=18 --geometry vfs=60x107x256:480x854

For each protocol, at its own typical geometry (grid h x w x channels, output size; `--geometry` overrides):
random unit features (seed 0) of `--frames` frames (default: the protocol's video_len + 3, so the last
targets have their full context) and a two-object first mask at the output size. The engine
(`lpcache.propagation.iter_propagate(..., protocol=name)`: windowed, multi-setting machinery) and the
protocol's `reference` (the dense function that is the protocol's definition and has the reference code's
structure: every candidate of every context frame scored, then masked) run on the SAME feature tensor over
the same frames. Both are timed in wall and CPU seconds (time.process_time, robust against other jobs on a
shared machine only with --threads 1); the masks are compared (fraction of equal pixels over all frames).
The engine's steady-state s/target (targets t > video_len, full context) is printed too.
The references are slow (dense over all frames): lower `--frames` for a quick look. The seed's reference
costs the same for every target (its context is padded to video_len + 1 frames), so fewer seed frames keep
its s/target representative; the engine's early seed targets are cheaper (frame 0's duplicates computed once),
so its steady figure needs --frames above video_len + 1 (benchmarks/bench_propagate.py measures that alone).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lpcache import protocols  # noqa: E402
from lpcache.davis import parse_hw  # noqa: E402
from lpcache.errors import InputError  # noqa: E402
from lpcache.propagation import iter_propagate  # noqa: E402
from bench_propagate import gemm_rate  # noqa: E402

#: protocol -> (grid h, grid w, channels, output (H, W), parameter overrides): each protocol's typical geometry.
GEOMETRY = {
    "seed": (60, 110, 256, (480, 880), {}),      # ResNet stride 8 on 480x880
    "dino": (30, 52, 384, (480, 854), {}),       # ViT-S/16 on 480x832 (DINO's resize of 854x480)
    "vfs": (60, 107, 256, (480, 854), {"radius": 12}),   # ResNet-18 config, stride 8 on 480x854
    "dinov3": (60, 107, 384, (480, 854), {}),    # ViT-S/16 on 960x1712, masks at 480x854
}


def first_mask(out_hw) -> np.ndarray:
    """Two objects (ids 1 and 2) on background, placed proportionally to the output size."""
    height, width = out_hw
    mask = np.zeros(out_hw, np.uint8)
    mask[height // 4:height * 3 // 4, width * 5 // 22:width * 13 // 22] = 1
    mask[height * 5 // 12:height * 5 // 8, width * 15 // 22:width * 19 // 22] = 2
    return mask


def unit_features(frames, grid_h, grid_w, channels, seed=0) -> torch.Tensor:
    """float32 (T, h, w, C) random vectors, L2-normalised over C."""
    rng = np.random.default_rng(seed)
    raw = torch.from_numpy(rng.standard_normal((frames, grid_h, grid_w, channels), dtype=np.float32))
    return F.normalize(raw, dim=-1)


def run_engine(name, feats, mask, params, out_hw):
    """(masks (T, H, W), wall s, CPU s, wall s per frame) of lpcache's engine with one setting."""
    setting = protocols.get(name).setting(**params)
    wall, cpu = time.perf_counter(), time.process_time()
    masks, stamps = [], [wall]
    for _, out in iter_propagate(feats, mask, [setting], out_hw, protocol=name):
        masks.append(out[setting])
        stamps.append(time.perf_counter())
    return np.stack(masks), stamps[-1] - wall, time.process_time() - cpu, np.diff(stamps)


def run_reference(name, feats, mask, params, out_hw):
    """(masks (T, H, W), wall s, CPU s) of the protocol's dense reference."""
    values = protocols.get(name).params(**params)
    reference = protocols.get(name).reference
    wall, cpu = time.perf_counter(), time.process_time()
    if name in ("seed", "native"):  # the seed's reference takes the parameters one by one
        masks = reference(feats, mask, float(values["temperature"]), int(values["topk"]),
                          float(values["radius"]), int(values["video_len"]), out_hw)
    else:
        masks = reference(feats, mask, values, out_hw)
    return np.stack(masks), time.perf_counter() - wall, time.process_time() - cpu


def bench(name, frames, geometry):
    """One protocol's row: geometry, frames, both sides' times, speed-ups and the equal-pixel fraction."""
    grid_h, grid_w, channels, out_hw, params = geometry
    feats = unit_features(frames, grid_h, grid_w, channels)
    mask = first_mask(out_hw)
    engine, engine_wall, engine_cpu, per_frame = run_engine(name, feats, mask, params, out_hw)
    dense, dense_wall, dense_cpu = run_reference(name, feats, mask, params, out_hw)
    targets = frames - 1
    video_len = int(protocols.get(name).params(**params)["video_len"])
    steady = per_frame[video_len + 1:]   # targets with their full context (t > video_len)
    row = dict(protocol=name, grid=f"{grid_h}x{grid_w}x{channels}", out=f"{out_hw[0]}x{out_hw[1]}",
               params=protocols.get(name).params(**params), frames=frames,
               engine_steady=float(steady.mean()) if len(steady) else None,
               engine_wall=engine_wall, engine_cpu=engine_cpu, dense_wall=dense_wall, dense_cpu=dense_cpu,
               engine_per=engine_wall / targets, dense_per=dense_wall / targets,
               equal=float((engine == dense).mean()) if engine.shape == dense.shape else float("nan"))
    print(f"{name} {row['grid']} -> {row['out']}, {frames} frames ({targets} targets), {row['params']}: "
          f"engine {engine_wall:.2f} s wall ({row['engine_per']:.3f} s/target; steady {steady_text(row)}), "
          f"{engine_cpu:.2f} s CPU; "
          f"dense reference {dense_wall:.2f} s wall ({row['dense_per']:.3f} s/target), {dense_cpu:.2f} s CPU; "
          f"speed-up {dense_wall / engine_wall:.2f}x wall, {dense_cpu / engine_cpu:.2f}x CPU; "
          f"equal pixels {row['equal']:.6f}", flush=True)
    return row


def steady_text(row) -> str:
    """The engine's steady-state s/target, or '-' when no target had its full context."""
    return "-" if row["engine_steady"] is None else f"{row['engine_steady']:.3f}"


def print_table(rows):
    """The Markdown table of all rows."""
    print("\n| protocol | grid -> output | frames | engine s (s/target) | engine steady s/target "
          "| dense reference s (s/target) | speed-up wall | speed-up CPU | equal pixels |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['protocol']} | {r['grid']} -> {r['out']} | {r['frames']} "
              f"| {r['engine_wall']:.2f} ({r['engine_per']:.3f}) | {steady_text(r)} "
              f"| {r['dense_wall']:.2f} ({r['dense_per']:.3f}) "
              f"| {r['dense_wall'] / r['engine_wall']:.2f}x | {r['dense_cpu'] / r['engine_cpu']:.2f}x "
              f"| {r['equal']:.6f} |")


def parse_geometry(items):
    """`NAME=HxWxC[:HxW]` items -> {name: (h, w, C, out_hw or None)}."""
    out = {}
    for item in items:
        name, _, spec = item.partition("=")
        grid, _, size = spec.partition(":")
        grid_h, grid_w, channels = (int(v) for v in grid.lower().split("x"))
        out[name] = (grid_h, grid_w, channels, parse_hw(size) if size else None)
    return out


def parse_sets(items):
    """`NAME.PARAM=VALUE` items -> {name: {param: float}}."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        name, _, param = key.partition(".")
        out.setdefault(name, {})[param] = float(value)
    return out


def parse_frames(text, names):
    """`N` (every protocol) or `NAME=N,...` -> {name: frames}; absent names take the default."""
    if text.strip().isdigit():
        return {name: int(text) for name in names}
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        out[name] = int(count)
    return out


def geometries(names, overrides, sets):
    """{name: (h, w, C, out_hw, params)}: GEOMETRY with `--geometry` and `--set` applied."""
    out = {}
    for name in names:
        grid_h, grid_w, channels, out_hw, params = GEOMETRY[name]
        if name in overrides:
            grid_h, grid_w, channels, size = overrides[name]
            out_hw = size or out_hw
        out[name] = (grid_h, grid_w, channels, out_hw, {**params, **sets.get(name, {})})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", default=",".join(GEOMETRY), help="comma-separated (default: all four)")
    parser.add_argument("--frames", default="", metavar="N|NAME=N,...", help="frames per video, for all "
                        "protocols (N) or some (seed=8,vfs=23); default: each protocol's video_len + 3")
    parser.add_argument("--geometry", action="append", default=[], metavar="NAME=HxWxC[:HxW]",
                        help="a protocol's feature grid and output size (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME.PARAM=VALUE",
                        help="a protocol parameter (repeatable), e.g. vfs.radius=18")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    names = [n.strip() for n in args.protocols.split(",") if n.strip()]
    unknown = sorted(set(names) - set(GEOMETRY))
    if unknown:
        parser.error(f"unknown protocol(s) {', '.join(unknown)}: expected {', '.join(GEOMETRY)}")
    try:
        overrides, sets = parse_geometry(args.geometry), parse_sets(args.set)
        frames = parse_frames(args.frames, names)
        for name, values in sets.items():
            protocols.get(name).params(**values)   # unknown protocol or parameter: InputError
    except (ValueError, InputError) as error:
        parser.error(f"--geometry / --set / --frames: {error}")
    strays = sorted((set(overrides) | set(sets) | set(frames)) - set(GEOMETRY))
    if strays or any(count < 2 for count in frames.values()):
        parser.error(f"unknown protocol(s) {', '.join(strays)}" if strays else "--frames: at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"float32 GEMM rate (torch.mm 4096^2): {gemm_rate():.1f} GFLOP/s", flush=True)
    plans = geometries(names, overrides, sets)
    rows = []
    for name in names:
        count = frames.get(name) or int(protocols.get(name).params(**plans[name][4])["video_len"]) + 3
        rows.append(bench(name, count, plans[name]))
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print_table(rows)


if __name__ == "__main__":
    main()
