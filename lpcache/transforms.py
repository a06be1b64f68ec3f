"""Frames in: the two resize protocols and the input normalisation.

- `seed` (default): what the seed's `convert_480_880.py` did on disk, in memory: resize to W x H =
  880 x 480 with PIL NEAREST, re-encode as JPEG with PIL's default settings
  (`Image.save(buf, format="JPEG")`, quality 75, 4:2:0) and decode again. A frame that is already
  880 x 480 is taken as it is (it is then a seed-converted file).
- `native`: each frame keeps its size, rounded per axis to the nearest multiple of the backbone's stride
  (patch size for ViTs; halves round up), at least one multiple; when that changes the size the frame is
  resized with PIL BILINEAR (854 x 480 -> 856 x 480 at stride 8, 848 x 480 at patch 16).
Then x / 255, (x - mean) / std per channel, in float32 (`normalize`).
"""
import io
import math
from typing import Tuple

import numpy as np
import torch
from PIL import Image

from . import images
from .errors import InputError

SEED_HW = (480, 880)


def input_hw(protocol: str, orig_hw, multiple: int) -> Tuple[int, int]:
    """The (H, W) fed to the network for a frame of size `orig_hw`."""
    if protocol == "seed":
        return SEED_HW
    if protocol == "native":
        return tuple(max(multiple, math.floor(v / multiple + 0.5) * multiple) for v in orig_hw)
    from . import protocols

    return tuple(protocols.get(protocol).input_hw(tuple(orig_hw), multiple))   # InputError for an unknown name


def read_rgb(path) -> Image.Image:
    """Decode a JPEG to an RGB PIL image; InputError naming the file when it is missing, broken or too large."""
    return images.read_pil(path, "frame")


def seed_reencode(image: Image.Image) -> Image.Image:
    """Nearest resize to 880 x 480 and a PIL-default JPEG round trip, as the seed's converted files."""
    height, width = SEED_HW
    if image.size == (width, height):
        return image
    resized = image.resize((width, height), Image.NEAREST)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def prepare_frame(path, protocol: str, multiple: int) -> np.ndarray:
    """Read one frame and apply the protocol: uint8 array (H, W, 3), RGB."""
    if protocol not in ("seed", "native"):
        from . import protocols

        return protocols.get(protocol).prepare_frame(path, multiple)  # float32 (3, H, W), already normalised
    image = read_rgb(path)
    if protocol == "seed":
        image = seed_reencode(image)
    else:
        height, width = input_hw(protocol, (image.height, image.width), multiple)
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
    return np.array(image, dtype=np.uint8)


def normalize(batch: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W): x / 255, then (x - mean) / std per channel."""
    x = batch.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
