"""--protocol dino|vfs|dinov3 through `lpcache propagate`, `lpcache sweep` and the Python API (issue 12, items 3, 4).

Data: a synthetic DAVIS root (2 sequences x 9 frames, 64x96, 2 objects) and, per protocol, a float32 cache whose
files record that protocol, holding features computed from the frames (8x8 pixel patches, fixed random
projection: an 8x12 grid). Expected masks come from each protocol's dense `reference` on the features read back
from the cache; expected J&F from `propagate --score` of each setting alone.
"""
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lpcache import api, protocols
from lpcache.cache import FeatureCache, write_sequence
from lpcache.cli import cli
from lpcache.davis import load_davis, read_mask
from lpcache.errors import InputError
from lpcache.report import read_results_csv
from lpcache.synthetic import make_synthetic_davis

HW = (64, 96)
PATCH = 8
N_FRAMES = 9
CPU = ["--device", "cpu", "--no-progress"]
#: Each protocol's default setting id (temperature, topk, radius, video_len of `lpcache protocols`).
DEFAULT_IDS = {"dino": "t0.1_k5_r12_L7", "vfs": "t0.07_k10_r18_L20", "dinov3": "t0.2_k5_r12_L7"}


def patch_features(jpeg_path, index, channels=16, seed=0) -> np.ndarray:
    """(h, w, C) features of frame `index`: its PATCH x PATCH pixel patches, centred, times a fixed projection,
    plus a little noise of the frame's own: the synthetic background is static, so without it many cells of
    different frames would be exactly equal, and the top-k order among exactly tied keys is the reference
    library's choice (torch.topk), not part of any protocol."""
    pixels = np.asarray(Image.open(jpeg_path).convert("RGB"), np.float32) / 255.0
    h, w = HW[0] // PATCH, HW[1] // PATCH
    patches = pixels.reshape(h, PATCH, w, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, -1)
    projection = np.random.default_rng(seed).standard_normal((patches.shape[-1], channels)).astype(np.float32)
    noise = np.random.default_rng([seed, index]).standard_normal((h, w, channels)).astype(np.float32)
    return (patches - patches.mean(-1, keepdims=True)) @ projection + 0.05 * noise


def build_cache(backbone_dir, davis, protocol):
    """A cache of every sequence of `davis`, its files recording `protocol` (as `lpcache extract` writes it)."""
    input_hw = protocols.get(protocol).input_hw(HW, 16)
    for seq in load_davis(davis):
        feats = np.stack([patch_features(os.path.join(seq.image_dir, f + ".jpg"), t)
                          for t, f in enumerate(seq.frame_names)])
        write_sequence(backbone_dir, seq.name, feats, seq.frame_names, dtype="float32",
                       attrs={"protocol": protocol, "input_hw": list(input_hw), "orig_hw": list(HW),
                              "backbone": "patch8"})
    return str(backbone_dir)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(DAVIS root, {protocol: cache folder}) for dino, vfs, dinov3 and native."""
    base = tmp_path_factory.mktemp("protocol_runs")
    davis = make_synthetic_davis(str(base / "davis"), n_sequences=2, n_frames=N_FRAMES, hw=HW, n_objects=2)
    caches = {name: build_cache(base / "cache" / f"patch8-{name}", davis, name)
              for name in ("dino", "vfs", "dinov3", "native")}
    return davis, caches


def invoke(args, code=0):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    return result.output


def reference_masks(cache_dir, davis, protocol, **overrides):
    """{seq: [uint8 masks]} of the protocol's reference on the cached features (float32), defaults + overrides."""
    params = {**protocols.get(protocol).defaults, **overrides}
    out = {}
    for seq in load_davis(davis):
        with FeatureCache(cache_dir).open(seq.name) as cached:
            feats = torch.from_numpy(cached.read(dtype=np.float32))
        first = read_mask(seq.annotation_paths[0])
        out[seq.name] = protocols.get(protocol).reference(feats, first, params, first.shape)
    return out


def assert_run_masks(run_dir, davis, expected):
    """Every written PNG equals the expected mask of its frame."""
    for seq in load_davis(davis):
        assert len(expected[seq.name]) == len(seq.frame_names) == N_FRAMES
        for frame, mask in zip(seq.frame_names, expected[seq.name]):
            written = read_mask(os.path.join(run_dir, seq.name, frame + ".png"))
            assert written.shape == HW and np.array_equal(written, mask), (run_dir, seq.name, frame)


# ----------------------------------------------------------------------------------------------- propagate
@pytest.mark.parametrize("protocol", ["dino", "vfs", "dinov3"])
def test_propagate_writes_the_reference_masks_and_records_the_protocol(data, tmp_path, protocol, one_thread):
    davis, caches = data
    out = tmp_path / "runs"
    invoke(["propagate", "--cache", caches[protocol], "--davis", davis, "--out", str(out)] + CPU)
    run_id = f"patch8-{protocol}__{DEFAULT_IDS[protocol]}"      # the protocol's defaults, no parameter given
    assert os.listdir(out) == [run_id]
    expected = reference_masks(caches[protocol], davis, protocol)
    assert any(len(np.unique(m)) == 3 for masks in expected.values() for m in masks[1:])  # both objects tracked
    assert_run_masks(out / run_id, davis, expected)
    record = json.load(open(out / run_id / "run.json"))
    assert record["protocol"] == protocol and record["identity"]["cache_attrs"]["protocol"] == protocol


def test_explicit_protocol_and_parameters_override_the_defaults(data, tmp_path, one_thread):
    davis, caches = data
    out = tmp_path / "runs"
    invoke(["propagate", "--cache", caches["dino"], "--davis", davis, "--out", str(out), "--protocol", "dino",
            "--topk", "3", "--sequences", "synthetic-01"] + CPU)
    assert os.listdir(out) == ["patch8-dino__t0.1_k3_r12_L7"]
    expected = reference_masks(caches["dino"], davis, "dino", topk=3)
    for frame, mask in zip(load_davis(davis)[1].frame_names, expected["synthetic-01"]):
        assert np.array_equal(read_mask(str(out / "patch8-dino__t0.1_k3_r12_L7" / "synthetic-01" / f"{frame}.png")),
                              mask)


def test_native_cache_propagates_under_the_seed_rule(data, tmp_path, one_thread):
    davis, caches = data
    out = tmp_path / "runs"
    invoke(["propagate", "--cache", caches["native"], "--davis", davis, "--out", str(out), "--protocol", "seed",
            "--video-len", "3", "--sequences", "synthetic-00"] + CPU)
    (run_id,) = os.listdir(out)
    assert run_id == "patch8-native__t0.7_k8_r18_L3"              # the seed's defaults
    record = json.load(open(out / run_id / "run.json"))
    assert record["protocol"] == "seed" and record["identity"]["cache_attrs"]["protocol"] == "native"


@pytest.mark.parametrize("cache, args, message", [
    ("dino", ["--protocol", "vfs"], "features extracted under protocol 'dino'; --protocol vfs needs a cache made "
                                    "with lpcache extract --protocol vfs"),
    ("native", ["--protocol", "dinov3"], "features extracted under protocol 'native'; --protocol dinov3 needs a "
                                         "cache made with lpcache extract --protocol dinov3"),
    ("dino", ["--preset", "vits8"], "preset 'vits8' is a seed-protocol setting and this cache propagates under "
                                    "'dino'"),
    ("vfs", ["--out-size", "240x427"], "--out-size is for the seed's rule; protocol 'vfs' writes and scores masks "
                                       "at the annotation's own size"),
])
def test_protocol_mismatch_is_one_error_line(data, tmp_path, cache, args, message):
    davis, caches = data
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["propagate", "--cache", caches[cache], "--davis", davis, "--out", str(out)]
                                + args + CPU)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {caches[cache]}") and message in lines[0], result.output
    assert not os.path.exists(out)


# ----------------------------------------------------------------------------------------------- sweep
def test_sweep_of_a_dino_cache_equals_single_runs_and_the_reference(data, tmp_path, one_thread):
    davis, caches = data
    out = tmp_path / "sweep"
    invoke(["sweep", "--cache", caches["dino"], "--davis", davis, "--out", str(out), "--topk", "3,5",
            "--video-len", "2,7", "--save-all"] + CPU)
    rows = {r["setting"]: r for r in read_results_csv(str(out / "sweep_results.csv"))}
    # the axes not given take DINO's defaults (temperature 0.1, radius 12)
    assert sorted(rows) == ["t0.1_k3_r12_L2", "t0.1_k3_r12_L7", "t0.1_k5_r12_L2", "t0.1_k5_r12_L7"]
    assert len({r["J&F-Mean"] for r in rows.values()}) > 1
    assert json.load(open(out / "provenance.json"))["propagation_protocol"] == "dino"
    for setting, row in rows.items():
        topk, video_len = int(row["topk"]), int(row["video_len"])
        single = tmp_path / "single"
        invoke(["propagate", "--cache", caches["dino"], "--davis", davis, "--out", str(single), "--score",
                "--topk", str(topk), "--video-len", str(video_len)] + CPU)
        scores = json.load(open(single / f"patch8-dino__{setting}" / "scores.json"))["global"]
        for column in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"):
            assert row[column] == scores[column], (setting, column)
        expected = reference_masks(caches["dino"], davis, "dino", topk=topk, video_len=video_len)
        assert_run_masks(single / f"patch8-dino__{setting}", davis, expected)
        saved = out / "runs" / f"patch8-dino__{setting}"
        assert_run_masks(saved, davis, expected)
        assert json.load(open(saved / "run.json"))["protocol"] == "dino"


def test_sweep_refuses_a_protocol_other_than_the_caches(data, tmp_path):
    davis, caches = data
    result = CliRunner().invoke(cli, ["sweep", "--cache", caches["vfs"], "--davis", davis, "--out",
                                      str(tmp_path / "sweep"), "--topk", "3", "--protocol", "dino"] + CPU)
    assert result.exit_code == 1 and result.output.startswith(
        f"Error: {caches['vfs']}: features extracted under protocol 'vfs'; --protocol dino needs")
    mixed = CliRunner().invoke(cli, ["sweep", "--cache", caches["vfs"], "--cache", caches["dino"], "--davis", davis,
                                     "--out", str(tmp_path / "sweep"), "--topk", "3"] + CPU)
    assert mixed.exit_code == 1 and "caches of different protocols cannot be compared" in mixed.output
    assert not os.path.exists(tmp_path / "sweep")


# ----------------------------------------------------------------------------------------------- the API
def test_api_uses_the_caches_protocol_and_its_defaults(data, tmp_path, one_thread):
    davis, caches = data
    run = api.propagate(caches["dinov3"], davis, str(tmp_path / "runs"), protocol="dinov3",
                        sequences=["synthetic-00"], device="cpu", progress=False, return_masks=True)
    assert run.run_id == f"patch8-dinov3__{DEFAULT_IDS['dinov3']}"
    expected = reference_masks(caches["dinov3"], davis, "dinov3")["synthetic-00"]
    assert all(np.array_equal(a, b) for a, b in zip(run.masks["synthetic-00"], expected))
    partial = api.propagate(caches["dinov3"], davis, str(tmp_path / "runs"), {"topk": 3},
                            sequences=["synthetic-00"], device="cpu", progress=False)
    assert partial.run_id == "patch8-dinov3__t0.2_k3_r12_L7"     # a dict's missing fields: the defaults
    sw = api.sweep(caches["vfs"], davis, str(tmp_path / "sweep"), topk=[3, 10], sequences=["synthetic-00"],
                   device="cpu", progress=False)
    assert [r["setting"] for r in sw.rows] == ["t0.07_k3_r18_L20", "t0.07_k10_r18_L20"]
    with pytest.raises(InputError, match="under protocol 'vfs'; --protocol dino needs"):
        api.sweep(caches["vfs"], davis, str(tmp_path / "sweep2"), topk=[3], protocol="dino", progress=False)
    with pytest.raises(InputError, match="seed-protocol setting"):
        api.propagate(caches["vfs"], davis, str(tmp_path / "runs2"), "vits8", progress=False)


# ----------------------------------------------------------------------------------------------- lpcache run
def test_run_extracts_propagates_and_scores_under_dino(tmp_path, one_thread):
    """`lpcache run --protocol dino`: DINO's frames in the cache, DINO's rule and defaults, recorded."""
    davis = make_synthetic_davis(str(tmp_path / "davis"), n_sequences=1, n_frames=3, hw=HW, n_objects=2)
    work = tmp_path / "work"
    invoke(["run", "--davis", davis, "--workdir", str(work), "--backbone", "efficientnet_lite0", "--random-init",
            "--protocol", "dino", "--dtype", "float32", "--num-workers", "0"] + CPU)
    record = json.load(open(work / "pipeline.json"))
    assert record["protocol"] == "dino" and record["propagation_protocol"] == "dino"
    backbone_dir = str(work / "cache" / "efficientnet_lite0-dino-random")
    assert os.listdir(work / "runs") == ["efficientnet_lite0-dino-random__t0.1_k5_r12_L7"]
    run_dir = work / "runs" / "efficientnet_lite0-dino-random__t0.1_k5_r12_L7"
    assert json.load(open(run_dir / "run.json"))["protocol"] == "dino"
    expected = reference_masks(backbone_dir, davis, "dino")["synthetic-00"]
    for frame, mask in zip(load_davis(davis)[0].frame_names, expected):
        assert np.array_equal(read_mask(str(run_dir / "synthetic-00" / f"{frame}.png")), mask)
    assert record["global_scores"]["J&F-Mean"] >= 0
    invoke(["run", "--davis", davis, "--workdir", str(work), "--backbone", "efficientnet_lite0", "--random-init",
            "--protocol", "dino", "--dtype", "float32", "--num-workers", "0", "--topk", "3,5", "--save-best", "0"]
           + CPU)                                         # a grid: its missing axes take DINO's defaults too
    assert json.load(open(work / "pipeline.json"))["grid"] == {"temperature": [0.1], "topk": [3, 5],
                                                               "radius": [12.0], "video_len": [7]}

