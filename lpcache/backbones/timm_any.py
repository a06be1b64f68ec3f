"""`timm:<model>`: any timm model, with weights from `--checkpoint FILE`.

Conv nets: timm `features_only`, the deepest feature level at stride 8 (stride 16 when the model has no
stride-8 level). Vision transformers (timm VisionTransformer): final-LayerNorm patch tokens with the
seed's position-embedding rule (vit.py). The checkpoint may be a plain state dict or sit under
'state_dict' / 'model' / 'teacher'; names are timm's; every tensor the truncated network needs must be
present (later stages and heads in the file are reported as unused). mean/std: the model's timm config.
"""
import timm
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from ..errors import InputError
from .checkpoints import CheckpointFormat, WrappedNet
from .registry import BackboneSpec, register_architecture, register_prefix
from .vit import ViTTokens

PREFIX = "timm:"
FORMAT = CheckpointFormat(kind="timm", containers=("state_dict", "model", "teacher"), plain_ok=True,
                          prefixes=("", "module.", "backbone."))


def _create(model_name, **kwargs):
    try:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    except RuntimeError as exc:
        raise InputError(f"backbone timm:{model_name}: {exc}") from None


def _feature_level(model_name):
    probe = _create(model_name, features_only=True)
    reductions = probe.feature_info.reduction()
    for stride in (8, 16):
        levels = [i for i, r in enumerate(reductions) if r == stride]
        if levels:
            return levels[-1], stride, probe.feature_info.channels()[levels[-1]]
    raise InputError(f"backbone timm:{model_name}: no feature level at stride 8 or 16 (has {reductions})")


def make_spec(name: str) -> BackboneSpec:
    model_name = name[len(PREFIX):]
    if model_name not in timm.list_models():
        raise InputError(f"backbone {name!r}: timm has no model {model_name!r}")
    model = _create(model_name)
    cfg = model.pretrained_cfg or {}
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    if isinstance(model, VisionTransformer):
        patch = model.patch_embed.proj.kernel_size[0]
        return BackboneSpec(name=name, architecture="timm-vit", layer="final_norm_tokens", stride=patch,
                            channels=model.embed_dim, mean=mean, std=std, grid="floor",
                            checkpoint_format=FORMAT, arch_kwargs=(("model", model_name),))
    level, stride, channels = _feature_level(model_name)
    return BackboneSpec(name=name, architecture="timm-features", layer=f"features_only[{level}]", stride=stride,
                        channels=channels, mean=mean, std=std, grid="ceil", checkpoint_format=FORMAT,
                        arch_kwargs=(("model", model_name), ("out_index", level)))


class TimmFeatures(WrappedNet):
    """The one feature level a features_only timm network is built with."""

    def forward(self, x):
        return self.net(x)[0]


def _build(spec: BackboneSpec) -> nn.Module:
    kwargs = dict(spec.arch_kwargs)
    if spec.architecture == "timm-vit":
        return ViTTokens(_create(kwargs["model"], num_classes=0))
    return TimmFeatures(_create(kwargs["model"], features_only=True, out_indices=(kwargs["out_index"],)))


register_architecture("timm-vit", _build)
register_architecture("timm-features", _build)
register_prefix(PREFIX, make_spec)
