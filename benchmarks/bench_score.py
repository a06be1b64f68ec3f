"""Wall time of `lpcache score` on the 20 shared DAVIS sequences (OSVOS binarised as predictions).

    python benchmarks/bench_score.py [--jobs 2] [--repeat 3] [--official /path/to/davis2017-evaluation]

Builds the prediction folder in a temp dir, runs `lpcache score` as a subprocess (CLI start-up included),
and with --official also runs the official evaluation_method.py on the same folder (its CSVs removed
before every run, since it would otherwise reuse them) and checks that both wrote the same CSV bytes.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LPCACHE_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
CSVS = ("global_results-val.csv", "per-sequence_results-val.csv")


def build_predictions(davis_root, osvos_root, out_dir):
    """OSVOS masks binarised (id > 0 -> 1) for every frame of every sequence of the val set."""
    with open(os.path.join(davis_root, "ImageSets", "2017", "val.txt")) as handle:
        sequences = [line.strip() for line in handle if line.strip()]
    frames = 0
    for seq in sequences:
        os.makedirs(os.path.join(out_dir, seq))
        for name in sorted(os.listdir(os.path.join(osvos_root, seq))):
            ids = (np.array(Image.open(os.path.join(osvos_root, seq, name))) > 0).astype(np.uint8)
            image = Image.fromarray(ids, mode="P")
            image.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
            image.save(os.path.join(out_dir, seq, name))
            frames += 1
    return sequences, frames


CPU_SECONDS = {}


def timed(command, label, cwd=None):
    """Wall seconds of a subprocess; its CPU seconds (user + sys, children included) go to CPU_SECONDS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU_SECONDS.setdefault(label, []).append(cpu)
    if done.returncode != 0 or "Error" in done.stderr.splitlines()[-1:]:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def read_csvs(folder):
    out = []
    for name in CSVS:
        with open(os.path.join(folder, name), "rb") as handle:
            out.append(handle.read())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", default=os.path.join(SHARED, "davis2016-val"))
    parser.add_argument("--osvos", default=os.path.join(SHARED, "osvos-davis2017"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--official", default=None, help="checkout of davis2017-evaluation (runs it too)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench_score_")
    try:
        results = os.path.join(work, "results")
        sequences, frames = build_predictions(args.davis, args.osvos, results)
        evaluated = frames - 2 * len(sequences)
        print(f"{len(sequences)} sequences, {frames} frames ({evaluated} evaluated); {os.cpu_count()} CPU cores")
        lpcache_out = os.path.join(work, "lpcache_csv")
        command = [sys.executable, "-m", "lpcache.cli", "score", "--davis", args.davis, "--results", results,
                   "--jobs", str(args.jobs), "--out", lpcache_out, "--no-progress"]
        ours = [timed(command, "cli", cwd=REPO) for _ in range(args.repeat)]
        print(f"lpcache score --jobs {args.jobs}: best {min(ours):.2f} s, median {statistics.median(ours):.2f} s "
              f"({evaluated / min(ours):.0f} frames/s); CPU {min(CPU_SECONDS['cli']):.2f} s")
        # the same work without the CLI start-up (which imports every command module)
        library = [sys.executable, "-c", "import sys; from lpcache.scoring import score, write_csvs; "
                   "write_csvs(score(sys.argv[1], sys.argv[2], jobs=int(sys.argv[3]), progress=False), sys.argv[4])",
                   args.davis, results, str(args.jobs), os.path.join(work, "library_csv")]
        lib = [timed(library, "library", cwd=REPO) for _ in range(args.repeat)]
        startup = [timed([sys.executable, "-c", "import lpcache.cli"], "startup", cwd=REPO)
                   for _ in range(args.repeat)]
        print(f"  of which CLI start-up (python -c 'import lpcache.cli'): best {min(startup):.2f} s, "
              f"CPU {min(CPU_SECONDS['startup']):.2f} s")
        print(f"lpcache.scoring.score(jobs={args.jobs}) + write_csvs in a fresh python: best {min(lib):.2f} s, "
              f"median {statistics.median(lib):.2f} s; CPU {min(CPU_SECONDS['library']):.2f} s")
        if args.official:
            official = []
            for _ in range(args.repeat):
                for name in CSVS:
                    if os.path.exists(os.path.join(results, name)):
                        os.remove(os.path.join(results, name))
                official.append(timed([sys.executable, "evaluation_method.py", "--task", "semi-supervised",
                                       "--davis_path", args.davis, "--results_path", results], "official",
                                      cwd=args.official))
            print(f"official evaluation_method.py: best {min(official):.2f} s, "
                  f"median {statistics.median(official):.2f} s; CPU {min(CPU_SECONDS['official']):.2f} s")
            print(f"speed-up (best/best): {min(official) / min(ours):.1f}x")
            same = read_csvs(results) == read_csvs(lpcache_out)
            print(f"CSV files byte-identical to the official ones: {same}")
            if not same:
                sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
