"""Dataset plug-ins: one module per dataset (layout reader + label codec), one registry (`register`, `get`,
`names`). See docs/extending.md for adding one."""
from typing import Dict, List

from ..errors import InputError
from .base import Dataset  # noqa: F401

_REGISTRY: Dict[str, Dataset] = {}

#: Built-in dataset modules (each registers itself on import).
BUILTIN: List[str] = ["davis"]


def register(dataset: Dataset) -> Dataset:
    """Add a dataset under its name (each name once)."""
    if dataset.name in _REGISTRY:
        raise ValueError(f"dataset {dataset.name!r} registered twice")
    _REGISTRY[dataset.name] = dataset
    return dataset


def get(name: str) -> Dataset:
    """The dataset called `name`, or an InputError listing the known ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise InputError(f"dataset {name!r}: expected one of {', '.join(names())}")
    return _REGISTRY[name]


def names() -> List[str]:
    """Registered dataset names, built-ins first."""
    _load_builtin()
    return list(_REGISTRY)


def _load_builtin():
    """Import the built-in dataset modules (each registers itself on import)."""
    import importlib

    for module in BUILTIN:
        importlib.import_module(f"{__name__}.{module}")
