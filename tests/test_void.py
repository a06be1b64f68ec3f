"""Void (255) pixels in the first annotation: what the seed's pipeline ends with, reproduced.

The seed reads frame 0 as colours (cv2.imread), so void's colour (224, 224, 192) is one more label channel;
its predictions are written in that colour and its eval/convert_davis.py maps each colour to the index of the
identical entry of its own palette (VOC colours 0..21 with 192 written as 191, then a grey ramp (i, i, i)),
unmatched colours to 0. The expectation here is computed that way, independently of lpcache's label code:
a dense propagation (tests/dense_reference.py) whose ids go through colours and that conversion.
"""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dense_reference import reference_propagate
from lpcache import scoring
from lpcache.cache import CachedSequence, write_sequence
from lpcache.cli import cli
from lpcache.config import PropagationParams, SweepGrid
from lpcache.davis import PALETTE, read_mask, write_mask
from lpcache.sweeping import sweep

HW = (48, 64)
STRIDE = 8
N_FRAMES = 6
SEQ = "voidband"
PARAMS = PropagationParams(0.7, 4, 3, 2)


def convert_palette() -> np.ndarray:
    """The palette of the seed's eval/palette.py: VOC colours for 0..21 with 192 written as 191, then grey."""
    voc = PALETTE[:22].astype(np.int64)
    voc[voc == 192] = 191
    grey = np.repeat(np.arange(22, 256)[:, None], 3, axis=1)
    return np.concatenate([voc, grey]).astype(np.uint8)


def seed_convert(ids: np.ndarray) -> np.ndarray:
    """convert_davis.py on a mask whose pixels hold the DAVIS palette colour of `ids`: exact colour match
    against the convert palette, unmatched colours -> 0."""
    colours = PALETTE[ids]
    table = convert_palette()
    out = np.zeros(ids.shape, np.uint8)
    for colour in np.unique(colours.reshape(-1, 3), axis=0):
        matches = np.nonzero(np.all(table == colour, axis=-1))[0]
        if len(matches):
            out[np.all(colours == colour, axis=-1)] = matches[0]
    return out


def annotation(t) -> np.ndarray:
    """Object 1 on the left, object 2 on the right, a void band 16 px wide right next to object 1."""
    mask = np.zeros(HW, np.uint8)
    mask[8:40, 4 + t:20 + t] = 1
    mask[:, 20 + t:36 + t] = 255
    mask[12:44, 40:58] = 2
    return mask


@pytest.fixture
def void_data(tmp_path):
    """A DAVIS root of one sequence whose annotations hold a void band, and a cache of random features."""
    root = tmp_path / "davis"
    for kind in ("JPEGImages", "Annotations"):
        (root / kind / "480p" / SEQ).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(N_FRAMES):
        Image.fromarray(rng.integers(0, 255, HW + (3,), dtype=np.uint8)).save(
            root / "JPEGImages" / "480p" / SEQ / f"{t:05d}.jpg")
        write_mask(str(root / "Annotations" / "480p" / SEQ / f"{t:05d}.png"), annotation(t))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(SEQ + "\n")
    grid = (HW[0] // STRIDE, HW[1] // STRIDE)
    base = rng.standard_normal(grid + (16,)).astype(np.float32)
    feats = np.stack([base + 0.3 * rng.standard_normal(base.shape).astype(np.float32) for _ in range(N_FRAMES)])
    cache = tmp_path / "cache" / "rand16"
    write_sequence(str(cache), SEQ, feats, [f"{t:05d}" for t in range(N_FRAMES)], dtype="float32",
                   attrs={"protocol": "native", "input_hw": list(HW), "orig_hw": list(HW)})
    return str(root), str(cache)


def _expected(cache):
    with CachedSequence(os.path.join(cache, SEQ + ".h5")) as cached:
        feats = np.stack([np.asarray(cached.feats[t], np.float32) for t in range(cached.n_frames)])
    first = annotation(0)
    raw = reference_propagate(feats, first, PARAMS.temperature, PARAMS.topk, PARAMS.radius, PARAMS.video_len, HW)
    assert (raw == 255).any(), "the void channel must win somewhere for this test to mean anything"
    return np.stack([seed_convert(m) for m in raw])


def test_void_band_propagates_and_ends_as_the_seed_ends(tmp_path, void_data):
    root, cache = void_data
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", root, "--out", str(out),
                                      "--temperature", "0.7", "--topk", "4", "--radius", "3", "--video-len", "2",
                                      "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    run_dir = out / "rand16__t0.7_k4_r3_L2"
    masks = np.stack([read_mask(str(run_dir / SEQ / f"{t:05d}.png")) for t in range(N_FRAMES)])
    assert not (masks == 255).any()
    want = _expected(cache)
    np.testing.assert_array_equal(masks[1:], want[1:])
    # frame 0: lpcache writes the annotation itself (not the seed's down/up round trip), void as the seed ends
    np.testing.assert_array_equal(masks[0], seed_convert(annotation(0)))
    scored = scoring.score(root, str(run_dir), progress=False)
    assert 0.0 < scored.global_scores["J&F-Mean"] <= 1.0


def test_sweep_scores_a_void_band_like_propagate_and_score(tmp_path, void_data):
    root, cache = void_data
    result = sweep([cache], root, str(tmp_path / "sweep"), SweepGrid(temperature=(0.7,), topk=(4,), radius=(3.0,),
                                                                    video_len=(2,)),
                   save_all=True, progress=False, device="cpu")
    saved = tmp_path / "sweep" / "runs" / "rand16__t0.7_k4_r3_L2"
    masks = np.stack([read_mask(str(saved / SEQ / f"{t:05d}.png")) for t in range(N_FRAMES)])
    np.testing.assert_array_equal(masks[1:], _expected(cache)[1:])
    assert not (masks == 255).any()
    official = scoring.score(root, str(saved), progress=False)
    assert result.rows[0]["J&F-Mean"] == official.global_scores["J&F-Mean"]
    assert json.load(open(saved / "run.json"))["identity"]["precision"] == "float32"
