"""Metric plug-ins: one module per metric (a functional per-frame core plus an accumulator), one registry
(`register`, `get`, `names`). A dataset names the metric it is scored with (`Dataset.metric`).

Built in: "davis_jf" (lpcache/evaluation/davis_jf.py), the DAVIS J&F scorer of lpcache.metrics, bit-identical
to the official code; `lpcache.scoring` (score, propagate --score, the sweep) runs the same core.

The next datasets register theirs the same way, in their own module (found by the registry), e.g.:

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
from ..registry import Registry
from .base import Metric  # noqa: F401

#: The metric registry: every module of this package but `base` registers its metric(s) on first lookup.
REGISTRY = Registry("metric", __name__, first=["davis_jf"])
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names
