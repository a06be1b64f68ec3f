"""Parameter data classes with validation and stable ids."""
import dataclasses
import math

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
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise InputError(f"temperature {self.temperature}: must be a positive number")
        if self.radius <= 0:
            raise InputError(f"radius {self.radius}: must be positive")
        if self.video_len < 1:
            raise InputError(f"video_len {self.video_len}: must be at least 1")
        if self.topk < 1:
            raise InputError(f"topk {self.topk}: must be at least 1")
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


#: Named presets (`--preset`).
PRESETS = {
    "default": PropagationParams(),
    "vits8": PropagationParams(temperature=0.5, topk=12, radius=32.0, video_len=20),
}
