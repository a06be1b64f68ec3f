"""Run folders and sweeps that can be trusted: contained paths, caches checked where read, per-sequence
identity (mixed DAVIS-2017 frame sizes), precision in the run id, no partial output, file locks.

Data: a tiny DAVIS root of two sequences of different frame sizes (as DAVIS-2017's 854/910/1152 widths)
and a native-protocol cache of random features (stride 8), all made here in a few milliseconds.
"""
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from filelock import FileLock
from PIL import Image

from lpcache.cache import write_sequence
from lpcache.cli import cli
from lpcache.config import PropagationParams, SweepGrid
from lpcache.davis import read_mask, write_mask
from lpcache.errors import InputError
from lpcache.run_propagation import propagate
from lpcache.results import RunFolder, run_id
from lpcache.sweeping import shard_path, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"seqa": (48, 64), "seqb": (40, 96)}        # different heights and widths -> different grids
N_FRAMES = 6
STRIDE = 8
PARAMS = PropagationParams(0.7, 4, 3, 2)
RUN = "rand__t0.7_k4_r3_L2"


def _annotation(hw, t):
    mask = np.zeros(hw, np.uint8)
    mask[8:32, 4 + t:24 + t] = 1
    mask[16:hw[0] - 4, hw[1] - 28:hw[1] - 6] = 2
    return mask


def make_root(base, sizes=SIZES, names=None):
    """A DAVIS root: random JPEGs, two objects per frame, ImageSets listing `names` (default: the sequences)."""
    root = base / "davis"
    rng = np.random.default_rng(1)
    for seq, hw in sizes.items():
        for kind in ("JPEGImages", "Annotations"):
            (root / kind / "480p" / seq).mkdir(parents=True)
        for t in range(N_FRAMES):
            Image.fromarray(rng.integers(0, 255, hw + (3,), dtype=np.uint8)).save(
                root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")
            write_mask(str(root / "Annotations" / "480p" / seq / f"{t:05d}.png"), _annotation(hw, t))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names or sizes) + "\n")
    return str(root)


def write_cache_file(folder, seq, hw, seed=0, attrs=None):
    grid = (hw[0] // STRIDE, hw[1] // STRIDE)
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(grid + (16,)).astype(np.float32)
    feats = np.stack([base + 0.4 * rng.standard_normal(base.shape).astype(np.float32) for _ in range(N_FRAMES)])
    identity = {"protocol": "native", "input_hw": list(hw), "orig_hw": list(hw), "backbone": "rand",
                "checkpoint_sha256": "0" * 64, **(attrs or {})}
    return write_sequence(str(folder), seq, feats, [f"{t:05d}" for t in range(N_FRAMES)], dtype="float32",
                          attrs=identity)


def make_cache(base, sizes=SIZES, name="rand"):
    folder = base / "cache" / name
    for index, (seq, hw) in enumerate(sizes.items()):
        write_cache_file(folder, seq, hw, seed=index)
    return str(folder)


@pytest.fixture
def mixed(tmp_path):
    return make_root(tmp_path), make_cache(tmp_path)


def _masks(run_dir, seq):
    names = sorted(n for n in os.listdir(os.path.join(run_dir, seq)) if n.endswith(".png"))
    return names, np.stack([read_mask(os.path.join(run_dir, seq, n)) for n in names])


def _tree(folder):
    """{relative path: bytes} of every file under folder."""
    out = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


# ----------------------------------------------------------------------------------------------- mixed sizes
def test_subset_resume_with_mixed_frame_sizes(tmp_path, mixed):
    """Propagate B, then A+B into the same run folder: B skipped, A done, each with its own sizes."""
    root, cache = mixed
    out = tmp_path / "runs"
    run_dir = propagate(cache, root, out, PARAMS, sequences=["seqb"], device="cpu", progress=False)
    stamp = os.stat(os.path.join(run_dir, "seqb", "00003.png")).st_mtime_ns
    assert propagate(cache, root, out, PARAMS, device="cpu", progress=False) == run_dir
    assert os.stat(os.path.join(run_dir, "seqb", "00003.png")).st_mtime_ns == stamp
    for seq, hw in SIZES.items():
        names, masks = _masks(run_dir, seq)
        assert len(names) == N_FRAMES and masks.shape[1:] == hw
        done = json.load(open(os.path.join(run_dir, seq, ".done.json")))
        assert done["identity"]["grid_hw"] == [hw[0] // STRIDE, hw[1] // STRIDE]
        assert done["identity"]["input_hw"] == list(hw) and done["precision"] == "float32"
    record = json.load(open(os.path.join(run_dir, "run.json")))
    assert sorted(record["sequences"]) == ["seqa", "seqb"]
    assert "input_hw" not in record["identity"]["cache_attrs"] and record["identity"]["precision"] == "float32"
    # a subset again: nothing to do, nothing refused
    assert propagate(cache, root, out, PARAMS, sequences=["seqa"], device="cpu", progress=False) == run_dir


def test_finished_sequence_whose_cache_file_changed_is_refused(tmp_path, mixed):
    root, cache = mixed
    out = tmp_path / "runs"
    run_dir = propagate(cache, root, out, PARAMS, device="cpu", progress=False)
    before = _tree(run_dir)
    os.remove(os.path.join(cache, "seqa.h5"))
    write_cache_file(cache, "seqa", (48, 64), attrs={"input_hw": [96, 128]})   # re-extracted at another size
    with pytest.raises(InputError, match=r"seqa/\.done\.json: sequence seqa was made from another cache file "
                                         r"\(input_hw: folder has \[48, 64\], request has \[96, 128\]"):
        propagate(cache, root, out, PARAMS, device="cpu", progress=False)
    assert _tree(run_dir) == before


def test_sweep_over_a_cache_of_mixed_sizes(tmp_path, mixed):
    root, cache = mixed
    grid = SweepGrid(temperature=(0.7, 0.1), topk=(4,), radius=(3.0,), video_len=(2,))
    result = sweep([cache], root, str(tmp_path / "sweep"), grid, save_all=True, device="cpu", progress=False)
    assert result.protocol == {"protocol": "native", "input_hw": "per sequence"}
    from lpcache import scoring

    run_dir = propagate(cache, root, tmp_path / "runs", PARAMS, device="cpu", progress=False)
    official = scoring.score(root, run_dir, progress=False)
    row = next(r for r in result.rows if r["setting"] == PARAMS.id)
    assert row["J&F-Mean"] == official.global_scores["J&F-Mean"]
    saved = tmp_path / "sweep" / "runs" / RUN
    for seq in SIZES:
        np.testing.assert_array_equal(_masks(str(saved), seq)[1], _masks(run_dir, seq)[1])
    # a run folder saved by the sweep resumes under propagate (same identity), nothing redone
    stamp = os.stat(saved / "seqa" / "00002.png").st_mtime_ns
    propagate(cache, root, tmp_path / "sweep" / "runs", PARAMS, device="cpu", progress=False)
    assert os.stat(saved / "seqa" / "00002.png").st_mtime_ns == stamp


# ----------------------------------------------------------------------------------------------- precision
def test_precision_is_part_of_the_run_id_and_identity(tmp_path, mixed):
    root, cache = mixed
    assert run_id(PARAMS, "rand") == RUN
    assert run_id(PARAMS, "rand", "bfloat16") == RUN + "_bfloat16"
    out = tmp_path / "runs"
    low = propagate(cache, root, out, PARAMS, sequences=["seqa"], device="cpu", precision="bfloat16", progress=False)
    assert os.path.basename(low) == RUN + "_bfloat16"
    assert json.load(open(os.path.join(low, "run.json")))["identity"]["precision"] == "bfloat16"
    full = propagate(cache, root, out, PARAMS, sequences=["seqa"], device="cpu", progress=False)
    assert os.path.basename(full) == RUN and full != low
    # a bfloat16 run relabelled as float32 is refused, with today's and with older run.json records
    shutil.rmtree(full)
    shutil.copytree(low, full)
    with pytest.raises(InputError, match="run.json: this run folder was made differently .*precision"):
        propagate(cache, root, out, PARAMS, device="cpu", progress=False)
    record = json.load(open(os.path.join(full, "run.json")))
    del record["identity"]["precision"]             # as written before precision was in the identity
    json.dump(record, open(os.path.join(full, "run.json"), "w"))
    with pytest.raises(InputError, match="precision: folder has 'bfloat16', request has 'float32'"):
        propagate(cache, root, out, PARAMS, device="cpu", progress=False)
    assert not os.path.exists(os.path.join(full, "seqb"))


def test_sweep_keeps_precisions_apart(tmp_path, mixed):
    root, cache = mixed
    grid = SweepGrid(temperature=(0.7,), topk=(4,), radius=(3.0,), video_len=(2,))
    out = tmp_path / "sweep"
    sweep([cache], root, str(out), grid, save_all=True, device="cpu", precision="bfloat16", progress=False)
    assert sorted(os.listdir(out / "runs")) == [RUN + "_bfloat16"]
    shard = json.load(open(shard_path(out, "rand", "seqa")))
    assert shard["identity"]["precision"] == "bfloat16"
    low = _tree(out / "runs" / (RUN + "_bfloat16"))
    sweep([cache], root, str(out), grid, save_all=True, device="cpu", progress=False)
    assert sorted(os.listdir(out / "runs")) == [RUN, RUN + "_bfloat16"]
    assert json.load(open(shard_path(out, "rand", "seqa")))["identity"]["precision"] == "float32"
    assert _tree(out / "runs" / (RUN + "_bfloat16")) == low
    assert json.load(open(out / "runs" / RUN / "run.json"))["identity"]["precision"] == "float32"


# ----------------------------------------------------------------------------------------------- containment
def test_set_file_naming_a_folder_outside_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    root = make_root(tmp_path, names=["seqa", "../../victim"])
    cache = make_cache(tmp_path)
    out = tmp_path / "runs"
    with pytest.raises(InputError, match="val.txt: invalid sequence name '../../victim'"):
        propagate(cache, root, out, PARAMS, device="cpu", progress=False)
    with pytest.raises(InputError, match="invalid sequence name"):
        sweep([cache], root, str(tmp_path / "sweep"), SweepGrid(), progress=False)
    assert (victim / "keep.txt").read_text() == "precious" and not out.exists()
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("name", ["..", ".", "../victim", "a/b", "/abs", "nul\x00"])
def test_run_folder_refuses_names_that_leave_it(tmp_path, name):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    run = RunFolder(tmp_path / "runs", "r")
    for action in (run.start_sequence, run.is_done, run.discard_sequence):
        with pytest.raises(InputError):
            action(name)
    with pytest.raises(InputError):
        RunFolder(tmp_path / "runs", name)
    assert (victim / "keep.txt").read_text() == "precious"


def test_symlinked_sequence_folder_pointing_outside_is_never_cleared(tmp_path, mixed):
    root, cache = mixed
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    run_dir = tmp_path / "runs" / RUN
    run_dir.mkdir(parents=True)
    (run_dir / "seqa").symlink_to(victim, target_is_directory=True)
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", root, "--out",
                                      str(tmp_path / "runs"), "--temperature", "0.7", "--topk", "4", "--radius",
                                      "3", "--video-len", "2", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "outside" in result.output and len(result.output.splitlines()) == 1
    assert os.listdir(victim) == ["keep.txt"] and (victim / "keep.txt").read_text() == "precious"
    with pytest.raises(InputError, match="outside"):
        RunFolder(tmp_path / "runs", RUN).start_sequence("seqa")
    assert os.listdir(victim) == ["keep.txt"]


def test_sweep_shard_folder_symlinked_outside_is_refused(tmp_path, mixed):
    root, cache = mixed
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "sweep"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "rand").symlink_to(victim, target_is_directory=True)
    with pytest.raises(InputError, match="outside"):
        sweep([cache], root, str(out), SweepGrid(temperature=(0.7,), topk=(4,), radius=(3.0,), video_len=(2,)),
              device="cpu", progress=False)
    assert os.listdir(victim) == []


# ----------------------------------------------------------------------------------------------- caches
def test_inconsistent_cache_folder_leaves_no_output(tmp_path, mixed):
    root, cache = mixed
    os.remove(os.path.join(cache, "seqb.h5"))
    write_cache_file(cache, "seqb", SIZES["seqb"], attrs={"checkpoint_sha256": "1" * 64})
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", root, "--out", str(out),
                                      "--device", "cpu", "--topk", "4", "--no-progress"])
    assert result.exit_code == 1 and "seqb.h5: checkpoint_sha256" in result.output, result.output
    assert len(result.output.splitlines()) == 1 and not out.exists()
    with pytest.raises(InputError, match="seqb.h5: checkpoint_sha256"):
        sweep([cache], root, str(tmp_path / "sweep"), SweepGrid(topk=(4,)), progress=False)
    assert not (tmp_path / "sweep").exists()


def test_non_finite_frame_fails_in_one_line_and_leaves_nothing(tmp_path, mixed):
    root, cache = mixed
    with h5py.File(os.path.join(cache, "seqa.h5"), "r+") as handle:
        handle["feats"][3, 1, 2, 0] = np.nan
    out = tmp_path / "runs"
    args = ["propagate", "--cache", cache, "--davis", root, "--out", str(out), "--temperature", "0.7", "--topk",
            "4", "--radius", "3", "--video-len", "2", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "seqa.h5" in lines[0] and "frame 3" in lines[0]
    assert not out.exists()                           # no run.json, no partial sequence, no empty folders
    # a run that already finished seqb keeps it; the failing seqa leaves neither masks nor a done marker
    propagate(cache, root, out, PARAMS, sequences=["seqb"], device="cpu", progress=False)
    assert CliRunner().invoke(cli, args).exit_code == 1
    run_dir = out / RUN
    assert sorted(os.listdir(run_dir)) == [".run.lock", ".seqa.lock", ".seqb.lock", "run.json", "seqb"]
    assert sorted(json.load(open(run_dir / "run.json"))["sequences"]) == ["seqb"]
    with pytest.raises(InputError, match="frame 3"):
        sweep([cache], root, str(tmp_path / "sweep"), SweepGrid(topk=(4,), radius=(3.0,)), save_all=True,
              sequences=["seqa"], device="cpu", progress=False)
    assert not (tmp_path / "sweep").exists()


# ----------------------------------------------------------------------------------------------- locks
def _propagate_into(cache, root, out):
    """Child process body (spawn): one propagate of every sequence."""
    import torch

    torch.set_num_threads(1)
    propagate(cache, root, out, PARAMS, device="cpu", progress=False)


def _sweep_into(cache, root, out, temperature):
    import torch

    torch.set_num_threads(1)
    sweep([cache], root, out, SweepGrid(temperature=(temperature,), topk=(4,), radius=(3.0,), video_len=(2,)),
          device="cpu", progress=False)


def _run_concurrently(target, arg_lists):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in arg_lists]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    return [process.exitcode for process in processes]


def test_two_processes_propagating_into_one_run(tmp_path, mixed):
    root, cache = mixed
    reference = propagate(cache, root, tmp_path / "reference", PARAMS, device="cpu", progress=False)
    out = str(tmp_path / "runs")
    assert _run_concurrently(_propagate_into, [(cache, root, out)] * 2) == [0, 0]
    run_dir = os.path.join(out, RUN)
    for seq in SIZES:
        names, masks = _masks(run_dir, seq)
        assert len(names) == N_FRAMES and os.path.isfile(os.path.join(run_dir, seq, ".done.json"))
        np.testing.assert_array_equal(masks, _masks(reference, seq)[1])
        assert not [n for n in os.listdir(os.path.join(run_dir, seq)) if n.endswith(".partial")]
    assert sorted(json.load(open(os.path.join(run_dir, "run.json")))["sequences"]) == ["seqa", "seqb"]


def test_propagate_waits_for_a_held_sequence_lock_then_skips_it(tmp_path, mixed):
    """Another process holds seqb's lock: propagate does seqa, waits for seqb (and says so), then finds seqb
    done by the other process and skips it, leaving its files alone."""
    root, cache = mixed
    reference = propagate(cache, root, tmp_path / "reference", PARAMS, device="cpu", progress=False)
    run_dir = tmp_path / "runs" / RUN
    run_dir.mkdir(parents=True)
    lock = FileLock(str(run_dir / ".seqb.lock"))
    lock.acquire()
    args = [sys.executable, "-m", "lpcache.cli", "-v", "propagate", "--cache", cache, "--davis", root, "--out",
            str(tmp_path / "runs"), "--temperature", "0.7", "--topk", "4", "--radius", "3", "--video-len", "2",
            "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and not (run_dir / "seqa" / ".done.json").exists():
            time.sleep(0.2)
        time.sleep(1.5)
        assert process.poll() is None, process.communicate()
        assert not (run_dir / "seqb").exists()        # waiting: nothing cleared or written for seqb
        shutil.copytree(os.path.join(reference, "seqb"), run_dir / "seqb")   # "the other process" finishes seqb
        stamps = {n: os.stat(run_dir / "seqb" / n).st_mtime_ns for n in os.listdir(run_dir / "seqb")}
    finally:
        lock.release()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "locked by another process, waiting" in err and "seqb: already done, skipped" in err
    assert {n: os.stat(run_dir / "seqb" / n).st_mtime_ns for n in os.listdir(run_dir / "seqb")} == stamps


def test_two_sweeps_with_different_grids_keep_each_others_settings(tmp_path, mixed):
    root, cache = mixed
    out = str(tmp_path / "sweep")
    assert _run_concurrently(_sweep_into, [(cache, root, out, 0.7), (cache, root, out, 0.1)]) == [0, 0]
    for seq in SIZES:
        settings = json.load(open(shard_path(out, "rand", seq)))["settings"]
        assert sorted(settings) == ["t0.1_k4_r3_L2", "t0.7_k4_r3_L2"]
