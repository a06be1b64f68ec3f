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
    outside: Dict[float, torch.Tensor]  # radius -> (M, N) bool: True where the key is out of that radius


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


def plan_tiles(grid_hw, radii: Sequence[float], tile_hw=None, device="cpu") -> TilePlan:
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
            outside = {radius: (dist2 >= radius * radius).to(device) for radius in radii}
            tiles.append(Tile((y0, y1), (x0, x1), (ky0, ky1), block,
                              (qy * width + qx).to(device), (ky * width + kx).to(device), outside))
    return TilePlan((height, width), radii, blocks, tiles)


# Cost model per device type: float32 GEMM rate (GFLOP/s), ns per computed product for the mask and top-k
# passes, ns of fixed cost per tile (kernel launches and Python). GPUs want few big tiles, CPUs small ones.
TILE_COSTS = {"cpu": (150.0, 2.0, 2e3), "cuda": (30000.0, 0.02, 2e5)}
TILE_SHAPES = ((4, 8), (8, 8), (8, 16), (6, 22), (16, 16), (16, 32), (20, 22), (30, 55), (20, 55))


def choose_tile(grid_hw, radius, channels=256, device="cpu") -> Tuple[int, int]:
    """A query-tile shape balancing wasted products against GEMM size and per-tile overhead.

    Cost per computed product: GEMM time 2*C / rate, inflated by (1 + 24 / queries per tile) for small
    GEMMs, plus the pass cost; plus a fixed cost per tile. Candidates: TILE_SHAPES and the whole grid.
    """
    gemm_gflops, pass_ns, tile_ns = TILE_COSTS.get(torch.device(device).type, TILE_COSTS["cpu"])
    per_product = 2.0 * channels / gemm_gflops
    best = None
    for tile_h, tile_w in TILE_SHAPES + (tuple(grid_hw),):
        tile_h, tile_w = min(tile_h, grid_hw[0]), min(tile_w, grid_hw[1])
        cost = sum(products * (per_product * (1 + 24.0 / queries) + pass_ns) + tile_ns
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


def window_scores(queries: torch.Tensor, keys: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """Scores (n, M, N) of queries (M, C) against n windows of keys (n, N, C); -inf where `outside` (M, N).

    A plain batched product and an in-place fill: faster than adding a bias inside the product, which
    first copies the bias into every output matrix."""
    scores = torch.bmm(queries.expand(keys.shape[0], *queries.shape), keys.transpose(1, 2))
    return scores.masked_fill_(outside, NEG_INF)


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


# --- Screened exact top-k (CPU float32): a bfloat16 product finds the few candidates that can matter, -------
# --- float32 dot products give their exact scores. ---------------------------------------------------------

BF16_UNIT_ROUNDOFF = 2.0 ** -8
DENSE_FRACTION = 0.01     # a tile whose screen keeps more than this share of its products is computed densely
REFERENCE_RANK = 8        # the frame-0 rank whose score decides dense vs screened (independent of the settings)


def screen_margin(channels: int, max_norm_queries: float, max_norm_keys: float) -> float:
    """Bound on |bf16 product - exact product| for vectors of at most these norms.

    Inputs rounded to bfloat16 (relative error u = 2^-8 each: 2u + u^2), float32 accumulation over
    `channels` terms (gamma), output rounded to bfloat16 (u times the product's bound)."""
    u = BF16_UNIT_ROUNDOFF
    gamma = 1.1 * channels * 2.0 ** -24
    return (2 * u + u * u + u * (1 + u) ** 2 + gamma) * max_norm_queries * max_norm_keys


def screen_floor(thresholds: torch.Tensor, outside: torch.Tensor, margin: float) -> torch.Tensor:
    """(M, N) float32: threshold - margin per query row, +inf where the key is outside the radius."""
    return (thresholds[:, None] - margin).expand(outside.shape).masked_fill(outside, float("inf"))


def exact_pair_scores(queries: torch.Tensor, keys: torch.Tensor, slot, query_row, key_col,
                      chunk: int = 65536) -> torch.Tensor:
    """float32 dot products queries[query_row] . keys[slot, key_col] (queries (M, C), keys (n, N, C)).

    Every pair is computed by the same per-pair reduction, whatever else is computed with it, so a pair's
    score does not depend on the settings of the run."""
    out = torch.empty(query_row.shape[0], dtype=torch.float32, device=queries.device)
    for start in range(0, out.shape[0], chunk):
        stop = start + chunk
        picked_keys = keys[slot[start:stop], key_col[start:stop]]
        out[start:stop] = (queries[query_row[start:stop]] * picked_keys).sum(-1)
    return out


def compact_topk(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, k: int):
    """Sorted top-k per row of sparse entries (rows ascending): (n_rows, k) values (-inf padded) and cols."""
    counts = torch.bincount(rows, minlength=n_rows)
    width = int(counts.max()) if rows.numel() else 0
    if width == 0:
        return (torch.full((n_rows, k), NEG_INF, device=values.device),
                torch.zeros((n_rows, k), dtype=torch.long, device=values.device))
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(rows.shape[0], device=rows.device) - starts[rows]
    table = torch.full((n_rows, width), NEG_INF, device=values.device)
    table_cols = torch.zeros((n_rows, width), dtype=torch.long, device=values.device)
    table[rows, rank] = values
    table_cols[rows, rank] = cols
    top_values, pick = topk_padded(table, k)
    return top_values, torch.gather(table_cols, 1, pick)


_BF16_FAST = {}


def bf16_is_fast(device) -> bool:
    """Whether a bfloat16 matrix product runs at least 1.5x faster than float32 here (measured once)."""
    device = torch.device(device)
    if device.type != "cpu":
        return False
    if "cpu" not in _BF16_FAST:
        import time
        a, b = torch.randn(256, 256), torch.randn(256, 4096)
        timings = []
        for dtype in (torch.float32, torch.bfloat16):
            x, y = a.to(dtype), b.to(dtype)
            torch.mm(x, y)
            started = time.perf_counter()
            for _ in range(3):
                torch.mm(x, y)
            timings.append(time.perf_counter() - started)
        _BF16_FAST["cpu"] = timings[1] * 1.5 <= timings[0]
    return _BF16_FAST["cpu"]
