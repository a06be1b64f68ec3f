"""`lpcache sweep` on real shared sequences (short frame ranges): exactness against propagate + score,
resume, saved result folders, bad input, the CLI.

Data: a DAVIS root in tmp_path with symlinks to the first N frames of real sequences, and caches of real
features computed from those frames (16x16 patches of the 480x880 frame, centred, times a fixed random
projection: a 30x55 grid, as a ViT/16 gives).
"""
import csv
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lpcache import scoring
from lpcache.cache import write_sequence
from lpcache.cli import cli
from lpcache.config import PropagationParams, SweepGrid
from lpcache.davis import read_mask
from lpcache.errors import InputError
from lpcache.metrics import GLOBAL_COLUMNS
from lpcache.run_propagation import propagate
from lpcache.report import read_results_csv
from lpcache.sweeping import sweep

SHORT = ["car-shadow", "motocross-jump", "scooter-black"]
N_FRAMES = 5
SEED_HW = (480, 880)
#: 4 x 4 x 2 x 2 = 64 settings; video_len < N_FRAMES so the short-term window slides.
GRID = SweepGrid(temperature=(0.05, 0.1, 0.3, 0.7), topk=(1, 4, 8, 12), radius=(4.0, 12.0), video_len=(2, 3))


# ----------------------------------------------------------------------------------------------- data builders
def build_davis_subset(davis_root, root, sequences, n_frames):
    """A DAVIS root with symlinks to the first n_frames JPEGs and annotations of each sequence."""
    for seq in sequences:
        for kind, extension in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
            folder = os.path.join(root, kind, "480p", seq)
            os.makedirs(folder, exist_ok=True)
            for index in range(n_frames):
                name = f"{index:05d}{extension}"
                os.symlink(os.path.join(davis_root, kind, "480p", seq, name), os.path.join(folder, name))
    os.makedirs(os.path.join(root, "ImageSets", "2017"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", "2017", "val.txt"), "w") as handle:
        handle.write("\n".join(sequences) + "\n")
    return str(root)


def patch_features(jpeg_path, stride=16, channels=32, seed=0):
    """Real features of a real frame: centred stride x stride patches of the 480x880 frame, projected."""
    image = Image.open(jpeg_path).convert("RGB").resize((SEED_HW[1], SEED_HW[0]), Image.NEAREST)
    pixels = np.asarray(image, np.float32) / 255.0
    h, w = SEED_HW[0] // stride, SEED_HW[1] // stride
    patches = pixels.reshape(h, stride, w, stride, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, -1)
    projection = np.random.default_rng(seed).standard_normal((patches.shape[-1], channels)).astype(np.float32)
    return (patches - patches.mean(-1, keepdims=True)) @ projection


def build_cache(backbone_dir, root, sequences, n_frames, seed=0, protocol="seed", input_hw=SEED_HW):
    for seq in sequences:
        frames = [f"{i:05d}" for i in range(n_frames)]
        feats = np.stack([patch_features(os.path.join(root, "JPEGImages", "480p", seq, f + ".jpg"), seed=seed)
                          for f in frames])
        write_sequence(backbone_dir, seq, feats, frames, dtype="float16",
                       attrs={"protocol": protocol, "input_hw": list(input_hw), "backbone": f"patch16-{seed}"})
    return str(backbone_dir)


@pytest.fixture(scope="module")
def short_data(tmp_path_factory):
    """(DAVIS root, cache A, cache B) for the 3 short sequences, first N_FRAMES frames."""
    from conftest import DAVIS2016

    if not os.path.isdir(DAVIS2016):
        pytest.skip(f"real data not found at {DAVIS2016}")
    base = tmp_path_factory.mktemp("sweepdata")
    root = build_davis_subset(DAVIS2016, base / "davis", SHORT, N_FRAMES)
    cache_a = build_cache(base / "cache" / "patchA", root, SHORT, N_FRAMES, seed=0)
    cache_b = build_cache(base / "cache" / "patchB", root, SHORT, N_FRAMES, seed=1)
    return root, cache_a, cache_b


@pytest.fixture(scope="module")
def full_sweep(short_data, tmp_path_factory):
    """The 64-setting sweep of cache A, saving the 2 best settings' result folders."""
    root, cache_a, _ = short_data
    out = str(tmp_path_factory.mktemp("sweepout"))
    result = sweep([cache_a], root, out, GRID, save_best=2, threads=1, progress=False)
    return result, out


# ----------------------------------------------------------------------------------------------- exactness
def test_every_setting_equals_propagate_then_score(short_data, full_sweep, tmp_path, one_thread):
    """Acceptance: all 64 settings of cache A, J&F etc. == (full precision) propagate + score run separately."""
    root, cache_a, _ = short_data
    result, out = full_sweep
    rows = {r["setting"]: r for r in result.rows if r["backbone"] == "patchA"}
    assert len(rows) == 64
    objects = {(r["setting"], r["object"]): r for r in result.per_object if r["backbone"] == "patchA"}
    for params in GRID.settings():
        run = propagate(cache_a, root, str(tmp_path / "runs"), params, progress=False)
        official = scoring.score(root, run, gt_size=SEED_HW, progress=False)
        for column in GLOBAL_COLUMNS:
            assert rows[params.id][column] == official.global_scores[column], (params.id, column)
        for key, values in official.per_object.items():
            for column, value in values.items():
                assert objects[(params.id, key)][column] == value, (params.id, key, column)
    # the sweep is not trivially constant: settings differ
    assert len({r["J&F-Mean"] for r in rows.values()}) > 10
    # and the CSV holds the same numbers, exactly
    parsed = {(r["backbone"], r["setting"]): r for r in read_results_csv(os.path.join(out, "sweep_results.csv"))}
    for row in result.rows:
        for column in GLOBAL_COLUMNS:
            assert parsed[(row["backbone"], row["setting"])][column] == row[column]


def test_outputs_of_a_two_backbone_sweep(short_data, tmp_path):
    root, cache_a, cache_b = short_data
    grid = SweepGrid(temperature=(0.05, 0.7), topk=(4, 8), radius=(4.0, 12.0), video_len=(2,))
    out = str(tmp_path / "out")
    result = sweep([cache_a, cache_b], root, out, grid, threads=1, progress=False)
    assert result.backbones == ["patchA", "patchB"]
    assert len(result.rows) == 16 and len(result.per_object) == 16 * 3   # one object per DAVIS-2016 sequence
    with open(os.path.join(out, "sweep_per_object.csv"), newline="") as handle:
        objects = [r["object"] for r in csv.DictReader(handle)]
    assert len(objects) == 16 * 3 and objects[:3] == ["car-shadow_1", "motocross-jump_1", "scooter-black_1"]
    assert result.best("patchA")[0]["J&F-Mean"] != result.best("patchB")[0]["J&F-Mean"]
    text = open(os.path.join(out, "leaderboard.md")).read()
    best_a, best_b = result.best("patchA")[0], result.best("patchB")[0]
    assert best_a["setting"] in text and best_b["setting"] in text
    plots = sorted(os.listdir(os.path.join(out, "plots")))
    assert len([p for p in plots if p.startswith("heatmap_")]) == 2 * 2 * 1
    assert "per_sequence_patchA.png" in plots
    record = json.load(open(os.path.join(out, "sweep.json")))
    assert record["best"] == {"patchA": best_a["setting"], "patchB": best_b["setting"]}
    assert record["provenance"]["protocol"] == {"protocol": "seed", "input_hw": [480, 880]}
    shards = os.listdir(os.path.join(out, "shards", "patchA"))
    assert sorted(n for n in shards if not n.endswith(".lock")) == [s + ".json" for s in SHORT]


def test_save_best_writes_the_masks_propagate_writes(short_data, full_sweep, tmp_path):
    root, cache_a, _ = short_data
    result, out = full_sweep
    runs = sorted(os.listdir(os.path.join(out, "runs")))
    expected = sorted(f"patchA__{r['setting']}" for r in result.best("patchA", 2))
    assert runs == expected
    best = result.best("patchA")[0]
    params = PropagationParams(best["temperature"], best["topk"], best["radius"], best["video_len"])
    reference = propagate(cache_a, root, str(tmp_path / "ref"), params, progress=False)
    saved = os.path.join(out, "runs", f"patchA__{params.id}")
    for seq in SHORT:
        names = sorted(n for n in os.listdir(os.path.join(reference, seq)) if n.endswith(".png"))
        assert len(names) == N_FRAMES
        for name in names:
            assert np.array_equal(read_mask(os.path.join(saved, seq, name)),
                                  read_mask(os.path.join(reference, seq, name)))
    rescored = scoring.score(root, saved, gt_size=SEED_HW, progress=False)
    assert rescored.global_scores["J&F-Mean"] == best["J&F-Mean"]


# ----------------------------------------------------------------------------------------------- resume
def test_rerun_with_a_bigger_grid_computes_only_missing_settings(short_data, tmp_path, monkeypatch):
    import lpcache.propagation.engine as engine

    root, cache_a, _ = short_data
    small = SweepGrid(temperature=(0.1,), topk=(4,), radius=(12.0,), video_len=(2, 3))
    big = SweepGrid(temperature=(0.1, 0.7), topk=(4,), radius=(12.0,), video_len=(2, 3))
    out = str(tmp_path / "out")
    calls = []
    original = engine.iter_propagate

    def recording(frames_feats, first, settings, *args, **kw):
        calls.append(sorted(p.id for p in settings))
        return original(frames_feats, first, settings, *args, **kw)

    monkeypatch.setattr(engine, "iter_propagate", recording)
    first = sweep([cache_a], root, out, small, sequences=SHORT[:2], threads=1, progress=False)
    assert len(calls) == 2 and all(c == sorted(p.id for p in small.settings()) for c in calls)
    calls.clear()
    second = sweep([cache_a], root, out, big, sequences=SHORT[:2], threads=1, progress=False)
    assert calls == [["t0.7_k4_r12_L2", "t0.7_k4_r12_L3"]] * 2
    assert [r for r in second.rows if r["temperature"] == 0.1] == first.rows
    calls.clear()
    sweep([cache_a], root, out, big, sequences=SHORT[:2], threads=1, progress=False)
    assert calls == []                                   # nothing left to do
    # the resumed result equals a fresh sweep of the big grid
    fresh = sweep([cache_a], root, str(tmp_path / "fresh"), big, sequences=SHORT[:2], threads=1, progress=False)
    assert fresh.rows == second.rows and fresh.per_object == second.per_object
    record = json.load(open(os.path.join(out, "sweep.json")))
    assert record["provenance"]["pairs_reused"] == 8 and record["provenance"]["videos_run"] == 0


def test_stale_shard_from_another_cache_is_recomputed(short_data, tmp_path):
    root, cache_a, cache_b = short_data
    grid = SweepGrid(temperature=(0.1,), topk=(4,), radius=(12.0,), video_len=(4,))
    out = str(tmp_path / "out")
    sweep([cache_a], root, out, grid, sequences=SHORT[:1], threads=1, progress=False)
    shard = os.path.join(out, "shards", "patchA", SHORT[0] + ".json")
    record = json.load(open(shard))
    record["identity"]["cache_bytes"] += 1            # as if the cache file had been re-extracted
    record["settings"]["t0.1_k4_r12_L4"]["J"][0][0] = 0.123456
    with open(shard, "w") as handle:
        json.dump(record, handle)
    again = sweep([cache_a], root, out, grid, sequences=SHORT[:1], threads=1, progress=False)
    fresh = sweep([cache_a], root, str(tmp_path / "fresh"), grid, sequences=SHORT[:1], threads=1, progress=False)
    assert again.rows == fresh.rows
    assert json.load(open(shard))["settings"]["t0.1_k4_r12_L4"]["J"][0][0] != 0.123456


def test_save_all_writes_every_setting(short_data, tmp_path):
    root, cache_a, _ = short_data
    grid = SweepGrid(temperature=(0.1, 0.7), topk=(4,), radius=(12.0,), video_len=(4,))
    out = str(tmp_path / "out")
    result = sweep([cache_a], root, out, grid, sequences=SHORT[:1], save_all=True, threads=1, progress=False)
    for row in result.rows:
        run = os.path.join(out, "runs", f"patchA__{row['setting']}")
        assert os.path.isfile(os.path.join(run, SHORT[0], ".done.json"))
        assert json.load(open(os.path.join(run, "run.json")))["identity"]["params"]["temperature"] == row["temperature"]
        rescored = scoring.score(root, run, sequences=SHORT[:1], gt_size=SEED_HW, progress=False)
        assert rescored.global_scores["J&F-Mean"] == row["J&F-Mean"]


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_input_fails_before_any_work(short_data, tmp_path):
    root, cache_a, _ = short_data
    grid = SweepGrid(temperature=(0.1,), topk=(4,))
    other = build_cache(tmp_path / "cache" / "native", root, SHORT[:1], N_FRAMES, protocol="native",
                        input_hw=(480, 854))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="different protocols"):
        sweep([cache_a, other], root, str(out), grid, sequences=SHORT[:1], progress=False)
    with pytest.raises(InputError, match="sequences missing from the cache"):
        sweep([other], root, str(out), grid, sequences=SHORT[:2], progress=False)
    with pytest.raises(InputError, match="larger than the 1650 candidates"):
        sweep([cache_a], root, str(out), SweepGrid(topk=(4, 2000)), sequences=SHORT[:1], progress=False)
    with pytest.raises(InputError, match="same backbone id given twice"):
        sweep([cache_a, cache_a], root, str(out), grid, progress=False)
    with pytest.raises(InputError, match="needs --scheduler"):
        sweep([cache_a], root, str(out), grid, backend="dask", progress=False)
    with pytest.raises(InputError, match="cache folder not found"):
        sweep([str(tmp_path / "nothing")], root, str(out), grid, progress=False)
    assert not out.exists()


def test_cli(short_data, tmp_path):
    root, cache_a, _ = short_data
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text("temperature = [0.1, 0.7]\ntopk = [4]\nradius = [12]\nvideo_len = [4]\n")
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["sweep", "--cache", cache_a, "--davis", root, "--out", str(out), "--grid", str(grid_file),
            "--sequences", SHORT[0], "--threads", "1", "--no-progress"]
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    rows = read_results_csv(out / "sweep_results.csv")
    best = max(rows, key=lambda r: r["J&F-Mean"])
    assert f"patchA: best {best['setting']}  J&F-Mean {best['J&F-Mean']:.3f}" in done.output
    failed = runner.invoke(cli, args + ["--topk", "5,x"])
    assert failed.exit_code == 1 and "Error: " in failed.output and "topk value 'x' is not a number" in failed.output
    missing = ["sweep", "--cache", cache_a, "--davis", root, "--out", str(tmp_path / "out2"), "--grid",
               str(tmp_path / "missing.toml")]
    failed = runner.invoke(cli, missing)
    assert failed.exit_code == 1 and "grid file not found" in failed.output
    assert not (tmp_path / "out2").exists()
