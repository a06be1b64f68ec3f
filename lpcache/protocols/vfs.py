"""VFS's DAVIS protocol (`VanillaTracker` + `masked_attention_efficient` of xvjiarui/VFS), exactly.

What `lpcache extract` must call for this protocol: `prepare_frame(path, patch)`, which returns the network
input itself, a float32 (3, H, W) RGB array already normalised with mmcv's ImageNet constants in 0..255
units (mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375)); do NOT apply
`lpcache.transforms.normalize` on top. `patch` is ignored (the resize rule does not depend on the stride).
Features: ResNet res4 (`layer3`) at stride 8 (lpcache's `vfs` = ResNet-50, or `imagenet18` for the
ResNet-18 config), L2-normalised over channels with `F.normalize(x, dim=1)` on the backbone's (T, C, h, w)
output, which is the layout VFS normalises in; `reference` takes those (as (T, h, w, C)) and does not
normalise again.

Parameters (lpcache name = VFS's `test_cfg` name, default of the ResNet-50 config):
  * ``temperature`` = ``temperature`` (0.07),
  * ``topk`` = ``topk`` (10),
  * ``video_len`` = ``precede_frames`` (20): previous frames in the context, besides frame 0,
  * ``radius`` = ``neighbor_range // 2`` (36 // 2 = 18; the ResNet-18 config has neighbor_range 24 -> 12).

Quirks kept because they change numbers (read in the reference code and checked by running it):
  1. Frames are decoded by OpenCV (`cv2.imdecode`, BGR -> RGB), not PIL. Resize (mmcv `rescale_size`
     with scale (inf, 480)): factor 480 / short side, each side `int(side * factor + 0.5)`; cv2 INTER_LINEAR
     on the RGB uint8 image (a 854 x 480 frame is not resized).
  2. Normalisation: mean/std are float32 arrays widened to float64, the image is float32 and normalised in
     place by OpenCV: `cv2.subtract(img, mean)` then `cv2.multiply(img, 1 / std)` (a product with the
     float64 reciprocal, not a division), in 0..255 units.
  3. Label init: the annotation is first resized to the network input size with PIL NEAREST (the
     pipeline's `Resize`), then to the feature grid with PIL NEAREST, then one-hot over ids 0..max (absent
     ids are zero channels). Frame 0's output is the input-size annotation brought back to the native size
     with torch `nearest` (the annotation itself when the frame was not resized).
  4. Context of target t: frame 0, then frames max(0, t - video_len) .. t-1. For t <= video_len frame 0
     is therefore in the context TWICE (its keys and labels duplicated), and the top-k can pick both copies.
  5. Window: circle, Euclidean grid distance < radius (strict), applied to every context frame including
     frame 0 (`with_first_neighbor=True`); outside it the affinity is -inf.
  6. Weights: cos / temperature, top-k over all context keys jointly (torch.topk: exactly k, ties broken by
     torch), softmax over those k. Queries are processed in chunks of 32 cells (`step=32`): each chunk's
     affinity is its own (keys x 32) matrix product; see docs/protocols.md for the check that the chunk
     size does not change any bit here.
  7. The queue holds the soft labels (before up-sampling and min-max).
  8. Output: soft labels bilinearly up-sampled (torch, align_corners False) straight to the native size,
     per-channel min-max `(x - min) / (max - min + 1e-12)` kept only where the channel's max > 0, argmax
     (first maximum wins), uint8. Scored at the native size (480p).
"""
from typing import List, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import images
from ..errors import InputError
from . import register
from .base import Protocol, Switches, channels_first, grid_init

SHORT_SIDE = 480
MEAN_255 = (123.675, 116.28, 103.53)
STD_255 = (58.395, 57.12, 57.375)
QUERY_CHUNK = 32  # VFS's `step`: queries per affinity product
MINMAX_EPS = 1e-12


def input_hw(orig_hw, patch: int = 8) -> Tuple[int, int]:
    """(H, W) of the network input: short side 480, the other side int(side * 480 / short + 0.5)."""
    height, width = (int(v) for v in orig_hw)
    if height <= 0 or width <= 0:
        raise InputError(f"frame size {width}x{height}: must be positive")
    factor = SHORT_SIDE / min(height, width)
    return int(height * factor + 0.5), int(width * factor + 0.5)


def read_rgb(path) -> np.ndarray:
    """The frame as mmcv's cv2 backend decodes it: uint8 RGB (H, W, 3)."""

    return images.read_rgb(path, decoder="cv2")


def prepare_frame(path, patch: int = 8) -> np.ndarray:
    """The network input, bit-identical to VFS's: float32 (3, H, W), RGB, normalised (module docstring)."""
    image = read_rgb(path)
    height, width = input_hw(image.shape[:2], patch)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    pixels = image.astype(np.float32)
    mean = np.float64(np.array(MEAN_255, dtype=np.float32).reshape(1, -1))
    inv_std = 1 / np.float64(np.array(STD_255, dtype=np.float32).reshape(1, -1))
    cv2.subtract(pixels, mean, pixels)
    cv2.multiply(pixels, inv_std, pixels)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _pil_nearest(ids: np.ndarray, hw) -> np.ndarray:
    height, width = hw
    image = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8))
    return np.array(image.resize((int(width), int(height)), Image.NEAREST))


def grid_labels(first_mask_ids: np.ndarray, grid_hw) -> np.ndarray:
    """Frame-0 ids at the grid: PIL NEAREST to the network input size, then to the grid (quirk 3)."""
    first = np.asarray(first_mask_ids, dtype=np.uint8)
    return _pil_nearest(_pil_nearest(first, input_hw(first.shape)), grid_hw)


def label_ids(first_mask_ids: np.ndarray, grid_hw) -> np.ndarray:
    """VFS's channel ids: 0..max of the grid frame-0 ids (channel k is id k, as F.one_hot gives)."""
    return np.arange(int(grid_labels(first_mask_ids, grid_hw).max()) + 1, dtype=np.uint8)


def label_init(first_mask_ids: np.ndarray, grid_hw, ids) -> np.ndarray:
    """(h, w, K) float32 one-hot of the grid frame-0 ids over `ids`."""
    small = grid_labels(first_mask_ids, grid_hw)
    return (small[..., None] == np.asarray(ids)[None, None, :]).astype(np.float32)


def first_output(first_mask_ids: np.ndarray) -> np.ndarray:
    """Frame 0's output: the input-size annotation back to the native size with torch nearest."""
    first = np.asarray(first_mask_ids, dtype=np.uint8)
    small = torch.from_numpy(_pil_nearest(first, input_hw(first.shape)))
    return F.interpolate(small[None, None], size=first.shape, mode="nearest")[0, 0].numpy()


def circle_window(grid_hw, radius: float) -> torch.Tensor:
    """(h*w, h*w) bool, [key, query]: Euclidean grid distance < radius."""
    height, width = grid_hw
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    squared = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    return squared.double().sqrt() < radius


def context_frames(target: int, video_len: int) -> List[int]:
    """Frame 0, then frames max(0, target - video_len) .. target-1 (frame 0 twice while target <= video_len)."""
    return [0] + list(range(max(0, target - video_len), target))


def decode(soft: torch.Tensor, out_hw) -> np.ndarray:
    """Soft labels (K, h, w) -> uint8 ids (H, W) at the native size (module docstring, quirk 8)."""
    big = F.interpolate(soft[None], size=tuple(out_hw), mode="bilinear", align_corners=False)[0]
    flat = big.reshape(len(big), -1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    scaled = torch.where(high > 0, (big - low) / (high - low + MINMAX_EPS), big)
    return scaled.argmax(dim=0).to(torch.uint8).numpy()


def propagate_one(keys: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor, window: torch.Tensor,
                  params) -> torch.Tensor:
    """Soft labels (K, cells) of one target. keys (C, n*cells), labels (K, n*cells), queries (C, cells),
    window (cells, cells) bool [key, query], the same for each of the n context frames."""
    n_context = keys.shape[1] // queries.shape[1]
    out = torch.zeros(labels.shape[0], queries.shape[1])
    for start in range(0, queries.shape[1], QUERY_CHUNK):
        chunk = slice(start, start + QUERY_CHUNK)
        affinity = torch.einsum("ci,cj->ij", keys, queries[:, chunk]) / params["temperature"]
        affinity = affinity.masked_fill(~window[:, chunk].repeat(n_context, 1), float("-inf"))
        best, index = affinity.topk(int(params["topk"]), dim=0)          # (k, chunk), joint over keys
        picked = labels[:, index.reshape(-1)].reshape(labels.shape[0], *index.shape)  # (K, k, chunk)
        out[:, chunk] = torch.einsum("cks,ks->cs", picked, best.softmax(dim=0))
    return out


@torch.no_grad()
def reference(feats: torch.Tensor, first_mask_ids: np.ndarray, params, out_hw) -> List[np.ndarray]:
    """VFS's propagation, densely: one uint8 id mask per frame (frame 0 = the annotation, quirk 3).

    feats: float32 (T, h, w, C), L2-normalised per cell (module docstring). params: temperature, topk,
    video_len, radius. out_hw: the native frame size (the annotation's size).
    """
    n_frames, height, width, channels = feats.shape
    cells = height * width
    ids = label_ids(first_mask_ids, (height, width))
    columns = feats.reshape(n_frames, cells, channels).permute(0, 2, 1)    # (T, C, cells)
    window = circle_window((height, width), params["radius"])
    soft = [torch.from_numpy(label_init(first_mask_ids, (height, width), ids)).reshape(cells, -1).T]
    masks = [first_output(first_mask_ids)]
    for target in range(1, n_frames):
        context = context_frames(target, int(params["video_len"]))
        keys = torch.cat([columns[c] for c in context], dim=1)
        labels = torch.cat([soft[c] for c in context], dim=1)
        soft.append(propagate_one(keys, labels, columns[target], window, params))
        masks.append(decode(soft[-1].reshape(len(ids), height, width), out_hw))
    return masks


def engine_decode(soft, ids, out_hw) -> np.ndarray:
    """A soft map (h, w, K) as the reference writes it (`decode`)."""
    return decode(channels_first(soft), out_hw)


def engine_first_output(first_mask_ids, out_hw) -> np.ndarray:
    """Frame 0's mask, as the reference writes it."""
    return first_output(first_mask_ids)


PROTOCOL = register(Protocol(
    name="vfs",
    summary="VFS VanillaTracker: frame 0 + 20 previous (frame 0 twice early on), circle < 18 on all, "
            "top-10 of cos/0.07 jointly then softmax, bilinear to native + min-max output",
    switches=Switches(context="first_plus_previous", first_frame_masked=True, window="circle_lt",
                      weighting="softmax_topk"),
    defaults={"temperature": 0.07, "topk": 10, "radius": 18, "video_len": 20},
    input_hw=input_hw,
    score_size="native",
    mean=tuple(v / 255 for v in MEAN_255),
    std=tuple(v / 255 for v in STD_255),
    published=("VFS ResNet-50 (radius 18): DAVIS-2017 val J&F 69.5 (J 67.0, F 72.0) with the released checkpoint "
               "(xvjiarui/VFS README; 'slightly higher than reported in the paper': Xu & Wang, 'Rethinking "
               "Self-supervised Correspondence Learning: A Video Frame-level Similarity Perspective', ICCV 2021)",
               "VFS ResNet-18 (radius 12): DAVIS-2017 val J&F 66.7 (J 64.0, F 69.5) (same README)"),
    reference_code="github.com/xvjiarui/VFS mmaction/models/trackers/vanilla_tracker.py + "
                   "mmaction/models/common/local_attention.py (commit 8e055cc), configs/r50_nc_*.py test_cfg",
    prepare_frame=prepare_frame,
    reference=reference,
    init_labels=grid_init(label_ids, label_init),
    decode_labels=engine_decode,
    first_output=engine_first_output,
))
