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
lpcache.scoring and uses these functions, so both paths give the same numbers.
"""
import dataclasses
import functools
import math
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

#: Boundary tolerance as a fraction of the image diagonal (official `bound_th`).
BOUND_TH = 0.008
#: Column names of the official global table, in order.
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


# ----------------------------------------------------------------------------------------------- F parts
# Internally a binary mask is a uint8 array whose non-zero pixels are the object (0/1 or 0/255), so that the
# per-frame work runs in cv2's vectorised kernels; every count is an exact integer, so J and F are the official
# float64 operations on the official counts.
def boundary_radius(shape) -> int:
    """Tolerance radius in pixels: ceil(0.008 * diagonal): 8 for 480x854, 9 for 480x880."""
    return int(np.ceil(BOUND_TH * np.linalg.norm(tuple(shape[:2]))))


@functools.lru_cache(maxsize=16)
def disk_kernel(radius: int) -> np.ndarray:
    """The (2r+1)^2 uint8 disk {dx^2 + dy^2 <= r^2}: `skimage.morphology.disk`, as the official code builds it.

    Reference only (the tests compare against it): scoring dilates with `disk_rectangles`, which needs no
    scikit-image import (half a second in every worker process).
    """
    from skimage.morphology import disk

    kernel = np.ascontiguousarray(disk(radius), dtype=np.uint8)
    kernel.setflags(write=False)
    return kernel


@functools.lru_cache(maxsize=16)
def disk_rectangles(radius: int) -> Tuple[np.ndarray, ...]:
    """The disk {dx^2 + dy^2 <= r^2} as a union of centred all-ones rectangles, one per distinct row half-width.

    Row dy of the disk spans |dx| <= isqrt(r^2 - dy^2); for each such half-width w the rectangle reaches the
    largest |dy| whose row is at least that wide. A dilation by a union of structuring elements is the union
    of the dilations, and cv2 dilates by an all-ones rectangle with two separable passes: for r = 8 that is
    6 rectangles instead of one 197-pixel kernel.
    """
    half_widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    kernels = []
    for width in sorted(set(half_widths), reverse=True):
        height = max(dy for dy, w in enumerate(half_widths) if w >= width)
        kernel = np.ones((2 * height + 1, 2 * width + 1), dtype=np.uint8)
        kernel.setflags(write=False)
        kernels.append(kernel)
    return tuple(kernels)


def _dilate_disk(image: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a uint8 image by the disk of `radius`, centred, nothing added from outside the image.

    cv2.dilate's default border adds nothing, as in the official full-frame `cv2.dilate(b, disk)`.
    """
    kernels = disk_rectangles(radius)
    out = cv2.dilate(image, kernels[0])
    for kernel in kernels[1:]:
        cv2.max(out, cv2.dilate(image, kernel), dst=out)
    return out


_QUAD = np.ones((2, 2), dtype=np.uint8)


def _boundary_u8(mask: np.ndarray) -> np.ndarray:
    """Boundary of a uint8 mask: max != min over each pixel and its E, S, SE neighbours, bottom/right replicated.

    Same pixels as the official `seg ^ e | seg ^ s | seg ^ se` with its last-row/last-column rules.
    """
    options = dict(anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    return cv2.compare(cv2.dilate(mask, _QUAD, **options), cv2.erode(mask, _QUAD, **options), cv2.CMP_NE)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask: differs from its E, S or SE neighbour (borders replicated).

    The bottom-right pixel is never a boundary; the image border creates no boundary.
    """
    seg = np.asarray(mask, dtype=bool)
    if seg.ndim != 2 or seg.size == 0:
        return np.zeros(seg.shape, dtype=bool)
    return _boundary_u8(np.ascontiguousarray(seg).view(np.uint8)) != 0


Box = Tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open


def _bounding_box(mask: np.ndarray) -> Optional[Box]:
    """Bounding box of the non-zero pixels of a uint8 mask, None when it has none."""
    x, y, w, h = cv2.boundingRect(mask)
    return (y, y + h, x, x + w) if w else None


def _grow(box: Box, margin: int, shape) -> Box:
    y0, y1, x0, x1 = box
    return max(0, y0 - margin), min(shape[0], y1 + margin), max(0, x0 - margin), min(shape[1], x1 + margin)


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    return image[box[0]:box[1], box[2]:box[3]]


def _intersect(a: Box, b: Box) -> Optional[Box]:
    box = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return box if box[0] < box[1] and box[2] < box[3] else None


@dataclasses.dataclass
class _Boundary:
    """A boundary map stored as its window (y0, y1, x0, x1) and the uint8 crop inside it (0 elsewhere)."""

    count: int
    box: Optional[Box] = None
    crop: Optional[np.ndarray] = None


def _boundary(mask: np.ndarray, box: Optional[Box] = None) -> _Boundary:
    """Boundary of a uint8 mask (non-zero = object) whose pixels all lie in `box`, computed on box + 1 only.

    Outside the box the mask is 0, so edge replication and the real neighbours agree on the grown crop, and
    its boundary map equals the full-image map there (and the full map is empty elsewhere).
    """
    if box is None:
        box = _bounding_box(mask)
        if box is None:
            return _Boundary(0)
    window = _grow(box, 1, mask.shape)
    crop = _boundary_u8(_crop(mask, window))
    count = cv2.countNonZero(crop)
    return _Boundary(count, window, crop) if count else _Boundary(0)


def _dilated_window(boundary: _Boundary, radius: int, shape, within: Optional[Box] = None):
    """(window, crop): the boundary dilated by the disk on the window (box + radius) clipped to the image and,
    if given, to `within`; None when that is empty. Only boundary pixels within `radius` of the window can
    reach it, and they are all on the canvas, so the crop equals the full-frame dilation there."""
    window = _grow(boundary.box, radius, shape)
    if within is not None:
        window = _intersect(window, within)
        if window is None:
            return None
    source = _intersect(_grow(window, radius, shape), boundary.box)
    canvas = (min(window[0], source[0]), max(window[1], source[1]),
              min(window[2], source[2]), max(window[3], source[3]))
    image = np.zeros((canvas[1] - canvas[0], canvas[3] - canvas[2]), dtype=np.uint8)
    _crop(image, _shift(source, canvas))[...] = _crop(boundary.crop, _shift(source, boundary.box))
    return window, _crop(_dilate_disk(image, radius), _shift(window, canvas))


def _shift(box: Box, origin: Box) -> Box:
    """`box` in the coordinates of a crop whose window is `origin`."""
    return box[0] - origin[0], box[1] - origin[0], box[2] - origin[2], box[3] - origin[2]


def _count_matched(boundary: _Boundary, dilated) -> int:
    """#(boundary pixels inside the dilated other boundary), `dilated` as (window, crop) or None."""
    if dilated is None:
        return 0
    window, crop = dilated
    common = _intersect(boundary.box, window)
    if common is None:
        return 0
    return cv2.countNonZero(cv2.bitwise_and(_crop(boundary.crop, _shift(common, boundary.box)),
                                            _crop(crop, _shift(common, window))))


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


def _as_u8_mask(mask) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    return np.ascontiguousarray(mask).view(np.uint8)


def region_similarity(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """J of one object in one frame: |pred & gt| / |pred | gt|, 1 when both are empty."""
    pred_mask, gt_mask = np.asarray(pred_mask, bool), np.asarray(gt_mask, bool)
    _check_same_shape(pred_mask, gt_mask)
    return _j_from_counts(np.count_nonzero(pred_mask & gt_mask), np.count_nonzero(pred_mask | gt_mask))


def boundary_measure(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """F of one object in one frame (boundary precision/recall within ceil(0.008*diag) pixels)."""
    pred_mask, gt_mask = _as_u8_mask(pred_mask), _as_u8_mask(gt_mask)
    _check_same_shape(pred_mask, gt_mask)
    gt_side = _GtObject.from_mask(gt_mask, boundary_radius(gt_mask.shape))
    return gt_side.f_against(_boundary(pred_mask), gt_mask.shape)


# ----------------------------------------------------------------------------------------------- per frame
@dataclasses.dataclass
class _GtObject:
    """What F and J need of one ground-truth object: its box, mask crop, pixel count, boundary, and the boundary's
    dilation (made on first use and kept: the sweep scores many predictions against one prepared frame)."""

    radius: int
    n_pixels: int
    box: Optional[Box]
    crop: Optional[np.ndarray]
    boundary: _Boundary
    shape: Tuple[int, int]
    _dilated: object = None

    @classmethod
    def from_mask(cls, mask: np.ndarray, radius: int) -> "_GtObject":
        box = _bounding_box(mask)
        if box is None:
            return cls(radius, 0, None, None, _Boundary(0), mask.shape)
        crop = np.ascontiguousarray(_crop(mask, box))
        return cls(radius, cv2.countNonZero(crop), box, crop, _boundary(mask, box), mask.shape)

    @property
    def dilated(self):
        if self._dilated is None:
            self._dilated = _dilated_window(self.boundary, self.radius, self.shape)
        return self._dilated

    def intersection(self, pred_mask: np.ndarray) -> int:
        """#(pred & gt) counted on the GT's bounding box."""
        return cv2.countNonZero(cv2.bitwise_and(_crop(pred_mask, self.box), self.crop)) if self.n_pixels else 0

    def f_against(self, pred_boundary: _Boundary, shape) -> float:
        n_fg, n_gt = pred_boundary.count, self.boundary.count
        if n_fg == 0 or n_gt == 0:
            return _f_from_counts(n_fg, n_gt, 0, 0)
        fg_match = _count_matched(pred_boundary, self.dilated)
        # the prediction's dilation only matters on the GT boundary's window
        gt_match = _count_matched(self.boundary, _dilated_window(pred_boundary, self.radius, shape,
                                                                 within=self.boundary.box))
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


def _object_mask(ids: np.ndarray, k: int, top: int) -> np.ndarray:
    """uint8 mask (non-zero = object) of `ids == k`; `top` is ids.max() (ids of 0/1 are their own mask)."""
    if ids.dtype == np.uint8:
        return ids if top == 1 else cv2.compare(ids, k, cv2.CMP_EQ)
    return np.ascontiguousarray(ids == k).view(np.uint8)


def prepare_gt_frame(gt_ids: np.ndarray, n_objects: int) -> PreparedFrame:
    """Precompute the GT boundary maps (and, on first use, their dilations) of one frame (void already 0).

    Ids above `n_objects` in the GT are ignored, as in the official code.
    """
    gt_ids = np.asarray(gt_ids)
    if gt_ids.ndim != 2:
        raise ValueError(f"ground truth must be 2-D (H, W), got shape {gt_ids.shape}")
    if gt_ids.dtype == bool:
        gt_ids = gt_ids.view(np.uint8)
    radius = boundary_radius(gt_ids.shape)
    top = int(gt_ids.max()) if gt_ids.size else 0
    objects = [_GtObject.from_mask(_object_mask(gt_ids, k, top), radius) for k in range(1, n_objects + 1)]
    return PreparedFrame(gt_ids, n_objects, objects)


def frame_scores_prepared(pred_ids: np.ndarray, prepared: PreparedFrame) -> Tuple[np.ndarray, np.ndarray]:
    """(J, F) per object (float64, shape (n_objects,)) of one predicted frame against a prepared GT frame."""
    pred_ids = np.asarray(pred_ids)
    _check_same_shape(pred_ids, prepared.gt_ids)
    n_objects = prepared.n_objects
    top = int(pred_ids.max()) if pred_ids.size else 0
    if top > n_objects:
        raise ValueError(f"prediction holds id {top} but the ground truth has {n_objects} object(s)")
    if pred_ids.size and pred_ids.dtype.kind not in "ub" and int(pred_ids.min()) < 0:
        raise ValueError("prediction holds negative ids")
    if pred_ids.dtype == bool:
        pred_ids = pred_ids.view(np.uint8)
    j = np.empty(n_objects, dtype=np.float64)
    f = np.empty(n_objects, dtype=np.float64)
    for index, gt_object in enumerate(prepared.objects):
        if index + 1 > top:  # no pixel of this object in the prediction
            n_pred, inter, pred_boundary = 0, 0, _Boundary(0)
        else:
            pred_mask = _object_mask(pred_ids, index + 1, top)
            box = _bounding_box(pred_mask)
            n_pred = cv2.countNonZero(_crop(pred_mask, box)) if box else 0
            inter = gt_object.intersection(pred_mask) if n_pred else 0
            pred_boundary = _boundary(pred_mask, box) if box else _Boundary(0)
        j[index] = _j_from_counts(inter, n_pred + gt_object.n_pixels - inter)
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
