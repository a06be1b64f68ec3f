"""ResNet backbones of the seed: layer3 output at stride 8.

torchvision ResNet-18/50; every conv of layer3 set to stride 1 (for ResNet-18 that is conv1 of the first
block and its downsample conv; for ResNet-50 conv2 of the first block and the downsample conv), no
dilation; layer4, avgpool and fc removed. Output: 256 (R18) or 1024 (R50) channels, grid ceil(H/8).
`crw` also switches every padded conv to reflect padding. Module names equal torchvision's, so
torchvision-format state dicts load as they are.
"""
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from .checkpoints import CheckpointFormat
from .registry import BackboneSpec, register

_ARCHS = {"resnet18": (resnet18, 256), "resnet50": (resnet50, 1024)}


class ResNetLayer3(nn.Module):
    """conv1 .. layer3 of a torchvision ResNet, layer3 at stride 1 -> features at stride 8."""

    def __init__(self, net, reflect_padding=False):
        super().__init__()
        for conv in net.layer3.modules():
            if isinstance(conv, nn.Conv2d):
                conv.stride = (1, 1)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        if reflect_padding:
            for conv in self.modules():
                if isinstance(conv, nn.Conv2d) and any(p > 0 for p in conv.padding):
                    conv.padding_mode = "reflect"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def build_resnet(spec: BackboneSpec) -> nn.Module:
    factory, _ = _ARCHS[spec.architecture.split("-")[0]]
    return ResNetLayer3(factory(weights=None), reflect_padding=spec.architecture.endswith("-reflect"))


def _spec(name, arch, fmt, description):
    channels = _ARCHS[arch.split("-")[0]][1]
    return register(BackboneSpec(name=name, architecture=arch, layer="layer3", stride=8, channels=channels,
                                 checkpoint_format=fmt, description=description), build_resnet)


TORCHVISION = CheckpointFormat(kind="torchvision ResNet", containers=("state_dict",), plain_ok=True)

_spec("imagenet18", "resnet18", TORCHVISION, "ImageNet ResNet-18 (torchvision file)")
_spec("imagenet50", "resnet50", TORCHVISION, "ImageNet ResNet-50 (torchvision file)")
_spec("simsiam", "resnet50", CheckpointFormat(kind="SimSiam", containers=("state_dict",), plain_ok=False,
                                              prefixes=("module.encoder.",)), "SimSiam ResNet-50")
_spec("mocov2", "resnet50", CheckpointFormat(kind="MoCo v2", containers=("state_dict",), plain_ok=False,
                                             prefixes=("module.encoder_q.",)), "MoCo v2 ResNet-50")
_spec("dino_r50", "resnet50", CheckpointFormat(kind="DINO ResNet-50", plain_ok=True),
      "DINO ResNet-50 (plain torchvision dict)")
_spec("vfs", "resnet50", CheckpointFormat(kind="VFS", containers=("state_dict",), plain_ok=True,
                                          prefixes=("", "backbone.", "module.backbone.")),
      "VFS ResNet-50 ('state_dict' or plain dict, as VFS's own loader; mmcv 'backbone.' prefix stripped)")
_spec("crw", "resnet18-reflect", CheckpointFormat(kind="CRW", containers=("model",), plain_ok=False,
                                                  prefixes=("encoder.model.", "module.encoder.model.")),
      "CRW ResNet-18, reflect padding ('model', prefix encoder.model., head skipped)")
