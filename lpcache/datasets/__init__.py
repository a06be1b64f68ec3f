"""Dataset plug-ins: one module per dataset (layout reader + label codec), one registry (`register`, `get`,
`names`). See docs/extending.md for adding one."""
from ..registry import Registry
from .base import Dataset  # noqa: F401

#: The dataset registry: every module of this package but `base` registers its dataset(s) on first lookup.
REGISTRY = Registry("dataset", __name__, first=["davis"])
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names
