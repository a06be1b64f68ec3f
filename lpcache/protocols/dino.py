"""DINO v1's DAVIS protocol (`eval_video_segmentation.py` of facebookresearch/dino), exactly.

What `lpcache extract` must call for this protocol: `prepare_frame(path, patch)`, which returns the network
input itself, a float32 (3, H, W) array already normalised with DINO's constants (mean ImageNet, std
(0.228, 0.224, 0.225)); do NOT apply `lpcache.transforms.normalize` on top. Frames are fed one at a time
(batch 1, as the reference does). Features are the final-LayerNorm patch tokens of the last block
(`get_intermediate_layers(n=1)`, class token dropped); timm's fused attention kernel rounds differently
from DINO's explicit softmax(q k^T * scale) v (~3e-6), so set `attn.fused_attn = False` on every block of
`dino_vits16` to get DINO's tokens bit for bit. `reference` takes them L2-normalised over channels
(F.normalize, eps 1e-12) as lpcache's cache stores them, which is exactly how DINO normalises a context
frame; DINO normalises the target frame in another memory layout (one-ulp differences), so for soft labels
bit-identical to DINO's pass `queries` from `unit_features(raw)` too (docs/protocols.md, section dino).

Parameters (lpcache name = DINO's name, DINO's default):
  * ``temperature`` = the hard-coded divisor in ``exp(cos / 0.1)`` (0.1; not an argument in DINO),
  * ``topk`` = ``--topk`` (5),
  * ``video_len`` = ``--n_last_frames`` (7): the previous frames in the context, besides frame 0,
  * ``radius`` = ``--size_mask_neighborhood`` (12): a square window of +-radius grid cells.

Quirks kept because they change numbers (each read in the reference code and checked by running it):
  1. Resize: cv2 INTER_LINEAR (on the BGR uint8 image) to short side 480, the long side 480 * long / short
     floored to a multiple of 64 (854 x 480 -> 832 x 480, 910 -> 896), whatever the patch size. Frames are
     decoded by OpenCV (its JPEG decoder, EXIF orientation applied), not PIL. A square frame becomes
     480 high x 448 wide, while DINO's label rule gives 448 high x 480 wide, so the reference fails on
     square videos; lpcache follows the frame rule for both.
  2. Normalisation in float32: x / 255, then BGR -> RGB, then per channel (x - mean) / std with
     std R = 0.228 (not 0.229).
  3. Label init: the frame-0 annotation resized to the grid with PIL NEAREST, then one-hot over ids
     0..max (every integer up to the largest id surviving the resize, absent ones as zero channels; a
     void 255 would become an ordinary label).
  4. Context: frame 0 once plus the `video_len` previous frames; no padding, so early targets have fewer
     keys. The queue holds soft labels (before up-sampling and min-max).
  5. Window: square, |di| <= radius and |dj| <= radius, on every context frame including frame 0;
     radius <= 0 switches the restriction off (DINO's `if size_mask_neighborhood > 0`).
  6. Weights: exp(cos / temperature) times the window (zeros outside), top-k over all context keys jointly,
     every value below the k-th set to 0 (ties with the k-th are kept, so more than k can survive), then
     divided by the column sum. exp overflows float32 for temperature < ~0.0113 (then NaN, as in DINO).
  7. Output: soft labels (K, h, w) up-sampled bilinearly by the patch factor (torch interpolate,
     align_corners False, scale factor given), then per channel min-max only where the channel's max is
     positive (a constant positive channel becomes 0/0 = NaN, and NaN wins the argmax, as in DINO), argmax
     (first maximum wins), uint8, PIL NEAREST to the native frame size. Frame 0 is the annotation itself.
  8. Scored at the native size (480p) against the native annotations.
"""
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import images
from ..errors import InputError
from . import register
from .base import Protocol, Switches, annotation_output, channels_first, grid_init

SHORT_SIDE = 480
LONG_MULTIPLE = 64
MEAN = (0.485, 0.456, 0.406)
STD = (0.228, 0.224, 0.225)  # DINO's constant: R is 0.228, not ImageNet's 0.229


def input_hw(orig_hw, patch: int = 16) -> Tuple[int, int]:
    """(H, W) of the network input: short side 480, long side floored to a multiple of 64 (any patch)."""
    height, width = (int(v) for v in orig_hw)
    if height <= 0 or width <= 0:
        raise InputError(f"frame size {width}x{height}: must be positive")
    if height > width:
        size = (SHORT_SIDE * height // width // LONG_MULTIPLE * LONG_MULTIPLE, SHORT_SIDE)
    else:
        size = (SHORT_SIDE, SHORT_SIDE * width // height // LONG_MULTIPLE * LONG_MULTIPLE)
    if min(size) == 0:
        raise InputError(f"frame size {width}x{height}: too elongated for DINO's resize rule "
                         f"(the long side floors to 0)")
    return size


def read_bgr(path) -> np.ndarray:
    """The frame as OpenCV decodes it (uint8 BGR, H x W x 3): DINO reads frames with cv2.imread."""

    return images.read_bgr(path, decoder="cv2")


def prepare_frame(path, patch: int = 16) -> np.ndarray:
    """The network input, bit-identical to DINO's: float32 (3, H, W), RGB, normalised (module docstring)."""
    image = read_bgr(path)
    height, width = input_hw(image.shape[:2], patch)
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    scaled = resized.astype(np.float32) / np.float32(255.0)
    chw = torch.from_numpy(np.ascontiguousarray(scaled[:, :, ::-1].transpose(2, 0, 1)))
    for channel, mean, std in zip(chw, MEAN, STD):
        channel.sub_(mean).div_(std)  # float32 tensor minus / over a Python float, as the reference does
    return chw.numpy()


def grid_labels(first_mask_ids: np.ndarray, grid_hw) -> np.ndarray:
    """Frame-0 ids resized to the grid (h, w) with PIL NEAREST."""
    height, width = grid_hw
    image = Image.fromarray(np.ascontiguousarray(first_mask_ids, dtype=np.uint8))
    return np.array(image.resize((width, height), Image.NEAREST))


def label_ids(first_mask_ids: np.ndarray, grid_hw) -> np.ndarray:
    """DINO's channel ids: 0..max of the grid-resized frame-0 ids (channel k is id k)."""
    return np.arange(int(grid_labels(first_mask_ids, grid_hw).max()) + 1, dtype=np.uint8)


def label_init(first_mask_ids: np.ndarray, grid_hw, ids) -> np.ndarray:
    """(h, w, K) float32 one-hot of the NEAREST-resized frame-0 ids over `ids`."""
    small = grid_labels(first_mask_ids, grid_hw)
    return (small[..., None] == np.asarray(ids)[None, None, :]).astype(np.float32)


def square_window(grid_hw, radius: int) -> torch.Tensor:
    """(h*w, h*w) float32 0/1: 1 where both grid offsets are within +-radius (Chebyshev distance)."""
    height, width = grid_hw
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    near = ((rows[:, None] - rows[None, :]).abs() <= radius) & ((cols[:, None] - cols[None, :]).abs() <= radius)
    return near.float()


def context_frames(target: int, video_len: int) -> List[int]:
    """Frame 0 plus the `video_len` frames before `target` (frame 0 never twice, no padding)."""
    return [0] + list(range(max(1, target - video_len), target))


def decode(soft: torch.Tensor, patch: int, out_hw) -> np.ndarray:
    """Soft labels (K, h, w) -> uint8 ids (H, W) at the native size (module docstring, quirk 7)."""
    big = F.interpolate(soft[None], scale_factor=patch, mode="bilinear", align_corners=False,
                        recompute_scale_factor=False)[0]
    for channel in big:
        if channel.max() > 0:
            channel -= channel.min()
            channel /= channel.max()
    ids = torch.argmax(big, dim=0).numpy().astype(np.uint8)
    height, width = out_hw
    return np.array(Image.fromarray(ids).resize((width, height), Image.NEAREST))


def affinity(query: torch.Tensor, keys: torch.Tensor, window: Optional[torch.Tensor], params) -> torch.Tensor:
    """Weights (n * cells keys, cells queries) of one target; query (cells, C), keys (n, cells, C), unit rows.

    exp(cos / temperature), times the window, zero below the k-th largest of each query's column (ties with
    the k-th kept), columns normalised to sum 1. The product is laid out (n, queries, keys) and then viewed
    as (n * keys, queries), as in DINO: with one context frame that view is column-major (no copy), which
    changes the rounding of the column sums; keeping the same layout keeps them bit-identical.
    """
    cos = query @ keys.transpose(1, 2)                             # (n, queries, keys)
    weights = torch.exp(cos / params["temperature"])
    if window is not None:
        weights = weights * window
    weights = weights.transpose(1, 2).reshape(-1, query.shape[0])  # all context keys jointly, per query
    kth = torch.topk(weights, int(params["topk"]), dim=0).values[-1]
    weights = torch.where(weights < kth, torch.zeros_like(weights), weights)
    return weights / weights.sum(dim=0, keepdim=True)


def unit_features(raw: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Raw tokens (T, C, h, w) -> (keys, queries), both (T, h, w, C), L2-normalised over C the two ways DINO does.

    DINO normalises a context frame with the channel axis strided (its (C, h*w) copy), exactly as lpcache's
    cache does (`F.normalize(dim=1)` on NCHW), and the target frame with the channel axis contiguous
    ((h*w, C)); the two differ by about one float32 ulp in some cells.
    """
    n_frames, channels, height, width = raw.shape
    keys = F.normalize(raw, dim=1).permute(0, 2, 3, 1).contiguous()
    rows = raw.reshape(n_frames, channels, -1).transpose(1, 2).contiguous()
    return keys, F.normalize(rows, dim=2).reshape(n_frames, height, width, channels)


@torch.no_grad()
def reference(feats: torch.Tensor, first_mask_ids: np.ndarray, params, out_hw,
              patch: Optional[int] = None, queries: Optional[torch.Tensor] = None) -> List[np.ndarray]:
    """DINO's propagation, densely: one uint8 id mask per frame (frame 0 = the annotation).

    feats: float32 (T, h, w, C), L2-normalised per cell (as lpcache's cache stores them). queries: the same
    frames normalised as DINO normalises a target frame (`unit_features`); None uses `feats` (a one-ulp
    difference in some cosines, see docs/protocols.md). params: temperature, topk, video_len, radius.
    out_hw: the native frame size; patch: the input / grid ratio (derived from `input_hw` when None).
    """
    n_frames, height, width, _ = feats.shape
    if patch is None:
        patch = input_hw(out_hw)[0] // height
    ids = label_ids(first_mask_ids, (height, width))
    cells = height * width
    keys = feats.reshape(n_frames, cells, -1)
    queries = keys if queries is None else queries.reshape(n_frames, cells, -1)
    window = square_window((height, width), int(params["radius"])) if params["radius"] > 0 else None
    first = torch.from_numpy(label_init(first_mask_ids, (height, width), ids))
    soft = [first.permute(2, 0, 1).reshape(len(ids), cells).contiguous()]   # (K, cells) per frame
    masks = [np.asarray(first_mask_ids, dtype=np.uint8)]
    for target in range(1, n_frames):
        context = context_frames(target, int(params["video_len"]))
        weights = affinity(queries[target], keys[context], window, params)
        # (K, n * keys), laid out as DINO lays it out (a copy unless n = 1), for the same rounding
        labels = torch.stack([soft[c] for c in context]).transpose(1, 2).reshape(-1, len(ids)).T
        soft.append(labels @ weights)                                       # (K, queries)
        masks.append(decode(soft[-1].reshape(len(ids), height, width), patch, out_hw))
    return masks


def engine_decode(soft, ids, out_hw) -> np.ndarray:
    """A soft map (h, w, K) as DINO writes it (`decode`; the patch is the input / grid ratio)."""
    patch = input_hw(out_hw)[0] // soft.shape[0]
    return decode(channels_first(soft), patch, out_hw)


PROTOCOL = register(Protocol(
    name="dino",
    summary="DINO v1 eval_video_segmentation.py: frame 0 + 7 previous, square +-12 window on all, "
            "exp(cos/0.1) cut at the k-th (ties kept) and sum-normalised, min-max output, native scoring",
    switches=Switches(context="first_plus_last", first_frame_masked=True, window="square",
                      weighting="dino_exp_threshold"),
    defaults={"temperature": 0.1, "topk": 5, "radius": 12, "video_len": 7},
    input_hw=input_hw,
    score_size="native",
    mean=MEAN,
    std=STD,
    published=("DINO ViT-S/16: DAVIS-2017 val J&F 61.8 (J 60.2, F 63.4) (Caron et al., 'Emerging Properties "
               "in Self-Supervised Vision Transformers', ICCV 2021, Table 5)",),
    reference_code="github.com/facebookresearch/dino eval_video_segmentation.py (commit 7c446df)",
    prepare_frame=prepare_frame,
    frames_per_forward=1,
    fused_attention=False,
    reference=reference,
    init_labels=grid_init(label_ids, label_init),
    decode_labels=engine_decode,
    first_output=annotation_output,
))
