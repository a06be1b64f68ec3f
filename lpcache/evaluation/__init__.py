"""Metric plug-ins: one module per metric (a functional per-frame core plus an accumulator), one registry
(`register`, `get`, `names`). A dataset names the metric it is scored with (`Dataset.metric`).

Built in: "davis_jf" (lpcache/evaluation/davis_jf.py), the DAVIS J&F scorer of lpcache.metrics, bit-identical
to the official code; `lpcache.scoring` (score, propagate --score, the sweep) runs the same core.

The next datasets register theirs the same way, in their own module (listed in BUILTIN), e.g.:

    # lpcache/evaluation/jhmdb_pck.py: keypoints decoded per joint channel, PCK at alpha = 0.1 and 0.2
    register(Metric(
        name="jhmdb_pck", summary="JHMDB PCK@0.1 / PCK@0.2 over 15 joints",
        prepare=prepare_gt_keypoints,   # (gt (J, 2) xy + visibility, n_labels=J) -> thresholds from the GT box
        frame_scores=keypoint_hits,     # (pred (J, 2) xy, prepared) -> (hit@0.1, hit@0.2) per joint, frame 0 skipped
        accumulator=PCKAccumulator,     # (sequence, J): .add(*hits) per frame, .rows() -> per-joint PCK
        summarize=mean_pck, columns=("PCK@0.1", "PCK@0.2")))

    # lpcache/evaluation/vip_miou.py: part ids (grey index PNG), mIoU over 20 classes
    register(Metric(
        name="vip_miou", summary="VIP part mIoU (20 classes)",
        prepare=lambda gt, n_labels: (gt, n_labels),  # nothing to precompute
        frame_scores=confusion_counts,  # (pred ids, (gt, n)) -> (n x n confusion matrix of the frame,)
        accumulator=ConfusionSum,       # sums the matrices over frames; .rows() -> per-class IoU
        summarize=nanmean_iou, columns=("mIoU",)))
"""
from typing import Dict, List

from ..errors import InputError
from .base import Metric  # noqa: F401

_REGISTRY: Dict[str, Metric] = {}

#: Built-in metric modules (each registers itself on import).
BUILTIN: List[str] = ["davis_jf"]


def register(metric: Metric) -> Metric:
    """Add a metric under its name (each name once)."""
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} registered twice")
    _REGISTRY[metric.name] = metric
    return metric


def get(name: str) -> Metric:
    """The metric called `name`, or an InputError listing the known ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise InputError(f"metric {name!r}: expected one of {', '.join(names())}")
    return _REGISTRY[name]


def names() -> List[str]:
    """Registered metric names, built-ins first."""
    _load_builtin()
    return list(_REGISTRY)


def _load_builtin():
    """Import the built-in metric modules (each registers itself on import)."""
    import importlib

    for module in BUILTIN:
        importlib.import_module(f"{__name__}.{module}")
