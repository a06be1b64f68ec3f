"""Checkpoints never execute code: weights-only reading with a small allow-list, refusals naming the
global, full unpickling only with trust_checkpoint (recorded), and .safetensors through safetensors."""
import argparse
import hashlib
import os
import pickle
import re

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from lpcache.backbones import create
from lpcache.backbones.checkpoints import read_checkpoint
from lpcache.errors import InputError


class TouchMarker:
    """Unpickling this object calls open(path, 'w'): it creates the marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class SystemTouch:
    """Unpickling this object runs a shell command that creates the marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


def _r18_state():
    torch.manual_seed(0)
    return resnet18(weights=None).state_dict()


def _malicious_files(tmp_path, payload):
    """The same payload as a raw pickle (legacy, non-zip) and inside torch.save's zip format."""
    obj = {"state_dict": _r18_state(), "epoch": 1, "hook": payload}
    raw = tmp_path / "raw.pth"
    with open(raw, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)
    zipped = tmp_path / "zipped.pth"
    torch.save(obj, zipped)
    assert raw.read_bytes()[:2] == b"\x80\x02" and zipped.read_bytes()[:2] == b"PK"
    return [raw, zipped]


@pytest.mark.parametrize("kind", ["open", "system"])
def test_malicious_pickle_does_not_run(tmp_path, kind):
    marker = tmp_path / "marker"
    payload = TouchMarker(str(marker)) if kind == "open" else SystemTouch(str(marker))
    refused = {"open": r"GLOBAL (io|builtins)\.open", "system": r"GLOBAL (posix|os|nt)\.system"}[kind]
    for path in _malicious_files(tmp_path, payload):
        with pytest.raises(InputError) as caught:
            create("imagenet18", str(path))
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: refused to unpickle ")
        assert re.search(refused, message), message
        assert "--trust-checkpoint" in message
        assert not marker.exists(), f"{path.name}: unpickling ran code"


def test_raw_pickle_protocol4_names_the_global(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "p4.pth"
    with open(path, "wb") as handle:  # protocol 4 uses STACK_GLOBAL and FRAME, which torch's reader lacks
        pickle.dump({"x": SystemTouch(str(marker))}, handle, protocol=4)
    with pytest.raises(InputError, match=r"p4\.pth: refused to unpickle GLOBAL (posix|os|nt)\.system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_trusted_checkpoint_unpickles_and_is_recorded(tmp_path, caplog):
    marker = tmp_path / "marker"
    obj = {"state_dict": _r18_state(), "hook": TouchMarker(str(marker))}
    legacy, zipped = tmp_path / "legacy.pth", tmp_path / "zipped.pth"
    torch.save(obj, legacy, _use_new_zipfile_serialization=False)
    torch.save(obj, zipped)
    for path in (legacy, zipped):
        marker.unlink(missing_ok=True)
        with caplog.at_level("WARNING", logger="lpcache.backbones.checkpoints"):
            _, _, report = create("imagenet18", str(path), trust_checkpoint=True)
        assert marker.exists(), "trust_checkpoint must fully unpickle"
        assert report.trusted is True and report.matched == report.total
        assert "full unpickling" in caplog.text
    safe = tmp_path / "safe.pth"
    torch.save(_r18_state(), safe)
    assert create("imagenet18", str(safe))[2].trusted is False


def _training_checkpoint(state):
    """What MAE/DINO/MoCo/SimSiam training scripts save next to the weights."""
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=0.05, momentum=0.9)
    param.grad = torch.ones(3)
    optimizer.step()
    return {"state_dict": state, "epoch": 99, "arch": "resnet18",
            "args": argparse.Namespace(lr=0.05, batch_size=256, output_dir="./out", dist_url="env://", seed=0,
                                       sizes=[224, 96], use_fp16=True),
            "optimizer": optimizer.state_dict(), "best_acc1": np.float64(71.25), "best_epoch": np.int64(97),
            "loss": np.float32(0.5), "dtype": np.dtype("float64")}


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_published_extras_load_without_trust(tmp_path, zipped):
    state = _r18_state()
    path = tmp_path / "train.pth"
    torch.save(_training_checkpoint(state), path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(pickle.UnpicklingError):  # plain weights-only torch refuses these files
        torch.load(path, weights_only=True)
    obj = read_checkpoint(path)
    assert obj["args"] == argparse.Namespace(lr=0.05, batch_size=256, output_dir="./out", dist_url="env://",
                                             seed=0, sizes=[224, 96], use_fp16=True)
    assert obj["best_acc1"] == 71.25 and type(obj["best_acc1"]) is np.float64
    assert obj["best_epoch"] == 97 and type(obj["best_epoch"]) is np.int64
    assert type(obj["loss"]) is np.float32 and obj["dtype"] == np.dtype("float64")
    _, _, report = create("imagenet18", str(path))
    assert report.trusted is False and report.matched == report.total


@pytest.mark.skipif(torch.torch_version.TorchVersion(torch.__version__) < (2, 6),
                    reason="allow-listing a global under another module name needs torch >= 2.6")
def test_numpy1_scalar_name_is_allowed(tmp_path):
    """numpy 1 pickles scalars as numpy.core.multiarray.scalar (numpy 2: numpy._core...)."""
    path = tmp_path / "np.pth"
    torch.save({"best_acc": np.float64(0.25)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    modern, old = b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"
    if modern in data:
        path.write_bytes(data.replace(modern, old))
    assert old in path.read_bytes()
    assert read_checkpoint(path)["best_acc"] == 0.25


class RunNote(dict):
    """A harmless class of the test module: still not on the allow-list."""


def test_other_globals_are_refused_even_if_harmless(tmp_path):
    path = tmp_path / "note.pth"
    torch.save({"state_dict": _r18_state(), "note": RunNote(epochs=3)}, path)
    with pytest.raises(InputError, match=r"note\.pth: refused to unpickle GLOBAL [\w.]*RunNote \("):
        create("imagenet18", str(path))
    assert create("imagenet18", str(path), trust_checkpoint=True)[2].trusted


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in _r18_state().items()}
    path = tmp_path / "r18.safetensors"
    save_file(state, str(path))
    model, _, report = create("imagenet18", str(path), trust_checkpoint=True)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.matched == report.total and report.trusted is False  # no pickle: nothing to trust
    assert torch.equal(model.state_dict()["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    # safetensors files are flat: accepted where the .pth format nests the weights (CRW: 'model' entry)
    crw = tmp_path / "crw.safetensors"
    save_file({"encoder.model." + k: v for k, v in state.items()}, str(crw))
    model, _, report = create("crw", str(crw))
    assert report.prefix == "encoder.model." and report.matched == report.total
    assert torch.equal(model.state_dict()["layer1.0.bn1.running_var"], state["layer1.0.bn1.running_var"])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(InputError, match=r"bad\.safetensors: not a readable safetensors file"):
        create("imagenet18", str(bad))
