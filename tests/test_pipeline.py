"""`lpcache run` / `lpcache demo`: the whole pipeline on efficientnet_lite0, synthetic and real data."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from lpcache import pipeline
from lpcache.cli import cli
from lpcache.davis import load_davis, read_mask
from lpcache.results import RunFolder
from lpcache.scoring import score
from lpcache.synthetic import make_synthetic_davis

SMALL = {"n_sequences": 2, "n_frames": 8, "hw": (120, 216), "n_objects": 2}
TINY = {"n_sequences": 1, "n_frames": 5, "hw": (120, 216), "n_objects": 2}
REAL_FRAMES = 3
CPU = ["--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    make_synthetic_davis(root / "davis", seed=3, **SMALL)
    return root


@pytest.fixture(scope="module")
def single_run(small_data):
    """`lpcache run` with one setting (native protocol), through the CLI."""
    args = ["run", "--davis", str(small_data / "davis"), "--workdir", str(small_data / "work"), "--protocol",
            "native"] + CPU
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output, json.load(open(small_data / "work" / "pipeline.json"))


def _copy_first_mask_baseline(davis_root, out):
    """Trivial prediction: frame 0's mask repeated. Propagation must beat it (the objects move)."""
    for sequence in load_davis(davis_root):
        first = read_mask(sequence.annotation_paths[0])
        RunFolder(out, "copy").write_sequence(sequence.name, sequence.frame_names,
                                              [first] * len(sequence.frame_names), {})
    return score(davis_root, os.path.join(out, "copy"), progress=False).global_scores


def test_single_setting_scores_and_table(single_run, small_data):
    output, record = single_run
    scores = record["global_scores"]
    assert "Global results for val" in output and "synthetic-01_2" in output
    assert f"{scores['J&F-Mean']:.3f}" in output
    baseline = _copy_first_mask_baseline(str(small_data / "davis"), str(small_data / "baseline"))
    assert scores["J&F-Mean"] > baseline["J&F-Mean"] + 0.2  # measured: 0.45 vs 0.16 (15x27 grid)
    assert scores["J-Mean"] > 0.5
    # The run folder holds all masks, and `lpcache score` on it gives the same numbers.
    run_dir = record["run_dir"]
    assert os.path.basename(run_dir) == "efficientnet_lite0-native__t0.7_k8_r18_L20"
    rescored = score(str(small_data / "davis"), run_dir, progress=False).global_scores
    assert rescored == pytest.approx(scores, abs=0, rel=0)
    last = read_mask(os.path.join(run_dir, "synthetic-00", "00007.png"))
    assert last.shape == (120, 216) and set(np.unique(last)) == {0, 1, 2}
    assert record["protocol"] == "native" and record["extracted"] == ["synthetic-00", "synthetic-01"]


def test_rerun_reuses_everything(single_run, small_data):
    _, first = single_run
    cache_file = os.path.join(first["backbone_dir"], "synthetic-00.h5")
    mask = os.path.join(first["run_dir"], "synthetic-01", "00005.png")
    stamps = (os.stat(cache_file).st_mtime_ns, os.stat(mask).st_mtime_ns)
    result = CliRunner().invoke(cli, ["run", "--davis", str(small_data / "davis"), "--workdir",
                                      str(small_data / "work"), "--protocol", "native"] + CPU)
    assert result.exit_code == 0, result.output
    again = json.load(open(small_data / "work" / "pipeline.json"))
    assert again["extracted"] == [] and again["reused"] == ["synthetic-00", "synthetic-01"]
    assert (os.stat(cache_file).st_mtime_ns, os.stat(mask).st_mtime_ns) == stamps
    assert again["global_scores"] == first["global_scores"]


def test_several_values_sweep_matches_single_run(single_run, small_data):
    _, first = single_run
    result = CliRunner().invoke(cli, ["run", "--davis", str(small_data / "davis"), "--workdir",
                                      str(small_data / "work"), "--protocol", "native", "--temperature", "0.7,0.05"]
                                + CPU)
    assert result.exit_code == 0, result.output
    record = json.load(open(small_data / "work" / "pipeline.json"))
    assert record["extracted"] == []  # the cache of the single run is reused
    assert record["sweep_dir"] and "t0.05_k8_r18_L20" in result.output and "t0.7_k8_r18_L20" in result.output
    rows = {}
    for line in result.output.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].isdigit() and parts[1].startswith("t0."):     # rank, setting, J&F
            rows[parts[1]] = float(parts[2])
    # The sweep scores in memory exactly as `lpcache score` does: same J&F for the shared setting.
    assert rows["t0.7_k8_r18_L20"] == round(first["global_scores"]["J&F-Mean"], 3)
    assert record["global_scores"]["J&F-Mean"] == max(rows.values()) or \
        round(record["global_scores"]["J&F-Mean"], 3) == max(rows.values())


def test_demo_cli_synthetic(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "DEMO_SYNTHETIC", TINY)
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(tmp_path / "demo")] + CPU)
    assert result.exit_code == 0, result.output
    assert "synthetic data, native protocol, 1 sequence;" in result.output
    record = json.load(open(tmp_path / "demo" / "pipeline.json"))
    assert record["backbone"] == "efficientnet_lite0" and record["global_scores"]["J-Mean"] > 0.5
    assert os.path.isfile(tmp_path / "demo" / "synthetic-davis" / "ImageSets" / "2017" / "val.txt")


def test_demo_real_frames_seed_protocol(tmp_path, davis_root):
    """3 real blackswan frames (symlinked), seed protocol: masks and GT at 480x880, a high real score."""
    root = tmp_path / "davis"
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        folder = root / kind / "480p" / "blackswan"
        folder.mkdir(parents=True)
        for t in range(REAL_FRAMES):
            os.symlink(os.path.join(davis_root, kind, "480p", "blackswan", f"{t:05d}.{ext}"), folder / f"{t:05d}.{ext}")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("blackswan\n")
    result = pipeline.demo(str(root), ["blackswan"], str(tmp_path / "work"), device="cpu", progress=False)
    assert result.protocol == "seed"
    assert read_mask(os.path.join(result.run_dir, "blackswan", f"{REAL_FRAMES - 1:05d}.png")).shape == (480, 880)
    assert result.global_scores["J&F-Mean"] > 0.75  # measured 0.824 (CPU, torch 2.14)
    assert "blackswan_1" in result.table


def test_bad_input_is_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--davis", str(tmp_path / "nowhere"), "--workdir", str(tmp_path / "w")]
                                + CPU)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "DAVIS root not found" in result.output
