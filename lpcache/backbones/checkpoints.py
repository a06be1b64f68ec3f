"""Strict checkpoint loading: find the state dict in the file, strip its prefix, and fail loudly.

The seed's `partial_load` silently loads whatever matches (possibly nothing). Here every tensor the
network needs must be in the file with the right shape, or an InputError names the missing keys and
shape mismatches. Keys the network does not use (heads, projectors, layer4) are counted and logged.
"""
import dataclasses
import logging
import os
import pickle
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import InputError
from ..provenance import sha256_file

log = logging.getLogger(__name__)
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


class WrappedNet(nn.Module):
    """A feature extractor around a timm network `net`; checkpoints load into `net` (weights_module)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    @property
    def weights_module(self):
        return self.net


@dataclasses.dataclass(frozen=True)
class CheckpointFormat:
    """How a published checkpoint file stores the weights.

    containers: keys under which the state dict may sit, tried in order (e.g. "state_dict", "model").
    plain_ok: the file may also be the state dict itself.
    prefixes: candidate key prefixes to strip (the one matching most network keys wins; "" = none).
    positional: map the file's tensors in order onto the network's (for renamed but identical nets).
    """

    kind: str = "state dict"
    containers: Tuple[str, ...] = ()
    plain_ok: bool = True
    prefixes: Tuple[str, ...] = ("",)
    positional: bool = False

    def describe(self) -> str:
        where = " or ".join([f"'{c}' entry" for c in self.containers] + (["plain dict"] if self.plain_ok else []))
        prefixes = ", ".join(repr(p) for p in self.prefixes if p) or "no prefix"
        return f"{self.kind}: {where}, key prefix {prefixes}"


@dataclasses.dataclass
class LoadReport:
    """What a load did: the file's sha256, how many network tensors matched, what was left unused."""

    path: str
    sha256: str
    container: Optional[str]
    prefix: str
    matched: int
    total: int
    unused: List[str]

    def summary(self) -> str:
        text = (f"{self.path}: loaded {self.matched}/{self.total} tensors"
                f" (container {self.container or 'none'}, prefix {self.prefix!r}, sha256 {self.sha256[:12]})")
        if self.unused:
            text += f"; {len(self.unused)} file tensors unused (e.g. {', '.join(self.unused[:3])})"
        return text


def read_checkpoint(path) -> object:
    """torch.load on CPU; weights-only first, full unpickling for files that hold other objects."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.warning("%s: holds non-tensor objects; loading it with full unpickling", path)
    except Exception as exc:  # torch raises RuntimeError/EOFError/ValueError for damaged files
        raise InputError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None


def _find_state_dict(obj, fmt: CheckpointFormat, path) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a dict in the checkpoint, found {type(obj).__name__}")
    for key in fmt.containers:
        if key in obj and isinstance(obj[key], dict):
            return obj[key], key
    if fmt.plain_ok and any(torch.is_tensor(v) for v in obj.values()):
        return obj, None
    found = ", ".join(sorted(map(str, obj))[:8])
    raise InputError(f"{path}: not a {fmt.describe()} checkpoint (top-level keys: {found})")


def _choose_prefix(keys, wanted, prefixes) -> str:
    def hits(prefix):
        return sum(1 for k in keys if k.startswith(prefix) and k[len(prefix):] in wanted)
    return max(prefixes, key=hits)


def _is_optional(key) -> bool:
    return key.endswith(OPTIONAL_SUFFIXES)


def load_checkpoint(module: torch.nn.Module, path, fmt: CheckpointFormat) -> LoadReport:
    """Load `path` into `module.weights_module` (or `module`) strictly; return a LoadReport.

    Raises InputError naming missing keys or shape mismatches.
    """
    path = os.fspath(path)
    target = getattr(module, "weights_module", module)
    state = _find_state_dict(read_checkpoint(path), fmt, path)
    file_state, container = state
    file_state = {k: v for k, v in file_state.items() if torch.is_tensor(v)}
    wanted = target.state_dict()
    if fmt.positional:
        mapped, unused, prefix = _map_positional(file_state, wanted, path)
    else:
        prefix = _choose_prefix(file_state, wanted, fmt.prefixes)
        mapped = {k[len(prefix):]: v for k, v in file_state.items() if k.startswith(prefix)}
        unused = [k for k in file_state if not k.startswith(prefix) or k[len(prefix):] not in wanted]
    missing = [k for k in wanted if k not in mapped and not _is_optional(k)]
    mismatched = [f"{k} (file {tuple(mapped[k].shape)}, network {tuple(wanted[k].shape)})"
                  for k in wanted if k in mapped and mapped[k].shape != wanted[k].shape]
    if missing or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {len(wanted)} network tensors missing: "
                            f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if mismatched:
            problems.append(f"shape mismatch: {', '.join(mismatched[:4])}{' ...' if len(mismatched) > 4 else ''}")
        sample = ", ".join(list(file_state)[:4])
        raise InputError(f"{path}: not a {fmt.kind} checkpoint: {'; '.join(problems)} "
                         f"(file keys look like: {sample})")
    loadable = {k: mapped[k] for k in wanted if k in mapped}
    result = target.load_state_dict(loadable, strict=False)
    still_missing = [k for k in result.missing_keys if not _is_optional(k)]
    if still_missing:  # cannot happen after the checks above; kept as a guard
        raise InputError(f"{path}: tensors not loaded: {', '.join(still_missing[:6])}")
    report = LoadReport(path=path, sha256=sha256_file(path), container=container, prefix=prefix,
                        matched=len(loadable), total=len(wanted), unused=unused)
    log.info(report.summary())
    return report


def _map_positional(file_state, wanted, path):
    file_keys, net_keys = list(file_state), list(wanted)
    if len(file_keys) != len(net_keys):
        raise InputError(f"{path}: {len(file_keys)} tensors in the file, the network has {len(net_keys)} "
                         f"(positional mapping needs the same list)")
    mapped = {}
    for file_key, net_key in zip(file_keys, net_keys):
        if file_state[file_key].shape != wanted[net_key].shape:
            raise InputError(f"{path}: shape mismatch at {file_key} -> {net_key}: file "
                             f"{tuple(file_state[file_key].shape)}, network {tuple(wanted[net_key].shape)}")
        mapped[net_key] = file_state[file_key]
    return mapped, [], ""
