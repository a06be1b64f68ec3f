"""Fault battery: SIGKILL mid-stage then resume, broken cache files, a full disk, two concurrent sweeps.

Every scenario runs the real CLI in a subprocess on a small synthetic dataset (efficientnet_lite0 weights
from its package, native protocol, CPU). scripts/fault_battery.sh runs the same scenarios for a user.
"""
import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import h5py
import pytest
from click.testing import CliRunner

from lpcache.cache import FeatureCache, verify_sequence
from lpcache.cli import cli
from lpcache.config import SweepGrid
from lpcache.extraction import extract
from lpcache.run_propagation import propagate
from lpcache.sweeping import sweep
from lpcache.synthetic import make_synthetic_davis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_SEQ = 4
SEQS = [f"synthetic-{i:02d}" for i in range(N_SEQ)]
BACKBONE_ID = "efficientnet_lite0-native"


def rerun(*args):
    """Run the CLI in this process (a re-run needs no subprocess); returns (exit code, output)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def lpcache(*args, preexec_fn=None, timeout=240):
    """Run `python -m lpcache.cli ARGS` to the end; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "lpcache.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec_fn, env=_env())


def _env():
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def kill_when(args, condition, timeout=180):
    """Start the CLI, SIGKILL it as soon as `condition()` holds; fail if it ends first."""
    process = subprocess.Popen([sys.executable, "-m", "lpcache.cli", *map(str, args)], cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if condition():
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                return
            if process.poll() is not None:
                pytest.fail(f"the process ended (rc {process.returncode}) before the kill point: "
                            f"{process.stderr.read()[-2000:]}")
            time.sleep(0.005)
        pytest.fail("kill point not reached in time")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def mtimes(paths):
    return {p: os.stat(p).st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic DAVIS root and a complete reference cache (extracted in-process)."""
    root = tmp_path_factory.mktemp("faults")
    davis = root / "davis"
    make_synthetic_davis(davis, n_sequences=N_SEQ, n_frames=6, hw=(120, 216), seed=5, n_objects=2)
    extract(davis_root=str(davis), cache_dir=str(root / "cache"), protocol="native", num_workers=0, progress=False)
    return root, str(davis), str(root / "cache" / BACKBONE_ID)


@pytest.fixture(scope="module")
def reference_run(data):
    """An uninterrupted propagate run (in-process): the masks a resumed run must reproduce byte for byte."""
    root, davis, cache = data
    return propagate(cache, davis, str(root / "reference-runs"), device="cpu", progress=False)


@pytest.fixture(scope="module")
def reference_sweep(data):
    """J&F-Mean (as written in sweep_results.csv) per setting of an uninterrupted sweep (in-process)."""
    root, davis, cache = data
    out = root / "reference-sweep"
    sweep([cache], davis, str(out), SweepGrid(temperature=(0.7, 0.1)), device="cpu", progress=False)
    return {r["setting"]: r["J&F-Mean"] for r in csv.DictReader(open(out / "sweep_results.csv"))}


def _copy_cache(cache_dir, dest):
    shutil.copytree(cache_dir, dest)
    return str(dest)


# ------------------------------------------------------------------------------------- SIGKILL + resume
def test_sigkill_during_extract_then_resume(data, tmp_path):
    _, davis, _ = data
    cache = tmp_path / "cache"
    folder = cache / BACKBONE_ID

    def one_done_one_partial():
        if not folder.is_dir():
            return False
        names = os.listdir(folder)
        return any(n.endswith(".h5") for n in names) and any(".h5." in n and n.endswith(".partial") for n in names)

    args = ["extract", "--davis", davis, "--cache", cache, "--protocol", "native", "--num-workers", 0,
            "--batch-size", 1]
    kill_when(args, one_done_one_partial)
    finished = sorted(str(folder / n) for n in os.listdir(folder) if n.endswith(".h5"))
    assert 1 <= len(finished) < N_SEQ
    assert any(n.endswith(".partial") for n in os.listdir(folder))  # killed mid-sequence
    for path in finished:  # whatever is named .h5 is complete
        assert verify_sequence(path) is None
    before = mtimes(finished)
    code, output = rerun(*args)
    assert code == 0, output
    assert f"{len(finished)} already complete" in output
    assert mtimes(finished) == before  # finished work not redone
    assert FeatureCache(folder).sequences == SEQS
    assert not any(n.endswith(".partial") for n in os.listdir(folder))
    assert all(verify_sequence(str(folder / f"{s}.h5")) is None for s in SEQS)


def test_sigkill_during_propagate_then_resume(data, reference_run, tmp_path):
    _, davis, cache = data
    runs = tmp_path / "runs"
    run = runs / f"{BACKBONE_ID}__t0.7_k8_r18_L20"

    def one_done_one_started():
        if not run.is_dir():
            return False
        done = [s for s in SEQS if (run / s / ".done.json").is_file()]
        started = [s for s in SEQS if (run / s).is_dir() and not (run / s / ".done.json").is_file()
                   and any(n.endswith(".png") for n in os.listdir(run / s))]
        return bool(done) and bool(started)

    args = ["propagate", "--cache", cache, "--davis", davis, "--out", runs, "--device", "cpu", "--no-progress"]
    kill_when(args, one_done_one_started)
    done = [s for s in SEQS if (run / s / ".done.json").is_file()]
    assert 1 <= len(done) < N_SEQ
    done_pngs = [str(run / s / f) for s in done for f in sorted(os.listdir(run / s))]
    before = mtimes(done_pngs)
    code, output = rerun(*args, "--score")
    assert code == 0, output
    assert mtimes(done_pngs) == before
    assert all((run / s / ".done.json").is_file() and len(os.listdir(run / s)) == 7 for s in SEQS)
    # Nothing half-written was accepted: the resumed run equals an uninterrupted one, byte for byte.
    clean_run = type(run)(reference_run)
    for seq in SEQS:
        for name in sorted(os.listdir(clean_run / seq)):
            if name.endswith(".png"):
                assert (run / seq / name).read_bytes() == (clean_run / seq / name).read_bytes(), (seq, name)


def test_sigkill_during_sweep_then_resume(data, reference_sweep, tmp_path):
    _, davis, cache = data
    out = tmp_path / "sweep"
    shards = out / "shards" / BACKBONE_ID

    def some_shards():
        return shards.is_dir() and 1 <= len([n for n in os.listdir(shards) if n.endswith(".json")]) < N_SEQ

    args = ["sweep", "--cache", cache, "--davis", davis, "--out", out, "--temperature", "0.7,0.1", "--device", "cpu",
            "--no-progress"]
    kill_when(args, some_shards)
    finished = sorted(str(shards / n) for n in os.listdir(shards) if n.endswith(".json"))
    assert 1 <= len(finished) < N_SEQ
    for path in finished:
        json.load(open(path))  # a shard on disk is always whole
    before = mtimes(finished)
    code, output = rerun(*args)
    assert code == 0, output
    assert mtimes(finished) == before  # their videos were not recomputed
    rows = list(csv.DictReader(open(out / "sweep_results.csv")))
    assert sorted(r["setting"] for r in rows) == ["t0.1_k8_r18_L20", "t0.7_k8_r18_L20"]
    assert {r["setting"]: r["J&F-Mean"] for r in rows} == reference_sweep


# ------------------------------------------------------------------------------------- broken cache files
def test_truncated_corrupt_and_wrong_format_files_detected(data, tmp_path):
    _, davis, cache = data
    cache_copy = tmp_path / "cache"
    folder = _copy_cache(cache, cache_copy / BACKBONE_ID)
    truncated = os.path.join(folder, "synthetic-00.h5")
    with open(truncated, "r+b") as handle:
        handle.truncate(os.path.getsize(truncated) // 2)
    bad_signature = os.path.join(folder, "synthetic-01.h5")
    with open(bad_signature, "r+b") as handle:
        handle.write(b"\x00" * 8)  # the HDF5 superblock signature
    wrong_format = os.path.join(folder, "synthetic-02.h5")
    with h5py.File(wrong_format, "r+") as handle:
        handle.attrs["format_version"] = 99
    runner = CliRunner()

    verify = runner.invoke(cli, ["cache", "verify", folder])
    assert verify.exit_code == 1
    assert "Error: " in verify.output and "3 of 4 files bad" in verify.output
    for path, words in ((truncated, "HDF5"), (bad_signature, "HDF5"), (wrong_format, "format version 99")):
        assert any(line.startswith(f"BAD {path}") and words in line for line in verify.output.splitlines()), \
            (path, verify.output)

    # propagate and sweep refuse the cache with a one-line error naming a bad file, and write no masks.
    propagated = runner.invoke(cli, ["propagate", "--cache", folder, "--davis", davis, "--out", str(tmp_path / "runs"),
                                     "--device", "cpu", "--no-progress"])
    assert propagated.exit_code == 1 and isinstance(propagated.exception, SystemExit), propagated.output
    assert "Error: " in propagated.output and "synthetic-00.h5" in propagated.output
    assert not [n for _, _, files in os.walk(tmp_path / "runs") for n in files if n.endswith(".png")]
    swept = runner.invoke(cli, ["sweep", "--cache", folder, "--davis", davis, "--out", str(tmp_path / "sweep"),
                                "--temperature", "0.7", "--device", "cpu", "--no-progress"])
    assert swept.exit_code == 1 and isinstance(swept.exception, SystemExit), swept.output
    assert "Error: " in swept.output and "synthetic-00.h5" in swept.output

    # extract detects the three bad files and redoes exactly those; the good one is kept as it is.
    good = os.path.join(folder, "synthetic-03.h5")
    before = mtimes([good])
    redo = runner.invoke(cli, ["extract", "--davis", davis, "--cache", str(cache_copy), "--protocol", "native",
                               "--num-workers", "0"])
    assert redo.exit_code == 0, redo.output
    assert "3 sequences extracted, 1 already complete" in redo.output
    assert mtimes([good]) == before
    assert runner.invoke(cli, ["cache", "verify", folder]).exit_code == 0


# ------------------------------------------------------------------------------------- a full disk
def _file_size_limit(limit_bytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_disk_full_during_extract_is_a_clear_error(data, tmp_path):
    _, davis, _ = data
    cache = tmp_path / "cache"
    # One sequence's features are 6 x 15 x 27 x 40 float16 = 194 kB; no file may exceed 64 kB.
    result = lpcache("extract", "--davis", davis, "--cache", cache, "--protocol", "native", "--num-workers", 0,
                     preexec_fn=_file_size_limit(64 * 1024))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "File too large" in result.stderr or "No space" in result.stderr or "disk" in result.stderr.lower()
    folder = cache / BACKBONE_ID
    left = os.listdir(folder) if folder.is_dir() else []
    assert not [n for n in left if n.endswith(".h5") or n.endswith(".partial")], left


def test_disk_full_during_propagate_is_a_clear_error(data, tmp_path):
    _, davis, cache = data
    # run.json (provenance) fits, the palette PNGs of 120x216 masks do too; the limit hits a larger write.
    result = lpcache("propagate", "--cache", cache, "--davis", davis, "--out", tmp_path / "runs", "--device", "cpu",
                     "--no-progress", "--score", preexec_fn=_file_size_limit(600))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ") and "Traceback" not in result.stderr, result.stderr[-3000:]
    run = tmp_path / "runs" / f"{BACKBONE_ID}__t0.7_k8_r18_L20"
    for seq in SEQS:  # no sequence is marked done with missing or partial masks
        if (run / seq / ".done.json").is_file():
            assert len([n for n in os.listdir(run / seq) if n.endswith(".png")]) == 6
    assert not [n for _, _, files in os.walk(tmp_path / "runs") for n in files if n.endswith(".partial")]


# ------------------------------------------------------------------------------------- concurrent sweeps
def test_two_writers_of_one_file_do_not_collide(tmp_path):
    """What two concurrent sweeps do to a shard, made deterministic: interleaved atomic writes of one path."""
    from lpcache.atomic import atomic_path

    target = str(tmp_path / "shard.json")
    with atomic_path(target) as first:
        with open(first, "w") as handle:
            handle.write('{"writer": 1}')
        with atomic_path(target) as second:
            with open(second, "w") as handle:
                handle.write('{"writer": 2}')
    assert json.load(open(target)) == {"writer": 1}  # the last rename wins, both writers succeed
    assert os.listdir(tmp_path) == ["shard.json"]


def test_two_concurrent_sweeps_same_folder(data, reference_sweep, tmp_path):
    _, davis, cache = data
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "lpcache.cli", "sweep", "--cache", cache, "--davis", davis, "--out", str(out),
            "--temperature", "0.7,0.1", "--device", "cpu", "--no-progress"]
    processes = [subprocess.Popen(list(map(str, args)), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in processes]
    codes = [p.returncode for p in processes]
    assert codes == [0, 0], outputs  # shards are merged under their file locks: both finish
    for name in os.listdir(out / "shards" / BACKBONE_ID):
        if name.endswith(".lock"):
            continue
        assert name.endswith(".json"), name  # no stray .partial
        json.load(open(out / "shards" / BACKBONE_ID / name))
    rows = {r["setting"]: r["J&F-Mean"] for r in csv.DictReader(open(out / "sweep_results.csv"))}
    assert rows == reference_sweep
    stamps = mtimes([str(out / "shards" / BACKBONE_ID / f"{s}.json") for s in SEQS])
    code, output = rerun("sweep", "--cache", cache, "--davis", davis, "--out", out, "--temperature", "0.7,0.1",
                         "--device", "cpu", "--no-progress")
    assert code == 0, output
    assert mtimes(list(stamps)) == stamps  # the finished sweep is reused as it is
