"""`lpcache propagate` as a whole process vs a whole-process script with the seed's compute structure.

    python benchmarks/bench_propagate_process.py --grid 30x55 --channels 384     # ViT/16 grid
    python benchmarks/bench_propagate_process.py --grid 60x110 --channels 256    # ResNet stride 8

Both sides start from nothing (Python start-up and imports included), read the same float32 cache of one
shared sequence's first --frames frames (random unit features at the grid, written once), propagate its
real first-frame annotation with the seed's default setting, up-sample to 480x880 and write one PNG per
frame. The seed side is `seed_baseline.py --cache ...`: the seed's structure (dense einsum over L+1 padded
slots, dense radius bias, top-k, label loop, cv2 up-sampling) on every target. Prints wall and CPU seconds
(user + sys of the child) per side and their ratio; --repeat runs alternate the two sides.
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.environ.get("LPCACHE_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))

from lpcache.cache import write_sequence  # noqa: E402
from lpcache.davis import parse_hw  # noqa: E402


def build_root(root, sequence, frames):
    """A DAVIS root holding the first `frames` frames of one shared sequence (symlinks) and its annotation."""
    source = os.path.join(SHARED, "davis2016-val")
    os.makedirs(os.path.join(root, "ImageSets", "2017"))
    with open(os.path.join(root, "ImageSets", "2017", "val.txt"), "w") as handle:
        handle.write(sequence + "\n")
    images = os.path.join(root, "JPEGImages", "480p", sequence)
    annotations = os.path.join(root, "Annotations", "480p", sequence)
    os.makedirs(images)
    os.makedirs(annotations)
    names = sorted(os.listdir(os.path.join(source, "JPEGImages", "480p", sequence)))[:frames]
    for name in names:
        os.symlink(os.path.join(source, "JPEGImages", "480p", sequence, name), os.path.join(images, name))
    shutil.copy(os.path.join(source, "Annotations", "480p", sequence, "00000.png"), annotations)
    return [os.path.splitext(n)[0] for n in names]


def timed(command):
    """(wall seconds, CPU seconds of the child) of one subprocess; raises when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="30x55")
    parser.add_argument("--channels", type=int, default=384)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--sequence", default="car-shadow")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    grid_hw = parse_hw(args.grid)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "davis")
        frames = build_root(root, args.sequence, args.frames)
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(len(frames), grid_hw[0], grid_hw[1], args.channels)).astype(np.float32)
        backbone_dir = os.path.join(tmp, "cache", "bench-seed")
        path = write_sequence(backbone_dir, args.sequence, feats, frames, dtype="float32",
                              attrs={"protocol": "seed", "input_hw": [480, 880], "orig_hw": [480, 854]})
        first = os.path.join(root, "Annotations", "480p", args.sequence, "00000.png")
        lpcache = [sys.executable, "-m", "lpcache", "propagate", "--cache", backbone_dir, "--davis", root,
                   "--out", os.path.join(tmp, "runs"), "--no-progress"]
        seed = [sys.executable, os.path.join(REPO, "benchmarks", "seed_baseline.py"), "--cache", path,
                "--first-mask", first, "--out", os.path.join(tmp, "seed")]
        results = {"lpcache propagate": [], "seed structure": []}
        for _ in range(args.repeat):
            shutil.rmtree(os.path.join(tmp, "runs"), ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, "seed"), ignore_errors=True)
            results["lpcache propagate"].append(timed(lpcache))
            results["seed structure"].append(timed(seed))
        print(f"{args.sequence}, {len(frames)} frames, cache {args.grid}x{args.channels} float32, "
              f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
        for label, runs in results.items():
            print(f"{label:18s} wall {min(w for w, _ in runs):6.2f} s   CPU {min(c for _, c in runs):6.2f} s"
                  f"   (best of {len(runs)})")
        ours, theirs = results["lpcache propagate"], results["seed structure"]
        print(f"speed-up, whole process: {min(w for w, _ in theirs) / min(w for w, _ in ours):.2f}x wall, "
              f"{min(c for _, c in theirs) / min(c for _, c in ours):.2f}x CPU")


if __name__ == "__main__":
    main()
