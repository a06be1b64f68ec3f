"""The backbone registry: a frozen spec per backbone name, and a builder that loads its checkpoint.

A `BackboneSpec` says what the network is (architecture, feature layer, stride, channels, input
normalisation, how the grid follows from the input size) and how its published checkpoint file is laid
out (`CheckpointFormat`). `create(name, checkpoint)` builds the feature extractor and loads the file
strictly (see checkpoints.py).
"""
import dataclasses
import json
import math
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..errors import InputError
from .checkpoints import CheckpointFormat, load_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def round_grid(input_hw, patch: int) -> Tuple[int, int]:
    """Grid of the "round" rule: H / patch per axis rounded to the nearest integer (halves up), at least 1.
    The same rounding as the native protocol's frame sizes (transforms.input_hw)."""
    return tuple(max(1, math.floor(int(v) / patch + 0.5)) for v in input_hw)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is and how its checkpoint is stored.

    grid: "ceil" (conv nets: grid = ceil(H / stride)), "floor" (seed ViTs: grid = H // patch) or "round"
    (timm ViTs, which resize their input to the nearest multiple of the patch: see `round_grid`).
    arch_kwargs: extra keyword arguments of the builder (e.g. ViT depth); part of the identity.
    default_checkpoint: a callable giving a local file used when no checkpoint is given.
    """

    name: str
    architecture: str
    layer: str
    stride: int
    channels: int
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    grid: str = "ceil"
    checkpoint_format: CheckpointFormat = CheckpointFormat()
    arch_kwargs: Tuple[Tuple[str, object], ...] = ()
    description: str = ""
    default_checkpoint: Optional[Callable[[], str]] = dataclasses.field(default=None, compare=False)

    def grid_hw(self, input_hw) -> Tuple[int, int]:
        """Feature grid (h, w) for an input of size (H, W)."""
        if self.grid == "floor":
            return tuple(int(v) // self.stride for v in input_hw)
        if self.grid == "round":
            return round_grid(input_hw, self.stride)
        return tuple(math.ceil(int(v) / self.stride) for v in input_hw)

    def to_dict(self) -> Dict:
        """The identity recorded in the cache (`backbone` attribute): JSON-able, lists not tuples."""
        record = {"name": self.name, "architecture": self.architecture, "layer": self.layer,
                  "stride": self.stride, "channels": self.channels, "mean": list(self.mean),
                  "std": list(self.std), "grid": self.grid}
        if self.arch_kwargs:
            record["arch_kwargs"] = dict(self.arch_kwargs)
        return json.loads(json.dumps(record))


_BUILDERS: Dict[str, Callable[[BackboneSpec], torch.nn.Module]] = {}
_SPECS: Dict[str, BackboneSpec] = {}
_DYNAMIC: List[Tuple[str, Callable[[str], BackboneSpec]]] = []


def register(spec: BackboneSpec, builder: Callable[[BackboneSpec], torch.nn.Module]):
    """Add a backbone; `builder(spec)` returns an nn.Module mapping (B,3,H,W) to (B,C,h,w)."""
    _SPECS[spec.name] = spec
    _BUILDERS[spec.architecture] = builder
    return spec


def register_architecture(architecture: str, builder):
    _BUILDERS[architecture] = builder


def register_prefix(prefix: str, make_spec: Callable[[str], BackboneSpec]):
    """Names `<prefix><anything>` resolve through `make_spec(name)` (e.g. `timm:<model>`)."""
    _DYNAMIC.append((prefix, make_spec))


def list_backbones() -> List[BackboneSpec]:
    return [_SPECS[name] for name in sorted(_SPECS)]


def get_spec(name: str) -> BackboneSpec:
    if name in _SPECS:
        return _SPECS[name]
    for prefix, make_spec in _DYNAMIC:
        if name.startswith(prefix):
            return make_spec(name)
    raise InputError(f"backbone {name!r}: unknown (known: {', '.join(sorted(_SPECS))}, or timm:<model>)")


def build(spec: BackboneSpec) -> torch.nn.Module:
    """The network with random weights, in eval mode."""
    if spec.architecture not in _BUILDERS:
        raise InputError(f"backbone {spec.name!r}: no builder for architecture {spec.architecture!r}")
    return _BUILDERS[spec.architecture](spec).eval()


def create(name_or_spec, checkpoint: Optional[str] = None, random_init: bool = False,
           trust_checkpoint: bool = False):
    """Build a backbone and load its weights strictly. Returns (model, spec, LoadReport or None).

    Without `checkpoint`, the spec's default checkpoint is used; if there is none, `random_init=True`
    is required (tests, benchmarks) and the report is None. Checkpoints are read without executing
    code from them; `trust_checkpoint=True` allows full unpickling (recorded as `report.trusted`).
    """
    spec = name_or_spec if isinstance(name_or_spec, BackboneSpec) else get_spec(name_or_spec)
    model = build(spec)
    if checkpoint is None and spec.default_checkpoint is not None and not random_init:
        checkpoint = spec.default_checkpoint()
    if checkpoint is None:
        if not random_init:
            raise InputError(f"backbone {spec.name}: needs --checkpoint FILE ({spec.checkpoint_format.describe()})")
        return model, spec, None
    report = load_checkpoint(model, checkpoint, spec.checkpoint_format, trust_checkpoint=trust_checkpoint)
    return model.eval(), spec, report
