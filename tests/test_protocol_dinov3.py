"""The `dinov3` protocol against the DINOv3 tracking notebook's own code (tests/data/reference_dinov3.json).

Synthetic tests check each quirk with values worked out by hand. The real-data test loads the recipe's random
weights into lpcache's dino_vits16 (random_dino_state_dict(seed) of tests/random_weights.py, as the DINO test:
seeded randn draws, the same bits on any AVX2/AVX-512 CPU, unlike timm's own init), extracts features of the
first frames of two shared sequences with `prepare_frame` at short side 480, runs `reference` and compares with
the masks the notebook's own cells produced on the same features (recipe in docs/protocols.md). Propagation is
causal, so the first 4 frames are checked by default; LPCACHE_DINOV3_FULL=1 checks all 8 and their J&F.
"""
import hashlib
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as TVT
import torchvision.transforms.functional as TVTF
from PIL import Image

from conftest import REPO, SHARED_DATA
from lpcache import backbones, protocols
from lpcache.errors import InputError
from lpcache.metrics import global_statistics
from lpcache.propagation import propagate_video
from lpcache.protocols import dinov3
from lpcache.scoring import score_sequence_masks
from random_weights import dino_vits16_with, random_dino_state_dict, weights_sha256

FIXTURE = os.path.join(REPO, "tests", "data", "reference_dinov3.json")
FULL = os.environ.get("LPCACHE_DINOV3_FULL") == "1"
PREFIX = 4


def sha(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("orig, patch, short, expected", [
    ((480, 854), 16, 960, (960, 1712)),    # 854 * 960 / 480 = 1708 -> 1712
    ((480, 854), 16, 480, (480, 864)),     # 854 -> 864
    ((1080, 1920), 16, 960, (960, 1712)),  # 1706.67 -> 1712
    ((854, 480), 16, 960, (1712, 960)),
    ((480, 480), 16, 960, (960, 960)),
    ((480, 854), 16, 500, (512, 912)),     # short side 500 rounded up to 512; 910.93 -> 912
    ((480, 854), 14, 960, (966, 1722)),    # 960 -> 966 (69 * 14); 1718.65 -> 1722 (123 * 14)
])
def test_input_hw_rounds_both_sides_up_to_the_patch(orig, patch, short, expected):
    assert dinov3.input_hw(orig, patch, short) == expected


def test_input_hw_default_short_side_is_960():
    assert dinov3.input_hw((480, 854)) == (960, 1712)
    with pytest.raises(InputError, match="must be positive"):
        dinov3.input_hw((0, 854))


def test_prepare_frame_equals_torchvision_pipeline(tmp_path):
    """PIL BICUBIC resize + ToTensor + Normalize, as torchvision runs them in the notebook (bit for bit)."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / "frame.png")
    Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(path)
    x = dinov3.prepare_frame(path, 16, 40)
    assert x.dtype == np.float32 and x.shape == (3, 48, 80)   # 40 -> 48; 50 * 48 / 30 = 80
    resized = TVTF.resize(Image.open(path).convert("RGB"), [48, 80], interpolation=TVT.InterpolationMode.BICUBIC)
    expected = TVT.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])(TVT.ToTensor()(resized))
    assert np.array_equal(x, expected.numpy())


def test_prepare_frame_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.jpg: frame not found"):
        dinov3.prepare_frame(str(tmp_path / "missing.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="broken.jpg: unreadable image"):
        dinov3.prepare_frame(str(broken))


# ---------------------------------------------------------------------------------------------- labels
def test_label_init_nearest_exact_then_one_hot_over_native_ids():
    first = np.array([[0, 1, 2, 3, 4]], np.uint8)
    # nearest-exact 5 -> 2 columns samples floor((j + 0.5) * 2.5) = 1, 3 (plain nearest would take 0, 2)
    assert dinov3.grid_labels(first, (1, 2)).tolist() == [[1, 3]]
    ids = dinov3.label_ids(first)
    assert ids.tolist() == [0, 1, 2, 3, 4]            # 0..max of the NATIVE mask, even ids lost on the grid
    labels = dinov3.label_init(first, (1, 2), ids)
    assert labels.dtype == np.float32 and labels.shape == (1, 2, 5)
    assert labels[0].tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]


# ------------------------------------------------------------------------------------------- propagation
def test_context_is_frame0_plus_previous_without_padding():
    assert dinov3.context_frames(1, 7) == [0]
    assert dinov3.context_frames(3, 7) == [0, 1, 2]
    assert dinov3.context_frames(9, 7) == [0, 2, 3, 4, 5, 6, 7, 8]


def test_circle_includes_distance_exactly_radius():
    window = dinov3.circle_window((1, 14), 12).reshape(14, 14)
    assert window[0].tolist() == [True] * 13 + [False]      # distance 12 in, 13 out
    window = dinov3.circle_window((4, 5), 5).reshape(4, 5, 4, 5)
    assert bool(window[0, 0, 3, 4])                          # (3, 4): distance exactly 5
    assert not dinov3.circle_window((4, 5), 4.99).reshape(4, 5, 4, 5)[0, 0, 3, 4]


def test_ties_at_the_kth_cosine_are_kept_then_softmax_of_cos_over_temperature():
    cos = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1, -math.inf]])
    weights = dinov3.weights_of(cos, {"topk": 2, "temperature": 0.2})[0].double()
    kept = [math.exp(c / 0.2) for c in (0.9, 0.5, 0.5, 0.5)]  # top-2 is 0.9, 0.5; the three 0.5 tie: 4 kept
    expected = [v / sum(kept) for v in kept] + [0.0, 0.0]
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)


def test_window_applies_to_frame0():
    # grid 1 x 6, features one-hot per cell; frame 1's cell 5 equals frame-0 cell 0 (the object), 5 cells away.
    eye = torch.eye(6)
    frame1 = eye.clone()
    frame1[5] = eye[0]
    feats = torch.stack([eye, frame1]).reshape(2, 1, 6, 6)
    first = np.array([[1, 0, 0, 0, 0, 0]], np.uint8)
    params = {"temperature": 0.2, "topk": 1, "video_len": 7}
    # radius 4: cell 5 sees frame-0 cells 1..5 only, all cos 0 (ties kept): background. radius 5 reaches cell 0.
    assert dinov3.reference(feats, first, {**params, "radius": 4}, (1, 6))[1].tolist() == [[1, 0, 0, 0, 0, 0]]
    assert dinov3.reference(feats, first, {**params, "radius": 5}, (1, 6))[1].tolist() == [[1, 0, 0, 0, 0, 1]]


def test_decode_nearest_upsampling():
    soft = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    # torch nearest 2 -> 5 columns samples floor(j * 0.4) = 0, 0, 0, 1, 1 (nearest-exact: 0, 0, 1, 1, 1)
    assert dinov3.decode(soft, (2, 5)).tolist() == [[0, 0, 0, 1, 1]] * 2


def test_decode_min_max_on_every_channel_nan_to_zero():
    soft = torch.tensor([[[0.5, 0.5, 0.5]],      # constant: 0 / 0 = NaN -> 0
                         [[0.2, 0.3, 0.25]],     # -> [0, 1, 0.5]
                         [[-0.3, -0.2, -0.1]]])  # max < 0, still min-maxed -> [0, 0.5, 1]
    assert dinov3.decode(soft, (1, 3)).tolist() == [[0, 1, 2]]


def test_registered_with_the_notebooks_defaults():
    protocol = protocols.get("dinov3")
    assert protocol.defaults == {"temperature": 0.2, "topk": 5, "radius": 12, "video_len": 7}
    assert protocol.std == (0.229, 0.224, 0.225) and protocol.score_size == "native"
    assert protocol.switches.window == "circle_le" and protocol.switches.weighting == "topk_then_softmax"
    assert protocol.input_hw((480, 854), 16) == (960, 1712)


def test_extraction_normalises_the_contiguous_output_as_the_notebook():
    """The notebook's `forward`: contiguous (1, D, h, w) tokens, moved channel-last, F.normalize(dim=-1).
    timm's ViT gives a channel-last view instead, whose norm rounds differently: extract makes it contiguous."""
    from lpcache.extraction import BatchForward, _follow_reference_forward

    class Tokens(torch.nn.Module):           # a ViT's output: (1, h*w, D) tokens seen as (1, D, h, w)
        def forward(self, x):
            tokens = torch.randn(1, 30 * 54, 384, generator=torch.Generator().manual_seed(0))
            return tokens.reshape(1, 30, 54, 384).permute(0, 3, 1, 2)

    model = Tokens()
    raw = model(None)
    notebook = F.normalize(raw.contiguous().movedim(-3, -1), dim=-1)
    assert not torch.equal(F.normalize(raw, dim=1).permute(0, 2, 3, 1), notebook)   # the quirk is real here
    spec = backbones.get_spec("dino_vits16")
    forward = BatchForward(model, spec, "cpu")
    _follow_reference_forward("dinov3", model, forward)
    got = forward(torch.zeros(1, 3, 480, 864))
    assert np.array_equal(got, notebook.numpy())


# ------------------------------------------------------------------------------------- the reference code
def _fixture():
    with open(FIXTURE) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def vits16(tmp_path_factory):
    """lpcache's dino_vits16 with the recipe's weights: random_dino_state_dict(seed) (the DINO test's seeded
    randn draws, not timm's CPU-dependent init), loaded as a full DINO checkpoint ('teacher', 'backbone.')."""
    weights = random_dino_state_dict(_fixture()["recipe"]["seed"])
    assert weights_sha256(weights) == _fixture()["recipe"]["weights_sha256"]  # the recipe is deterministic
    model = dino_vits16_with(weights, tmp_path_factory.mktemp("dinov3"))
    return model


@pytest.mark.parametrize("name", ["blackswan", "paragliding-launch"])
def test_masks_equal_the_notebook(davis_root, vits16, name):
    fixture = _fixture()
    short = fixture["recipe"]["short_side"]
    n_frames = fixture["runs"]["defaults"]["sequences"][name]["n_frames"] if FULL else PREFIX
    frames = [os.path.join(davis_root, "JPEGImages", "480p", name, f"{i:05d}.jpg") for i in range(n_frames)]
    inputs = [dinov3.prepare_frame(path, 16, short) for path in frames]
    assert [sha(x) for x in inputs] == fixture["runs"]["defaults"]["sequences"][name]["input_sha256"][:n_frames]
    with torch.no_grad():  # one frame per pass; L2 over channels on (1, C, h, w), as lpcache's cache does
        feats = torch.cat([F.normalize(vits16(torch.from_numpy(x)[None]).contiguous(), dim=1) for x in inputs])
    feats = feats.permute(0, 2, 3, 1)
    annotation = os.path.join(SHARED_DATA, fixture["runs"]["defaults"]["sequences"][name]["annotation"].split()[0])
    gt = [np.array(Image.open(os.path.join(annotation, f"{i:05d}.png"))) for i in range(n_frames)]
    for run in fixture["runs"].values():
        expected = run["sequences"][name]
        masks = dinov3.reference(feats, gt[0], run["params"], gt[0].shape)
        counts = [np.bincount(m.ravel(), minlength=len(expected["pixel_counts"][0])).tolist() for m in masks]
        assert counts == expected["pixel_counts"][:n_frames], run["params"]
        assert [sha(m) for m in masks] == expected["sha256"][:n_frames]
        engine = propagate_video(feats.numpy(), gt[0], dinov3.PROTOCOL.setting(**run["params"]), gt[0].shape,
                                 protocol="dinov3")   # windowed, as propagate and sweep run it
        assert [sha(m) for m in engine] == expected["sha256"][:n_frames]
        result = score_sequence_masks(name, gt[1:-1], masks[1:-1], int(gt[0].max()))
        jf = global_statistics(result.rows)
        expected_jf = expected["jf"] if FULL else expected[f"jf_first_{PREFIX}"]
        assert {k: round(float(jf[k]), 12) for k in expected_jf} == expected_jf
