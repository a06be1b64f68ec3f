"""Time `lpcache demo`: synthetic data build, a fresh end-to-end run (per stage), and a resumed re-run.

    python benchmarks/bench_demo.py [--davis ROOT --sequences a,b] [--device cpu] [--workdir DIR]

Without --davis: the synthetic demo (3 sequences x 12 frames, 240x432, native protocol).
With --davis: the real-data demo on the given sequences (seed protocol, 480x880).
Prints seconds per stage, frames per second and the J&F-Mean.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from lpcache import pipeline
from lpcache.davis import load_davis
from lpcache.synthetic import make_synthetic_davis


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--davis", default=None)
    parser.add_argument("--sequences", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="lpcache-bench-demo-")
    shutil.rmtree(workdir, ignore_errors=True)
    names = args.sequences.split(",") if args.sequences else None

    if args.davis is None:
        started = time.perf_counter()
        make_synthetic_davis(os.path.join(tempfile.mkdtemp(), "s"), **pipeline.DEMO_SYNTHETIC)
        print(f"make_synthetic_davis {pipeline.DEMO_SYNTHETIC}: {time.perf_counter() - started:.2f} s")

    started = time.perf_counter()
    result = pipeline.demo(args.davis, names, workdir, device=args.device, progress=False)
    total = time.perf_counter() - started
    frames = sum(len(s.frame_names) for s in load_davis(result.davis_root, sequences=result.sequences))
    print(f"demo ({'synthetic' if args.davis is None else args.davis}, {result.protocol} protocol, "
          f"{len(result.sequences)} sequences, {frames} frames, device {args.device or pipeline.default_device()}): "
          f"{total:.1f} s wall")
    for stage, seconds in result.seconds.items():
        print(f"  {stage:10s} {seconds:8.2f} s  ({frames / seconds:.2f} frames/s)")
    print(f"  J&F-Mean {result.global_scores['J&F-Mean']:.4f}  J-Mean {result.global_scores['J-Mean']:.4f}  "
          f"F-Mean {result.global_scores['F-Mean']:.4f}")

    started = time.perf_counter()
    pipeline.demo(args.davis, names, workdir, device=args.device, progress=False)
    print(f"re-run (everything cached / done, scores recomputed): {time.perf_counter() - started:.1f} s")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
