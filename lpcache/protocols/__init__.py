"""Protocol plug-ins: one module per protocol family, one registry (`register`, `get`, `names`)."""
from ..registry import Registry
from .base import Protocol, Switches  # noqa: F401

#: The protocol registry: every module of this package but `base` registers its protocol(s) on first lookup.
REGISTRY = Registry("protocol", __name__, first=["seed", "dino", "vfs", "dinov3"])
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names
