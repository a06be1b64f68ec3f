"""Wall time of `lpcache score` on the 20 shared DAVIS sequences (OSVOS binarised as predictions).

    python benchmarks/bench_score.py [--jobs 2] [--repeat 3] [--official /path/to/davis2017-evaluation]

Builds the prediction folder in a temp dir, runs `lpcache score` as a subprocess (CLI start-up included),
then vos-benchmark (PyPI `vos-benchmark`, a benchmark-only dependency: `pip install vos-benchmark`) with the
same number of processes as a whole process too, and checks that both give the same J, F and J&F (vos-benchmark
reports them x100, per object and global). With --official it also runs the official evaluation_method.py on the
same folder (its CSVs removed before every run, since it would otherwise reuse them) and checks that both wrote
the same CSV bytes.
"""
import argparse
import json
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
OUTPUT = {}  # label -> stdout of its last run


def timed(command, label, cwd=None):
    """Wall seconds of a subprocess; its CPU seconds (user + sys, children included) go to CPU_SECONDS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    OUTPUT[label] = done.stdout
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


VOS_SCRIPT = """import json, sys
from vos_benchmark.benchmark import benchmark
jf, j, f, objects = benchmark([sys.argv[1]], [sys.argv[2]], num_processes=int(sys.argv[3]), verbose=False)
per_object = {f"{seq}_{k}": (float(iou[k]), float(bf[k])) for seq, (iou, bf) in objects[0].items() for k in iou}
print(json.dumps({"J&F": float(jf[0]), "J": float(j[0]), "F": float(f[0]), "per_object": per_object}))
"""


def have_vos_benchmark():
    try:
        import vos_benchmark  # noqa: F401  (benchmark-only dependency)
    except ImportError:
        return False
    return True


def full_precision_scores(davis_root, results):
    """lpcache's global and per-object scores in memory (untimed: the timed runs write only the CSVs)."""
    sys.path.insert(0, REPO)
    from lpcache.scoring import score

    result = score(davis_root, results, progress=False)
    return {"global": result.global_scores, "per_object": result.per_object}


def compare_with_vos(vos, ours, tolerance=1e-9):
    """vos-benchmark's numbers (x100) against lpcache's JSON; True when every J, F and J&F agrees."""
    ok = set(vos["per_object"]) == set(ours["per_object"])
    for key, (j, f) in vos["per_object"].items():
        row = ours["per_object"].get(key, {})
        ok &= abs(j - 100 * row.get("J-Mean", -1)) <= tolerance and abs(f - 100 * row.get("F-Mean", -1)) <= tolerance
    for name, column in (("J&F", "J&F-Mean"), ("J", "J-Mean"), ("F", "F-Mean")):
        ok &= abs(vos[name] - 100 * ours["global"][column]) <= tolerance
    return ok


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
        if have_vos_benchmark():
            vos_command = [sys.executable, "-c", VOS_SCRIPT, os.path.join(args.davis, "Annotations", "480p"), results,
                           str(args.jobs)]
            vos = [timed(vos_command, "vos", cwd=work) for _ in range(args.repeat)]
            print(f"vos-benchmark, {args.jobs} processes (whole process): best {min(vos):.2f} s, "
                  f"median {statistics.median(vos):.2f} s; CPU {min(CPU_SECONDS['vos']):.2f} s")
            print(f"speed-up over vos-benchmark (best/best): CLI {min(vos) / min(ours):.1f}x, "
                  f"library in a fresh python {min(vos) / min(lib):.1f}x")
            same = compare_with_vos(json.loads(OUTPUT["vos"]), full_precision_scores(args.davis, results))
            print(f"same J, F and J&F as vos-benchmark (per object and global, |diff| <= 1e-9 on its x100 scale): "
                  f"{same}")
            if not same:
                sys.exit(1)
        else:
            print("vos-benchmark not installed (pip install vos-benchmark): comparison skipped")
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
