"""lpcache's propagation engine vs the seed's compute structure, on the same cached features, side by side.

    python benchmarks/bench_propagate.py --grid 60x110 --channels 256            # ResNet stride 8
    python benchmarks/bench_propagate.py --grid 30x55 --channels 384             # ViT/16
    python benchmarks/bench_propagate.py --grid 60x110 --channels 256 --rss-frames 104   # + peak RSS (cows length)
    python benchmarks/bench_propagate.py --rss-only --rss-frames 104                     # peak RSS only

Features: random unit vectors (seed 0) written once to a temporary float16 cache; both sides read them.
Per-frame times: all targets, early ones (t <= video_len, whose context is padded with frame 0) and
steady-state ones (t > video_len, where every target has its full context); the
seed baseline is timed on --baseline-frames such targets only (it is slow). Also prints the CPU's float32
GEMM rate and how close the engine runs to it on the work it cannot avoid (frame-0 full product +
in-radius products of the short-term frames).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lpcache.cache import CachedSequence, SequenceWriter, write_sequence  # noqa: E402
from lpcache.config import PropagationParams  # noqa: E402
from lpcache.davis import parse_hw  # noqa: E402
from lpcache.propagation import iter_propagate  # noqa: E402
from lpcache.propagation.labels import downsample_onehot, label_ids, upsample_argmax  # noqa: E402
from seed_baseline import seed_propagate, synchronize  # noqa: E402

OUT_HW = (480, 880)


def gemm_rate(size=4096, repeats=3, device="cpu"):
    """float32 torch.mm GFLOP/s on `device` (on CUDA: TF32 as torch.backends.cuda.matmul.allow_tf32 says)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    synchronize(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e9


def device_name(device):
    """The accelerator's name (e.g. 'NVIDIA H100 80GB HBM3'), or the device string."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return str(device)


def first_mask():
    mask = np.zeros(OUT_HW, np.uint8)
    mask[120:360, 200:520] = 1
    mask[200:300, 600:760] = 2
    return mask


def unavoidable_gflop(grid_hw, channels, params):
    """Per steady-state target: frame-0 full product + L frames of in-radius products."""
    h, w = grid_hw
    ys, xs = np.divmod(np.arange(h * w), w)
    in_radius = sum(int((((ys - y) ** 2 + (xs - x) ** 2) < params.radius ** 2).sum()) for y, x in zip(ys, xs))
    return 2 * channels * ((h * w) ** 2 + params.video_len * in_radius) / 1e9


def time_lpcache(path, params, device, precision="float32"):
    """Wall and CPU seconds per frame (index 0 = frame 0)."""
    stamps, cpu = [], []
    with CachedSequence(path) as cached:
        started, cpu_started = time.perf_counter(), time.process_time()
        for t, _ in iter_propagate(cached, first_mask(), [params], OUT_HW, device=device, precision=precision):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
    return np.diff([started] + stamps), np.diff([cpu_started] + cpu)


def peak_rss_mb():
    """This process's peak RSS in MB: VmHWM (Linux; unlike ru_maxrss it does not inherit the forking
    parent's RSS), else ru_maxrss."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_child(path, device):
    with CachedSequence(path) as cached:
        for _ in iter_propagate(cached, first_mask(), [PropagationParams()], OUT_HW, device=device):
            pass
    print(peak_rss_mb())


def measure_rss(tmp, rng, frames, grid_hw, channels, device):
    """Peak RSS of a fresh process propagating a `frames`-long float16 cache (written here first)."""
    path = os.path.join(tmp, "long.h5")
    if not os.path.exists(path):
        with SequenceWriter(tmp, "long", [f"{i:05d}" for i in range(frames)], grid_hw, channels) as writer:
            for _ in range(frames):
                writer.write(rng.normal(size=(1, grid_hw[0], grid_hw[1], channels)).astype(np.float32))
    started = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", path, "--device", device],
                         check=True, capture_output=True, text=True)
    print(f"peak RSS, {frames} frames {grid_hw[0]}x{grid_hw[1]}x{channels} (whole process incl. torch): "
          f"{float(out.stdout.split()[-1]):.0f} MB; {time.perf_counter() - started:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="60x110")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--frames", type=int, default=28, help="frames of the lpcache run")
    parser.add_argument("--baseline-frames", type=int, default=2, help="steady-state targets timed for the seed")
    parser.add_argument("--rss-frames", type=int, default=0, help="also measure peak RSS on a video this long")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", help="lpcache's --precision (the seed side stays float32)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default). With 1 thread "
                        "the CPU-time figures are robust against other jobs on the machine")
    parser.add_argument("--rss-only", action="store_true", help="only the peak-RSS measurement")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child, args.device)
    if args.rss_only:
        with tempfile.TemporaryDirectory() as tmp:
            measure_rss(tmp, np.random.default_rng(0), args.rss_frames or 104, parse_hw(args.grid), args.channels,
                        args.device)
        return None
    if args.threads:
        torch.set_num_threads(args.threads)
    grid_hw = parse_hw(args.grid)
    params = PropagationParams()
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    if torch.device(args.device).type == "cpu":
        print(f"float32 GEMM rate (torch.mm 4096^2): {gemm_rate():.1f} GFLOP/s")
    else:
        repeats = 20 if torch.device(args.device).type == "cuda" else 3
        print(f"device {args.device}: {device_name(args.device)}")
        print(f"float32 GEMM rate on {args.device} (torch.mm 4096^2, TF32 "
              f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}): "
              f"{gemm_rate(repeats=repeats, device=args.device):.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        frames = max(args.frames, params.video_len + args.baseline_frames + 1)
        feats = rng.normal(size=(frames, grid_hw[0], grid_hw[1], args.channels)).astype(np.float32)
        path = write_sequence(tmp, "bench", feats, [f"{i:05d}" for i in range(frames)], dtype="float16")
        with CachedSequence(path) as cached:
            unit = cached.read()
        per_frame, cpu_per_frame = time_lpcache(path, params, args.device, args.precision)
        steady = per_frame[params.video_len + 1:]
        cpu_steady = cpu_per_frame[params.video_len + 1:]
        print(f"lpcache  {args.grid}x{args.channels} ({args.precision}): {frames} frames in {per_frame.sum():.2f} s; "
              f"per frame: "
              f"all targets {per_frame[1:].mean():.3f} s, early (t <= {params.video_len}) "
              f"{per_frame[1:params.video_len + 1].mean():.3f} s, steady (t > {params.video_len}) {steady.mean():.3f} s "
              f"wall, {cpu_steady.mean():.3f} s CPU (early {cpu_per_frame[1:params.video_len + 1].mean():.3f} s CPU)")
        mask = first_mask()
        ids = label_ids(mask)
        soft = torch.from_numpy(downsample_onehot(mask, ids, grid_hw)).reshape(-1, len(ids))
        targets = list(range(params.video_len + 1, params.video_len + 1 + args.baseline_frames))
        if torch.device(args.device).type != "cpu":  # warm-up (kernel selection, allocator) outside the clock
            seed_propagate(unit, soft, params, targets[:1], grid_hw, OUT_HW, device=args.device)
        cpu_started = time.process_time()
        seconds, _ = seed_propagate(unit, soft, params, targets, grid_hw, OUT_HW,
                                    upsample=lambda s, hw: upsample_argmax(s, ids, hw), device=args.device)
        seed_per_frame = seconds / len(targets)
        seed_cpu = (time.process_time() - cpu_started) / len(targets)
        print(f"seed structure {args.grid}x{args.channels}: {len(targets)} steady targets in {seconds:.2f} s: "
              f"{seed_per_frame:.3f} s per frame wall, {seed_cpu:.3f} s CPU")
        print(f"speed-up (steady state): {seed_per_frame / steady.mean():.2f}x wall, "
              f"{seed_cpu / cpu_steady.mean():.2f}x CPU time")
        gflop = unavoidable_gflop(grid_hw, args.channels, params)
        print(f"unavoidable work {gflop:.1f} GFLOP per steady frame -> engine runs at "
              f"{gflop / steady.mean():.1f} GFLOP/s")
        if args.rss_frames:
            measure_rss(tmp, rng, args.rss_frames, grid_hw, args.channels, args.device)


if __name__ == "__main__":
    main()
