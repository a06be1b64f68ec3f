"""Feature cache format v1: writer, reader, atomic rename, verification, manifest."""
import os

import h5py
import numpy as np
import pytest

from lpcache import cache
from lpcache.atomic import host_tag
from lpcache.errors import InputError


def _feats(t=3, h=4, w=5, c=6, seed=0):
    return np.random.default_rng(seed).normal(size=(t, h, w, c)).astype(np.float32)


def test_write_read_roundtrip_normalised(tmp_path):
    feats = _feats()
    frames = ["00000", "00001", "00002"]
    path = cache.write_sequence(str(tmp_path), "seq", feats, frames, dtype="float32",
                                attrs={"backbone": {"name": "x", "channels": 6}, "input_hw": [32, 40]})
    assert path.endswith("seq.h5") and not os.path.exists(path + ".partial")
    with cache.open_sequence(path) as seq:
        assert seq.frames == frames and seq.grid_hw == (4, 5) and seq.channels == 6
        assert seq.attrs["backbone"] == {"name": "x", "channels": 6} and seq.attrs["input_hw"] == [32, 40]
        assert seq.attrs["backbone_id"] == tmp_path.name  # default: the folder name
        got = seq.read()
    expected = feats / np.linalg.norm(feats, axis=-1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-6)


def test_float16_is_cast_after_normalising(tmp_path):
    feats = _feats() * 1000  # would overflow float16 before normalising
    path = cache.write_sequence(str(tmp_path), "seq", feats, ["a", "b", "c"])
    with h5py.File(path, "r") as handle:
        assert handle["feats"].dtype == np.float16
        assert handle["feats"].chunks == (1, 4, 5, 6)
        data = handle["feats"][()].astype(np.float32)
    assert np.all(np.isfinite(data))
    np.testing.assert_allclose(np.linalg.norm(data, axis=-1), 1.0, atol=2e-3)


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with cache.SequenceWriter(str(tmp_path), "seq", ["a", "b"], (2, 2), 3) as writer:
            writer.write(_feats(1, 2, 2, 3))
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_incomplete_write_is_refused(tmp_path):
    with pytest.raises(ValueError, match="1 of 2 frames"):
        with cache.SequenceWriter(str(tmp_path), "seq", ["a", "b"], (2, 2), 3) as writer:
            writer.write(_feats(1, 2, 2, 3))
    assert not os.path.exists(tmp_path / "seq.h5")


def test_reader_rejects_foreign_and_truncated_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["feats"] = np.zeros((1, 2, 2, 2))
    with pytest.raises(InputError, match="not an lpcache feature file"):
        cache.open_sequence(str(foreign))
    good = cache.write_sequence(str(tmp_path), "good", _feats(), ["a", "b", "c"])
    data = open(good, "rb").read()
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(data[: len(data) // 2])
    assert cache.verify_sequence(str(truncated)) is not None
    assert cache.verify_sequence(good) is None


def test_feature_cache_manifest_and_differences(tmp_path):
    attrs = {"backbone": {"name": "r18"}, "dtype": "float16", "protocol": "seed", "input_hw": [480, 880]}
    for name in ("b", "a"):
        cache.write_sequence(str(tmp_path), name, _feats(), ["0", "1", "2"], attrs=attrs)
    fc = cache.FeatureCache(str(tmp_path))
    assert fc.sequences == ["a", "b"]
    manifest = fc.update_manifest()
    assert manifest["sequences"]["a"]["frames"] == 3 and manifest["attrs"]["protocol"] == "seed"
    assert fc.manifest() == manifest
    with fc.open("a") as seq:
        diffs = cache.attr_differences(seq.attrs, {"protocol": "native", "dtype": "float16"})
    assert diffs == ["protocol: cache has 'seed', request has 'native'"]
    with pytest.raises(InputError, match="not in the cache"):
        fc.open("zzz")


def test_stale_partial_of_a_dead_writer_is_removed_live_one_kept(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"seq.h5.{host_tag()}-{dead.pid}-deadbeef.partial"
    stale.write_bytes(b"half")
    live = tmp_path / f"seq.h5.{host_tag()}-{os.getppid()}-cafecafe.partial"  # a running process's file
    live.write_bytes(b"busy")
    cache.write_sequence(str(tmp_path), "seq", _feats(), ["a", "b", "c"])
    assert sorted(os.listdir(tmp_path)) == sorted(["seq.h5", live.name])
