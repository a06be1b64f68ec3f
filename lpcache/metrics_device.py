"""J and F counts for many predictions of one frame at once, on any torch device (functional).

    prepared = prepare_gt_batch(gt_ids, n_objects)          ground truth (H, W) uint8 tensor, void already 0
    counts = frame_counts(pred, prepared, max_batch=None)   pred (B, H, W) uint8 -> (B, n_objects, 6) int64
    j, f = scores_from_counts(counts)                       (B, n_objects) float64 numpy arrays

The counts (columns COUNT_FIELDS) are the integers the official davis2017-evaluation code derives its J and F
from: for J the intersection and union pixel counts; for F the boundary pixel counts of the prediction (n_fg)
and of the ground truth (n_gt) and the matched counts: prediction boundary pixels inside the ground truth's
boundary dilated by the disk of radius `metrics.boundary_radius(shape)` (fg_match), and the converse
(gt_match). `scores_from_counts` applies `metrics._j_from_counts` and `metrics._f_from_counts` to them, so J
and F equal `metrics.frame_scores_prepared` of the same masks to the last bit (tested on real masks); only the
counts (48 bytes per setting and object) need to leave the device.

Boundary maps follow davis-metric-spec.md section 3 (`metrics.boundary_map`): a pixel differs from its east,
south or south-east neighbour, with the bottom row and right column compared only inside the image. The
dilation is exact: a max-filter (OR) by the rows of the disk {dx^2 + dy^2 <= r^2}, the footprint of
`metrics.disk_kernel(r)` (scikit-image's `disk`, as the official code), nothing entering from outside the
image (`dilate_disk`, tested against cv2.dilate with that kernel). Dilations are computed on the window where
they can matter (the ground-truth boundary's bounding box grown by the radius): once per frame for the ground
truth, once per setting and object for the prediction.

Memory (bytes per setting; settings are processed `max_batch` at a time, one object after the other): the
object mask, its boundary map, the comparisons that make it, and on the window a zero-padded copy, its
doubling runs and the row runs: about 11 bool planes. Measured on the CPU at 480x880 (peak resident memory of
64 settings, two objects whose boundaries span the frame): 7.3 MB per setting (17 bytes per pixel), so
64 settings take about 470 MB. Give `max_batch` to bound it.
"""
import dataclasses
import math
from typing import List, Optional, Tuple

import numpy as np
import torch

from .metrics import _f_from_counts, _j_from_counts, boundary_radius

#: Columns of `frame_counts`' last axis.
COUNT_FIELDS = ("inter", "union", "n_fg", "n_gt", "fg_match", "gt_match")

Box = Tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open


def boundary_maps(masks: torch.Tensor) -> torch.Tensor:
    """Boundary maps (..., H, W) bool of binary masks (..., H, W) bool: a pixel differing from its E, S or SE
    neighbour; the bottom row compares only east, the right column only south (metrics.boundary_map)."""
    out = torch.zeros_like(masks)
    out[..., :, :-1] = masks[..., :, :-1] != masks[..., :, 1:]
    out[..., :-1, :] |= masks[..., :-1, :] != masks[..., 1:, :]
    out[..., :-1, :-1] |= masks[..., :-1, :-1] != masks[..., 1:, 1:]
    return out


def _half_widths(radius: int) -> List[int]:
    """Half-width of the disk {dx^2 + dy^2 <= radius^2} in row dy = 0..radius (scikit-image's `disk`)."""
    return [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]


def dilate_disk(images: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation (..., H, W) bool -> bool by the disk {dx^2 + dy^2 <= radius^2}, centred, nothing added from
    outside the image: cv2.dilate with `metrics.disk_kernel(radius)`, as the official code dilates.

    A max-filter by the disk's rows: each distinct row width is a horizontal run, the OR of two overlapping
    power-of-two runs (built by doubling), and row dy of the disk ORs that run's plane shifted by dy, so a
    pixel costs about 2 * radius + 12 bool operations on a zero-padded copy.
    """
    height, width = images.shape[-2:]
    padded = images.new_zeros(images.shape[:-2] + (height + 2 * radius, width + 2 * radius))
    padded[..., radius:radius + height, radius:radius + width] = images
    runs = [padded]                                     # runs[k][..., j] = OR of columns j .. j + 2^k - 1
    while 2 ** len(runs) <= 2 * radius + 1:
        last, step = runs[-1], 2 ** (len(runs) - 1)
        runs.append(last[..., :-step] | last[..., step:])
    out = images.new_zeros(images.shape)
    widths = _half_widths(radius)
    for half in sorted(set(widths)):
        length = 2 * half + 1
        level = length.bit_length() - 1
        run, start = runs[level], radius - half         # padded column of output column 0's run
        tail = start + length - 2 ** level
        row_run = run[..., start:start + width] | run[..., tail:tail + width]
        for dy in (dy for dy in range(-radius, radius + 1) if widths[abs(dy)] == half):
            out |= row_run[..., radius + dy:radius + dy + height, :]
    return out


def _nonzero_box(mask: torch.Tensor) -> Optional[Box]:
    """Bounding box of the True pixels of a 2-D bool tensor, None when it has none."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _grow(box: Box, margin: int, shape) -> Box:
    y0, y1, x0, x1 = box
    return max(0, y0 - margin), min(shape[0], y1 + margin), max(0, x0 - margin), min(shape[1], x1 + margin)


def _crop(image: torch.Tensor, box: Box) -> torch.Tensor:
    return image[..., box[0]:box[1], box[2]:box[3]]


@dataclasses.dataclass
class _GtObject:
    """One ground-truth object: mask, pixel count, boundary count and, when it has a boundary, the window where
    dilations matter (its boundary's box grown by the radius), the boundary and its dilation on that window."""

    mask: torch.Tensor
    n_pixels: int
    n_boundary: int
    window: Optional[Box] = None
    boundary: Optional[torch.Tensor] = None
    dilated: Optional[torch.Tensor] = None


@dataclasses.dataclass
class PreparedGt:
    """Ground-truth side of one evaluated frame on a device (see `prepare_gt_batch`)."""

    shape: Tuple[int, int]
    n_objects: int
    radius: int
    objects: List[_GtObject]


def prepare_gt_batch(gt_ids: torch.Tensor, n_objects: int) -> PreparedGt:
    """Object masks, boundary maps and boundary dilations of one GT frame (H, W) uint8 (void already 0), on its
    device. Ids above `n_objects` are ignored, as in the official code."""
    if gt_ids.ndim != 2 or gt_ids.dtype != torch.uint8:
        raise ValueError(f"ground truth must be an (H, W) uint8 tensor, got {tuple(gt_ids.shape)} {gt_ids.dtype}")
    shape = tuple(gt_ids.shape)
    radius = boundary_radius(shape)
    objects = []
    for k in range(1, n_objects + 1):
        mask = gt_ids == k
        boundary = boundary_maps(mask)
        n_boundary = int(boundary.sum())
        box = _nonzero_box(boundary) if n_boundary else None
        if box is None:
            objects.append(_GtObject(mask, int(mask.sum()), 0))
            continue
        window = _grow(box, radius, shape)
        objects.append(_GtObject(mask, int(mask.sum()), n_boundary, window, _crop(boundary, window),
                                 dilate_disk(_crop(boundary, window), radius)))
    return PreparedGt(shape, n_objects, radius, objects)


def _object_counts(masks: torch.Tensor, gt: _GtObject, radius: int) -> torch.Tensor:
    """(B, 6) int64 counts of B binary predictions (B, H, W) bool of one object against its ground truth."""
    n_pred = masks.sum(dim=(1, 2))
    inter = (masks & gt.mask).sum(dim=(1, 2))
    boundary = boundary_maps(masks)
    n_fg = boundary.sum(dim=(1, 2))
    zeros = torch.zeros_like(n_fg)
    if gt.window is None:
        fg_match = gt_match = zeros
    else:
        # the GT's dilated boundary lies inside the window, and only prediction boundary pixels inside it
        # (within `radius` of the GT boundary's box) can reach that box, so the window crop is exact
        near = _crop(boundary, gt.window)
        fg_match = (near & gt.dilated).sum(dim=(1, 2))
        gt_match = (dilate_disk(near, radius) & gt.boundary).sum(dim=(1, 2))
    return torch.stack([inter, n_pred + gt.n_pixels - inter, n_fg, zeros + gt.n_boundary, fg_match, gt_match], 1)


def frame_counts(pred: torch.Tensor, prepared: PreparedGt, max_batch: Optional[int] = None) -> torch.Tensor:
    """(B, n_objects, 6) int64 counts (columns COUNT_FIELDS) of B predicted frames (B, H, W) uint8 against one
    prepared GT frame, on pred's device; at most `max_batch` predictions processed together (None: all).

    A prediction id above n_objects is a ValueError, as in `metrics.frame_scores_prepared`.
    """
    if pred.ndim != 3 or pred.dtype != torch.uint8 or tuple(pred.shape[1:]) != prepared.shape:
        raise ValueError(f"predictions must be a (B, {prepared.shape[0]}, {prepared.shape[1]}) uint8 tensor, "
                         f"got {tuple(pred.shape)} {pred.dtype}")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    top = int(pred.max()) if pred.numel() else 0
    if top > prepared.n_objects:
        raise ValueError(f"prediction holds id {top} but the ground truth has {prepared.n_objects} object(s)")
    counts = torch.empty((pred.shape[0], prepared.n_objects, len(COUNT_FIELDS)), dtype=torch.int64,
                         device=pred.device)
    step = max_batch or max(pred.shape[0], 1)
    for start in range(0, pred.shape[0], step):
        chunk = pred[start:start + step]
        for index, gt in enumerate(prepared.objects):
            counts[start:start + step, index] = _object_counts(chunk == index + 1, gt, prepared.radius)
    return counts


def scores_from_counts(counts) -> Tuple[np.ndarray, np.ndarray]:
    """(J, F) float64 arrays of shape counts.shape[:-1] from `frame_counts`' counts (a tensor on any device or an
    array), with the official formulas (metrics._j_from_counts, metrics._f_from_counts)."""
    counts = counts.cpu().numpy() if torch.is_tensor(counts) else np.asarray(counts)
    flat = counts.reshape(-1, len(COUNT_FIELDS)).tolist()
    j = np.array([_j_from_counts(inter, union) for inter, union, *_ in flat], dtype=np.float64)
    f = np.array([_f_from_counts(*row[2:]) for row in flat], dtype=np.float64)
    return j.reshape(counts.shape[:-1]), f.reshape(counts.shape[:-1])
