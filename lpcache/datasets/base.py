"""What a dataset plug-in provides: where its sequences are, and how its label files become ids and back.

The engine never sees a dataset: it gets features and the soft label channels a protocol builds from the ids
`read_labels` returns; a dataset's predictions are written with `write_labels` and scored by the metric
registered under `metric` (lpcache.evaluation).
"""
import dataclasses
from typing import Callable, List, Optional

import numpy as np

from ..davis import Sequence


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registered dataset.

    sequences(root, set_name="val", names=None) -> [Sequence]   frame and annotation paths, sorted, per video
    read_labels(path) -> labels (ids: a 2-D integer array)       the label codec, file -> labels
    write_labels(path, labels)                                   the label codec, labels -> file (atomic)
    metric                                                       name of its lpcache.evaluation metric
    init_labels(first_labels, grid_hw) -> (ids, (h, w, K) float32 soft labels)
    decode_labels(soft (h, w, K), ids, out_hw) -> prediction
    first_output(first_labels, out_hw) -> frame 0's prediction
        These three only for labels that are not masks of ids (JHMDB keypoints); None: the protocol's. The
        caller hands the engine `dataclasses.replace(protocol, init_labels=..., decode_labels=...,
        first_output=...)`, so the engine itself never sees the dataset.
    """

    name: str
    summary: str
    sequences: Callable[..., List[Sequence]]
    read_labels: Callable[[str], np.ndarray]
    write_labels: Callable[[str, np.ndarray], None]
    metric: str
    init_labels: Optional[Callable] = None
    decode_labels: Optional[Callable] = None
    first_output: Optional[Callable] = None
