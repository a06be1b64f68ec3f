"""Parameter data classes with validation and stable ids."""
import dataclasses
import math
import numbers

from .errors import InputError


@dataclasses.dataclass(frozen=True)
class PropagationParams:
    """One label-propagation setting (propagation-spec.md). Defaults are the seed's."""

    temperature: float = 0.7
    topk: int = 8
    radius: float = 18.0
    video_len: int = 20

    def validate(self, grid_hw=None):
        """Raise InputError for an out-of-range value (topk is checked against the grid when given)."""
        for name, rule in (("temperature", "must be a positive number"), ("radius", "must be positive")):
            value = getattr(self, name)
            if not (_is_real(value) and math.isfinite(value) and value > 0):
                raise InputError(f"{name} {value}: {rule} and finite")
        for name in ("video_len", "topk"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise InputError(f"{name} {value!r}: must be an integer")
            if value < 1:
                raise InputError(f"{name} {value}: must be at least 1")
        if grid_hw is not None:
            candidates = grid_hw[0] * grid_hw[1]
            if self.topk > candidates:
                raise InputError(f"topk {self.topk}: larger than the {candidates} candidates of the "
                                 f"long-term frame ({grid_hw[0]}x{grid_hw[1]} grid)")
        return self

    @property
    def id(self) -> str:
        """A stable, readable id, e.g. 't0.7_k8_r18_L20'."""
        return f"t{self.temperature:g}_k{self.topk}_r{self.radius:g}_L{self.video_len}"

    def as_dict(self):
        return dataclasses.asdict(self)


#: --precision choices: the dtype of the affinity products (top-k, softmax and labels stay float32).
PRECISIONS = ("float32", "tf32", "float16", "bfloat16")

#: Named presets (`--preset`).
PRESETS = {
    "default": PropagationParams(),
    "vits8": PropagationParams(temperature=0.5, topk=12, radius=32.0, video_len=20),
}


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    """A hyper-parameter grid: the Cartesian product of value lists (one per PropagationParams field)."""

    temperature: tuple = (PropagationParams.temperature,)
    topk: tuple = (PropagationParams.topk,)
    radius: tuple = (PropagationParams.radius,)
    video_len: tuple = (PropagationParams.video_len,)

    #: Field name -> value type, in the order settings are expanded.
    FIELDS = {"temperature": float, "topk": int, "radius": float, "video_len": int}

    @classmethod
    def from_mapping(cls, mapping, where="grid", defaults=None):
        """A grid from {field: list of values}; unknown keys, empty lists and bad values raise InputError.

        A field not in `mapping` takes `defaults[field]` (one value: a protocol's `.defaults`, e.g.
        `lpcache.protocols.get("dino").defaults`); without `defaults`, the seed's (the class defaults)."""
        unknown = sorted(set(mapping) - set(cls.FIELDS))
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(cls.FIELDS)}")
        values = {}
        for name, kind in cls.FIELDS.items():
            if name not in mapping:
                if defaults is not None:
                    values[name] = (_grid_value(defaults[name], name, kind, "protocol defaults"),)
                continue
            raw = mapping[name]
            raw = list(raw) if isinstance(raw, (list, tuple)) else [raw]
            if not raw:
                raise InputError(f"{where}: {name} has no value (empty list)")
            values[name] = tuple(_grid_value(v, name, kind, where) for v in raw)
        return cls(**values).validate(where)

    def validate(self, where="grid"):
        """Raise InputError for an empty axis or an out-of-range value; returns self."""
        for name in self.FIELDS:
            if not getattr(self, name):
                raise InputError(f"{where}: {name} has no value (empty list)")
        for params in self.settings():
            try:
                params.validate()
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
        return self

    def settings(self):
        """All settings, duplicates removed, in grid order (temperature, topk, radius, video_len)."""
        import itertools

        product = itertools.product(*(dict.fromkeys(getattr(self, n)) for n in self.FIELDS))
        return [PropagationParams(*values) for values in product]

    def __len__(self):
        return len(self.settings())

    def as_dict(self):
        return {name: list(getattr(self, name)) for name in self.FIELDS}


def read_toml(handle) -> dict:
    """Parse a TOML file opened in binary mode: the standard library's tomllib, or tomli below Python 3.11.

    Errors are ValueError (TOMLDecodeError) in both."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    return tomllib.load(handle)


def _is_real(value) -> bool:
    """A real number (int, float, numpy scalar), not a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _grid_value(value, name, kind, where):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: {name} value {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{where}: {name} value {value!r} is not a number") from None
    if kind is int:
        if not number.is_integer():
            raise InputError(f"{where}: {name} value {value!r} must be an integer")
        return int(number)
    return number
