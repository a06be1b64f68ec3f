"""Label propagation: frame-0 labels (labels.py), tensor kernels (kernels.py), the per-video loop (engine.py)."""
from .engine import PRECISIONS, iter_propagate, propagate_video, resolve_device
from .labels import downsample_onehot, label_ids, upsample_argmax

__all__ = ["PRECISIONS", "iter_propagate", "propagate_video", "resolve_device", "downsample_onehot",
           "label_ids", "upsample_argmax"]
