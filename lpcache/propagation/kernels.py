"""Pure tensor functions of the propagation: tile plans, windowed scores, top-k lists, label mixing.

Every function takes its tensors (and, where it creates some, a `device`) and works on CPU or CUDA.
Vocabulary: the feature grid is h x w (hw positions); a *query tile* is a rectangle of target positions;
its *key window* is the rectangle of source positions any of its queries can reach within the largest
radius; a *column block* is the key-window column range shared by all tiles of one tile column, so a
source frame stored per column block as a contiguous (h, kw, C) array gives every window as a view.
"""
import dataclasses
import math
from typing import Dict, List, Sequence, Tuple

import torch

NEG_INF = float("-inf")


def reach(radius: float) -> int:
    """Largest |dy| (or |dx|) with dy^2 < radius^2: the half-width of a radius window."""
    return max(0, int(math.ceil(radius)) - 1)


@dataclasses.dataclass
class Tile:
    """One query tile and its key window (grid coordinates, end exclusive)."""

    rows: Tuple[int, int]
    cols: Tuple[int, int]
    key_rows: Tuple[int, int]
    block: int                      # column block index (key columns = TilePlan.blocks[block])
    query_index: torch.Tensor       # (M,) flat positions of the queries, row-major
    key_index: torch.Tensor         # (N,) flat positions of the window's keys, row-major
    bias: Dict[float, torch.Tensor]  # radius -> (M, N) additive mask: 0 inside, -inf outside


@dataclasses.dataclass
class TilePlan:
    grid_hw: Tuple[int, int]
    radii: Tuple[float, ...]        # descending
    blocks: List[Tuple[int, int]]   # key column ranges per column block
    tiles: List[Tile]

    @property
    def position_order(self) -> torch.Tensor:
        """Indices that put per-tile results (tiles concatenated) back in row-major position order."""
        return torch.argsort(torch.cat([t.query_index for t in self.tiles]))

    @property
    def computed_products(self) -> int:
        """Query x key products one source frame costs (for FLOP counts)."""
        return sum(t.query_index.numel() * t.key_index.numel() for t in self.tiles)


def plan_tiles(grid_hw, radii: Sequence[float], tile_hw=None, device="cpu", dtype=torch.float32) -> TilePlan:
    """Split the grid into query tiles with key windows for the largest radius and per-radius masks."""
    height, width = grid_hw
    radii = tuple(sorted({float(r) for r in radii}, reverse=True))
    half = reach(radii[0])
    tile_h, tile_w = tile_hw or choose_tile(grid_hw, radii[0])
    blocks, tiles = [], []
    for x0 in range(0, width, tile_w):
        x1 = min(width, x0 + tile_w)
        blocks.append((max(0, x0 - half), min(width, x1 + half)))
    for y0 in range(0, height, tile_h):
        y1 = min(height, y0 + tile_h)
        ky0, ky1 = max(0, y0 - half), min(height, y1 + half)
        for block, x0 in enumerate(range(0, width, tile_w)):
            x1 = min(width, x0 + tile_w)
            kx0, kx1 = blocks[block]
            qy, qx = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
            ky, kx = torch.meshgrid(torch.arange(ky0, ky1), torch.arange(kx0, kx1), indexing="ij")
            qy, qx, ky, kx = (v.reshape(-1) for v in (qy, qx, ky, kx))
            dist2 = (qy[:, None] - ky[None, :]) ** 2 + (qx[:, None] - kx[None, :]) ** 2
            bias = {}
            for radius in radii:
                outside = dist2 >= radius * radius
                bias[radius] = torch.zeros(outside.shape, dtype=dtype).masked_fill_(outside, NEG_INF).to(device)
            tiles.append(Tile((y0, y1), (x0, x1), (ky0, ky1), block,
                              (qy * width + qx).to(device), (ky * width + kx).to(device), bias))
    return TilePlan((height, width), radii, blocks, tiles)


def choose_tile(grid_hw, radius, channels=256, gemm_gflops=150.0, pass_ns=2.0) -> Tuple[int, int]:
    """A query-tile shape balancing wasted products against GEMM size.

    Cost model per computed product: GEMM time 2*C / rate, inflated by (1 + 24 / queries per tile) for small
    GEMMs, plus `pass_ns` for the mask and top-k passes. Candidates: a few shapes and the whole grid.
    """
    per_product = 2.0 * channels / gemm_gflops
    best = None
    for tile_h, tile_w in ((4, 8), (8, 8), (8, 16), (6, 22), (16, 16), (16, 32), grid_hw):
        tile_h, tile_w = min(tile_h, grid_hw[0]), min(tile_w, grid_hw[1])
        cost = sum(products * (per_product * (1 + 24.0 / queries) + pass_ns) + 2e3
                   for queries, products in _tile_sizes(grid_hw, radius, (tile_h, tile_w)))
        if best is None or cost < best[0]:
            best = (cost, (tile_h, tile_w))
    return best[1]


def window_products(grid_hw, radius, tile_hw) -> int:
    """Query x key products per source frame for a tile shape (without building the plan)."""
    return sum(products for _, products in _tile_sizes(grid_hw, radius, tile_hw))


def _tile_sizes(grid_hw, radius, tile_hw):
    """(queries, queries x window keys) of every tile."""
    (height, width), (tile_h, tile_w) = grid_hw, tile_hw
    half = reach(radius)
    for y0 in range(0, height, tile_h):
        rows = min(height, y0 + tile_h) - y0
        key_rows = min(height, y0 + rows + half) - max(0, y0 - half)
        for x0 in range(0, width, tile_w):
            cols = min(width, x0 + tile_w) - x0
            key_cols = min(width, x0 + cols + half) - max(0, x0 - half)
            yield rows * cols, rows * cols * key_rows * key_cols


def column_blocks(frame: torch.Tensor, plan: TilePlan) -> List[torch.Tensor]:
    """A frame (h, w, C) as contiguous (h, kw, C) copies, one per column block."""
    return [frame[:, x0:x1, :].contiguous() for x0, x1 in plan.blocks]


def topk_padded(scores: torch.Tensor, k: int):
    """torch.topk over the last dim (sorted, descending); padded with -inf / index 0 when k > size."""
    size = scores.shape[-1]
    if k <= size:
        return torch.topk(scores, k, dim=-1)
    values, index = torch.topk(scores, size, dim=-1)
    pad = list(scores.shape[:-1]) + [k - size]
    values = torch.cat([values, values.new_full(pad, NEG_INF)], dim=-1)
    index = torch.cat([index, index.new_zeros(pad)], dim=-1)
    return values, index


def window_scores(queries: torch.Tensor, keys: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Raw scores of queries (M, C) against n windows of keys (n, N, C), plus a (M, N) bias: (n, M, N)."""
    count = keys.shape[0]
    return torch.baddbmm(bias.expand(count, *bias.shape), queries.expand(count, *queries.shape),
                         keys.transpose(1, 2))


def merge_topk(value_lists: torch.Tensor, label_index: torch.Tensor, k: int):
    """Top-k of concatenated per-slot lists (hw, S) -> (values (hw, k), label indices (hw, k))."""
    values, chosen = torch.topk(value_lists, k, dim=1)
    return values, torch.gather(label_index, 1, chosen)


def mix_labels(values: torch.Tensor, label_index: torch.Tensor, labels: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """softmax(values / tau) weighted sum of the labels rows (R, K+1) picked by label_index: (hw, K+1)."""
    weights = torch.softmax(values / temperature, dim=1)
    picked = labels[label_index]                      # (hw, k, K+1)
    return torch.einsum("qk,qkc->qc", weights, picked)
