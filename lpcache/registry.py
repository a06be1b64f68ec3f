"""One plug-in registry class, used by protocols, datasets and metrics (timm-style: a module registers itself).

A plug-in package holds one module per plug-in; every module of the package except `base` is imported (and so
registered) the first time a name is looked up, so adding a plug-in is adding its module: no list to edit.
`names()` lists the plug-ins of the modules named in `first` in that order, then the others by module name,
whatever order they happened to be imported in.
"""
import importlib
import pkgutil
import sys
from typing import Dict, List, Sequence

from .errors import InputError


class Registry:
    """Plug-ins of one kind ("protocol", "dataset", "metric") by name."""

    def __init__(self, kind: str, package: str, first: Sequence[str] = ()):
        self.kind = kind
        self.package = package
        self.first = list(first)
        self._items: Dict[str, object] = {}
        self._modules: Dict[str, str] = {}   # name -> the module that registered it
        self._loaded = False

    def register(self, item):
        """Add `item` under `item.name` (each name once); returns it, so a module can keep it."""
        if item.name in self._items:
            raise ValueError(f"{self.kind} {item.name!r} registered twice")
        self._items[item.name] = item
        self._modules[item.name] = sys._getframe(1).f_globals.get("__name__", "")
        return item

    def get(self, name: str):
        """The plug-in called `name`, or an InputError listing the known ones."""
        self._load()
        if name not in self._items:
            raise InputError(f"{self.kind} {name!r}: expected one of {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> List[str]:
        """Registered names: the `first` modules' in that order, then the others by module (each module's in
        registration order)."""
        self._load()
        rank = {f"{self.package}.{module}": number for number, module in enumerate(self.first)}
        order = sorted(enumerate(self._items), key=lambda item: (rank.get(self._modules[item[1]], len(rank)),
                                                                 self._modules[item[1]], item[0]))
        return [name for _, name in order]

    def modules(self) -> List[str]:
        """The plug-in modules of the package (every module but `base`)."""
        path = importlib.import_module(self.package).__path__
        return [info.name for info in pkgutil.iter_modules(path) if info.name != "base"]

    def _load(self):
        if not self._loaded:
            self._loaded = True
            for module in self.modules():
                importlib.import_module(f"{self.package}.{module}")
