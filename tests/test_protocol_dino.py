"""The DINO protocol (lpcache.protocols.dino) against DINO's own eval_video_segmentation.py.

Synthetic tests check each quirk with values worked out by hand. The real-data test rebuilds the random
weights of tests/data/reference_dino.json's recipe, extracts features of the first frames of two shared
sequences with `prepare_frame`, runs `reference` and compares with the reference code's masks (sha256 per
frame). Propagation is causal, so a prefix of the frames gives the first masks of the full run: by default
the first 4 frames are checked (~30 s on 2 cores); LPCACHE_DINO_FULL=1 checks all 12 and the J&F.
"""
import hashlib
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import DAVIS2016, OSVOS, REPO
from lpcache import protocols
from lpcache.errors import InputError
from lpcache.metrics import global_statistics
from lpcache.propagation import propagate_video
from lpcache.protocols import dino
from lpcache.scoring import score_sequence_masks
from random_weights import dino_vits16_with, random_dino_state_dict, weights_sha256

FIXTURE = os.path.join(REPO, "tests", "data", "reference_dino.json")
PREFIX = 4


def unit(*rows):
    """Rows as a float32 tensor of unit vectors."""
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1).float()


# ------------------------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("orig, expected", [((480, 854), (480, 832)), ((480, 910), (480, 896)),
                                            ((480, 1152), (480, 1152)), ((1080, 1920), (480, 832)),
                                            ((854, 480), (832, 480)), ((480, 480), (480, 448))])
def test_input_hw_short_side_480_long_side_floored_to_64(orig, expected):
    assert dino.input_hw(orig, 16) == expected
    assert dino.input_hw(orig, 8) == expected


def test_prepare_frame_normalises_with_dinos_std(tmp_path):
    pixels = np.zeros((480, 854, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 10, 128, 250  # B, G, R as OpenCV stores them
    path = str(tmp_path / "frame.png")  # lossless, so the decoded pixels are exactly these
    Image.fromarray(pixels[..., ::-1].copy()).save(path)
    x = dino.prepare_frame(path, 16)
    assert x.dtype == np.float32 and x.shape == (3, 480, 832)
    for channel, value, mean, std in zip(x, (250, 128, 10), (0.485, 0.456, 0.406), (0.228, 0.224, 0.225)):
        assert np.allclose(channel, (value / 255 - mean) / std, rtol=0, atol=1e-6)
    assert not np.allclose(x[0], (250 / 255 - 0.485) / 0.229, atol=1e-4)  # R uses 0.228, not 0.229


def test_prepare_frame_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.jpg: frame not found"):
        dino.prepare_frame(str(tmp_path / "missing.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="broken.jpg: unreadable image"):
        dino.prepare_frame(str(broken))


# ---------------------------------------------------------------------------------------------- labels
def test_label_init_nearest_then_one_hot_over_zero_to_max():
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 1] = 2    # PIL NEAREST 4x4 -> 2x2 samples rows/cols 1 and 3
    mask[0, 0] = 3    # not sampled: id 3 vanishes, so the channels are 0..2
    mask[3, 3] = 2
    assert dino.label_ids(mask, (2, 2)).tolist() == [0, 1, 2]
    labels = dino.label_init(mask, (2, 2), dino.label_ids(mask, (2, 2)))
    assert labels.dtype == np.float32 and labels.shape == (2, 2, 3)
    assert labels[..., 2].tolist() == [[1, 0], [0, 1]]
    assert labels[..., 1].sum() == 0  # id 1 is absent: a zero channel
    assert labels[..., 0].tolist() == [[0, 1], [1, 0]]


# ------------------------------------------------------------------------------------------- propagation
def test_context_is_frame0_plus_previous_without_padding():
    assert dino.context_frames(1, 7) == [0]
    assert dino.context_frames(3, 7) == [0, 1, 2]
    assert dino.context_frames(8, 7) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert dino.context_frames(9, 7) == [0, 2, 3, 4, 5, 6, 7, 8]
    assert dino.context_frames(10, 2) == [0, 8, 9]


def test_square_window_is_chebyshev():
    window = dino.square_window((3, 3), 1).reshape(3, 3, 3, 3)
    assert window[0, 0].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert window[1, 1].sum() == 9
    assert dino.square_window((1, 5), 2).reshape(5, 5)[0].tolist() == [1, 1, 1, 0, 0]


def test_ties_at_the_kth_value_are_kept():
    query = unit([1.0, 0.0])
    cosines = [0.9, 0.5, 0.5, 0.5, 0.1]
    keys = unit(*[[c, math.sqrt(1 - c * c)] for c in cosines])[None]  # 1 context frame, 5 keys
    params = {"temperature": 0.1, "topk": 2}
    weights = dino.affinity(query, keys, None, params)[:, 0].double()
    kept = [math.exp(c / 0.1) for c in cosines[:4]]  # top-2 is 0.9 and 0.5; all three 0.5 tie: 4 kept
    expected = [v / sum(kept) for v in kept] + [0.0]
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=0)


def test_window_applies_to_frame0_and_radius_zero_turns_it_off():
    # grid 1 x 6; frame 0 cells are e0..e5 and only cell 0 is the object. In frame 1, cell 5 looks exactly
    # like frame-0 cell 0 (cos 1), 5 cells away; every other pair of distinct cells has cos 0.
    eye = torch.eye(6)
    frame1 = eye.clone()
    frame1[5] = eye[0]
    feats = torch.stack([eye, frame1]).reshape(2, 1, 6, 6)
    first = np.array([[1, 0, 0, 0, 0, 0]], np.uint8)
    params = {"temperature": 0.1, "topk": 5, "video_len": 7}
    near = dino.reference(feats, first, {**params, "radius": 1}, (1, 6), patch=1)
    far = dino.reference(feats, first, {**params, "radius": 0}, (1, 6), patch=1)
    assert np.array_equal(near[0], first) and np.array_equal(far[0], first)
    # radius 1: cell 5 sees frame-0 cells 4 and 5 only (background). Cell 0 keeps its own label.
    assert near[1].tolist() == [[1, 0, 0, 0, 0, 0]]
    # radius 0: no window; cell 5's best key (e^10) is the object: e^10 / (e^10 + 5) after the top-5 cut
    # with ties at the 5th value (all five weights 1 are kept).
    assert far[1].tolist() == [[1, 0, 0, 0, 0, 1]]


def test_decode_min_max_only_where_max_is_positive():
    soft = torch.tensor([[[0.1, 0.5, 0.3]],    # id 0
                         [[0.6, 0.55, 0.0]],   # id 1: raw argmax would be [1, 1, 0]
                         [[0.0, 0.0, 0.0]]])   # id 2: max 0, left as it is
    # min-max: id 0 -> [0, 1, 0.5], id 1 -> [1, 0.9167, 0]: argmax [1, 0, 0]
    assert dino.decode(soft, 1, (1, 3)).tolist() == [[1, 0, 0]]
    constant = torch.tensor([[[0.1, 0.5, 0.3]], [[0.7, 0.7, 0.7]]])
    # a constant positive channel becomes 0 / 0 = NaN, and NaN wins torch's argmax (as in DINO)
    assert dino.decode(constant, 1, (1, 3)).tolist() == [[1, 1, 1]]


def test_decode_bilinear_by_patch_then_nearest_to_native():
    soft = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    # x2 bilinear along the width (align_corners False): id 0 = [1, .75, .25, 0], id 1 = [0, .25, .75, 1]
    # -> [0, 0, 1, 1]; PIL NEAREST 4 -> 5 columns samples 0, 1, 2, 2, 3 and 2 -> 3 rows samples 0, 1, 1.
    assert dino.decode(soft, 2, (3, 5)).tolist() == [[0, 0, 1, 1, 1]] * 3


def test_registered_with_dinos_defaults():
    protocol = protocols.get("dino")
    assert protocol.defaults == {"temperature": 0.1, "topk": 5, "radius": 12, "video_len": 7}
    assert protocol.std == (0.228, 0.224, 0.225) and protocol.score_size == "native"
    assert protocol.switches.window == "square" and protocol.switches.first_frame_masked
    assert protocol.input_hw((480, 854), 16) == (480, 832)


# ------------------------------------------------------------------------------------- the reference code
def _fixture():
    with open(FIXTURE) as handle:
        return json.load(handle)


def _annotation_dir(name):
    return (os.path.join(DAVIS2016, "Annotations", "480p", name) if name == "blackswan"
            else os.path.join(OSVOS, name))


@pytest.fixture(scope="module")
def dino_model(tmp_path_factory):
    """dino_vits16 loaded from the recipe's weights saved as a full DINO checkpoint ('teacher', 'backbone.')."""
    weights = random_dino_state_dict(_fixture()["recipe"]["seed"])
    assert weights_sha256(weights) == _fixture()["recipe"]["weights_sha256"]  # the recipe is deterministic
    model = dino_vits16_with(weights, tmp_path_factory.mktemp("dino"))
    for block in model.vit.blocks:  # DINO's attention is q @ k^T, softmax, @ v: timm's fused kernel rounds
        block.attn.fused_attn = False  # differently (~3e-6), so use timm's explicit path (bit-identical)
    return model


@torch.no_grad()
def _raw_features(model, name, n_frames):
    """(T, C, h, w) float32 raw tokens of the first frames, one frame per forward pass as DINO does."""
    frames = [os.path.join(DAVIS2016, "JPEGImages", "480p", name, f"{i:05d}.jpg") for i in range(n_frames)]
    return torch.cat([model(torch.from_numpy(dino.prepare_frame(path, 16))[None]) for path in frames])


@pytest.mark.parametrize("name", ["blackswan", "paragliding-launch"])
def test_masks_equal_the_reference_code(davis_root, osvos_root, dino_model, name):
    fixture = _fixture()
    full = os.environ.get("LPCACHE_DINO_FULL") == "1"
    n_frames = fixture["runs"]["defaults"]["sequences"][name]["n_frames"] if full else PREFIX
    # keys = what lpcache's cache holds (F.normalize(dim=1) of the NCHW output, as extract does); queries = the
    # target-frame normalisation of DINO. exact=False feeds the cached features alone (queries = keys).
    keys, queries = dino.unit_features(_raw_features(dino_model, name, n_frames))
    gt = [np.array(Image.open(os.path.join(_annotation_dir(name), f"{i:05d}.png"))) for i in range(n_frames)]
    checks = [("defaults", True), ("defaults", False), ("small", True)] + [("small", False)] * full
    for run_name, exact in checks:
        run = fixture["runs"][run_name]
        expected = run["sequences"][name]
        masks = dino.reference(keys, gt[0], run["params"], gt[0].shape, queries=queries if exact else None)
        counts = [np.bincount(m.ravel(), minlength=len(expected["pixel_counts"][0])).tolist() for m in masks]
        assert counts == expected["pixel_counts"][:n_frames], (run_name, exact)
        assert [hashlib.sha256(m.tobytes()).hexdigest() for m in masks] == expected["sha256"][:n_frames]
        if not exact:  # the engine (windowed, as propagate and sweep run it) on the cached features
            engine = propagate_video(keys.numpy(), gt[0], dino.PROTOCOL.setting(**run["params"]), gt[0].shape,
                                     protocol="dino")
            assert [hashlib.sha256(m.tobytes()).hexdigest() for m in engine] == expected["sha256"][:n_frames]
        result = score_sequence_masks(name, gt[1:-1], masks[1:-1], int(gt[0].max()))
        jf = global_statistics(result.rows)
        expected_jf = expected["jf"] if full else expected[f"jf_first_{PREFIX}"]
        assert {k: round(jf[k], 12) for k in expected_jf} == expected_jf
