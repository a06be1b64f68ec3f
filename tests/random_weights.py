"""Machine-independent random weights for the reference-code tests (test_protocol_dino, test_protocol_dinov3).

timm's own init (trunc_normal_ via erfinv) gives different bits on different CPUs, so a fixture made with it
on one machine fails on another; these weights are plain `torch.randn` draws from one seeded generator, the same
bits on AVX2 and AVX-512 CPUs (torch's scalar path, ATEN_CPU_CAPABILITY=default, differs by about one ulp).
"""
import hashlib
import os

import torch

from lpcache import backbones


def random_dino_state_dict(seed=0):
    """dino_vits16's names and shapes, sorted; each tensor 0.02 * N(0, 1) from one generator seeded `seed`,
    plus 1 for LayerNorm weights (keys `*.norm*.weight`)."""
    template = backbones.build(backbones.get_spec("dino_vits16")).vit.state_dict()
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name in sorted(template):
        value = torch.randn(template[name].shape, generator=generator) * 0.02
        if name.endswith(".weight") and name.split(".")[-2].startswith("norm"):
            value = value + 1.0
        weights[name] = value
    return weights


def weights_sha256(state_dict):
    """sha256 over the sorted names and float32 bytes of a state dict (independent of torch.save's format)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def dino_vits16_with(weights, folder):
    """lpcache's dino_vits16 loaded from `weights` saved as a full DINO checkpoint ('teacher', 'backbone.')
    in `folder`; asserts every key was matched."""
    path = os.path.join(str(folder), "checkpoint.pth")
    torch.save({"teacher": {"backbone." + k: v for k, v in weights.items()}}, path)
    model, _, report = backbones.create("dino_vits16", checkpoint=path)
    assert (report.container, report.prefix, report.matched) == ("teacher", "backbone.", len(weights))
    return model
