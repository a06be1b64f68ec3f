"""visualize: overlay GIF and contact sheet from a run folder and the DAVIS frames."""
import os

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lpcache.cli import cli
from lpcache.davis import PALETTE, load_davis, read_mask, resize_mask_nearest, write_mask
from lpcache.visualize import contact_sheet, overlay

N_FRAMES = 5


def test_overlay_colours_objects_only():
    frame = np.full((4, 6, 3), 100, np.uint8)
    ids = np.zeros((4, 6), np.uint8)
    ids[1:3, 1:3] = 2
    ids[0, 5] = 255  # void stays untouched
    out = overlay(frame, ids, alpha=0.5, contour=False)
    assert np.array_equal(out[ids == 0], frame[ids == 0])
    assert np.array_equal(out[0, 5], frame[0, 5])
    expected = np.round(0.5 * 100 + 0.5 * PALETTE[2].astype(float)).astype(np.uint8)
    assert np.array_equal(out[1, 1], expected)  # (50, 114, 50): DAVIS green for id 2


def test_contact_sheet_grid():
    images = [np.full((48, 96, 3), i * 20, np.uint8) for i in range(7)]
    sheet = contact_sheet(images, columns=3, thumb_width=40, gap=2)
    assert sheet.shape == (3 * (20 + 2) + 2, 3 * (40 + 2) + 2, 3)
    assert np.all(sheet[2 + 22, 2 + 42] == 80)  # row 1, column 1 = image 4
    assert np.all(sheet[0, :] == 255)


@pytest.fixture
def seed_run(tmp_path, davis_root):
    """A run folder with blackswan's real GT resized to the seed size 480x880 (frames are 854 wide)."""
    sequence = load_davis(davis_root, sequences=["blackswan"])[0]
    run = tmp_path / "run"
    for path in sequence.annotation_paths[:N_FRAMES]:
        ids = resize_mask_nearest(read_mask(path), (480, 880))
        write_mask(str(run / "blackswan" / os.path.basename(path)), ids)
    return run, sequence


def test_visualize_cli_seed_size(seed_run, davis_root, tmp_path):
    run, sequence = seed_run
    out = tmp_path / "vis"
    result = CliRunner().invoke(cli, ["visualize", str(run), "--seq", "blackswan", "--davis", davis_root,
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    gif = iio.imread(out / "blackswan.gif")
    assert gif.shape[0] == N_FRAMES
    assert gif.shape[1:3] == (round(480 * 480 / 880), 480)  # scaled to 480 wide, seed aspect kept
    sheet = np.asarray(Image.open(out / "blackswan_sheet.png"))
    assert sheet.shape[0] > 100 and sheet.shape[1] == N_FRAMES * (220 + 4) + 4
    # The object region is tinted towards DAVIS red (id 1), the background is not.
    frame0 = gif[0].astype(int)
    mask0 = np.asarray(Image.fromarray(resize_mask_nearest(read_mask(sequence.annotation_paths[0]), (480, 880)))
                       .resize((gif.shape[2], gif.shape[1]), Image.NEAREST))
    inner = np.asarray(Image.fromarray((mask0 == 1).astype(np.uint8)).filter(
        __import__("PIL.ImageFilter", fromlist=["MinFilter"]).MinFilter(5))) > 0
    red_excess = frame0[..., 0] - (frame0[..., 1] + frame0[..., 2]) / 2
    assert red_excess[inner].mean() > red_excess[mask0 == 0].mean() + 30


def test_visualize_default_out_and_errors(seed_run, davis_root):
    run, _ = seed_run
    result = CliRunner().invoke(cli, ["visualize", str(run), "--seq", "blackswan", "--davis", davis_root])
    assert result.exit_code == 0, result.output
    assert (run / "vis" / "blackswan.gif").is_file() and (run / "vis" / "blackswan_sheet.png").is_file()
    missing = CliRunner().invoke(cli, ["visualize", str(run), "--seq", "car-shadow", "--davis", davis_root])
    assert missing.exit_code == 1
    assert "no masks for sequence car-shadow" in missing.output
    unknown = CliRunner().invoke(cli, ["visualize", str(run), "--seq", "nope", "--davis", davis_root])
    assert unknown.exit_code == 1 and "Error:" in unknown.output
