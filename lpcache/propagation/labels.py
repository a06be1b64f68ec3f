"""Frame-0 label channels, their one-hot down-sampling to the feature grid, and the way back.

Follows propagation-spec.md sections 4 and 9: channels are the distinct ids of frame 0 sorted by their
palette colour in BGR order (so DAVIS id 8 sorts between 0 and 1); the one-hot map is resized with
cv2 INTER_LINEAR to the grid; soft maps are resized with cv2 INTER_LINEAR to the output size and the
first maximal channel wins.

Void (255) pixels of frame 0 are treated as the seed treats them: the seed reads the annotation as colours
(`cv2.imread`), so void is one more colour, (224, 224, 192), with its own label channel (sorted by its BGR
colour like any other), propagated like an object. The seed writes a pixel won by that channel in the void
colour, and its `eval/convert_davis.py` then maps every colour to the index of the identical entry of its
own palette (VOC colours for 0..21, a grey ramp (i, i, i) above) and leaves unmatched colours 0: the void
colour matches nothing, so void ends as background (0) in the seed's final PNGs. lpcache does the same:
`upsample_argmax` writes the void channel as 0, and `final_ids` maps frame 0's void pixels to 0. No written
mask holds 255, so lpcache's scorer and the official one accept it.
"""
import cv2
import numpy as np

from ..davis import PALETTE
from ..errors import InputError

#: The DAVIS void id: a label channel of its own while propagating, written as background (0).
VOID = 255


def label_ids(first_mask: np.ndarray, where: str = "first frame") -> np.ndarray:
    """Ids present in frame 0, in channel order (sorted by BGR palette colour), as uint8.

    Raises InputError when frame 0 has no object (no id other than 0 and void 255).
    """
    ids = np.unique(np.asarray(first_mask))
    if not np.any((ids > 0) & (ids < 255)):
        raise InputError(f"{where}: the first frame has no object (ids present: {ids.tolist()})")
    bgr = PALETTE[ids][:, ::-1]
    order = np.lexsort((bgr[:, 2], bgr[:, 1], bgr[:, 0]))
    return ids[order].astype(np.uint8)


def onehot(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(H, W, K+1) float32 one-hot of `mask` over the channel ids."""
    return (np.asarray(mask)[..., None] == ids[None, None, :]).astype(np.float32)


def downsample_onehot(mask: np.ndarray, ids: np.ndarray, grid_hw) -> np.ndarray:
    """One-hot of `mask` resized to the grid with cv2 INTER_LINEAR: (h, w, K+1) float32."""
    height, width = grid_hw
    small = cv2.resize(onehot(mask, ids), (width, height), interpolation=cv2.INTER_LINEAR)
    return small.reshape(height, width, len(ids))


def upsample_argmax(soft: np.ndarray, ids: np.ndarray, out_hw) -> np.ndarray:
    """Soft map (h, w, K+1) -> ids (H, W) uint8: cv2 INTER_LINEAR up-sampling, first maximum wins; the void
    channel is written as 0."""
    height, width = out_hw
    soft = np.ascontiguousarray(soft, dtype=np.float32)
    big = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
    return argmax_ids(big.reshape(height, width, soft.shape[-1]), final_ids(ids))


def final_ids(ids: np.ndarray) -> np.ndarray:
    """`ids` with void (255) written as background (0), as the seed's convert_davis.py ends (module docstring)."""
    ids = np.asarray(ids)
    return np.where(ids == VOID, 0, ids).astype(ids.dtype, copy=False) if np.any(ids == VOID) else ids


def argmax_ids(values: np.ndarray, names: np.ndarray) -> np.ndarray:
    """names[np.argmax(values, axis=-1)] as uint8 (first maximum wins), without an index array: each channel
    that is strictly greater than the best so far writes its name (fast for few channels)."""
    names = np.asarray(names, dtype=np.uint8)
    if values.shape[-1] == 2:     # one object: one comparison, 0/1 scaled to the names (uint8, modulo 256)
        above = (values[..., 1] > values[..., 0]).view(np.uint8)
        if names[0] == 0 and names[1] == 1:
            return above
        return above * np.uint8((int(names[1]) - int(names[0])) % 256) + names[0]
    best = values[..., 0].copy()
    out = np.full(best.shape, names[0], dtype=np.uint8)
    for channel in range(1, values.shape[-1]):
        plane = values[..., channel]
        better = plane > best
        np.copyto(best, plane, where=better)
        np.copyto(out, names[channel], where=better)
    return out
