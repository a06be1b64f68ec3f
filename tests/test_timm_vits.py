"""`timm:<vit>` as timm ships them: register tokens, distillation token, no class token, patch 14 and
tagged names; prefix tokens dropped; the grid the network gives is `spec.grid_hw` under both protocols.
Random weights, reduced depth, no download."""
import dataclasses
import json

import h5py
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.layers import resample_abs_pos_embed

from lpcache.backbones import create, get_spec
from lpcache.errors import InputError
from lpcache.extraction import extract
from lpcache.transforms import input_hw

# timm name, prefix tokens (class + register/distillation), patch, channels, default input side
VARIANTS = [
    ("vit_small_patch14_reg4_dinov2", 5, 14, 384, 518),       # class token + 4 registers, pos-embed w/o prefix
    ("deit_small_distilled_patch16_224", 2, 16, 384, 224),    # class + distillation token
    ("vit_medium_patch16_gap_256", 0, 16, 512, 256),          # no class token, average pooling
    ("vit_small_patch14_dinov2.lvd142m", 1, 14, 384, 518),    # tagged name, patch 14
]
IDS = [v[0] for v in VARIANTS]


def _small(name, depth=1):
    spec = get_spec("timm:" + name)
    return dataclasses.replace(spec, arch_kwargs=spec.arch_kwargs + (("depth", depth),))


def _randomised(spec, seed=0):
    """A random-init model whose position embedding and prefix tokens are non-trivial."""
    torch.manual_seed(seed)
    model, _, _ = create(spec, random_init=True)
    with torch.no_grad():
        for name, param in model.net.named_parameters():
            if name in ("pos_embed", "cls_token", "reg_token", "dist_token"):
                param.normal_()
    return model.eval()


@pytest.mark.parametrize("name,n_prefix,patch,channels,side", VARIANTS, ids=IDS)
def test_variant_spec_and_output_grid(name, n_prefix, patch, channels, side):
    spec = _small(name)
    assert (spec.architecture, spec.stride, spec.channels, spec.grid) == ("timm-vit", patch, channels, "round")
    model = _randomised(spec)
    assert model.net.num_prefix_tokens == n_prefix and len(model.net.blocks) == 1
    x = torch.randn(2, 3, 112, 154)
    with torch.no_grad():
        out = model(x)
    expected_grid = {14: (8, 11), 16: (7, 10)}[patch]  # 154 / 16 = 9.6 -> 10 patches (input resized to 160)
    assert out.shape == (2, channels, *expected_grid)
    assert spec.grid_hw((112, 154)) == expected_grid
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,n_prefix,patch,channels,side", VARIANTS, ids=IDS)
def test_prefix_tokens_dropped_like_timm(name, n_prefix, patch, channels, side):
    """At timm's own input size the output is timm's forward_features minus its first n_prefix tokens."""
    model = _randomised(_small(name))
    reference = timm.create_model(name, pretrained=False, num_classes=0, depth=1).eval()  # static size
    reference.load_state_dict(model.net.state_dict())
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        tokens = reference.forward_features(x)
        got = model(x)
    grid = side // patch
    assert tokens.shape == (1, n_prefix + grid * grid, channels)
    expected = tokens[:, n_prefix:].reshape(1, grid, grid, channels).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_position_embedding_resampled_by_timm():
    """At another size the network equals a static timm model built for that size, whose position
    embedding was resized with timm's resample_abs_pos_embed (registers carry no position)."""
    name = "vit_small_patch14_reg4_dinov2"
    model = _randomised(_small(name))
    state = model.net.state_dict()
    reference = timm.create_model(name, pretrained=False, num_classes=0, depth=1, img_size=(112, 154)).eval()
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=(8, 11), old_size=(37, 37),
                                                num_prefix_tokens=0)
    reference.load_state_dict(state)
    x = torch.randn(1, 3, 112, 154)
    with torch.no_grad():
        expected = reference.forward_features(x)[:, 5:].reshape(1, 8, 11, 384).permute(0, 3, 1, 2)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_patch14_input_rule_under_both_protocols():
    spec = get_spec("timm:vit_small_patch14_dinov2.lvd142m")
    assert spec.grid_hw(input_hw("seed", (480, 854), spec.stride)) == (34, 63)   # 480 x 880 -> 476 x 882
    assert input_hw("native", (480, 854), spec.stride) == (476, 854)
    assert spec.grid_hw(input_hw("native", (480, 854), spec.stride)) == (34, 61)
    assert spec.grid_hw((480, 910)) == (34, 65) and spec.grid_hw((5, 6)) == (1, 1)
    model = _randomised(_small("vit_small_patch14_dinov2.lvd142m"))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 480, 880)).shape == (1, 384, 34, 63)


def test_tagged_and_unknown_names():
    tagged = get_spec("timm:vit_small_patch14_dinov2.lvd142m")
    assert dict(tagged.arch_kwargs)["model"] == "vit_small_patch14_dinov2.lvd142m"
    # the tag selects timm's config for it: MAE weights expect ImageNet statistics, the default tag 0.5
    assert get_spec("timm:vit_base_patch16_224").mean == (0.5, 0.5, 0.5)
    assert get_spec("timm:vit_base_patch16_224.mae").mean == (0.485, 0.456, 0.406)
    with pytest.raises(InputError, match=r"timm:vit_small_patch14_dinov2\.nosuchtag: .*nosuchtag"):
        get_spec("timm:vit_small_patch14_dinov2.nosuchtag")
    with pytest.raises(InputError, match=r"timm has no model 'vit_nonexistent_patch14'"):
        get_spec("timm:vit_nonexistent_patch14.lvd142m")


def test_timm_vit_checkpoint_round_trip(tmp_path):
    spec = _small("vit_small_patch14_reg4_dinov2")
    source = _randomised(spec, seed=4)
    torch.save({"teacher": {"backbone." + k: v for k, v in source.net.state_dict().items()}, "epoch": 3},
               tmp_path / "reg4.pth")
    model, _, report = create(spec, str(tmp_path / "reg4.pth"))
    assert report.matched == report.total == len(source.net.state_dict()) and report.prefix == "backbone."
    for key in ("reg_token", "pos_embed", "cls_token"):
        assert torch.equal(model.net.state_dict()[key], source.net.state_dict()[key])


def _tiny_davis(root, hw=(40, 60), n_frames=2):
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "Annotations"):
        (root / sub / "480p" / "s1").mkdir(parents=True)
    for t in range(n_frames):
        frame = Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8))
        frame.save(root / "JPEGImages/480p/s1" / f"{t:05d}.jpg")
        Image.fromarray(np.zeros(hw, np.uint8), mode="P").save(root / "Annotations/480p/s1" / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("s1\n")
    return str(root)


@pytest.mark.parametrize("protocol,grid", [("seed", (34, 63)), ("native", (3, 4))])
def test_extracted_grid_equals_grid_hw(tmp_path, protocol, grid):
    """40 x 60 frames: seed -> 480 x 880 -> 34 x 63 patches; native -> 42 x 56 -> 3 x 4."""
    davis = _tiny_davis(tmp_path / "davis")
    spec = _small("vit_small_patch14_reg4_dinov2")
    result = extract(davis_root=davis, cache_dir=str(tmp_path / "cache"), backbone=spec, protocol=protocol,
                     dtype="float32", batch_size=2, device="cpu", num_workers=0, random_init=True, progress=False)
    with h5py.File(f"{result.backbone_dir}/s1.h5", "r") as handle:
        in_hw = tuple(json.loads(handle.attrs["input_hw"]))
        assert tuple(json.loads(handle.attrs["grid_hw"])) == grid == spec.grid_hw(in_hw)
        assert handle["feats"].shape == (2, *grid, 384)
