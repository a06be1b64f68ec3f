"""`extract`: synthetic DAVIS trees (pipeline, resume, refusal, bad input) and the real data (efficientnet,
killed mid-run and resumed, read back with a reader written from the documented format)."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision.models import resnet18

from lpcache.backbones import create
from lpcache.commands.cache import command as cache_command
from lpcache.errors import InputError
from lpcache.extraction import extract
from lpcache.transforms import normalize, prepare_frame

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_davis(root, sequences, hw=(40, 60)):
    """A DAVIS tree: JPEG frames of random colours, palette PNG annotations, ImageSets/2017/val.txt."""
    rng = np.random.default_rng(0)
    for name, n_frames in sequences.items():
        jpeg_dir = root / "JPEGImages" / "480p" / name
        ann_dir = root / "Annotations" / "480p" / name
        jpeg_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for t in range(n_frames):
            Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(jpeg_dir / f"{t:05d}.jpg")
            Image.fromarray(np.zeros(hw, np.uint8), mode="P").save(ann_dir / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return str(root)


@pytest.fixture
def r18_checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "r18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return str(path)


def read_cache_file(path):
    """A reader written only from the documented format v1 (plain h5py)."""
    with h5py.File(path, "r") as handle:
        attrs = dict(handle.attrs)
        assert attrs["format"] == "lpcache.features" and int(attrs["format_version"]) == 1
        assert bool(attrs["l2_normalized"]) and bool(attrs["complete"])
        meta = {k: json.loads(attrs[k]) for k in ("backbone", "input_hw", "grid_hw", "orig_hw")}
        meta.update({k: str(attrs[k]) for k in ("dtype", "protocol", "checkpoint_sha256")})
        feats = handle["feats"][()]
        frames = [f.decode() if isinstance(f, bytes) else f for f in handle["frames"][()]]
        chunks = handle["feats"].chunks
    return meta, feats, frames, chunks


def test_synthetic_extract_resume_and_refusal(tmp_path, r18_checkpoint):
    root = make_davis(tmp_path / "davis", {"a": 3, "b": 5})
    cache = tmp_path / "cache"
    kwargs = dict(davis_root=root, cache_dir=str(cache), backbone="imagenet18", checkpoint=r18_checkpoint,
                  protocol="native", dtype="float32", batch_size=2, num_workers=0, progress=False)
    result = extract(**kwargs)
    sha = result.backbone_id.split("-")[-1]
    assert result.backbone_id == f"imagenet18-native-{sha}" and len(sha) == 8
    assert result.extracted == ["a", "b"] and result.frames == 8
    meta, feats, frames, chunks = read_cache_file(cache / result.backbone_id / "b.h5")
    assert feats.shape == (5, 5, 8, 256) and feats.dtype == np.float32 and chunks == (1, 5, 8, 256)
    assert frames == ["00000", "00001", "00002", "00003", "00004"]
    assert meta["input_hw"] == [40, 64] and meta["orig_hw"] == [40, 60] and meta["grid_hw"] == [5, 8]
    assert meta["backbone"]["name"] == "imagenet18" and meta["protocol"] == "native"
    assert meta["checkpoint_sha256"].startswith(sha)
    model, spec, _ = create("imagenet18", r18_checkpoint)
    frame = torch.from_numpy(prepare_frame(os.path.join(root, "JPEGImages/480p/b/00003.jpg"), "native", 8))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(normalize(frame[None], spec.mean, spec.std)), dim=1)
    np.testing.assert_allclose(feats[3], expected[0].permute(1, 2, 0).numpy(), atol=1e-5)
    manifest = json.loads((cache / result.backbone_id / "manifest.json").read_text())
    assert manifest["sequences"]["a"]["frames"] == 3 and manifest["attrs"]["dtype"] == "float32"

    stamp = os.stat(cache / result.backbone_id / "a.h5").st_mtime_ns
    again = extract(**kwargs)
    assert again.skipped == ["a", "b"] and again.extracted == [] and again.frames == 0
    assert os.stat(cache / result.backbone_id / "a.h5").st_mtime_ns == stamp

    with pytest.raises(InputError, match=r"a\.h5: the cache was made differently \(dtype: cache has 'float32', "
                                         r"request has 'float16'\)"):
        extract(**{**kwargs, "dtype": "float16"})

    # a truncated file and a stale partial: the next run redoes the sequence
    path_b = cache / result.backbone_id / "b.h5"
    data = path_b.read_bytes()
    path_b.write_bytes(data[: len(data) // 2])
    (cache / result.backbone_id / "a.h5.partial").write_bytes(b"junk")
    runner = CliRunner()
    bad = runner.invoke(cache_command, ["verify", str(cache)])
    assert bad.exit_code == 1 and isinstance(bad.exception, InputError)  # the CLI prints it as `Error: ...`
    assert "b.h5" in str(bad.exception) and "BAD " in bad.output and "a.h5" not in bad.output
    redone = extract(**kwargs)
    assert redone.extracted == ["b"] and redone.skipped == ["a"]
    good = runner.invoke(cache_command, ["verify", str(cache)])
    assert good.exit_code == 0 and "2 files OK" in good.output
    info = runner.invoke(cache_command, ["info", str(cache)])
    assert f"{result.backbone_id}: 2 sequences, 8 frames, grid 5x8, 256 ch, float32, protocol native" in info.output

    forced = extract(**{**kwargs, "force": True, "sequences": ["a"]})
    assert forced.extracted == ["a"] and os.stat(cache / result.backbone_id / "a.h5").st_mtime_ns != stamp


def test_bad_input_leaves_no_complete_file(tmp_path, r18_checkpoint):
    root = make_davis(tmp_path / "davis", {"a": 2, "b": 4})
    cache = tmp_path / "cache"
    broken = tmp_path / "davis" / "JPEGImages" / "480p" / "b" / "00002.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    kwargs = dict(davis_root=root, cache_dir=str(cache), backbone="imagenet18", checkpoint=r18_checkpoint,
                  protocol="native", batch_size=2, num_workers=2, progress=False)
    with pytest.raises(InputError, match=r"b/00002\.jpg: unreadable image"):
        extract(**kwargs)
    folder = next(cache.iterdir())
    assert sorted(os.listdir(folder)) == ["a.h5"]  # b neither complete nor partial

    Image.open(tmp_path / "davis" / "Annotations" / "480p" / "a" / "00000.png").save(
        tmp_path / "davis" / "Annotations" / "480p" / "b" / "00009.png")
    with pytest.raises(InputError, match=r"Annotations/480p/b: 5 annotations for 4 frames"):
        extract(**kwargs)
    with pytest.raises(InputError, match=r"r18\.pth: not a CRW"):
        extract(**{**kwargs, "backbone": "crw"})
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(InputError, match=r"file/imagenet18-native-\w+: cannot create the cache folder"):
        extract(**{**kwargs, "cache_dir": str(not_a_folder), "sequences": ["a"]})
    with pytest.raises(InputError, match=r"sequences not in the set: zz"):
        extract(**{**kwargs, "sequences": ["zz"]})


def _run_cli(args, **popen):
    code = "import sys; from lpcache.commands.extract import command; command(sys.argv[1:])"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, **popen)


def real_subset(davis_root, root, sequences, n_frames):
    """A DAVIS root of symlinks to the first `n_frames` real frames and annotations of `sequences`."""
    for name in sequences:
        for kind, ext in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
            folder = root / kind / "480p" / name
            folder.mkdir(parents=True)
            for t in range(n_frames):
                os.symlink(os.path.join(davis_root, kind, "480p", name, f"{t:05d}{ext}"), folder / f"{t:05d}{ext}")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return str(root)


def test_real_extract_killed_and_resumed(davis_root, tmp_path):
    """Real frames (the first 12 of car-shadow and motocross-jump, to keep the test short)."""
    root = real_subset(davis_root, tmp_path / "davis", ["car-shadow", "motocross-jump"], 12)
    cache = tmp_path / "cache"
    args = ["--davis", root, "--cache", str(cache), "--sequences", "car-shadow,motocross-jump",
            "--backbone", "efficientnet_lite0", "--batch-size", "4", "--device", "cpu"]   # slow enough to kill
    folder = cache / "efficientnet_lite0-seed"
    proc = _run_cli(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (folder / "car-shadow.h5").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    second_started = time.time() + 0.5   # kill inside the second sequence: once its .partial exists (fast machines)
    while not list(folder.glob("motocross-jump.h5.*.partial")) and time.time() < second_started:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / "car-shadow.h5").exists() and not (folder / "motocross-jump.h5").exists()
    first = os.stat(folder / "car-shadow.h5")

    done = _run_cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "1 sequences extracted, 1 already complete" in out
    assert os.stat(folder / "car-shadow.h5").st_mtime_ns == first.st_mtime_ns
    assert sorted(os.listdir(folder)) == ["car-shadow.h5", "manifest.json", "motocross-jump.h5"]
    for name in ("car-shadow", "motocross-jump"):
        meta, feats, frames, _ = read_cache_file(folder / f"{name}.h5")
        assert feats.shape == (12, 60, 110, 40) and feats.dtype == np.float16
        assert frames[0] == "00000" and frames[-1] == "00011"
        assert meta["input_hw"] == [480, 880] and meta["orig_hw"] == [480, 854] and meta["grid_hw"] == [60, 110]
        assert meta["protocol"] == "seed" and meta["dtype"] == "float16"
        assert meta["backbone"]["stride"] == 8 and meta["backbone"]["mean"] == [0.5, 0.5, 0.5]
        norms = np.linalg.norm(feats.astype(np.float32), axis=-1)
        np.testing.assert_allclose(norms, 1.0, atol=2e-3)
        assert np.abs(feats[0].astype(np.float32) - feats[-1].astype(np.float32)).mean() > 1e-3
