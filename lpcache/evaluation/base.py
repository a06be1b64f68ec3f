"""What a metric plug-in provides, in the torchmetrics style: a pure per-frame core and an accumulator.

    prepared = metric.prepare(gt_frame, n_labels)          ground-truth work, done once per frame (the sweep
                                                           scores many predictions against one prepared frame)
    values = metric.frame_scores(pred_frame, prepared)     a tuple of per-label arrays for one frame
    acc = metric.accumulator(sequence_name, n_labels)      acc.add(*values) per frame in order, acc.rows()
    table = metric.summarize(rows of every sequence)       {column: value}, columns in `metric.columns`
"""
import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class Metric:
    """A registered metric (see the module docstring for the call pattern)."""

    name: str
    summary: str
    prepare: Callable
    frame_scores: Callable
    accumulator: Callable
    summarize: Callable[[Sequence], Dict[str, float]]
    columns: Tuple[str, ...]

    def sequence_rows(self, name: str, gt_frames, pred_frames, n_labels: int) -> List:
        """Rows of one sequence: its evaluated GT and predicted frames (in order, same count) through the core
        and the accumulator."""
        gt_frames, pred_frames = list(gt_frames), list(pred_frames)
        if len(gt_frames) != len(pred_frames):
            raise ValueError(f"{name}: {len(pred_frames)} predicted frames for {len(gt_frames)} evaluated frames")
        accumulator = self.accumulator(name, n_labels)
        for gt, pred in zip(gt_frames, pred_frames):
            accumulator.add(*self.frame_scores(pred, self.prepare(gt, n_labels)))
        return accumulator.rows()
