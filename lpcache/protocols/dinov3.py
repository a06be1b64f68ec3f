"""DINOv3's video segmentation tracking (`notebooks/segmentation_tracking.ipynb` of facebookresearch/dinov3).

What `lpcache extract` must call for this protocol: `prepare_frame(path, patch)`, which returns the network
input itself, a float32 (3, H, W) RGB array already normalised with ImageNet's mean/std (0.229 for R); do
NOT apply `lpcache.transforms.normalize` on top. One frame per forward pass (batch 1, as the notebook does).
Features: the last block's final-LayerNorm patch tokens (`get_intermediate_layers(n=1, reshape=True)`,
norm on, class/register tokens dropped), L2-normalised over channels (`F.normalize(p=2)`; the notebook does
it on a channel-last view of the (1, C, h, w) output, i.e. the same memory layout as lpcache's cache's
`F.normalize(x, dim=1)`). `reference` takes those as (T, h, w, C) and does not normalise again.

Parameters (lpcache name = the notebook's name, its default):
  * ``temperature`` = ``TEMPERATURE`` (0.2): softmax temperature on the cosine,
  * ``topk`` = ``TOPK`` (5),
  * ``video_len`` = ``MAX_CONTEXT_LENGTH`` (7): previous frames in the context, besides frame 0,
  * ``radius`` = ``NEIGHBORHOOD_SIZE`` (12) with ``NEIGHBORHOOD_SHAPE = "circle"``.

Quirks kept because they change numbers (read in the notebook's code and checked by running it):
  1. Frames are decoded by PIL (`convert("RGB")`). Resize (`ResizeToMultiple`): the short side
     `short_side` (960) rounded UP to a multiple of the patch; the long side = long * new_short / short
     (Python float) rounded UP to a multiple of the patch (854 x 480 -> 1712 x 960 at /16). A square frame
     is treated as portrait (the width gets the short side). torchvision's resize of a PIL image = PIL
     BICUBIC (antialiased) on the uint8 RGB image.
  2. Normalisation (ToTensor + Normalize) in float32 torch: x / 255, then (x - mean) / std with mean and
     std as float32 tensors, std (0.229, 0.224, 0.225).
  3. Label init: the native frame-0 annotation (as float) to the grid with torch `nearest-exact` (source
     index floor((i + 0.5) * in / out), not PIL's or torch's plain nearest), then one-hot over ids
     0..max of the NATIVE annotation (an id lost in the resize keeps a zero channel).
  4. Context: frame 0 once plus the `video_len` previous frames (no padding; fewer early on). The queue
     holds soft labels (before up-sampling and min-max).
  5. Window: circle, Euclidean grid distance <= radius (inclusive: distance exactly 12 is inside), on every
     context frame including frame 0; outside it the cosine is -inf.
  6. Weights: top-k of the COSINE jointly over all context keys; every key >= the k-th value is kept (ties
     with the k-th kept, so more than k can survive); softmax(cos / temperature) over the kept keys; the
     weighted labels are renormalised to sum 1 per cell.
  7. Output: soft labels (K, h, w) up-sampled with torch `nearest` straight to the native mask size, then
     per channel (x - min) / (max - min) on EVERY channel (no max > 0 condition, no epsilon), NaN -> 0
     (a constant channel becomes all 0), argmax (first maximum wins), uint8. Frame 0 is the annotation.
  8. Scored at the native size (480p).
"""
import math
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import images
from ..errors import InputError
from . import register
from .base import Protocol, Switches, annotation_output, channels_first, grid_init

SHORT_SIDE = 960
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def input_hw(orig_hw, patch: int = 16, short_side: int = SHORT_SIDE) -> Tuple[int, int]:
    """(H, W) of the network input: short side and the scaled long side, each rounded UP to the patch."""
    height, width = (int(v) for v in orig_hw)
    if height <= 0 or width <= 0:
        raise InputError(f"frame size {width}x{height}: must be positive")

    def round_up(side: float) -> int:
        return math.ceil(side / patch) * patch

    if width > height:
        new_height = round_up(short_side)
        return new_height, round_up(width * new_height / height)
    new_width = round_up(short_side)
    return round_up(height * new_width / width), new_width


def read_rgb(path) -> Image.Image:
    """The frame as the notebook decodes it: a PIL RGB image."""

    return images.read_pil(path, "frame")


def prepare_frame(path, patch: int = 16, short_side: int = SHORT_SIDE) -> np.ndarray:
    """The network input, bit-identical to the notebook's: float32 (3, H, W), RGB, normalised (docstring)."""
    image = read_rgb(path)
    height, width = input_hw((image.height, image.width), patch, short_side)
    resized = image.resize((width, height), Image.BICUBIC)
    chw = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return ((chw - mean) / std).numpy()


def label_ids(first_mask_ids: np.ndarray, grid_hw=None) -> np.ndarray:
    """The notebook's channel ids: 0..max of the native frame-0 annotation (channel k is id k)."""
    return np.arange(int(np.max(first_mask_ids)) + 1, dtype=np.uint8)


def grid_labels(first_mask_ids: np.ndarray, grid_hw) -> np.ndarray:
    """Frame-0 ids resized to the grid (h, w) with torch nearest-exact."""
    ids = torch.from_numpy(np.asarray(first_mask_ids, dtype=np.float32))
    return F.interpolate(ids[None, None], size=tuple(grid_hw), mode="nearest-exact")[0, 0].long().numpy()


def label_init(first_mask_ids: np.ndarray, grid_hw, ids) -> np.ndarray:
    """(h, w, K) float32 one-hot of the nearest-exact grid ids over `ids`."""
    small = grid_labels(first_mask_ids, grid_hw)
    return (small[..., None] == np.asarray(ids)[None, None, :]).astype(np.float32)


def circle_window(grid_hw, radius: float) -> torch.Tensor:
    """(h*w, h*w) bool, [query, key]: float32 Euclidean grid distance <= radius (inclusive)."""
    height, width = grid_hw
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    squared = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    return squared.float().sqrt() <= radius


def context_frames(target: int, video_len: int) -> List[int]:
    """Frame 0 plus the `video_len` frames before `target` (frame 0 never twice, no padding)."""
    return [0] + list(range(max(1, target - video_len), target))


def weights_of(cos: torch.Tensor, params) -> torch.Tensor:
    """(queries, keys) cosines (-inf outside the window) -> weights: keep >= the k-th, softmax(cos / T)."""
    kth = torch.topk(cos, int(params["topk"]), dim=1).values[:, -1:]
    kept = torch.where(cos >= kth, cos, torch.full_like(cos, -math.inf))
    return F.softmax(kept / params["temperature"], dim=1)


def decode(soft: torch.Tensor, out_hw) -> np.ndarray:
    """Soft labels (K, h, w) -> uint8 ids at `out_hw`: nearest up-sampling, min-max (NaN -> 0), argmax."""
    big = F.interpolate(soft[None], size=tuple(out_hw), mode="nearest")[0]
    flat = big.reshape(len(big), -1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    scaled = torch.nan_to_num((big - low) / (high - low), nan=0.0)
    return scaled.argmax(dim=0).to(torch.uint8).numpy()


@torch.no_grad()
def reference(feats: torch.Tensor, first_mask_ids: np.ndarray, params, out_hw) -> List[np.ndarray]:
    """The notebook's tracking, densely: one uint8 id mask per frame (frame 0 = the annotation).

    feats: float32 (T, h, w, C), L2-normalised per cell (module docstring). params: temperature, topk,
    video_len, radius. out_hw: the native mask size.
    """
    n_frames, height, width, channels = feats.shape
    cells = height * width
    ids = label_ids(first_mask_ids)
    flat = feats.reshape(n_frames, cells, channels)
    window = circle_window((height, width), params["radius"])
    soft = [torch.from_numpy(label_init(first_mask_ids, (height, width), ids)).reshape(cells, len(ids))]
    masks = [np.asarray(first_mask_ids, dtype=np.uint8)]
    for target in range(1, n_frames):
        context = context_frames(target, int(params["video_len"]))
        cos = flat[target] @ torch.cat([flat[c] for c in context]).T            # (queries, n * keys)
        cos = torch.where(window.repeat(1, len(context)), cos, torch.full_like(cos, -math.inf))
        probs = weights_of(cos, params) @ torch.cat([soft[c] for c in context])  # (queries, K)
        soft.append(probs / probs.sum(dim=1, keepdim=True))
        masks.append(decode(soft[-1].T.reshape(len(ids), height, width), out_hw))
    return masks


def engine_decode(soft, ids, out_hw) -> np.ndarray:
    """A soft map (h, w, K) as the reference writes it (`decode`)."""
    return decode(channels_first(soft), out_hw)


PROTOCOL = register(Protocol(
    name="dinov3",
    summary="DINOv3 segmentation_tracking notebook: frame 0 + 7 previous, circle <= 12 on all, top-5 of the "
            "cosine (ties kept) then softmax(cos/0.2), nearest up-sampling + min-max (NaN -> 0), native scoring",
    switches=Switches(context="first_plus_last", first_frame_masked=True, window="circle_le",
                      weighting="topk_then_softmax"),
    defaults={"temperature": 0.2, "topk": 5, "radius": 12, "video_len": 7},
    input_hw=input_hw,
    score_size="native",
    mean=MEAN,
    std=STD,
    published=("DINOv3 (Simeoni et al., 'DINOv3', arXiv 2508.10104, 2025): video segmentation tracking on "
               "DAVIS-2017 val (J&F) at three resolutions, evaluated with this non-parametric propagation; "
               "the notebook is its public demonstration (the paper's exact eval script is not released)",),
    reference_code="github.com/facebookresearch/dinov3 notebooks/segmentation_tracking.ipynb (commit 6876159)",
    prepare_frame=prepare_frame,
    frames_per_forward=1,
    contiguous_features=True,
    reference=reference,
    init_labels=grid_init(label_ids, label_init),
    decode_labels=engine_decode,
    first_output=annotation_output,
))
