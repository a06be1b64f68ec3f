"""Decoding many soft maps at once on any torch device: bilinear up-sampling and the first-maximum argmax.

    upsample_argmax_batch(soft, names, out_hw, max_batch=None) -> (B, H, W) uint8 tensor on soft's device

The batched counterpart of `labels.upsample_argmax` (cv2 INTER_LINEAR, then the first maximal channel's id),
for the B settings of one frame, without leaving the device.

Agreement with the cv2 path. The up-sampling is written out as cv2's own float32 arithmetic (opencv's generic
`resize` for float images): cv2's source coordinates `fx = float((dx + 0.5) * scale - 0.5)` with
`scale = 1 / (out / in)` in float64, columns clamped at both ends (weight 0 on the missing neighbour), rows
clipped without changing their weights; a horizontal pass `a * (1 - fx) + b * fx`, then a vertical one, each
product and each sum rounded to float32 on its own (separate tensor operations, so no fused multiply-add on
any device). With OpenCV's IPP acceleration switched off (`cv2.ipp.setUseIPP(False)`) this is cv2's result
to the bit (tested). With IPP on (the default of opencv-python wheels), cv2 uses IPP's kernel for float32,
whose rounding differs in the last bit at about a third of the values (and may depend on the CPU), so a mask
pixel can flip only where two channels are within an ulp or so. Measured against `labels.upsample_argmax`
with IPP on (tests/test_device_decode.py, >= 0.9999 asserted): all pixels equal on 30 blurred and perturbed
one-hot maps of real DAVIS masks (12.7 million pixels), 0.99999993 on 64 uniform random 4-channel maps (2 of
27 million pixels differ). Adversarial maps whose two best channels differ by one ulp everywhere agree at
only 83% with IPP's rounding (100% with IPP off). `F.interpolate(mode="bilinear", align_corners=False)` has
the same half-pixel geometry, but it also zeroes the weights of clipped rows and rounds in another order
(with fused multiply-adds on CUDA): a third of the values differ from cv2's in the last bit, hence this
explicit form.

Memory: each channel is up-sampled and compared in turn, so a setting holds about 3 float32 planes of the
output size (the best value so far, the channel's two row-interpolated halves), one bool and one uint8 plane
(14 bytes per output pixel whatever the number of channels), plus its horizontal pass (h, W, K) float32 and
that pass's temporary. Measured on the CPU at 480x880 (peak resident memory of 64 settings of 60x110x4 maps):
9.4 MB per setting, so 64 settings take about 600 MB. `max_batch` bounds the settings processed together.
"""
import functools
from typing import Tuple

import numpy as np
import torch


@functools.lru_cache(maxsize=32)
def _linear_taps(n_in: int, n_out: int, clamp: bool):
    """(first index, second index, first weight, second weight) of cv2 INTER_LINEAR along one axis.

    cv2 computes the coordinate in float64 and the weights in float32; `clamp` is its column rule (weights
    (1, 0) outside the source), otherwise the rows' rule (indices clipped, weights kept).
    """
    scale = 1.0 / (n_out / n_in)
    coord = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(coord).astype(np.int64)
    frac = coord - first.astype(np.float32)
    if clamp:
        outside = (first < 0) | (first >= n_in - 1)
        frac[outside] = 0
        first = np.clip(first, 0, n_in - 1)
    second = np.clip(first + 1, 0, n_in - 1)
    first = np.clip(first, 0, n_in - 1)
    return first, second, np.float32(1) - frac, frac


def _taps_on(n_in, n_out, clamp, device):
    """`_linear_taps` as tensors on `device`."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in _linear_taps(n_in, n_out, clamp))


def _horizontal(soft: torch.Tensor, width: int) -> torch.Tensor:
    """(B, K, h, w) -> (B, K, h, width): cv2's horizontal pass."""
    first, second, w_first, w_second = _taps_on(soft.shape[-1], width, True, soft.device)
    left = soft.index_select(-1, first).mul_(w_first)
    return left.add_(soft.index_select(-1, second).mul_(w_second))


def _vertical(rows: torch.Tensor, taps) -> torch.Tensor:
    """(..., h, W) horizontally interpolated planes -> (..., H, W): cv2's vertical pass with `taps` (rows' rule)."""
    first, second, w_first, w_second = taps
    top = rows.index_select(-2, first).mul_(w_first[:, None])
    return top.add_(rows.index_select(-2, second).mul_(w_second[:, None]))


def _argmax_rows(rows: torch.Tensor, names, height: int) -> torch.Tensor:
    """(B, K, h, W) horizontally interpolated maps -> (B, height, W) uint8 names of the first maximal channel,
    each channel's vertical pass computed just before it is compared (first maximum: only a strictly greater
    value replaces the best so far, as `labels.argmax_ids`)."""
    taps = _taps_on(rows.shape[-2], height, False, rows.device)
    best = _vertical(rows[:, 0], taps)
    out = torch.full(best.shape, names[0], dtype=torch.uint8, device=rows.device)
    for channel in range(1, rows.shape[1]):
        values = _vertical(rows[:, channel], taps)
        better = values > best
        torch.where(better, values, best, out=best)
        out.masked_fill_(better, names[channel])
    return out


def _check_soft(soft: torch.Tensor, out_hw) -> Tuple[int, int]:
    """(H, W) of an up-sampling of `soft` (B, h, w, K) float32 to out_hw; ValueError when it is not one."""
    if soft.ndim != 4 or soft.dtype != torch.float32:
        raise ValueError(f"soft maps must be a (B, h, w, K) float32 tensor, got {tuple(soft.shape)} {soft.dtype}")
    height, width = (int(v) for v in out_hw)
    if height < soft.shape[1] or width < soft.shape[2]:
        raise ValueError(f"output size {height}x{width} is smaller than the grid {soft.shape[1]}x{soft.shape[2]} "
                         "(only up-sampling follows cv2 here)")
    return height, width


def upsample_linear(soft: torch.Tensor, out_hw) -> torch.Tensor:
    """Soft maps (B, h, w, K) float32 -> (B, H, W, K) float32 on soft's device: cv2 INTER_LINEAR up-sampling
    (cv2's value to the bit with IPP off; module docstring). All channels at once: 4 bytes per output pixel and
    channel, plus as much again while a channel is computed."""
    height, width = _check_soft(soft, out_hw)
    rows = _horizontal(soft.permute(0, 3, 1, 2), width)
    return _vertical(rows, _taps_on(rows.shape[-2], height, False, rows.device)).permute(0, 2, 3, 1)


def upsample_argmax_batch(soft: torch.Tensor, names, out_hw, max_batch=None) -> torch.Tensor:
    """Soft maps (B, h, w, K) float32 -> (B, H, W) uint8 ids on soft's device: cv2 INTER_LINEAR up-sampling to
    out_hw, then the first maximal channel's entry of `names` (K ids: pass `labels.final_ids(ids)` to write void
    as 0, as `labels.upsample_argmax` does). At most `max_batch` maps are processed together (None: all)."""
    height, width = _check_soft(soft, out_hw)
    names = [int(n) for n in (names.tolist() if torch.is_tensor(names) else np.asarray(names).tolist())]
    if len(names) != soft.shape[-1] or not all(0 <= n <= 255 for n in names):
        raise ValueError(f"names must hold {soft.shape[-1]} uint8 ids, got {names}")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    out = torch.empty((soft.shape[0], height, width), dtype=torch.uint8, device=soft.device)
    step = max_batch or max(soft.shape[0], 1)
    for start in range(0, soft.shape[0], step):
        chunk = soft[start:start + step].permute(0, 3, 1, 2)
        out[start:start + step] = _argmax_rows(_horizontal(chunk, width), names, height)
    return out
