"""visualize: overlay GIF and contact sheet from a run folder and the DAVIS frames; the demo's figures."""
import json
import os

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lpcache.cli import cli
from lpcache.davis import PALETTE, load_davis, read_mask, resize_mask_nearest, write_mask
from lpcache.errors import InputError
from lpcache.synthetic import make_synthetic_davis
from lpcache.visualize import contact_sheet, demo_figures, frame_label, overlay, overlay_frames, run_object_scores

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
    # every thumbnail carries its frame number: the sheet differs from an unlabelled one in the corners only
    _, images = overlay_frames(str(run), "blackswan", davis_root, progress=False)
    changed = np.any(contact_sheet(images) != sheet, axis=2)
    for col in range(N_FRAMES):
        left = 4 + col * 224
        assert changed[4:28, left:left + 90].sum() > 50
        assert changed[4:, left:left + 220].sum() == changed[4:28, left:left + 90].sum()
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


def test_contact_sheet_draws_frame_numbers_in_the_corner():
    images = [np.full((96, 192, 3), value, np.uint8) for value in (0, 128, 255)]
    plain = contact_sheet(images, columns=3, thumb_width=160, gap=2)
    labelled = contact_sheet(images, columns=3, thumb_width=160, gap=2, labels=["frame 0", "frame 7", "frame 12"])
    assert plain.shape == labelled.shape
    changed = np.any(plain != labelled, axis=2)
    for col in range(3):
        left = 2 + col * 162
        thumb_changed = changed[2:2 + 80, left:left + 160]
        corner = thumb_changed[:24, :80]
        assert corner.sum() > 50                       # text drawn in the top-left corner
        assert thumb_changed.sum() == corner.sum()     # and nowhere else
        area = labelled[2:26, left:left + 80].astype(int)
        # white text with a dark outline: both show on a black, a grey and a white thumbnail
        assert (area.min(axis=2) > 200).sum() > 10 and (area.max(axis=2) < 60).sum() > 10
    # different numbers draw different pixels
    assert not np.array_equal(labelled[2:26, 2:82], labelled[2:26, 164:244])


def test_frame_label():
    assert [frame_label(n) for n in ("00000", "00012", "img_3")] == ["frame 0", "frame 12", "img_3"]


@pytest.fixture
def synthetic_run(tmp_path):
    """A tiny synthetic DAVIS root and a run folder holding its ground truth as the 'predictions'."""
    root = make_synthetic_davis(str(tmp_path / "davis"), n_sequences=1, n_frames=6, hw=(64, 96))
    run = tmp_path / "run"
    sequence = load_davis(root)[0]
    for path in sequence.annotation_paths:
        write_mask(str(run / sequence.name / os.path.basename(path)), read_mask(path))
    return root, run, sequence.name


def test_demo_figures_writes_an_overlay_strip_and_a_plot(synthetic_run, tmp_path):
    root, run, seq = synthetic_run
    scores = {"global": {"J&F-Mean": 0.75}, "per_object": {f"{seq}_1": {"J-Mean": 0.9, "F-Mean": 0.8},
                                                           f"{seq}_2": {"J-Mean": 0.6, "F-Mean": 0.7}}}
    (run / "scores.json").write_text(json.dumps(scores))
    out = tmp_path / "figures"
    paths = demo_figures(str(run), root, seq, str(out), frames=4, thumb_width=200)
    assert paths == [str(out / f"{seq}_overlay.png"), str(out / "scores_per_object.png")]
    strip = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert strip.shape == (round(64 * 200 / 96) + 8, 4 * (200 + 4) + 4, 3)   # one row of 4 thumbnails
    with Image.open(paths[1]) as plot:
        assert plot.format == "PNG" and plot.size[0] > 200 and np.asarray(plot.convert("RGB")).std() > 10
    assert not [n for n in os.listdir(out) if n.endswith(".partial")]


def test_demo_figures_reads_the_official_csv_and_says_when_unscored(synthetic_run, tmp_path):
    root, run, seq = synthetic_run
    with pytest.raises(InputError, match="lpcache score --results"):
        demo_figures(str(run), root, seq, str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    (run / "per-sequence_results-val.csv").write_text(f"Sequence,J-Mean,F-Mean\n{seq}_1,0.500,0.600\n")
    rows, global_jf = run_object_scores(str(run))
    assert rows == [{"object": f"{seq}_1", "J-Mean": 0.5, "F-Mean": 0.6}] and global_jf is None
    assert len(demo_figures(str(run), root, seq, str(tmp_path / "b"))) == 2
    (run / "scores.json").write_text("{\"global\": {}}")
    with pytest.raises(InputError, match="scores.json: not a score file"):
        run_object_scores(str(run))
