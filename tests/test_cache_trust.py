"""A cache is checked where it is read and written (issue 10, item 3): non-finite values per frame, files
that contradict themselves or their folder, identity disagreements, norms in `cache verify`, extract
refusing bad features, a cheap re-run, `--cache` given as the extract root, and `--trust-checkpoint`."""
import json
import os
import shutil

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import lpcache.backbones as backbones
from lpcache import cache
from lpcache.commands.cache import command as cache_command
from lpcache.commands.extract import command as extract_command
from lpcache.errors import InputError
from lpcache.extraction import extract

BID = "r18-native-random"
ATTRS = {"backbone": {"name": "r18", "channels": 8, "stride": 8}, "backbone_id": BID, "checkpoint_sha256": "ab" * 32,
         "protocol": "native", "input_hw": [32, 48], "orig_hw": [32, 48]}
FRAMES = [f"{t:05d}" for t in range(5)]


def _feats(t=5, h=4, w=6, c=8, seed=0):
    return np.random.default_rng(seed).normal(size=(t, h, w, c)).astype(np.float32)


def _write(folder, seq="seq", feats=None, dtype="float16", **attrs):
    feats = _feats() if feats is None else feats
    return cache.write_sequence(str(folder), seq, feats, FRAMES[: feats.shape[0]], dtype=dtype,
                                attrs={**ATTRS, **attrs})


def _edit(path, **attrs):
    """Change attributes of a finished file in place (as a hand edit or a bad copy would)."""
    with h5py.File(path, "r+") as handle:
        for key, value in attrs.items():
            handle.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value


def _one_line_error(excinfo, path, *words):
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    return message


# ------------------------------------------------------------------ non-finite values, named by frame
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_frame_refused_when_read(tmp_path, bad):
    path = _write(tmp_path / BID)
    with h5py.File(path, "r+") as handle:
        handle["feats"][3, 1, 2, 5] = bad
    with cache.open_sequence(path) as seq:  # opening reads no value
        assert np.all(np.isfinite(seq.frame(2)))
        with pytest.raises(InputError) as excinfo:
            seq.frame(3)
        _one_line_error(excinfo, path, "frame 3 (00003)", "non-finite")
        with pytest.raises(InputError, match=r"frame 3 \(00003\): non-finite"):
            seq.read()
        assert seq.read(0, 3).shape == (3, 4, 6, 8)
        with pytest.raises(InputError, match=r"frame 3 \(00003\)"):
            seq.read(2, None)
        frames = seq.iter_frames()
        for _ in range(3):
            next(frames)
        with pytest.raises(InputError, match=r"frame 3 \(00003\)"):
            next(frames)
    assert cache.verify_sequence(path).startswith("frame 3 (00003): non-finite")


# ------------------------------------------------------------------ a file that contradicts itself
@pytest.mark.parametrize("edit, words", [
    ({"grid_hw": [4, 5]}, ("feats shape (5, 4, 6, 8)", "grid_hw [4, 5]")),
    ({"backbone": {"name": "r18", "channels": 16, "stride": 8}}, ("feats shape (5, 4, 6, 8)", "channels 16")),
    ({"backbone": "r18"}, ("backbone attribute 'r18' is not a JSON object",)),
    ({"dtype": "float32"}, ("feats dtype float16", "dtype attribute 'float32'")),
])
def test_file_contradicting_its_attributes_refused_on_open(tmp_path, edit, words):
    path = _write(tmp_path / BID)
    _edit(path, **edit)
    with pytest.raises(InputError) as excinfo:
        cache.open_sequence(path)
    _one_line_error(excinfo, path, *words)
    with pytest.raises(InputError) as excinfo:
        cache.FeatureCache(str(tmp_path / BID)).validate()
    _one_line_error(excinfo, path, *words)


def test_missing_backbone_id_refused(tmp_path):
    path = _write(tmp_path / BID)
    with h5py.File(path, "r+") as handle:
        del handle.attrs["backbone_id"]
    with pytest.raises(InputError) as excinfo:
        cache.open_sequence(path)
    _one_line_error(excinfo, path, "no backbone_id")


# ------------------------------------------------------------------ files that disagree with their folder
def test_file_from_another_backbone_refused(tmp_path):
    folder = tmp_path / BID
    _write(folder, "a")
    other = _write(tmp_path / "vits16-native-random", "b", feats=_feats(c=384),
                   backbone={"name": "vits16", "channels": 384}, backbone_id="vits16-native-random")
    stray = shutil.copy(other, folder / "b.h5")
    with pytest.raises(InputError) as excinfo:
        cache.FeatureCache(str(folder)).validate()
    _one_line_error(excinfo, stray, "backbone_id 'vits16-native-random'", f"folder's '{BID}'")
    assert cache.FeatureCache(str(folder)).validate(["a"]).keys() == {"a"}  # the sound file alone is fine
    problems = dict(cache.verify_cache(str(folder)))
    assert problems[str(folder / "a.h5")] is None and "backbone_id" in problems[str(stray)]


def test_renamed_file_refused(tmp_path):
    folder = tmp_path / BID
    os.replace(_write(folder, "a"), folder / "b.h5")
    with pytest.raises(InputError, match=r"b\.h5: holds sequence 'a', not 'b'"):
        cache.FeatureCache(str(folder)).validate()


@pytest.mark.parametrize("key, value", [("checkpoint_sha256", "cd" * 32), ("protocol", "seed"),
                                        ("backbone", {"name": "r18", "channels": 8, "stride": 16})])
def test_edited_identity_attribute_refused(tmp_path, key, value):
    folder = tmp_path / BID
    first = _write(folder, "a")
    edited = _write(folder, "b")
    _edit(edited, **{key: value})
    with pytest.raises(InputError) as excinfo:
        cache.FeatureCache(str(folder)).validate()
    message = _one_line_error(excinfo, edited, key, first)
    shown = (lambda v: json.dumps(v, sort_keys=True)) if key == "backbone" else repr
    assert f"{key} {shown(value)} differs from {shown(ATTRS[key])} in {first}" in message
    assert "differs" in dict(cache.verify_cache(str(folder)))[edited]


def test_file_of_another_dtype_refused(tmp_path):
    folder = tmp_path / BID
    first = _write(folder, "a", dtype="float16")
    other = _write(folder, "b", dtype="float32")
    with pytest.raises(InputError) as excinfo:
        cache.FeatureCache(str(folder)).validate()
    _one_line_error(excinfo, other, "dtype 'float32' differs from 'float16'", first)


def test_sizes_may_differ_between_sequences(tmp_path):
    """Native protocol: DAVIS-2017 has 854, 910 and 1152 wide videos in one set."""
    folder = tmp_path / BID
    _write(folder, "narrow", feats=_feats(h=60, w=107), input_hw=[480, 856], orig_hw=[480, 854])
    _write(folder, "wide", feats=_feats(h=60, w=144), input_hw=[480, 1152], orig_hw=[480, 1152])
    found = cache.FeatureCache(str(folder)).validate()
    assert sorted(found) == ["narrow", "wide"]
    assert found["narrow"]["grid_hw"] == [60, 107] and found["wide"]["input_hw"] == [480, 1152]
    assert all(problem is None for _, problem in cache.verify_cache(str(folder)))


# ------------------------------------------------------------------ --cache may be the extract root
def test_resolve_backbone_dir(tmp_path):
    folder = tmp_path / "root" / BID
    _write(folder)
    assert cache.resolve_backbone_dir(str(folder)) == str(folder)
    assert cache.resolve_backbone_dir(str(tmp_path / "root")) == str(folder)
    _write(tmp_path / "root" / "other-native-random")
    with pytest.raises(InputError) as excinfo:
        cache.resolve_backbone_dir(str(tmp_path / "root"))
    _one_line_error(excinfo, str(tmp_path / "root"), "2 backbone folders", str(folder),
                    str(tmp_path / "root" / "other-native-random"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no feature files"):
        cache.resolve_backbone_dir(str(tmp_path / "empty"))


# ------------------------------------------------------------------ norms: written, and checked by verify
def test_writer_refuses_non_finite_and_unnormalisable_frames(tmp_path):
    for kind in ("nan", "zero", "not-unit"):
        feats = _feats()
        if kind == "nan":
            feats[2, 0, 0, 0] = np.nan
        elif kind == "zero":
            feats[2, 3, 5] = 0.0
        with pytest.raises(InputError) as excinfo:
            with cache.SequenceWriter(str(tmp_path), "seq", FRAMES, (4, 6), 8, attrs=ATTRS) as writer:
                if kind == "not-unit":  # extract hands over normalised features; these are not
                    writer.write(feats, normalized=True)
                else:
                    writer.write(feats)
        _one_line_error(excinfo, str(tmp_path / "seq.h5"), "frame ", "not written")
        if kind != "not-unit":
            assert "frame 2 (00002)" in str(excinfo.value)
        assert os.listdir(tmp_path) == []  # nothing half-written


def test_verify_checks_norms(tmp_path):
    folder = tmp_path / BID
    good16 = _write(folder, "a", dtype="float16")
    path = _write(folder, "b", dtype="float16")
    with h5py.File(path, "r+") as handle:
        handle["feats"][1] = handle["feats"][1] * 1.05  # written unnormalised by some other tool
    with h5py.File(good16, "r") as handle:
        norms = np.linalg.norm(handle["feats"][()].astype(np.float64), axis=-1)
    assert np.abs(norms - 1).max() < cache.NORM_TOLERANCE["float16"]  # the float16 rounding passes
    problem = cache.verify_sequence(path)
    assert problem.startswith("frame 1 (00001): 24 feature vectors are not unit length"), problem
    result = CliRunner().invoke(cache_command, ["verify", str(tmp_path)])
    assert result.exit_code == 1 and "BAD " + path in result.output
    assert str(result.exception).startswith(f"{path}: frame 1 (00001)")


# ------------------------------------------------------------------ extract: refusal, cheap re-run, trust flag
def _tiny_davis(root, n_frames=3, hw=(32, 48)):
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "Annotations"):
        (root / sub / "480p" / "s").mkdir(parents=True)
    for t in range(n_frames):
        pixels = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages/480p/s" / f"{t:05d}.jpg")
    Image.fromarray(np.zeros(hw, np.uint8), mode="P").save(root / "Annotations/480p/s/00000.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("s\n")
    return str(root)


class _ZeroFrame(torch.nn.Module):
    """A network whose features are zero (un-normalisable) or NaN for the second frame of a batch."""

    def __init__(self, inner, value):
        super().__init__()
        self.inner, self.value = inner, value

    def forward(self, x):
        out = self.inner(x).clone()
        if out.shape[0] > 1:
            out[1] = self.value
        return out


@pytest.mark.parametrize("value, words", [(0.0, "not unit length"), (float("nan"), "non-finite")])
def test_extract_refuses_bad_features(tmp_path, monkeypatch, value, words):
    root = _tiny_davis(tmp_path / "davis")
    original = backbones.create

    def create(*args, **kwargs):
        kwargs.pop("trust_checkpoint", None)
        model, spec, report = original(*args, **kwargs)
        return _ZeroFrame(model, value), spec, report

    monkeypatch.setattr(backbones, "create", create)
    with pytest.raises(InputError) as excinfo:
        extract(davis_root=root, cache_dir=str(tmp_path / "cache"), backbone="imagenet18", random_init=True,
                protocol="native", dtype="float32", batch_size=3, num_workers=0, device="cpu", progress=False)
    folder = tmp_path / "cache" / "imagenet18-native-random"
    _one_line_error(excinfo, str(folder / "s.h5"), "frame 1 (00001)", words)
    assert os.listdir(folder) == []


def test_rerun_reads_no_feature_values(tmp_path, monkeypatch):
    root = _tiny_davis(tmp_path / "davis")
    kwargs = dict(davis_root=root, cache_dir=str(tmp_path / "cache"), backbone="imagenet18", random_init=True,
                  protocol="native", batch_size=3, num_workers=0, device="cpu", progress=False)
    extract(**kwargs)
    read = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        read.append(self.name)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    again = extract(**kwargs)
    assert again.skipped == ["s"] and again.extracted == []
    assert read and "/feats" not in read  # frame names and attributes only


def test_trust_checkpoint_flag_reaches_the_loader_and_provenance(tmp_path, monkeypatch):
    root = _tiny_davis(tmp_path / "davis")
    checkpoint = tmp_path / "r18.pth"
    torch.manual_seed(0)
    from torchvision.models import resnet18
    torch.save(resnet18(weights=None).state_dict(), checkpoint)
    original, seen = backbones.create, []

    def create(*args, **kwargs):
        seen.append(kwargs.get("trust_checkpoint"))
        return original(*args, **kwargs)

    monkeypatch.setattr(backbones, "create", create)
    args = ["--davis", root, "--backbone", "imagenet18", "--checkpoint", str(checkpoint), "--protocol", "native",
            "--num-workers", "0", "--device", "cpu"]
    for flag, cache_dir in (([], "plain"), (["--trust-checkpoint"], "trusted")):
        result = CliRunner().invoke(extract_command, args + flag + ["--cache", str(tmp_path / cache_dir)])
        assert result.exit_code == 0, result.output
        folder = cache.resolve_backbone_dir(str(tmp_path / cache_dir))
        with cache.open_sequence(os.path.join(folder, "s.h5")) as seq:
            assert seq.attrs["provenance"]["checkpoint_trusted"] is bool(flag)
    assert seen == [False, True]


def test_run_passes_trust_checkpoint_to_extract(tmp_path, monkeypatch):
    import lpcache.extraction
    from lpcache.commands.run import command as run_command

    seen = []

    def fake_extract(**kwargs):
        seen.append(kwargs["trust_checkpoint"])
        raise InputError("stopped after extract's arguments were seen")

    monkeypatch.setattr(lpcache.extraction, "extract", fake_extract)
    root = _tiny_davis(tmp_path / "davis")
    for flag in ([], ["--trust-checkpoint"]):
        result = CliRunner().invoke(run_command, ["--davis", root, "--workdir", str(tmp_path / "w"), *flag])
        assert isinstance(result.exception, InputError)
    assert seen == [False, True]


def test_writer_stays_inside_its_folder(tmp_path):
    with pytest.raises(InputError, match=r"cache file resolves to .*outside"):
        cache.write_sequence(str(tmp_path / BID), "../escaped", _feats(), FRAMES, attrs=ATTRS)
    assert not (tmp_path / "escaped.h5").exists() and os.listdir(tmp_path / BID) == []
