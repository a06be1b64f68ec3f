"""The seed's protocol (CRW/videowalk as reused by CatMAE): `seed` (480x880) and `native` (own size).

The rule (propagation-spec.md; docs/propagation.md in our words): the context of target t is frame 0
repeated `video_len` times as padding plus the previous `video_len` frames (slot 0 = frame 0, unrestricted;
slots 1..L restricted to grid distance strictly below `radius`); scores are raw dot products of L2-normalised
features; the top-k over all slots jointly are softmaxed at `temperature` and mix the slots' soft labels,
which are fed back. Frame 0's labels: its one-hot resized to the grid with cv2 INTER_LINEAR. Output: soft maps
resized with cv2 INTER_LINEAR to the output size, first maximum wins.

`reference` below is that rule written densely, readable first: it *is* the definition the engine
(lpcache/propagation/engine.py, windowed and multi-setting) is tested against bit for bit, including the two
choices the seed leaves open:
  * ties: the top-k are the k best raw scores, equal scores ranked by candidate index in the seed's layout
    (context slot, then grid position), lower first (a stable sort of the negated scores);
  * the sum: softmax weights times the candidates' labels, added one by one from the best to the k-th.
Products are made in chunks of at least MIN_ROWS rows (smaller products take another BLAS path in MKL and
round differently), as the engine does.
"""
import math
from typing import Tuple

import cv2
import numpy as np
import torch

from ..davis import PALETTE, resize_mask_nearest
from ..propagation import labels
from . import register
from .base import Protocol, Switches

SEED_HW = (480, 880)
ROWS_PER_PRODUCT = 256
MIN_ROWS = 16


def seed_input_hw(orig_hw, patch: int = 8) -> Tuple[int, int]:
    """Every frame becomes 880x480 (the seed's convert_480_880.py; lpcache.transforms does the JPEG re-encode)."""
    return SEED_HW


def native_input_hw(orig_hw, patch: int = 8) -> Tuple[int, int]:
    """Each side rounded to the nearest multiple of the stride/patch (halves up), at least one multiple."""
    return tuple(max(patch, math.floor(v / patch + 0.5) * patch) for v in orig_hw)


def label_ids(mask: np.ndarray) -> np.ndarray:
    """Distinct ids of frame 0 sorted by their BGR palette colour (the seed's np.unique over BGR colours)."""
    colours = sorted({tuple(int(v) for v in PALETTE[i][::-1]): int(i) for i in np.unique(mask)}.items())
    return np.array([i for _, i in colours], dtype=np.uint8)


def label_init(mask: np.ndarray, ids: np.ndarray, grid_hw) -> np.ndarray:
    """(h, w, K+1) float32: the one-hot of frame 0 resized to the grid with cv2 INTER_LINEAR."""
    hot = np.stack([(mask == i).astype(np.float32) for i in ids], axis=-1)
    return cv2.resize(hot, (grid_hw[1], grid_hw[0]), interpolation=cv2.INTER_LINEAR).reshape(
        grid_hw[0], grid_hw[1], len(ids))


def radius_bias(grid_hw, radius) -> torch.Tensor:
    """Dense (hw, hw) bias: 0 where the grid distance is strictly below radius, -1e10 elsewhere."""
    h, w = grid_hw
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pos = np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float32)
    dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    return torch.from_numpy(np.where(dist < radius, 0.0, -1e10).astype(np.float32))


def ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores of each row: score descending, equal scores by column (the tie rule)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def row_chunks(count):
    """(start, stop) chunks of ROWS_PER_PRODUCT rows, a short last chunk merged into the one before it."""
    starts = list(range(0, count, ROWS_PER_PRODUCT))
    if len(starts) > 1 and count - starts[-1] < MIN_ROWS:
        starts.pop()
    return list(zip(starts, starts[1:] + [count]))


def reference(feats, first_mask, temperature, topk, radius, video_len, out_hw, return_soft=False):
    """The seed's propagation, densely. feats (T, h, w, C) L2-normalised; first_mask (H, W) ids at out_hw.

    Returns masks (T, H, W) uint8 with ids as in `first_mask` (frame 0 is `first_mask`), and the soft maps
    (hw, K+1) of every frame when `return_soft`.
    """
    feats = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    n_frames, h, w, channels = feats.shape
    hw = h * w
    flat = feats.reshape(n_frames, hw, channels)
    ids = label_ids(first_mask)
    labels = [torch.from_numpy(label_init(first_mask, ids, (h, w)).reshape(hw, len(ids)))]
    bias = radius_bias((h, w), radius)
    masks, softs = [np.asarray(first_mask, dtype=np.uint8)], [labels[0]]
    for t in range(1, n_frames):
        context = [0] + [max(0, t - video_len + i) for i in range(video_len)]   # slot 0 + padded short-term
        keys = torch.cat([flat[f] for f in context], 0)                       # (slots*hw, C), slot-major
        slot_labels = torch.cat([labels[f] for f in context], 0)             # (slots*hw, K+1)
        pred = torch.empty(hw, len(ids))
        for start, stop in row_chunks(hw):
            raw = (flat[t, start:stop] @ keys.t()).reshape(stop - start, video_len + 1, hw)
            raw[:, 1:] += bias[start:stop, None, :]                           # short-term slots only
            raw = raw.reshape(stop - start, -1).numpy()
            best = ranked(raw, topk)                                          # (rows, k)
            values = torch.from_numpy(np.take_along_axis(raw, best, axis=1))
            weights = torch.softmax(values / temperature, dim=1)
            picked = slot_labels[torch.from_numpy(best)]                      # (rows, k, K+1)
            mixed = weights[:, 0, None] * picked[:, 0]
            for i in range(1, topk):                                          # best candidate first
                mixed = mixed + weights[:, i, None] * picked[:, i]
            pred[start:stop] = mixed
        labels.append(pred)
        softs.append(pred)
        soft = pred.numpy().reshape(h, w, len(ids))
        big = cv2.resize(soft, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR).reshape(
            out_hw[0], out_hw[1], len(ids))
        masks.append(ids[np.argmax(big, axis=-1)])
    masks = np.stack(masks)
    return (masks, softs) if return_soft else masks


def engine_init_labels(first_mask, grid_hw):
    """(ids, (h, w, K+1) grid labels) as the engine starts from them (lpcache.propagation.labels)."""
    ids = labels.label_ids(first_mask)
    return ids, labels.downsample_onehot(first_mask, ids, grid_hw)


def engine_decode(soft, ids, out_hw) -> np.ndarray:
    """A soft map (h, w, K+1) as ids at out_hw: cv2 bilinear, first maximum, void written as 0."""
    return labels.upsample_argmax(soft, ids, out_hw)


def engine_first_output(first_mask, out_hw) -> np.ndarray:
    """Frame 0's mask: the annotation, PIL NEAREST to out_hw when its size differs."""
    return resize_mask_nearest(np.asarray(first_mask), out_hw)


def engine_decode_batch(soft, ids, out_hw, max_batch=None):
    """`engine_decode` for a batch of soft maps (B, h, w, K+1) on their device (lpcache.propagation.device_decode:
    cv2's INTER_LINEAR arithmetic in torch; equal to the cv2 path on >= 99.9999 % of pixels, see there)."""
    from ..propagation.device_decode import upsample_argmax_batch

    return upsample_argmax_batch(soft, labels.final_ids(ids), out_hw, max_batch)


_ENGINE = dict(init_labels=engine_init_labels, decode_labels=engine_decode, first_output=engine_first_output,
               decode_batch=engine_decode_batch, reference=reference)
_SWITCHES = Switches(context="padded_first", first_frame_masked=False, window="circle_lt", weighting="softmax_topk")
_DEFAULTS = {"temperature": 0.7, "topk": 8, "radius": 18, "video_len": 20}
_PUBLISHED = ("CatMAE ViT-S/8 and the CRW/videowalk numbers (Jabri et al., NeurIPS 2020; CatMAE) on DAVIS-2017 val, "
              "scored on 480x880 ground truth",)

SEED = register(Protocol(
    name="seed", summary="CRW/CatMAE at 480x880: frame 0 padded video_len times, circle < radius on short-term "
                         "frames only, softmax over the joint top-k, bilinear one-hot init and up-sampling",
    switches=_SWITCHES, defaults=_DEFAULTS, input_hw=seed_input_hw, score_size="input",
    published=_PUBLISHED, reference_code="github.com/minhoooo1/CatMAE downstream/davis2017-seg (test.py)", **_ENGINE))

NATIVE = register(Protocol(
    name="native", summary="the seed's rule on frames at their own size (rounded to the stride), native scoring",
    switches=_SWITCHES, defaults=_DEFAULTS, input_hw=native_input_hw, score_size="native",
    reference_code=SEED.reference_code, **_ENGINE))
