"""Backbone outputs against small independent reference computations."""
import copy
import dataclasses
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet50

from lpcache.backbones import create, get_spec, list_backbones
from lpcache.backbones.vit import interpolate_pos_embed
from lpcache.errors import InputError


def _randomise_bn(net):
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def _reference_layer3(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer3(net.layer2(net.layer1(x)))


def _reflect_padded(net):
    """Replace each padded conv by ReflectionPad2d + the same conv without padding."""
    for name, child in list(net.named_children()):
        if isinstance(child, nn.Conv2d) and child.padding[0] > 0:
            pad = child.padding[0]
            unpadded = copy.deepcopy(child)
            unpadded.padding = (0, 0)
            setattr(net, name, nn.Sequential(nn.ReflectionPad2d(pad), unpadded))
        else:
            _reflect_padded(child)
    return net


@pytest.mark.parametrize("name,factory,strided", [
    ("imagenet18", resnet18, ("conv1", "downsample")),
    ("imagenet50", resnet50, ("conv2", "downsample")),
    ("crw", resnet18, ("conv1", "downsample")),
])
def test_resnet_stride8_matches_torchvision_reference(tmp_path, name, factory, strided):
    torch.manual_seed(1)
    net = _randomise_bn(factory(weights=None))
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    state = torch.load(path, weights_only=True)
    spec = get_spec(name)
    fmt = spec.checkpoint_format
    packed = {"model": {"encoder.model." + k: v for k, v in state.items()}} if fmt.containers == ("model",) else state
    torch.save(packed, path)
    model, _, _ = create(name, str(path))

    reference = copy.deepcopy(net)
    first = reference.layer3[0]
    assert getattr(first, strided[0]).stride == (2, 2) and first.downsample[0].stride == (2, 2)
    getattr(first, strided[0]).stride = (1, 1)
    first.downsample[0].stride = (1, 1)
    if name == "crw":
        _reflect_padded(reference)
    x = torch.randn(2, 3, 64, 72)
    with torch.no_grad():
        expected = _reference_layer3(reference, x)
        got = model(x)
        plain = _reference_layer3(net, x)
    assert got.shape == (2, spec.channels, 8, 9) and spec.grid_hw((64, 72)) == (8, 9)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert plain.shape[-2:] == (4, 5)  # unmodified layer3 is at stride 16


def _cubic_weights(t, a=-0.75):
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.array([far(t + 1), near(t), near(1 - t), far(2 - t)])


def _bicubic_axis(array, axis, out_size, scale):
    """PyTorch-style bicubic (A = -0.75, align_corners False) along one axis, source = (i + .5) / scale - .5."""
    n = array.shape[axis]
    moved = np.moveaxis(array, axis, 0)
    out = np.zeros((out_size,) + moved.shape[1:])
    for i in range(out_size):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        weights = _cubic_weights(src - base)
        for tap, weight in zip(range(base - 1, base + 3), weights):
            out[i] += weight * moved[min(max(tap, 0), n - 1)]
    return np.moveaxis(out, 0, axis)


def _seed_pos_embed(pos_embed, grid_h, grid_w):
    """The seed's rule, written from its description: scale (grid + 0.1) / side per axis, bicubic."""
    side = int(round(math.sqrt(pos_embed.shape[1] - 1)))
    patch = pos_embed[0, 1:].double().numpy().reshape(side, side, -1)
    patch = _bicubic_axis(patch, 0, grid_h, (grid_h + 0.1) / side)
    patch = _bicubic_axis(patch, 1, grid_w, (grid_w + 0.1) / side)
    return torch.cat([pos_embed[0, :1].double(), torch.from_numpy(patch.reshape(grid_h * grid_w, -1))])[None]


@pytest.mark.parametrize("grid", [(30, 55), (8, 14), (14, 14)])
def test_pos_embed_follows_seed_formula(grid):
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 14 * 14, 16)
    got = interpolate_pos_embed(pos, grid)
    # the seed leaves the embedding alone when the grid is the stored square one
    expected = pos.double() if grid == (14, 14) else _seed_pos_embed(pos, *grid)
    assert got.shape == (1, 1 + grid[0] * grid[1], 16)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    if grid != (14, 14):  # timm-style resizing to a target size gives other values: the rule matters
        by_size = F.interpolate(pos[:, 1:].reshape(1, 14, 14, 16).permute(0, 3, 1, 2), size=grid, mode="bicubic")
        assert not torch.allclose(got[0, 1:], by_size.permute(0, 2, 3, 1).reshape(-1, 16), atol=1e-3)


@pytest.mark.parametrize("name,hw,grid", [("vits16", (480, 880), (30, 55)), ("dino_vits8", (64, 112), (8, 14))])
def test_vit_tokens_match_reference(name, hw, grid):
    spec = dataclasses.replace(get_spec(name), arch_kwargs=(("depth", 2),))
    torch.manual_seed(3)
    model, _, _ = create(spec, random_init=True)
    with torch.no_grad():
        model.vit.pos_embed.normal_()
        model.vit.cls_token.normal_()
    vit = model.vit
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        got = model(x)
        tokens = F.conv2d(x, vit.patch_embed.proj.weight, vit.patch_embed.proj.bias, stride=spec.stride)
        tokens = tokens.flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.cls_token, tokens], dim=1) + _seed_pos_embed(vit.pos_embed, *grid).float()
        for block in vit.blocks:
            tokens = block(tokens)
        tokens = F.layer_norm(tokens, (spec.channels,), vit.norm.weight, vit.norm.bias, eps=1e-6)
        expected = tokens[0, 1:].reshape(*grid, spec.channels).permute(2, 0, 1)[None]
    assert got.shape == (1, spec.channels, *grid) == (1, spec.channels, *spec.grid_hw(hw))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_grid_rules_at_seed_size():
    sizes = {s.name: s.grid_hw((480, 880)) for s in list_backbones()}
    assert sizes["vitb16"] == sizes["vits16"] == sizes["dino_vits16"] == (30, 55)
    assert sizes["vits8"] == sizes["dino_vits8"] == sizes["imagenet50"] == sizes["efficientnet_lite0"] == (60, 110)
    assert get_spec("imagenet18").grid_hw((481, 857)) == (61, 108)  # conv nets: ceil(H / 8)
    assert get_spec("dino_vits16").grid_hw((481, 857)) == (30, 53)  # ViTs: H // patch


def test_efficientnet_is_timm_stride8_stage():
    model, spec, _ = create("efficientnet_lite0")
    reference = timm.create_model("efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2,))
    reference.load_state_dict(model.net.state_dict(), strict=False)
    reference.eval()
    x = torch.randn(1, 3, 64, 88)
    with torch.no_grad():
        got = model(x)
        expected = reference(x)[0]
    assert got.shape == (1, 40, 8, 11) and spec.mean == spec.std == (0.5, 0.5, 0.5)
    torch.testing.assert_close(got, expected)


def test_timm_any_features_and_checkpoint(tmp_path):
    spec = get_spec("timm:resnet18")
    assert (spec.stride, spec.channels, spec.layer) == (8, 128, "features_only[2]")
    torch.manual_seed(0)
    full = timm.create_model("resnet18", pretrained=False).eval()
    torch.save({"state_dict": full.state_dict()}, tmp_path / "r18.pth")
    model, _, report = create(spec, str(tmp_path / "r18.pth"))
    assert report.matched == report.total and any(k.startswith("fc.") for k in report.unused)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = full.layer2(full.layer1(full.maxpool(full.act1(full.bn1(full.conv1(x.clone()))))))
        torch.testing.assert_close(model(x), expected)
    vit = get_spec("timm:vit_tiny_patch16_224")
    assert (vit.architecture, vit.stride, vit.channels, vit.grid) == ("timm-vit", 16, 192, "round")


def test_unknown_backbone_and_missing_checkpoint():
    with pytest.raises(InputError, match=r"backbone 'resnet7': unknown"):
        get_spec("resnet7")
    with pytest.raises(InputError, match=r"timm has no model 'not_a_model'"):
        get_spec("timm:not_a_model")
    with pytest.raises(InputError, match=r"imagenet18: needs --checkpoint FILE"):
        create("imagenet18")
