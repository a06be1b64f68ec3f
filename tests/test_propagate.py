"""`propagate(...)` and `lpcache propagate`: run folders, resume, protocols, scoring, bad input."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from dense_reference import real_features, reference_propagate
from lpcache.cache import write_sequence
from lpcache.cli import cli
from lpcache.config import PropagationParams
from lpcache.davis import read_mask, resize_mask_nearest
from lpcache.errors import InputError
from lpcache.run_propagation import propagate

N_FRAMES = 8
SEED_ATTRS = {"protocol": "seed", "input_hw": [480, 880], "orig_hw": [480, 854]}


def _link_sequence(root, davis_root, seq, annotation_dir, count=N_FRAMES):
    """A DAVIS sequence of `count` frames in `root` made of symlinks (JPEGs from davis_root)."""
    for kind, source, ext in (("JPEGImages", os.path.join(davis_root, "JPEGImages/480p", seq), ".jpg"),
                              ("Annotations", annotation_dir, ".png")):
        folder = root / kind / "480p" / seq
        folder.mkdir(parents=True)
        for name in sorted(n for n in os.listdir(source) if n.endswith(ext))[:count]:
            (folder / name).symlink_to(os.path.join(source, name))


def _make_root(tmp_path, davis_root, osvos_root=None, sequences=("blackswan", "kite-surf")):
    root = tmp_path / "davis"
    for seq in sequences:
        annotations = os.path.join(osvos_root, seq) if osvos_root else os.path.join(davis_root, "Annotations/480p", seq)
        _link_sequence(root, davis_root, seq, annotations)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return str(root)


def _make_cache(tmp_path, root, sequences=("blackswan", "kite-surf"), attrs=SEED_ATTRS, frames=N_FRAMES,
                backbone="pool16"):
    backbone_dir = tmp_path / "cache" / backbone
    for seq in sequences:
        folder = os.path.join(root, "JPEGImages/480p", seq)
        paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))][:frames]
        write_sequence(str(backbone_dir), seq, real_features(paths), [f"{i:05d}" for i in range(len(paths))],
                       dtype="float16", attrs=attrs)
    return str(backbone_dir)


@pytest.fixture
def multi(tmp_path, davis_root, osvos_root):
    """A DAVIS root with OSVOS multi-object masks as annotations (10 frames each) and a seed-protocol cache."""
    root = _make_root(tmp_path, davis_root, osvos_root)
    return root, _make_cache(tmp_path, root)


def _read_run(run_dir, seq):
    names = sorted(n for n in os.listdir(os.path.join(run_dir, seq)) if n.endswith(".png"))
    return names, np.stack([read_mask(os.path.join(run_dir, seq, n)) for n in names])


def test_propagate_writes_the_engine_masks_and_matches_the_reference(tmp_path, multi):
    root, cache = multi
    params = PropagationParams(0.7, 8, 18, 20)
    run_dir = propagate(cache, root, tmp_path / "runs", params, device="cpu", progress=False)
    assert run_dir == os.path.join(str(tmp_path / "runs"), "pool16__t0.7_k8_r18_L20")
    from lpcache.cache import CachedSequence

    for seq in ("blackswan", "kite-surf"):
        names, masks = _read_run(run_dir, seq)
        assert names == [f"{i:05d}.png" for i in range(N_FRAMES)]
        assert masks.shape == (N_FRAMES, 480, 880)
        first = resize_mask_nearest(read_mask(os.path.join(root, "Annotations/480p", seq, "00000.png")), (480, 880))
        np.testing.assert_array_equal(masks[0], first)
        if seq == "kite-surf":  # multi-object (OSVOS ids 0..3): the float16 cache read back, dense reference
            with CachedSequence(os.path.join(cache, seq + ".h5")) as cached:
                feats = cached.read()
            want = reference_propagate(feats, first, 0.7, 8, 18, 20, (480, 880))
            assert (masks == want).mean() >= 0.9999
    assert len(np.unique(_read_run(run_dir, "kite-surf")[1][-1])) >= 3
    record = json.load(open(os.path.join(run_dir, "run.json")))
    assert record["identity"]["params"] == params.as_dict()
    assert record["identity"]["backbone_id"] == "pool16"
    assert record["identity"]["cache_attrs"]["protocol"] == "seed"
    assert record["device"] == "cpu" and record["versions"]["torch"]
    assert record["sequences"]["kite-surf"]["frames"] == N_FRAMES


def test_rerun_skips_done_sequences_and_redoes_partial_ones(tmp_path, multi):
    root, cache = multi
    params = PropagationParams(0.7, 4, 8, 5)
    run_dir = propagate(cache, root, tmp_path / "runs", params, device="cpu", progress=False)
    done = os.path.join(run_dir, "blackswan", "00005.png")
    stamp = os.stat(done).st_mtime_ns
    _, before = _read_run(run_dir, "kite-surf")
    # kite-surf interrupted: marker missing, a frame missing, a stray partial file
    os.remove(os.path.join(run_dir, "kite-surf", ".done.json"))
    os.remove(os.path.join(run_dir, "kite-surf", "00007.png"))
    open(os.path.join(run_dir, "kite-surf", "00008.png.partial"), "w").close()
    assert propagate(cache, root, tmp_path / "runs", params, device="cpu", progress=False) == run_dir
    assert os.stat(done).st_mtime_ns == stamp
    names, after = _read_run(run_dir, "kite-surf")
    assert len(names) == N_FRAMES and not os.path.exists(os.path.join(run_dir, "kite-surf", "00008.png.partial"))
    np.testing.assert_array_equal(after, before)
    assert os.path.isfile(os.path.join(run_dir, "kite-surf", ".done.json"))


def test_native_protocol_writes_at_the_annotation_size(tmp_path, davis_root):
    root = _make_root(tmp_path, davis_root, sequences=("blackswan",))
    cache = _make_cache(tmp_path, root, ("blackswan",), attrs={"protocol": "native", "input_hw": [480, 880],
                                                               "orig_hw": [480, 854]})
    run_dir = propagate(cache, root, tmp_path / "runs", PropagationParams(0.7, 8, 5, 4), device="cpu",
                        progress=False)
    _, masks = _read_run(run_dir, "blackswan")
    assert masks.shape == (N_FRAMES, 480, 854)
    np.testing.assert_array_equal(masks[0], read_mask(os.path.join(root, "Annotations/480p/blackswan/00000.png")))


def test_cli_propagate_and_score(tmp_path, davis_root):
    root = _make_root(tmp_path, davis_root, sequences=("blackswan",))
    cache = _make_cache(tmp_path, root, ("blackswan",))
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", root, "--out", str(out),
                                      "--preset", "vits8", "--device", "cpu", "--score", "--no-progress"])
    assert result.exit_code == 0, result.output
    run_dir = out / "pool16__t0.5_k12_r32_L20"
    lines = (run_dir / "global_results-val.csv").read_text().splitlines()
    values = dict(zip(lines[0].split(","), (float(v) for v in lines[1].split(","))))
    assert 0.6 < values["J-Mean"] <= 1.0      # the swan is tracked over 8 frames
    record = json.load(open(run_dir / "run.json"))
    assert record["scores"]["gt_size"] == [480, 880]
    assert record["scores"]["global"]["J-Mean"] == pytest.approx(values["J-Mean"], abs=5e-4)


@pytest.mark.parametrize("args,message", [
    (["--topk", "5000"], "topk 5000: larger than the 1650 candidates"),
    (["--radius", "0"], "radius 0.0: must be"),
    (["--temperature", "0"], "temperature 0.0: must be"),
    (["--preset", "vits8", "--topk", "4"], "--preset vits8 cannot be combined with --topk"),
])
def test_cli_refuses_bad_parameters(tmp_path, davis_root, args, message):
    root = _make_root(tmp_path, davis_root, sequences=("blackswan",))
    cache = _make_cache(tmp_path, root, ("blackswan",), frames=N_FRAMES)
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", root, "--out", str(out),
                                      "--no-progress"] + args)
    assert result.exit_code == 1
    assert message in result.output
    assert not out.exists()


def test_bad_input_is_refused_before_any_output(tmp_path, davis_root):
    root = _make_root(tmp_path, davis_root)
    out = tmp_path / "runs"
    cache = _make_cache(tmp_path, root, ("blackswan",))
    with pytest.raises(InputError, match="sequences missing from the cache: kite-surf"):
        propagate(cache, root, out, progress=False)
    short = _make_cache(tmp_path, root, ("blackswan", "kite-surf"), frames=N_FRAMES - 1, backbone="short")
    with pytest.raises(InputError, match="blackswan.h5: 7 frames in the cache, 8 JPEGs"):
        propagate(short, root, out, progress=False)
    assert not out.exists()


def test_empty_first_frame_is_refused(tmp_path, davis_root):
    root = _make_root(tmp_path, davis_root, sequences=("blackswan",))
    cache = _make_cache(tmp_path, root, ("blackswan",))
    first = os.path.join(root, "Annotations/480p/blackswan/00000.png")
    os.remove(first)
    from lpcache.davis import write_mask

    write_mask(first, np.zeros((480, 854), np.uint8))
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", root, "--out",
                                      str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 1
    assert "00000.png: the first frame has no object" in result.output
    assert not (tmp_path / "runs").exists()


def test_run_folder_refuses_to_mix_runs_and_names_runs(tmp_path):
    from lpcache.results import RunFolder, run_id

    assert run_id(PropagationParams(), "r18") == "r18__t0.7_k8_r18_L20"
    assert run_id(PropagationParams(0.5, 12, 32, 20)) == "t0.5_k12_r32_L20"
    run = RunFolder(tmp_path, "r18__t0.7_k8_r18_L20")
    identity = {"params": PropagationParams().as_dict(), "cache_attrs": {"protocol": "seed", "dtype": "float16"}}
    run.check_compatible(identity)                       # no run.json yet
    run.write_run_json({"identity": identity})
    run.check_compatible(json.loads(json.dumps(identity)))
    other = dict(identity, cache_attrs={"protocol": "seed", "dtype": "float32"})
    with pytest.raises(InputError, match="run.json: this run folder was made differently .*cache_attrs"):
        run.check_compatible(other)
