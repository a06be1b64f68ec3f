"""ViT backbones of the seed: patch tokens after the final LayerNorm, class token dropped.

Built with timm's VisionTransformer (names as in MAE / DINO files). The position embedding is resized
as the seed does (DINO/MAE `interpolate_pos_encoding`): bicubic, `scale_factor = (grid + 0.1) / side`
per axis where side = sqrt(number of stored patch positions), no antialias, align_corners False. It is
left untouched when the grid is square and equals the stored one. Grid = (H // patch, W // patch):
30 x 55 for /16 and 60 x 110 for /8 at 480 x 880.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from .checkpoints import CheckpointFormat
from .registry import BackboneSpec, register

_SIZES = {"vit_small": dict(embed_dim=384, depth=12, num_heads=6),
          "vit_base": dict(embed_dim=768, depth=12, num_heads=12)}


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_hw) -> torch.Tensor:
    """(1, 1 + N, D) -> (1, 1 + h*w, D) with the seed's bicubic scale-factor rule."""
    n_patches = pos_embed.shape[1] - 1
    grid_h, grid_w = grid_hw
    if grid_h * grid_w == n_patches and grid_h == grid_w:
        return pos_embed
    side = int(math.sqrt(n_patches))
    dim = pos_embed.shape[-1]
    patch = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, scale_factor=((grid_h + 0.1) / side, (grid_w + 0.1) / side), mode="bicubic")
    if tuple(patch.shape[-2:]) != (grid_h, grid_w):
        raise ValueError(f"position embedding resized to {tuple(patch.shape[-2:])}, wanted {(grid_h, grid_w)}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
    return torch.cat((pos_embed[:, :1], patch), dim=1)


class ViTTokens(nn.Module):
    """(B, 3, H, W) -> (B, D, H // p, W // p): final-LayerNorm patch tokens of a timm ViT."""

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.vit = vit
        self.patch = vit.patch_embed.proj.kernel_size[0]

    @property
    def weights_module(self):
        return self.vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        grid_h, grid_w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat((vit.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + interpolate_pos_embed(vit.pos_embed, (grid_h, grid_w)).to(tokens.dtype)
        tokens = vit.norm(vit.blocks(vit.norm_pre(vit.pos_drop(tokens))))
        return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w)


def build_vit(spec: BackboneSpec) -> nn.Module:
    size = dict(_SIZES[spec.architecture.split("/")[0]])
    size.update(dict(spec.arch_kwargs))
    vit = VisionTransformer(img_size=224, patch_size=spec.stride, num_classes=0, global_pool="token",
                            qkv_bias=True, **size)
    return ViTTokens(vit)


MAE = CheckpointFormat(kind="MAE ViT", containers=("model",), plain_ok=False, prefixes=("",))
DINO = CheckpointFormat(kind="DINO ViT", containers=("teacher",), plain_ok=True,
                        prefixes=("", "module.", "backbone.", "module.backbone."))


def _spec(name, arch, patch, fmt, description):
    channels = _SIZES[arch]["embed_dim"]
    return register(BackboneSpec(name=name, architecture=f"{arch}/{patch}", layer="final_norm_tokens",
                                 stride=patch, channels=channels, grid="floor", checkpoint_format=fmt,
                                 description=description), build_vit)


_spec("vitb16", "vit_base", 16, MAE, "MAE ViT-B/16 ('model' entry)")
_spec("vits16", "vit_small", 16, MAE, "CatMAE ViT-S/16 ('model' entry, MAE names)")
_spec("vits8", "vit_small", 8, MAE, "CatMAE ViT-S/8 ('model' entry, MAE names)")
_spec("dino_vits16", "vit_small", 16, DINO, "DINO ViT-S/16 (plain dict or full checkpoint 'teacher')")
_spec("dino_vits8", "vit_small", 8, DINO, "DINO ViT-S/8 (plain dict or full checkpoint 'teacher')")
