"""lpcache: evaluate visual backbones on DAVIS by label propagation, with a feature cache."""

__version__ = "0.1.0"
