"""Strict checkpoint loading: find the state dict in the file, strip its prefix, and fail loudly.

The seed's `partial_load` silently loads whatever matches (possibly nothing). Here every tensor the
network needs must be in the file with the right shape, or an InputError names the missing keys and
shape mismatches. Keys the network does not use (heads, projectors, layer4) are counted and logged.

Reading never executes code from the file. `.safetensors` files are read by safetensors (no pickle).
Every other file is read by `torch.load(weights_only=True)`, which besides tensors and containers
allows only `SAFE_GLOBALS`: the harmless objects that published training checkpoints hold next to the
weights (`argparse.Namespace` args in MAE/DINO files; numpy scalars, i.e. the numpy scalar
reconstructor, `numpy.dtype` and its numeric dtype classes, in MoCo/SimSiam/DINO files that store e.g.
a numpy `best_acc`). A file needing anything else is refused with one line naming the global. Full
unpickling (which can run arbitrary code) happens only with `trust_checkpoint=True`
(`--trust-checkpoint`); it is logged as a warning and recorded in `LoadReport.trusted`.
"""
import argparse
import dataclasses
import io
import logging
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np
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
    trusted: bool = False  # True: read with full unpickling (trust_checkpoint), code in the file could run

    def summary(self) -> str:
        text = (f"{self.path}: loaded {self.matched}/{self.total} tensors"
                f" (container {self.container or 'none'}, prefix {self.prefix!r}, sha256 {self.sha256[:12]})")
        if self.unused:
            text += f"; {len(self.unused)} file tensors unused (e.g. {', '.join(self.unused[:3])})"
        if self.trusted:
            text += "; read with full unpickling (trusted)"
        return text


def _numpy_globals() -> list:
    """numpy's scalar reconstructor (under its numpy 1 and numpy 2 module names), np.dtype, numeric dtype classes."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    if torch.torch_version.TorchVersion(torch.__version__) >= (2, 6):  # (object, name) entries: torch 2.6
        found = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    else:  # torch 2.5: only the name of this numpy's scalar function
        found = [scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: dtype instances are of these classes
    if dtypes is not None:
        numeric = (np.bool_, np.number)
        found += sorted({cls for cls in vars(dtypes).values() if isinstance(cls, type) and issubclass(cls, np.dtype)
                         and getattr(cls, "type", None) is not None and issubclass(cls.type, numeric)},
                        key=lambda cls: cls.__name__)
    return found


SAFE_GLOBALS = [argparse.Namespace] + _numpy_globals()
SAFETENSORS_SUFFIX = ".safetensors"


def read_checkpoint(path, trust_checkpoint: bool = False) -> object:
    """The object stored in a checkpoint file, read on CPU without executing code from it.

    `.safetensors`: safetensors' own loader. Otherwise torch.load(weights_only=True) with SAFE_GLOBALS
    allowed; anything else is refused with an InputError naming the global, unless `trust_checkpoint`
    (full unpickling, logged as a warning).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: checkpoint file not found")
    if path.endswith(SAFETENSORS_SUFFIX):
        return _read_safetensors(path)
    if trust_checkpoint:
        log.warning("%s: loading with full unpickling (--trust-checkpoint): code in this file can run", path)
        return _torch_load(path, weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_globals(path, exc)
        if refused:
            raise InputError(f"{path}: refused to unpickle {refused} (checkpoints are read weights-only; "
                             f"pass --trust-checkpoint to fully unpickle a file you trust)") from None
        raise InputError(f"{path}: not a readable torch checkpoint (weights-only unpickler: {_inner_error(exc)}; "
                         f"--trust-checkpoint fully unpickles a file you trust)") from None


def _torch_load(path, weights_only: bool):
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols its weights-only reader may lack
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if weights_only:
            raise
        raise InputError(f"{path}: not a readable torch checkpoint (UnpicklingError: {_inner_error(exc)})") from None
    except Exception as exc:  # torch raises RuntimeError/EOFError/ValueError/... for damaged files
        raise InputError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                         f"{_one_line(exc)})") from None


def _one_line(exc, limit=300) -> str:
    return " ".join(str(exc).split())[:limit]


def _inner_error(exc) -> str:
    """The specific part of torch's long weights-only message (e.g. 'Unsupported operand 149')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation",
                                                                "Please file an issue", "(1)", "(2)"))]
    text = (specific or lines or [type(exc).__name__])[0]
    return " ".join(text.replace("WeightsUnpickler error:", "").split())[:200] or type(exc).__name__


def _read_safetensors(path) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None


def _allowed_names() -> set:
    names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    default = getattr(torch._weights_only_unpickler, "_get_allowed_globals", None)  # torch's own allow-list
    return names | (set(default()) if default else set())


def _refused_globals(path, exc) -> str:
    """The globals the weights-only unpickler refuses in this file, as 'GLOBAL module.name, ...': the one
    torch's message names, then others found by disassembling the file's pickles (nothing is executed).
    '' when no global is to blame (a damaged file)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    named = [found.group(1)] if found else []
    allowed = _allowed_names()
    others = sorted(name for name in _pickle_globals(path) if name not in allowed and name not in named)
    return ", ".join(f"GLOBAL {name}" for name in (named + others)[:4])


def _pickle_globals(path) -> set:
    """Names of the globals a checkpoint's pickles import, found by disassembly (nothing is executed)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return set().union(set(), *(_scan_pickles(io.BytesIO(archive.read(n))) for n in archive.namelist()
                                            if n.endswith(".pkl")))
        with open(path, "rb") as handle:
            return _scan_pickles(handle)
    except (OSError, zipfile.BadZipFile):
        return set()


def _scan_pickles(stream, max_pickles=5) -> set:
    """GLOBAL / STACK_GLOBAL names in the pickles at the start of `stream` (a legacy torch file holds
    five, then raw tensor bytes; a pickle.dump file one)."""
    found = set()
    for _ in range(max_pickles):
        strings, memo, last = [], {}, None
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                name = opcode.name
                if name == "GLOBAL":
                    found.add(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.add(f"{strings[-2]}.{strings[-1]}")
                if name == "MEMOIZE":
                    memo[len(memo)] = last
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = last
                else:
                    last = memo.get(arg) if name in ("GET", "BINGET", "LONG_BINGET") else arg
                    if isinstance(last, str) and ("UNICODE" in name or "STRING" in name or "GET" in name):
                        strings.append(last)
        except Exception:  # damaged, or no pickle after this point: report what was found
            break
    return {name for name in found if re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", name)}


def _find_state_dict(obj, fmt: CheckpointFormat, path) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """The state dict in a checkpoint and its container key. A .safetensors file is always a plain dict
    (the format has no nesting), so it is accepted as one whatever the format's `plain_ok`."""
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a dict in the checkpoint, found {type(obj).__name__}")
    for key in fmt.containers:
        if key in obj and isinstance(obj[key], dict):
            return obj[key], key
    plain_ok = fmt.plain_ok or os.fspath(path).endswith(SAFETENSORS_SUFFIX)
    if plain_ok and any(torch.is_tensor(v) for v in obj.values()):
        return obj, None
    found = ", ".join(sorted(map(str, obj))[:8])
    raise InputError(f"{path}: not a {fmt.describe()} checkpoint (top-level keys: {found})")


def _choose_prefix(keys, wanted, prefixes) -> str:
    def hits(prefix):
        return sum(1 for k in keys if k.startswith(prefix) and k[len(prefix):] in wanted)
    return max(prefixes, key=hits)


def _is_optional(key) -> bool:
    return key.endswith(OPTIONAL_SUFFIXES)


def load_checkpoint(module: torch.nn.Module, path, fmt: CheckpointFormat,
                    trust_checkpoint: bool = False) -> LoadReport:
    """Load `path` into `module.weights_module` (or `module`) strictly; return a LoadReport.

    Raises InputError naming missing keys or shape mismatches, or a global the file needs that is not
    in SAFE_GLOBALS (unless `trust_checkpoint`: full unpickling, recorded as `report.trusted`).
    """
    path = os.fspath(path)
    target = getattr(module, "weights_module", module)
    trusted = bool(trust_checkpoint) and not path.endswith(SAFETENSORS_SUFFIX)
    state = _find_state_dict(read_checkpoint(path, trust_checkpoint=trusted), fmt, path)
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
                        matched=len(loadable), total=len(wanted), unused=unused, trusted=trusted)
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
