"""DAVIS J&F (region similarity and boundary accuracy), the existing lpcache.metrics scorer.

Core: `metrics.prepare_gt_frame(gt_ids, n_objects)` and `metrics.frame_scores_prepared(pred_ids, prepared)`
-> (J, F) per object; accumulator: `metrics.SequenceScores(name, n_objects)` -> per-object rows; summary:
`metrics.global_statistics(rows)` -> the official global table. Ground truth has void (255) set to 0 already.
"""
from .. import metrics
from . import register
from .base import Metric

DAVIS_JF = register(Metric(
    name="davis_jf",
    summary="DAVIS J&F: region IoU (J) and boundary F-measure (F) per object, bit-identical to the official code",
    prepare=metrics.prepare_gt_frame,
    frame_scores=metrics.frame_scores_prepared,
    accumulator=metrics.SequenceScores,
    summarize=metrics.global_statistics,
    columns=metrics.GLOBAL_COLUMNS,
))
