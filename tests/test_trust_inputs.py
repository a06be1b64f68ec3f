"""Bad input at the edges: unsafe sequence names, paths escaping their root, partial files of other hosts,
decompression bombs and broken images, non-finite parameters, disk full, and exceptions from libraries;
each is one `Error:` line, and nothing is written where it should not be."""
import errno
import os
import struct
import subprocess
import warnings
import zlib
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lpcache import atomic, davis, scoring
from lpcache.cli import cli
from lpcache.errors import InputError
from lpcache.transforms import read_rgb

from test_score_errors import make_tree

BAD_NAMES = ["../evil", "/abs", "a/b", "x\x00y", "..", ".", "a\\b", "tab\there", "C:evil"]


def _root_with_set(tmp_path, names):
    """A DAVIS root whose val.txt lists `names`; every name that can be a folder has a JPEG folder."""
    root = tmp_path / "davis"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "JPEGImages" / "480p" / "good").mkdir(parents=True)
    (root / "JPEGImages" / "evil").mkdir()  # where '../evil' would lead: the check, not luck, must refuse it
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return str(root)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_set_file_with_unsafe_name_is_refused(tmp_path, name):
    root = _root_with_set(tmp_path, ["good", name])
    with pytest.raises(InputError) as info:
        davis.load_davis(root)
    message = str(info.value)
    assert "invalid sequence name" in message and repr(name) in message and "val.txt" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["blackswan", "car-shadow", "a.b", "dog_1"])
def test_ordinary_names_pass(name):
    assert davis.validate_name(name, "here") == name


def test_unsafe_names_refused_by_the_cli(tmp_path):
    root = _root_with_set(tmp_path, ["good", "../evil"])
    os.makedirs(tmp_path / "results")
    out = CliRunner().invoke(cli, ["score", "--davis", root, "--results", str(tmp_path / "results"), "--no-progress"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        f"Error: {davis.set_file(root)}: invalid sequence name '../evil' (path separator)"]
    root = _root_with_set(tmp_path / "second", ["good"])
    out = CliRunner().invoke(cli, ["score", "--davis", root, "--results", str(tmp_path / "results"),
                                   "--sequences", "good,../evil"])
    assert out.exit_code == 1 and "--sequences: invalid sequence name '../evil'" in out.output


def test_file_list_with_unsafe_name_is_refused(tmp_path):
    (tmp_path / "img" / "x\x01y").mkdir(parents=True)
    listing = tmp_path / "list.txt"
    listing.write_text("img/x\x01y ann/x\x01y\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"list\.txt:1: invalid sequence name 'x\\x01y' \(control character\)"):
        davis.load_filelist(str(listing))


# ------------------------------------------------------------------------------------------ ensure_inside
def test_ensure_inside(tmp_path):
    root = tmp_path / "runs"
    (root / "run" / "seq").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert atomic.ensure_inside(root / "run" / "seq", root, "run folder") == os.path.realpath(root / "run" / "seq")
    assert atomic.ensure_inside(root / "not-yet", root) == os.path.realpath(root / "not-yet")
    (root / "run" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match=r"link: run folder resolves to .*elsewhere, outside .*runs"):
        atomic.ensure_inside(root / "run" / "link", root, "run folder")
    with pytest.raises(InputError, match="outside"):
        atomic.ensure_inside(root / "run" / "link" / "file.png", root)
    with pytest.raises(InputError, match="outside"):
        atomic.ensure_inside(os.path.join(root, "..", "runs2"), root)
    with pytest.raises(InputError, match="outside"):
        atomic.ensure_inside(root, root)
    assert atomic.ensure_inside(root, root, allow_root=True) == os.path.realpath(root)


# ------------------------------------------------------------------------------------------ partial files
def _dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_partial_names_carry_the_host(monkeypatch, tmp_path):
    monkeypatch.setattr(atomic.socket, "gethostname", lambda: "node 7/ü.cluster")
    name = os.path.basename(atomic.partial_path(str(tmp_path / "seq.h5")))
    prefix = f"seq.h5.node_7__.cluster-{os.getpid()}-"
    assert name.startswith(prefix) and name.endswith(".partial") and len(name) == len(prefix) + 8 + len(".partial")


def test_only_dead_partials_of_this_host_are_reaped(tmp_path):
    here, dead = atomic.host_tag(), _dead_pid()
    target = tmp_path / "seq.h5"
    names = {
        "dead_here": f"seq.h5.{here}-{dead}-deadbeef.partial",
        "live_here": f"seq.h5.{here}-{os.getppid()}-cafecafe.partial",
        "dead_other_host": f"seq.h5.{here}x-{dead}-deadbeef.partial",
        "old_format": f"seq.h5.{dead}-deadbeef.partial",
        "unparseable": "seq.h5.whatever.partial",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
    atomic.remove_stale_partials(target)
    assert sorted(os.listdir(tmp_path)) == sorted(v for k, v in names.items() if k != "dead_here")


# ------------------------------------------------------------------------------------------ disk full
def test_disk_full_names_the_target(monkeypatch, tmp_path):
    target = tmp_path / "out" / "scores.json"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic.write_json_atomic(target, {"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert os.listdir(tmp_path / "out") == []

    @click.command("write-something")
    def write_something():
        atomic.write_text_atomic(target, "x")

    cli.add_command(write_something)
    try:
        out = CliRunner().invoke(cli, ["write-something"])
    finally:
        cli.commands.pop("write-something")
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [f"Error: {target}: {os.strerror(errno.ENOSPC)}"]


def test_reserve_file_space_without_posix_fallocate(monkeypatch, tmp_path):
    monkeypatch.delattr(atomic.os, "posix_fallocate", raising=False)
    path = tmp_path / "claim"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY)
    try:
        atomic.reserve_file_space(fd, 3 * (1 << 20) + 5)
    finally:
        os.close(fd)
    assert path.stat().st_size == 3 * (1 << 20) + 5 and path.stat().st_blocks * 512 >= 3 * (1 << 20)

    class Tiny:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(atomic.os, "fstatvfs", lambda fd: Tiny)
    fd = os.open(tmp_path / "claim2", os.O_CREAT | os.O_WRONLY)
    try:
        with pytest.raises(OSError) as info:
            atomic.reserve_file_space(fd, 1 << 20)
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC and os.path.getsize(tmp_path / "claim2") == 0


# ------------------------------------------------------------------------------------------ images
def _png_claiming(path, width, height):
    """A valid 1x1 1-bit PNG whose IHDR is patched to claim width x height (CRC recomputed)."""
    path = Path(path)
    Image.new("1", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return str(path)


@pytest.mark.parametrize("reader", [davis.read_mask, read_rgb, scoring.read_ids])
def test_decompression_bomb_is_one_line(tmp_path, reader):
    bomb = _png_claiming(tmp_path / "bomb.png", 100000, 100000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"bomb\.png: image is larger than .*10000000000 pixels"):
            reader(bomb)
        # Above lpcache's limit (2**27 pixels), below PIL's refusal: lpcache's own check, from the header.
        large = _png_claiming(tmp_path / "large.png", 16384, 8193)
        with pytest.raises(InputError, match=r"large\.png: 16384x8193 image is larger than the 134217728 pixels"):
            reader(large)
        # Under lpcache's limit but above PIL's warning threshold: no warning, a clean error (truncated data).
        big = _png_claiming(tmp_path / "big.png", 10000, 10000)
        with pytest.raises(InputError, match=r"big\.png: unreadable image"):
            reader(big)


@pytest.mark.parametrize("reader", [davis.read_mask, scoring.read_ids])
def test_truncated_and_corrupt_masks_are_one_line(tmp_path, reader):
    path = tmp_path / "mask.png"
    rng = np.random.default_rng(0)
    davis.write_mask(path, rng.integers(0, 3, (64, 64)))
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.png: unreadable image"):
        reader(str(tmp_path / "cut.png"))
    (tmp_path / "junk.png").write_bytes(data[:40] + bytes(200))
    with pytest.raises(InputError, match=r"junk\.png: unreadable image"):
        reader(str(tmp_path / "junk.png"))


def test_bomb_annotation_via_the_cli(tmp_path):
    root, results = make_tree(str(tmp_path / "davis"))
    _png_claiming(os.path.join(root, "Annotations", "480p", "beta", "00002.png"), 100000, 100000)
    out = CliRunner().invoke(cli, ["score", "--davis", root, "--results", results, "--no-progress"])
    assert out.exit_code == 1
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "00002.png: image is larger than" in lines[0]


# ------------------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize("option", [("--radius", "nan"), ("--radius", "inf"), ("--temperature", "inf"),
                                    ("--temperature", "nan"), ("--radius", "-inf")])
def test_non_finite_parameters_refused_before_anything_is_written(tmp_path, option):
    root, _ = make_tree(str(tmp_path / "davis"))
    out_dir = tmp_path / "runs"
    out = CliRunner().invoke(cli, ["propagate", "--cache", str(tmp_path / "cache" / "bb"), "--davis", root,
                                   "--out", str(out_dir), "--no-progress", *option])
    assert out.exit_code == 1
    name = option[0][2:]
    rule = {"radius": "must be positive", "temperature": "must be a positive number"}[name]
    assert out.output.strip().splitlines() == [f"Error: {name} {float(option[1])}: {rule} and finite"]
    assert not out_dir.exists()


def test_params_and_grid_refuse_non_finite_and_non_integer_values():
    from lpcache.config import PropagationParams, SweepGrid

    for bad in ({"radius": float("nan")}, {"radius": float("inf")}, {"temperature": float("inf")},
                {"topk": 8.5}, {"video_len": float("inf")}, {"topk": True}, {"radius": "18"}):
        with pytest.raises(InputError):
            PropagationParams(**bad).validate()
    for mapping in ({"radius": [18, "nan"]}, {"temperature": [float("inf")]}, {"video_len": ["inf"]},
                    {"topk": [8, float("nan")]}):
        with pytest.raises(InputError, match="grid"):
            SweepGrid.from_mapping(mapping)
    with pytest.raises(InputError, match="grid: radius nan"):
        SweepGrid(radius=(float("nan"),)).validate()
    assert PropagationParams(topk=np.int64(8)).validate().topk == 8


# ------------------------------------------------------------------------------------------ library errors
def _invoke_dummy(exc, *args, name="dummy"):
    @click.command(name)
    def dummy():
        raise exc

    cli.add_command(dummy)
    try:
        return CliRunner().invoke(cli, [*args, name])
    finally:
        cli.commands.pop(name)


def test_library_errors_are_one_line_and_traceback_only_at_debug():
    out = _invoke_dummy(ValueError("operands could not be broadcast\ntogether with shapes (3,) (4,)"))
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        "Error: internal error: ValueError: operands could not be broadcast together with shapes (3,) (4,) "
        "(re-run with -vv for the traceback)"]
    assert "Traceback" not in out.output


def test_cuda_out_of_memory_names_the_option_to_lower():
    import torch

    out = _invoke_dummy(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                        name="extract-oom")
    assert out.exit_code == 1
    assert out.output.strip().splitlines()[0].startswith("Error: out of GPU memory (use --device cpu)")
    import lpcache.cli as cli_module

    cli_module.OOM_ADVICE["extract-oom"] = "lower --batch-size or use --device cpu"
    try:
        out = _invoke_dummy(RuntimeError("CUDA out of memory."), name="extract-oom")
    finally:
        cli_module.OOM_ADVICE.pop("extract-oom")
    assert out.output.strip().splitlines() == [
        "Error: out of GPU memory (lower --batch-size or use --device cpu): CUDA out of memory."]


def test_keyboard_interrupt_keeps_work_and_exits_130():
    out = _invoke_dummy(KeyboardInterrupt())
    assert out.exit_code == 130
    assert out.output.strip().splitlines() == ["Interrupted: finished work is kept; re-running resumes"]


def test_click_usage_errors_are_left_to_click():
    out = CliRunner().invoke(cli, ["score", "--no-such-option"])
    assert out.exit_code == 2 and "No such option" in out.output
