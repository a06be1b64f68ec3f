"""What a label-propagation protocol is: its switches, parameters, defaults and preprocessing.

A protocol (a *family* of published evaluation code: the seed's CRW/CatMAE, DINO, VFS, DINOv3, ...) fixes
  * how frames are resized and normalised before the backbone (`input_hw`, `mean`/`std`; None = the
    backbone's own statistics),
  * the propagation rule, as switches the engine is generic over (`Switches`),
  * how frame 0's labels become grid labels and how soft maps become masks (`label_init`, `decode`),
  * its parameters with their defaults (`Protocol.params(**overrides)`), and
  * the size at which masks are written and scored (`score_size`).
Each protocol module also holds `reference(...)`: one short dense function that *is* the definition
(docs/design.md says how the engine is tested against it).
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import InputError

#: Which earlier frames are in the context of target t.
CONTEXTS = (
    "padded_first",   # seed: frame 0 repeated `video_len` times, then the previous frames (padding kept)
    "first_plus_last",  # DINO/DINOv3: frame 0 once plus the last n frames (never frame 0 again), no padding
    "first_plus_previous",  # VFS: frame 0, then frames max(0, t-n)..t-1 (frame 0 twice while t <= n)
)
#: The spatial restriction of a context frame's keys around the query cell.
WINDOWS = (
    "circle_lt",  # Euclidean grid distance < radius (seed, VFS)
    "circle_le",  # Euclidean grid distance <= radius (DINOv3)
    "square",     # Chebyshev distance <= radius (DINO's +-n neighbourhood)
)
#: How the kept candidates are weighted.
WEIGHTINGS = (
    "softmax_topk",        # top-k of cos/T jointly over all context keys, softmax over the k (seed, VFS)
    "dino_exp_threshold",  # exp(cos/T), zero below the k-th largest (ties kept), normalise to sum 1 (DINO)
    "topk_then_softmax",   # top-k of cos (ties at the k-th kept), softmax(cos/T) over them (DINOv3)
)


def context_frames(context: str, target: int, video_len: int) -> List[int]:
    """The context of `target`, slot by slot (slot 0 is always frame 0; see CONTEXTS)."""
    if context == "padded_first":
        return [0] + [max(0, target - video_len + i) for i in range(video_len)]
    if context == "first_plus_last":
        return [0] + list(range(max(1, target - video_len), target))
    if context == "first_plus_previous":
        return [0] + list(range(max(0, target - video_len), target))
    raise ValueError(f"context {context!r}: expected one of {', '.join(CONTEXTS)}")


def grid_init(label_ids: Callable, label_init: Callable) -> Callable:
    """`init_labels` built from a module's `label_ids(first, grid_hw)` and `label_init(first, grid_hw, ids)`."""
    def init_labels(first_mask, grid_hw):
        ids = label_ids(first_mask, grid_hw)
        return ids, label_init(first_mask, grid_hw, ids)
    return init_labels


def channels_first(soft):
    """A soft map (h, w, K) array as a contiguous float32 (K, h, w) tensor (what the references decode)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(soft, -1, 0), dtype=np.float32))


def annotation_output(first_mask, out_hw):
    """`first_output` of the protocols whose frame-0 output is the annotation itself."""
    import numpy as np

    return np.array(first_mask, dtype=np.uint8)


#: Weightings that keep every candidate tied with the k-th (so a setting may mix more than k candidates).
KEEPS_TIES = ("dino_exp_threshold", "topk_then_softmax")


@dataclasses.dataclass(frozen=True)
class Switches:
    """The propagation rule as independent switches (protocol-families.md, 1b)."""

    context: str
    first_frame_masked: bool
    window: str
    weighting: str

    def __post_init__(self):
        for value, allowed, name in ((self.context, CONTEXTS, "context"), (self.window, WINDOWS, "window"),
                                     (self.weighting, WEIGHTINGS, "weighting")):
            if value not in allowed:
                raise ValueError(f"{name} {value!r}: expected one of {', '.join(allowed)}")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One registered protocol; see the module docstring."""

    name: str
    summary: str
    switches: Switches
    defaults: Dict[str, float]
    input_hw: Callable[[Tuple[int, int], int], Tuple[int, int]]
    score_size: str  # "input" (masks and ground truth at the network input size) or "native"
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    published: Tuple[str, ...] = ()
    reference_code: str = ""
    #: `prepare_frame(path, patch) -> float32 (3, H, W)` network input, normalised the reference's way (None: lpcache's
    #: seed/native path, uint8 frames normalised with the backbone's mean/std).
    prepare_frame: Optional[Callable] = None
    #: Frames per forward pass at extraction (1: one frame at a time, as the reference feeds them: batch size
    #: changes the network's rounding); None: lpcache's batch size.
    frames_per_forward: Optional[int] = None
    #: False: attention computed explicitly (softmax(q k^T * scale) v, timm's `fused_attn = False`), as the
    #: reference's own ViT does; the fused kernel rounds differently (~3e-6).
    fused_attention: bool = True
    #: True: the network's (N, C, h, w) output is made contiguous before the L2 norm over channels, as the
    #: reference's features are (DINOv3's `get_intermediate_layers(reshape=True)`); timm ViTs return a
    #: channel-last view, and the norm over that axis rounds differently (1 ulp in most values).
    contiguous_features: bool = False
    #: `reference(feats, first_mask_ids, params, out_hw) -> [uint8 masks]`: the dense definition.
    reference: Optional[Callable] = None
    #: What the engine calls (the same functions `reference` uses):
    #: `init_labels(first_mask, grid_hw) -> (ids, (h, w, K) float32)`: frame 0's channel ids and grid labels;
    init_labels: Optional[Callable] = None
    #: `decode_labels(soft (h, w, K) float32 array, ids, out_hw) -> uint8 ids (H, W)`: a soft map as a mask;
    decode_labels: Optional[Callable] = None
    #: `first_output(first_mask, out_hw) -> uint8 ids (H, W)`: frame 0's written mask.
    first_output: Optional[Callable] = None
    #: Optional `decode_batch(soft (B, h, w, K) float32 tensor, ids, out_hw, max_batch) -> (B, H, W) uint8
    #: tensor on soft's device`: many settings decoded without leaving the device (the sweep on CUDA).
    decode_batch: Optional[Callable] = None

    def params(self, **overrides) -> Dict[str, float]:
        """The defaults with `overrides` applied; unknown names are an InputError."""
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise InputError(f"protocol {self.name}: unknown parameter(s) {', '.join(unknown)} "
                             f"(known: {', '.join(self.defaults)})")
        return {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}

    def setting(self, **overrides):
        """`params(**overrides)` as the engine's PropagationParams (validated)."""
        from ..config import PropagationParams

        values = self.params(**overrides)
        return PropagationParams(temperature=float(values["temperature"]), topk=int(values["topk"]),
                                 radius=float(values["radius"]), video_len=int(values["video_len"])).validate()
