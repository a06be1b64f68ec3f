"""`timm:<model>`: any timm model, with weights from `--checkpoint FILE`.

Names: any `timm.list_models()` name, optionally with a pretrained tag (`vit_small_patch14_dinov2.lvd142m`).
The model is always built with `pretrained=False` (nothing is downloaded); the tag only selects timm's
pretrained config for that tag (mean/std, default input size), which a checkpoint of that tag matches.
Extra `arch_kwargs` of a spec (besides `model` / `out_index`) are passed to `timm.create_model`.

Conv nets: timm `features_only`, the deepest feature level at stride 8 (stride 16 when the model has no
stride-8 level); grid ceil(H / stride).

Vision transformers (timm `VisionTransformer` and subclasses: class token, register tokens (`*_reg4_*`),
distillation token (`deit_*_distilled_*`), no class token (`*_gap_*`), any patch size): built with
`dynamic_img_size=True`, so timm resamples the position embedding to the input's grid itself (its own
`resample_abs_pos_embed`; the seed's rule in vit.py stays with the registered seed ViTs). Features: timm's
`forward_features` output (after the final norm where the model has one before pooling) without its
`num_prefix_tokens` prefix tokens, reshaped to (B, C, h, w). Layer name `forward_features_patch_tokens`.

Input size rule (grid "round", one rule for both protocols; sizes are H x W): a ViT sees the frame
resized to the nearest multiple of its patch size per axis (halves up, at least one patch), so the patch
grid covers the whole frame and stays aligned with the labels; grid = (round(H / p), round(W / p)), see
`registry.round_grid`. The spec's stride is the patch size.
- `native` protocol: frames are already rounded to multiples of the stride = patch by the protocol
  (480 x 854 -> 476 x 854 at patch 14, grid 34 x 61), so the network changes nothing.
- `seed` protocol: the network receives the 480 x 880 frame; for patch 14 (DINOv2), not a divisor, it is
  resized inside the network (torch bilinear, antialiased, align_corners False) to 476 x 882: grid
  34 x 63. Patches 8 and 16 divide 480 x 880: those ViTs see the frame unchanged (60 x 110, 30 x 55).

The checkpoint may be a plain state dict or sit under 'state_dict' / 'model' / 'teacher'; names are
timm's; every tensor the truncated network needs must be present (later stages and heads in the file are
reported as unused). mean/std: the model's (tagged) timm config.
"""
import timm
import torch
import torch.nn.functional as F
from timm.models import split_model_name_tag
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..errors import InputError
from .checkpoints import CheckpointFormat, WrappedNet
from .registry import BackboneSpec, register_architecture, register_prefix, round_grid

PREFIX = "timm:"
FORMAT = CheckpointFormat(kind="timm", containers=("state_dict", "model", "teacher"), plain_ok=True,
                          prefixes=("", "module.", "backbone."))
VIT_LAYER = "forward_features_patch_tokens"
_SPEC_KEYS = ("model", "out_index")


def _create(model_name, **kwargs):
    """timm.create_model without download; timm's errors become one InputError line."""
    try:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        problem = " ".join(str(exc).split())[:300]
        raise InputError(f"backbone timm:{model_name}: {problem}") from None


def _probe(model_name, **kwargs):
    """The model on the meta device (no memory, no weight init): enough to read its config and shapes."""
    with torch.device("meta"):
        return _create(model_name, **kwargs)


def _feature_level(model_name):
    probe = _probe(model_name, features_only=True)
    reductions = probe.feature_info.reduction()
    for stride in (8, 16):
        levels = [i for i, r in enumerate(reductions) if r == stride]
        if levels:
            return levels[-1], stride, probe.feature_info.channels()[levels[-1]]
    raise InputError(f"backbone timm:{model_name}: no feature level at stride 8 or 16 (has {reductions})")


def _vit_patch(model, name) -> int:
    """The square patch size of a timm ViT."""
    patch = tuple(getattr(model.patch_embed, "patch_size", ()) or ())
    if len(patch) != 2 or patch[0] != patch[1]:
        raise InputError(f"backbone {name!r}: needs a square patch size (has {patch or 'none'})")
    return int(patch[0])


def make_spec(name: str) -> BackboneSpec:
    model_name = name[len(PREFIX):]
    base, _tag = split_model_name_tag(model_name)
    if base not in timm.list_models():
        raise InputError(f"backbone {name!r}: timm has no model {base!r}")
    model = _probe(model_name)
    cfg = model.pretrained_cfg or {}
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    if isinstance(model, VisionTransformer):
        return BackboneSpec(name=name, architecture="timm-vit", layer=VIT_LAYER, stride=_vit_patch(model, name),
                            channels=model.embed_dim, mean=mean, std=std, grid="round",
                            checkpoint_format=FORMAT, arch_kwargs=(("model", model_name),))
    level, stride, channels = _feature_level(model_name)
    return BackboneSpec(name=name, architecture="timm-features", layer=f"features_only[{level}]", stride=stride,
                        channels=channels, mean=mean, std=std, grid="ceil", checkpoint_format=FORMAT,
                        arch_kwargs=(("model", model_name), ("out_index", level)))


class TimmFeatures(WrappedNet):
    """The one feature level a features_only timm network is built with."""

    def forward(self, x):
        return self.net(x)[0]


class TimmViTTokens(WrappedNet):
    """(B, 3, H, W) -> (B, D, h, w): timm `forward_features` patch tokens, prefix tokens dropped.

    An input that is not a multiple of the patch is first resized to the nearest multiple (round_grid).
    """

    def __init__(self, net: VisionTransformer):
        super().__init__(net)
        self.patch = int(net.patch_embed.patch_size[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = round_grid(x.shape[-2:], self.patch)
        size = (grid_h * self.patch, grid_w * self.patch)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens:]
        if tokens.shape[1] != grid_h * grid_w:
            raise RuntimeError(f"timm ViT gave {tokens.shape[1]} patch tokens for a {grid_h} x {grid_w} grid")
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid_h, grid_w)


def _build(spec: BackboneSpec) -> nn.Module:
    kwargs = dict(spec.arch_kwargs)
    extra = {k: v for k, v in kwargs.items() if k not in _SPEC_KEYS}
    if spec.architecture == "timm-vit":
        return TimmViTTokens(_create(kwargs["model"], num_classes=0, dynamic_img_size=True, **extra))
    return TimmFeatures(_create(kwargs["model"], features_only=True, out_indices=(kwargs["out_index"],), **extra))


register_architecture("timm-vit", _build)
register_architecture("timm-features", _build)
register_prefix(PREFIX, make_spec)
