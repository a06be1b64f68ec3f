"""Protocol plug-ins: one module per protocol family, one registry (`register`, `get`, `names`)."""
from typing import Dict, List

from ..errors import InputError
from .base import Protocol, Switches  # noqa: F401

_REGISTRY: Dict[str, Protocol] = {}


def register(protocol: Protocol) -> Protocol:
    """Add a protocol under its name (each name once)."""
    if protocol.name in _REGISTRY:
        raise ValueError(f"protocol {protocol.name!r} registered twice")
    _REGISTRY[protocol.name] = protocol
    return protocol


def get(name: str) -> Protocol:
    """The protocol called `name`, or an InputError listing the known ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise InputError(f"protocol {name!r}: expected one of {', '.join(names())}")
    return _REGISTRY[name]


def names() -> List[str]:
    """Registered names: the built-in modules' in BUILTIN order (whatever imported them first), then the rest."""
    _load_builtin()
    builtin = [name for module in BUILTIN for name in _REGISTRY
               if getattr(_REGISTRY[name].reference, "__module__", None) == f"{__name__}.{module}"]
    return builtin + [name for name in _REGISTRY if name not in builtin]


def _load_builtin():
    """Import the built-in protocol modules (each registers itself on import)."""
    import importlib

    for module in BUILTIN:
        importlib.import_module(f"{__name__}.{module}")


#: Built-in protocol modules, in the order `lpcache protocols` lists them.
BUILTIN: List[str] = ["seed", "dino", "vfs", "dinov3"]  # seed.py registers both seed and native
