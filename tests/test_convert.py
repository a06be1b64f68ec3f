"""`lpcache convert`: seed colour masks (B,G,R stored as R,G,B) -> DAVIS palette ids, on real masks."""
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lpcache import convert, davis
from lpcache.cli import cli
from lpcache.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_LIST = os.path.join(REPO, "davis_vallist_480_880.txt")


def seed_file(path, ids):
    """Write ids the way the seed's test.py does: palette colour as B,G,R in an RGB PNG."""
    Image.fromarray(davis.PALETTE[ids][..., ::-1].copy(), mode="RGB").save(path, compress_level=1)


def names_in_list(path):
    with open(path) as handle:
        return [os.path.basename(line.split()[0]) for line in handle if line.split()]


def test_colour_mapping_undoes_the_channel_swap():
    stored = np.array([[[0, 0, 128], [128, 0, 0], [0, 128, 0], [0, 0, 0]]], np.uint8)
    # (0,0,128) stored = palette (128,0,0) = id 1; (128,0,0) stored = palette (0,0,128) = id 4
    assert convert.seed_colours_to_ids(stored).tolist() == [[1, 4, 2, 0]]
    every_id = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = every_id.copy()
    expected[every_id == 255] = 0  # the void colour ends as background, as the seed's convert_davis.py leaves it
    assert np.array_equal(convert.seed_colours_to_ids(davis.PALETTE[every_id][..., ::-1]), expected)
    with pytest.raises(InputError, match=r"x\.png: colour \(R,G,B\)=\(1,2,3\) as stored"):
        convert.seed_colours_to_ids(np.array([[[1, 2, 3]]], np.uint8), "x.png")


def test_seed_outputs_of_real_masks_round_trip(davis_root, osvos_root, tmp_path):
    """GT (1 object) and OSVOS (2 objects) resized to 880 wide like the seed, converted back to 854."""
    order = names_in_list(SEED_LIST)
    sources = {"car-shadow": os.path.join(davis_root, "Annotations", "480p", "car-shadow"),
               "motocross-jump": os.path.join(osvos_root, "motocross-jump")}
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    originals = {}
    for name, folder in sources.items():
        files = sorted(os.listdir(folder))
        originals[name] = [davis.read_mask(os.path.join(folder, f)) for f in files]
        for t, ids in enumerate(originals[name]):
            seed_file(str(seed_dir / f"{order.index(name)}_{t}_mask.png"), davis.resize_mask_nearest(ids, (480, 880)))
    (seed_dir / "0_0_blend.jpg").write_bytes(b"ignored")
    out = CliRunner().invoke(cli, ["convert", "--input", str(seed_dir), "--out", str(tmp_path / "results"),
                                   "--filelist", SEED_LIST, "--filelist-root", davis_root, "--no-progress"])
    assert out.exit_code == 0, out.output
    assert sorted(os.listdir(tmp_path / "results")) == ["car-shadow", "motocross-jump"]
    for name, frames in originals.items():
        jpegs = sorted(os.listdir(os.path.join(davis_root, "JPEGImages", "480p", name)))
        assert sorted(os.listdir(tmp_path / "results" / name)) == [j.replace(".jpg", ".png") for j in jpegs]
        for t, ids in enumerate(frames):
            with Image.open(tmp_path / "results" / name / f"{t:05d}.png") as image:
                assert image.mode == "P"
                assert np.array_equal(np.array(image), ids), (name, t)
    assert int(np.array(Image.open(tmp_path / "results" / "motocross-jump" / "00010.png")).max()) == 2


def test_davis_set_order_and_explicit_size(davis_root, tmp_path):
    order = davis.read_set(davis_root, "val")
    video = order.index("motocross-jump")
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    n_frames = len(os.listdir(os.path.join(davis_root, "JPEGImages", "480p", "motocross-jump")))
    ids = np.zeros((60, 110), np.uint8)
    ids[10:30, 20:60] = 1
    for t in range(n_frames):
        seed_file(str(seed_dir / f"{video}_{t}_mask.png"), ids)
    out = CliRunner().invoke(cli, ["convert", "--input", str(seed_dir), "--out", str(tmp_path / "r"),
                                   "--davis", davis_root, "--size", "120x220", "--no-progress"])
    assert out.exit_code == 0, out.output
    result = np.array(Image.open(tmp_path / "r" / "motocross-jump" / "00039.png"))
    assert result.shape == (120, 220) and int(result.sum()) == 4 * int(ids.sum())


def _small_seed(tmp_path, davis_root, frames=None):
    video = davis.read_set(davis_root, "val").index("car-shadow")
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    n_frames = len(os.listdir(os.path.join(davis_root, "JPEGImages", "480p", "car-shadow")))
    for t in range(n_frames if frames is None else frames):
        seed_file(str(seed_dir / f"{video}_{t}_mask.png"), np.zeros((48, 88), np.uint8))
    return seed_dir, video


def run_convert(seed_dir, out_dir, davis_root, *extra):
    return CliRunner().invoke(cli, ["convert", "--input", str(seed_dir), "--out", str(out_dir), "--davis", davis_root,
                                    "--no-progress", *extra])


def test_unknown_colour_is_refused_and_nothing_written(davis_root, tmp_path):
    seed_dir, video = _small_seed(tmp_path, davis_root)
    bad = np.zeros((48, 88, 3), np.uint8)
    bad[5, 5] = (10, 20, 30)
    path = seed_dir / f"{video}_7_mask.png"
    Image.fromarray(bad).save(path)
    out = run_convert(seed_dir, tmp_path / "r", davis_root)
    assert out.exit_code == 1
    assert str(path) in out.output and "(10,20,30)" in out.output and "not in the DAVIS palette" in out.output
    assert not (tmp_path / "r").exists() or os.listdir(tmp_path / "r") == []


def test_missing_frame_and_unknown_video(davis_root, tmp_path):
    seed_dir, video = _small_seed(tmp_path, davis_root, frames=10)
    out = run_convert(seed_dir, tmp_path / "r", davis_root)
    assert out.exit_code == 1 and f"{video}_10_mask.png: file not found" in out.output
    seed_file(str(seed_dir / "99_0_mask.png"), np.zeros((4, 4), np.uint8))
    out = run_convert(seed_dir, tmp_path / "r", davis_root)
    assert out.exit_code == 1 and "video number 99" in out.output
    assert not (tmp_path / "r").exists() or os.listdir(tmp_path / "r") == []


def test_needs_an_order(tmp_path):
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    seed_file(str(seed_dir / "0_0_mask.png"), np.zeros((4, 4), np.uint8))
    out = CliRunner().invoke(cli, ["convert", "--input", str(seed_dir), "--out", str(tmp_path / "r")])
    assert out.exit_code == 1 and "--filelist or --davis" in out.output
