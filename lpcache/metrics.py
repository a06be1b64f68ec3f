"""DAVIS 2017 semi-supervised J and F, bit-identical to the official davis2017-evaluation code.

Pure functions on object-id masks (no file I/O). Rules: the shared docs' davis-metric-spec.md.

Per frame (one evaluated frame, ground truth already with void 255 -> 0):
    frame_scores(pred_ids, gt_ids, n_objects) -> (j, f)        float64 arrays of shape (n_objects,)
Same numbers with the ground-truth side computed once (the sweep scores many predictions per GT frame):
    prepared = prepare_gt_frame(gt_ids, n_objects)              -> PreparedFrame
    frame_scores_prepared(pred_ids, prepared) -> (j, f)
Per object over the T evaluated frames (in frame order):
    object_statistics(values) -> (mean, recall, decay)
    SequenceScores(name, n_objects): .add(j, f) per frame, then .rows() -> [ObjectRow, ...]
    sequence_rows(name, j, f) -> [ObjectRow, ...]              from (n_objects, T) per-frame arrays
Over objects (sequence order, then object index):
    global_statistics(rows) -> {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"}

Every mean is numpy's pairwise sum over a contiguous float64 array in the official element order, so
the results match the official code to the last bit. Object k (1-based) is `ids == k`; prediction ids
above n_objects are an error (the official code aborts on them). Sequence-level scoring of PNG folders
or in-memory masks (load_gt_sequence, score_sequence_masks, score_sequence_prepared, combine) is in
lpcache.score and uses these functions, so both paths give the same numbers.
"""
import dataclasses
import functools
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

#: Boundary tolerance as a fraction of the image diagonal (official `bound_th`).
BOUND_TH = 0.008
#: Column names of the official global table, in order.
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


# ----------------------------------------------------------------------------------------------- F parts
def boundary_radius(shape) -> int:
    """Tolerance radius in pixels: ceil(0.008 * diagonal): 8 for 480x854, 9 for 480x880."""
    return int(np.ceil(BOUND_TH * np.linalg.norm(tuple(shape[:2]))))


@functools.lru_cache(maxsize=16)
def disk_kernel(radius: int) -> np.ndarray:
    """The (2r+1)^2 uint8 disk {dx^2 + dy^2 <= r^2} (scikit-image `disk`, strict radius)."""
    offsets = np.arange(-radius, radius + 1)
    kernel = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius * radius
    kernel = kernel.astype(np.uint8)
    kernel.setflags(write=False)
    return kernel


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask: differs from its E, S or SE neighbour (borders replicated).

    The bottom-right pixel is never a boundary; the image border creates no boundary.
    """
    seg = np.asarray(mask, dtype=bool)
    out = np.zeros(seg.shape, dtype=bool)
    if seg.shape[0] == 0 or seg.shape[1] == 0:
        return out
    inner = seg[:-1, :-1]
    out[:-1, :-1] = (inner != seg[:-1, 1:]) | (inner != seg[1:, :-1]) | (inner != seg[1:, 1:])
    out[-1, :-1] = seg[-1, :-1] != seg[-1, 1:]  # last row: east neighbour only
    out[:-1, -1] = seg[:-1, -1] != seg[1:, -1]  # last column: south neighbour only
    return out


@dataclasses.dataclass
class _Boundary:
    """A boundary map stored as its bounding box (y0, y1, x0, x1) and the crop inside it."""

    count: int
    box: Optional[Tuple[int, int, int, int]] = None
    crop: Optional[np.ndarray] = None


def _boundary(mask: np.ndarray) -> _Boundary:
    """Boundary of a binary mask, computed only on its bounding box grown by one pixel.

    Outside the box the mask is all False, so edge replication and real neighbours agree there, and the
    boundary map of the grown crop equals the full-image map on that window (and is empty elsewhere).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return _Boundary(0)
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[y0:y1].any(axis=0))
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    height, width = mask.shape
    y0, y1, x0, x1 = max(0, y0 - 1), min(height, y1 + 1), max(0, x0 - 1), min(width, x1 + 1)
    crop = boundary_map(mask[y0:y1, x0:x1])
    count = int(np.count_nonzero(crop))
    return _Boundary(count, (y0, y1, x0, x1), crop) if count else _Boundary(0)


@dataclasses.dataclass
class _Dilated:
    """A boundary map dilated by the disk, kept only on its (box + radius) window, clipped to the image."""

    box: Tuple[int, int, int, int]
    crop: np.ndarray


def _dilate(boundary: _Boundary, shape, radius: int) -> _Dilated:
    y0, y1, x0, x1 = boundary.box
    wy0, wy1 = max(0, y0 - radius), min(shape[0], y1 + radius)
    wx0, wx1 = max(0, x0 - radius), min(shape[1], x1 + radius)
    window = np.zeros((wy1 - wy0, wx1 - wx0), dtype=np.uint8)
    window[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = boundary.crop
    # cv2.dilate pads with "nothing" outside the image, so the window gives the full-image result.
    return _Dilated((wy0, wy1, wx0, wx1), cv2.dilate(window, disk_kernel(radius)).view(bool))


def _count_matched(boundary: _Boundary, dilated: _Dilated) -> int:
    """#(boundary pixels inside the dilated other boundary)."""
    by0, by1, bx0, bx1 = boundary.box
    dy0, dy1, dx0, dx1 = dilated.box
    y0, y1, x0, x1 = max(by0, dy0), min(by1, dy1), max(bx0, dx0), min(bx1, dx1)
    if y0 >= y1 or x0 >= x1:
        return 0
    a = boundary.crop[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    b = dilated.crop[y0 - dy0:y1 - dy0, x0 - dx0:x1 - dx0]
    return int(np.count_nonzero(a & b))


def _f_from_counts(n_fg, n_gt, fg_match, gt_match) -> float:
    """Official precision/recall rules and F = ((2P)R)/(P+R)."""
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.float64(fg_match) / np.float64(n_fg)
        recall = np.float64(gt_match) / np.float64(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _j_from_counts(inter, union) -> float:
    return 1.0 if union == 0 else float(np.float64(inter) / np.float64(union))


def region_similarity(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """J of one object in one frame: |pred & gt| / |pred | gt|, 1 when both are empty."""
    pred_mask, gt_mask = np.asarray(pred_mask, bool), np.asarray(gt_mask, bool)
    _check_same_shape(pred_mask, gt_mask)
    return _j_from_counts(np.count_nonzero(pred_mask & gt_mask), np.count_nonzero(pred_mask | gt_mask))


def boundary_measure(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """F of one object in one frame (boundary precision/recall within ceil(0.008*diag) pixels)."""
    pred_mask, gt_mask = np.asarray(pred_mask, bool), np.asarray(gt_mask, bool)
    _check_same_shape(pred_mask, gt_mask)
    gt_side = _GtObject.from_mask(gt_mask, boundary_radius(gt_mask.shape))
    return gt_side.f_against(_boundary(pred_mask), gt_mask.shape)


# ----------------------------------------------------------------------------------------------- per frame
@dataclasses.dataclass
class _GtObject:
    """What F and J need of one ground-truth object: its boundary, dilated boundary and pixel count."""

    radius: int
    mask: np.ndarray
    n_pixels: int
    boundary: _Boundary
    dilated: Optional[_Dilated]

    @classmethod
    def from_mask(cls, mask, radius):
        boundary = _boundary(mask)
        dilated = _dilate(boundary, mask.shape, radius) if boundary.count else None
        return cls(radius, mask, int(np.count_nonzero(mask)), boundary, dilated)

    def f_against(self, pred_boundary: _Boundary, shape) -> float:
        n_fg, n_gt = pred_boundary.count, self.boundary.count
        if n_fg == 0 or n_gt == 0:
            return _f_from_counts(n_fg, n_gt, 0, 0)
        fg_match = _count_matched(pred_boundary, self.dilated)
        gt_match = _count_matched(self.boundary, _dilate(pred_boundary, shape, self.radius))
        return _f_from_counts(n_fg, n_gt, fg_match, gt_match)


@dataclasses.dataclass
class PreparedFrame:
    """Ground-truth side of one evaluated frame, computed once (see `prepare_gt_frame`)."""

    gt_ids: np.ndarray
    n_objects: int
    objects: List[_GtObject]

    @property
    def shape(self):
        return self.gt_ids.shape


def prepare_gt_frame(gt_ids: np.ndarray, n_objects: int) -> PreparedFrame:
    """Precompute the GT boundary maps and their dilations of one frame (void already set to 0).

    Ids above `n_objects` in the GT are ignored, as in the official code.
    """
    gt_ids = np.asarray(gt_ids)
    if gt_ids.ndim != 2:
        raise ValueError(f"ground truth must be 2-D (H, W), got shape {gt_ids.shape}")
    radius = boundary_radius(gt_ids.shape)
    objects = [_GtObject.from_mask(gt_ids == k, radius) for k in range(1, n_objects + 1)]
    return PreparedFrame(gt_ids, n_objects, objects)


def frame_scores_prepared(pred_ids: np.ndarray, prepared: PreparedFrame) -> Tuple[np.ndarray, np.ndarray]:
    """(J, F) per object (float64, shape (n_objects,)) of one predicted frame against a prepared GT frame."""
    pred_ids = np.asarray(pred_ids)
    _check_same_shape(pred_ids, prepared.gt_ids)
    n_objects = prepared.n_objects
    top = int(pred_ids.max()) if pred_ids.size else 0
    if top > n_objects:
        raise ValueError(f"prediction holds id {top} but the ground truth has {n_objects} object(s)")
    if pred_ids.size and int(pred_ids.min()) < 0:
        raise ValueError("prediction holds negative ids")
    j = np.empty(n_objects, dtype=np.float64)
    f = np.empty(n_objects, dtype=np.float64)
    for index, gt_object in enumerate(prepared.objects):
        pred_mask = pred_ids == index + 1
        n_pred, n_gt = int(np.count_nonzero(pred_mask)), gt_object.n_pixels
        if n_pred == 0:
            pred_boundary, inter = _Boundary(0), 0
        else:
            inter = int(np.count_nonzero(pred_mask & gt_object.mask)) if n_gt else 0
            pred_boundary = _boundary(pred_mask)
        j[index] = _j_from_counts(inter, n_pred + n_gt - inter)
        f[index] = gt_object.f_against(pred_boundary, pred_ids.shape)
    return j, f


def frame_scores(pred_ids: np.ndarray, gt_ids: np.ndarray, n_objects: int) -> Tuple[np.ndarray, np.ndarray]:
    """(J, F) per object (float64, shape (n_objects,)) of one evaluated frame; gt with 255 -> 0 already."""
    return frame_scores_prepared(pred_ids, prepare_gt_frame(gt_ids, n_objects))


def _check_same_shape(pred, gt):
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")


# ----------------------------------------------------------------------------------------------- statistics
def decay_cut_points(n_frames: int) -> np.ndarray:
    """The 5 official cut points round_half_up(k*(T-1)/4), k = 0..4, as uint8 (official cast)."""
    return (np.round(np.linspace(1, n_frames, 5) + 1e-10) - 1).astype(np.uint8)


def object_statistics(values: np.ndarray) -> Tuple[float, float, float]:
    """(Mean, Recall (> 0.5), Decay) of one object's per-frame J or F values, in frame order."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"statistics need a non-empty 1-D vector of per-frame values, got shape {values.shape}")
    mean = np.mean(values)
    recall = np.mean(values > 0.5)
    cuts = decay_cut_points(values.size)
    first = np.mean(values[cuts[0]:cuts[1] + 1])
    last = np.mean(values[cuts[3]:cuts[4] + 1])
    return float(mean), float(recall), float(first - last)


@dataclasses.dataclass(frozen=True)
class ObjectRow:
    """Per-object statistics; `key` is `<seq>_<k>` (k 1-based)."""

    key: str
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    def as_dict(self) -> Dict[str, float]:
        return {"J-Mean": self.j_mean, "J-Recall": self.j_recall, "J-Decay": self.j_decay,
                "F-Mean": self.f_mean, "F-Recall": self.f_recall, "F-Decay": self.f_decay}


class SequenceScores:
    """Accumulates per-frame J/F of one sequence (frames in order) and gives per-object rows."""

    def __init__(self, name: str, n_objects: int):
        self.name = name
        self.n_objects = n_objects
        self._j: List[np.ndarray] = []
        self._f: List[np.ndarray] = []

    def add(self, j: np.ndarray, f: np.ndarray):
        j, f = np.asarray(j, np.float64), np.asarray(f, np.float64)
        if j.shape != (self.n_objects,) or f.shape != (self.n_objects,):
            raise ValueError(f"{self.name}: expected {self.n_objects} values per frame, got {j.shape}, {f.shape}")
        self._j.append(j)
        self._f.append(f)

    @property
    def n_frames(self) -> int:
        return len(self._j)

    def per_frame(self) -> Tuple[np.ndarray, np.ndarray]:
        """(J, F) as C-contiguous float64 arrays of shape (n_objects, T)."""
        shape = (self.n_objects, self.n_frames)
        j = np.ascontiguousarray(np.stack(self._j, axis=1)) if self._j else np.zeros(shape)
        f = np.ascontiguousarray(np.stack(self._f, axis=1)) if self._f else np.zeros(shape)
        return j, f

    def rows(self) -> List[ObjectRow]:
        if self.n_frames == 0:
            raise ValueError(f"{self.name}: no evaluated frame (a sequence needs at least 3 annotated frames)")
        j, f = self.per_frame()
        return [ObjectRow(f"{self.name}_{k + 1}", *object_statistics(j[k]), *object_statistics(f[k]))
                for k in range(self.n_objects)]


def sequence_rows(name: str, j: np.ndarray, f: np.ndarray) -> List[ObjectRow]:
    """Per-object rows from per-frame arrays of shape (n_objects, T)."""
    j, f = np.asarray(j, np.float64), np.asarray(f, np.float64)
    return [ObjectRow(f"{name}_{k + 1}", *object_statistics(j[k]), *object_statistics(f[k]))
            for k in range(j.shape[0])]


_ROW_FIELDS = {"J-Mean": "j_mean", "J-Recall": "j_recall", "J-Decay": "j_decay",
               "F-Mean": "f_mean", "F-Recall": "f_recall", "F-Decay": "f_decay"}


def global_statistics(rows) -> Dict[str, float]:
    """Official global table: plain means over objects; J&F-Mean = (J-Mean + F-Mean) / 2.

    `rows`: ObjectRow objects, or dicts with the official keys ("J-Mean", ...), in object order.
    """
    if not rows:
        raise ValueError("no object to average")
    rows = [r if isinstance(r, ObjectRow) else ObjectRow("", **{_ROW_FIELDS[k]: r[k] for k in _ROW_FIELDS})
            for r in rows]

    def mean(attribute):
        return np.mean(np.array([getattr(r, attribute) for r in rows], dtype=np.float64))

    j_mean, f_mean = mean("j_mean"), mean("f_mean")
    values = [(j_mean + f_mean) / 2.0, j_mean, mean("j_recall"), mean("j_decay"),
              f_mean, mean("f_recall"), mean("f_decay")]
    return {name: float(v) for name, v in zip(GLOBAL_COLUMNS, values)}
