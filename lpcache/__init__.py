"""lpcache: evaluate visual backbones on DAVIS by label propagation, with a feature cache.

Python API (see `help(lpcache.<name>)` and the README's "Python API" section):
    extract(davis, cache, backbone, ...)        -> ExtractResult   features into <cache>/<backbone_id>/
    propagate(cache, davis, out, params, ...)   -> PropagateResult run folder, scores, masks
    sweep(caches, davis, out, grid, ...)        -> SweepResult     rows, best(), to_pandas()
    score(davis, results, ...)                  -> Scores          global_scores, per_object, to_pandas()
    PropagationParams, SweepGrid                                  the parameter and grid types
They are loaded on first use, so `import lpcache` stays cheap (no torch).
"""

__version__ = "0.1.0"

#: Public names -> the module defining them (imported on first access).
_LAZY = {"extract": "api", "propagate": "api", "sweep": "api", "score": "api", "Scores": "api",
         "PropagateResult": "api", "SweepResult": "api", "ExtractResult": "api",
         "PropagationParams": "config", "SweepGrid": "config"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
