"""Wall time of a 64-setting `lpcache sweep` (in-memory scoring included) vs one `propagate` + `score` run.

    python benchmarks/bench_sweep.py [--davis ../shared/data/davis2016-val] [--work /tmp/lpcache-bench-sweep]
                                     [--device cpu] [--threads N] [--radius 12,18] [--video-len 10,20]

Features: ResNet-18 (torchvision layout, random init, layer3 at stride 1 -> 60x110x256) on the seed's
480x880 frames of car-shadow (40), motocross-jump (40) and scooter-black (43), made once with
`lpcache.extraction` (backbone imagenet18, --random-init) into <work>/cache and reused on later runs.
Single run: the seed setting (t0.7 k8 r18 L20), `propagate` then `score` (gt 480x880), from scratch.
Sweep: temperature 0.05,0.1,0.3,0.7 x topk 4,8,12,16 x radius x video_len (default 12,18 x 10,20: the largest
values equal the single run's), from scratch, CSVs / leaderboard / plots included.
Prints both wall times (and process CPU times) side by side, their ratio (target <= 1.3, issue 13), and checks that the sweep's J&F of the seed
setting equals the single run's to the last bit.
"""
import argparse
import logging
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lpcache import scoring  # noqa: E402
from lpcache.config import PropagationParams  # noqa: E402
from lpcache.sweeping import grid_from_options, sweep  # noqa: E402

SHORT = ["car-shadow", "motocross-jump", "scooter-black"]
HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", default=os.path.join(HERE, "..", "..", "shared", "data", "davis2016-val"))
    parser.add_argument("--work", default="/tmp/lpcache-bench-sweep")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--temperature", default="0.05,0.1,0.3,0.7")
    parser.add_argument("--topk", default="4,8,12,16")
    parser.add_argument("--radius", default="12,18")
    parser.add_argument("--video-len", default="10,20")
    parser.add_argument("--sequences", default=",".join(SHORT))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sequences = args.sequences.split(",")
    cache = make_cache(args.davis, os.path.join(args.work, "cache"), sequences)
    params = PropagationParams()

    single_dir = os.path.join(args.work, "single")
    shutil.rmtree(single_dir, ignore_errors=True)
    from lpcache.run_propagation import propagate

    started, cpu_started = time.perf_counter(), time.process_time()
    run = propagate(cache, args.davis, single_dir, params, sequences=sequences, device=args.device, progress=False)
    propagated = time.perf_counter()
    single = scoring.score(args.davis, run, sequences=sequences, gt_size=(480, 880), progress=False)
    single_seconds = time.perf_counter() - started
    single_cpu = time.process_time() - cpu_started
    score_seconds = time.perf_counter() - propagated

    grid = grid_from_options(None, args.temperature, args.topk, args.radius, args.video_len)
    sweep_dir = os.path.join(args.work, "sweep")
    shutil.rmtree(sweep_dir, ignore_errors=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = sweep([cache], args.davis, sweep_dir, grid, sequences=sequences, device=args.device,
                   threads=args.threads, progress=False)
    sweep_seconds = time.perf_counter() - started
    sweep_cpu = time.process_time() - cpu_started

    frames = sum(len(os.listdir(os.path.join(args.davis, "JPEGImages", "480p", s))) for s in sequences)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, cpu cores {os.cpu_count()}, "
          f"{len(sequences)} sequences, {frames} frames, grid 60x110x256 (ResNet-18 layer3, random init)")
    print(f"{'run':<44}{'wall s':>10}{'s/frame':>10}{'CPU s':>10}")
    print(f"{'propagate + score, 1 setting (' + params.id + ')':<44}{single_seconds:>10.1f}"
          f"{single_seconds / frames:>10.3f}{single_cpu:>10.1f}   (score {score_seconds:.1f} s wall)")
    print(f"{f'sweep, {len(grid)} settings, scored in memory':<44}{sweep_seconds:>10.1f}"
          f"{sweep_seconds / frames:>10.3f}{sweep_cpu:>10.1f}")
    print(f"ratio sweep / single: wall {sweep_seconds / single_seconds:.2f}, CPU time {sweep_cpu / single_cpu:.2f} "
          f"(target <= 1.3; on a busy machine trust the CPU-time ratio); "
          f"per setting: {sweep_seconds / len(grid) / single_seconds:.3f} of a single run")
    print_per_sequence(run, sweep_dir, os.path.basename(cache), sequences)
    row = next((r for r in result.rows if r["setting"] == params.id), None)
    if row is not None:
        same = all(row[c] == single.global_scores[c] for c in single.global_scores)
        print(f"seed setting J&F-Mean: sweep {row['J&F-Mean']!r}, propagate+score "
              f"{single.global_scores['J&F-Mean']!r} -> {'identical' if same else 'DIFFERENT'}")
    best = result.best(result.backbones[0])[0]
    print(f"best setting {best['setting']}: J&F-Mean {best['J&F-Mean']:.4f}")


def print_per_sequence(single_run, sweep_dir, backbone_id, sequences):
    """Per video: propagate seconds of the single run (run.json) vs the sweep task (shard provenance)."""
    import json

    with open(os.path.join(single_run, "run.json"), encoding="utf-8") as handle:
        single = json.load(handle)["sequences"]
    print(f"{'sequence':<20}{'single propagate s':>20}{'sweep task s':>14}{'ratio':>8}")
    for seq in sequences:
        with open(os.path.join(sweep_dir, "shards", backbone_id, seq + ".json"), encoding="utf-8") as handle:
            task_seconds = json.load(handle)["provenance"]["seconds"]
        one = single[seq]["seconds"]
        print(f"{seq:<20}{one:>20.1f}{task_seconds:>14.1f}{task_seconds / one:>8.2f}")


def make_cache(davis_root, cache_dir, sequences):
    """ResNet-18 (random init) stride-8 features of the sequences; extracted once, then reused."""
    from lpcache.extraction import extract

    started = time.perf_counter()
    result = extract(davis_root=davis_root, cache_dir=cache_dir, backbone="imagenet18", random_init=True,
                     sequences=sequences, dtype="float16", progress=False)
    seconds = time.perf_counter() - started
    backbone_dirs = [os.path.join(cache_dir, d) for d in os.listdir(cache_dir)
                     if os.path.isdir(os.path.join(cache_dir, d)) and d.startswith("imagenet18")]
    if len(backbone_dirs) != 1:
        raise SystemExit(f"{cache_dir}: expected one imagenet18 cache folder, found {backbone_dirs}")
    print(f"cache {backbone_dirs[0]} ready in {seconds:.1f} s ({type(result).__name__})")
    return backbone_dirs[0]


if __name__ == "__main__":
    main()
