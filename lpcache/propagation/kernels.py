"""Pure tensor functions of the propagation: tile plans, windowed scores, top-k lists, label mixing.

Every function takes its tensors (and, where it creates some, a `device`) and works on CPU or CUDA.
Vocabulary: the feature grid is h x w (hw positions); a *query tile* is a rectangle of target positions;
its *key window* is the rectangle of source positions any of its queries can reach within the largest
radius; a *column block* is the key-window column range shared by all tiles of one tile column, so a
source frame stored per column block as a contiguous (h, kw, C) array gives every window as a view.

Tie rule (the same in every top-k and every merge, so that a setting's result never depends on k_max, the
context length, the radii, the block size or the tile plan it was computed with): candidates are ordered by
raw score descending, then by their place in the seed's order of candidates - context slot (frame 0's
unrestricted slot first, then the short-term slots oldest first), then grid position (row-major) - lower
first. `topk_ordered` applies it to one list (its index is the position), `merge_topk` to the
concatenation of per-slot lists laid out in slot order. Each score itself must not depend on the shape of
the product that computed it: `products` keeps every matrix product at least MIN_PRODUCT x MIN_PRODUCT,
where the CPU BLAS (MKL, checked) sums every dot product in the same order whatever the shape.
"""
import dataclasses
import math
from typing import Dict, List, Sequence, Tuple

import torch

NEG_INF = float("-inf")


#: Window shapes (lpcache.protocols.base.WINDOWS): Euclidean distance < r, <= r, or Chebyshev distance <= r.
WINDOWS = ("circle_lt", "circle_le", "square")


def reach(radius: float, window: str = "circle_lt") -> int:
    """Largest |dy| (or |dx|) inside a window of that radius: its half-width."""
    if window == "circle_lt":
        return max(0, int(math.ceil(radius)) - 1)
    if window in ("circle_le", "square"):
        return max(0, int(math.floor(radius)))
    raise ValueError(f"window {window!r}: expected one of {', '.join(WINDOWS)}")


def outside_window(dy: torch.Tensor, dx: torch.Tensor, radius: float, window: str = "circle_lt") -> torch.Tensor:
    """True where the integer offset (dy, dx) is outside the window, computed as each reference does:
    dy^2 + dx^2 >= r^2 (circle_lt: the seed; VFS's double sqrt < r agrees on integer offsets), float32
    sqrt(dy^2 + dx^2) > r (circle_le: DINOv3), max(|dy|, |dx|) > r (square: DINO)."""
    if window == "circle_lt":
        return (dy * dy + dx * dx) >= radius * radius
    if window == "circle_le":
        return (dy * dy + dx * dx).float().sqrt() > radius
    if window == "square":
        return torch.maximum(dy.abs(), dx.abs()) > radius
    raise ValueError(f"window {window!r}: expected one of {', '.join(WINDOWS)}")


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
    windows: Dict[float, "SubWindow"] = dataclasses.field(default_factory=dict)  # radius -> its part of the window


@dataclasses.dataclass
class SubWindow:
    """The rectangle of a tile's key window that a radius can reach (all of it for the largest radius)."""

    rows: slice                     # key-window rows (local)
    cols: slice                     # key-window columns (local)
    outside: torch.Tensor           # (M, N') bool over the rectangle's keys, row-major
    key_index: torch.Tensor         # (N',) flat positions of the rectangle's keys, row-major
    positions: torch.Tensor = None  # (N',) the rectangle's keys as positions in the tile's key window
    bias: torch.Tensor = None       # (M, N') float32: -inf where outside, else 0 (adding it masks; fast)

    @property
    def rectangle_hw(self) -> Tuple[int, int]:
        """The rectangle's (rows, columns)."""
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    def __post_init__(self):
        if self.bias is None:
            self.bias = torch.zeros(self.outside.shape, device=self.outside.device).masked_fill_(self.outside, NEG_INF)


@dataclasses.dataclass
class TilePlan:
    grid_hw: Tuple[int, int]
    radii: Tuple[float, ...]        # descending
    window: str
    blocks: List[Tuple[int, int]]   # key column ranges per column block
    tiles: List[Tile]

    @property
    def computed_products(self) -> int:
        """Query x key products one source frame costs (for FLOP counts)."""
        return sum(t.query_index.numel() * t.key_index.numel() for t in self.tiles)


def plan_tiles(grid_hw, radii: Sequence[float], tile_hw=None, device="cpu", window="circle_lt") -> TilePlan:
    """Split the grid into query tiles with key windows for the largest radius and per-radius masks."""
    height, width = grid_hw
    radii = tuple(sorted({float(r) for r in radii}, reverse=True))
    half = reach(radii[0], window)
    tile_h, tile_w = tile_hw or choose_tile(grid_hw, radii[0], window=window)
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
            dy, dx = qy[:, None] - ky[None, :], qx[:, None] - kx[None, :]
            outside = {radius: outside_window(dy, dx, radius, window).to(device) for radius in radii}
            tile = Tile((y0, y1), (x0, x1), (ky0, ky1), block, (qy * width + qx).to(device),
                        (ky * width + kx).to(device), outside)
            for radius in radii:
                tile.windows[radius] = _sub_window(tile, kx0, kx1, grid_hw, reach(radius, window), radius)
            tiles.append(tile)
    return TilePlan((height, width), radii, window, blocks, tiles)


def _sub_window(tile: Tile, kx0, kx1, grid_hw, half, radius) -> SubWindow:
    """The part of the tile's key window within `half` rows / columns of its queries."""
    (y0, y1), (x0, x1), (ky0, ky1) = tile.rows, tile.cols, tile.key_rows
    rows = slice(max(0, y0 - half) - ky0, min(grid_hw[0], y1 + half) - ky0)
    cols = slice(max(0, x0 - half) - kx0, min(grid_hw[1], x1 + half) - kx0)
    shape = (ky1 - ky0, kx1 - kx0)
    outside = tile.outside[radius].view(-1, *shape)[:, rows, cols].reshape(len(tile.query_index), -1)
    positions = torch.arange(shape[0] * shape[1], device=outside.device).view(shape)[rows, cols].reshape(-1)
    return SubWindow(rows, cols, outside, tile.key_index.view(shape)[rows, cols].reshape(-1), positions)


# Cost model per device type: float32 GEMM rate (GFLOP/s), ns per computed product for the mask and top-k
# passes, ns of fixed cost per tile product (kernel launches and Python). GPUs want few big tiles, CPUs small.
TILE_COSTS = {"cpu": (150.0, 2.0, 2e3), "cuda": (30000.0, 0.02, 2e5)}
TILE_SHAPES = ((4, 8), (8, 8), (8, 16), (6, 22), (16, 16), (16, 32), (20, 22), (30, 55), (20, 55))
SCORES_BYTES_LIMIT = 2 ** 30     # largest float32 score tensor (sources x block x tile queries x window keys)


def choose_tile(grid_hw, radius, channels=256, device="cpu", block=1, sources=21, window="circle_lt"
                ) -> Tuple[int, int]:
    """A query-tile shape balancing wasted products against GEMM size and per-tile overhead.

    Cost per computed product: GEMM time 2*C / rate, inflated by (1 + 24 / rows) for small GEMMs (rows =
    block x tile queries), plus the pass cost; plus a fixed cost per tile product shared by the block's
    targets. Candidates: TILE_SHAPES and the whole grid, unless their scores exceed SCORES_BYTES_LIMIT.
    """
    gemm_gflops, pass_ns, tile_ns = TILE_COSTS.get(torch.device(device).type, TILE_COSTS["cpu"])
    per_product = 2.0 * channels / gemm_gflops
    best = None
    for tile_h, tile_w in TILE_SHAPES + (tuple(grid_hw),):
        tile_h, tile_w = min(tile_h, grid_hw[0]), min(tile_w, grid_hw[1])
        sizes = list(_tile_sizes(grid_hw, radius, (tile_h, tile_w), window))
        if best is not None and 4 * sources * block * max(p for _, p in sizes) > SCORES_BYTES_LIMIT:
            continue
        cost = sum(products * (per_product * (1 + 24.0 / (block * queries)) + pass_ns) + tile_ns / block
                   for queries, products in sizes)
        if best is None or cost < best[0]:
            best = (cost, (tile_h, tile_w))
    return best[1]


def window_products(grid_hw, radius, tile_hw, window="circle_lt") -> int:
    """Query x key products per source frame for a tile shape (without building the plan)."""
    return sum(products for _, products in _tile_sizes(grid_hw, radius, tile_hw, window))


def _tile_sizes(grid_hw, radius, tile_hw, window="circle_lt"):
    """(queries, queries x window keys) of every tile."""
    (height, width), (tile_h, tile_w) = grid_hw, tile_hw
    half = reach(radius, window)
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


def topk_ordered(scores: torch.Tensor, k: int, order: bool = True):
    """Top-k over the last dim by value descending, then index ascending (the tie rule); (values, index).

    -inf entries (out of the radius) carry no meaning: their order is left as it comes, and when k exceeds
    the row length the result is padded with -inf / index 0. torch.topk leaves the order of equal values
    unspecified (it changes with k and the row length), so it is asked for k + 1 values: rows whose k-th
    and (k+1)-th values are equal (a tie across the cut) are redone with a stable sort, and equal values
    inside the kept k are then put in index order (`order_ties`; order=False leaves that to the caller,
    e.g. once for many calls whose results are concatenated).
    """
    size = scores.shape[-1]
    if k >= size:
        values, index = torch.sort(scores, dim=-1, descending=True, stable=True)
        if k > size:
            pad = list(scores.shape[:-1]) + [k - size]
            values = torch.cat([values, values.new_full(pad, NEG_INF)], dim=-1)
            index = torch.cat([index, index.new_zeros(pad)], dim=-1)
        return values, index
    values, index = torch.topk(scores, k + 1, dim=-1)
    cut = values[..., k - 1] == values[..., k]
    if bool(cut.any()):
        rows = (cut & (values[..., k] > NEG_INF)).nonzero(as_tuple=True)
        fixed_values, fixed_index = torch.sort(scores[rows], dim=-1, descending=True, stable=True)
        values[rows], index[rows] = fixed_values[..., :k + 1], fixed_index[..., :k + 1]
    values, index = values[..., :k], index[..., :k]
    return order_ties(values, index) if order else (values, index)


def bands_topk(scores: torch.Tensor, starts: Sequence[Tuple[int, int]], frames: int, window: "SubWindow",
               window_hw: Tuple[int, int], k: int, peaks: torch.Tensor = None):
    """`topk_ordered(band, k, order=False)` of L bands of F frames at once, each restricted to a rectangle of
    the key window and masked, without masking the scores or reading most of them twice.

    scores (R, n, N) contiguous raw scores, N = the key window's window_hw positions; band l is rows
    row_l .. row_l + M - 1, frames first_l .. first_l + F - 1 of it (starts [(row_l, first_l)]), restricted to
    `window` (a SubWindow: its rectangle, positions and bias (M, N'), -inf where left out). `peaks` (L, M, N'):
    each rectangle position's largest score over the band's frames when already known. Returns values,
    columns (L, M, k); columns are frame * N' + rectangle position.

    Chunks of one position over the F frames: the top k+1 elements lie in the k+1 chunks with the largest
    maxima (any other element is <= the (k+1)-th chunk maximum <= the (k+1)-th value), so their values, and
    the top-k set wherever the k-th and (k+1)-th values differ, come from those chunks alone. Rows with a tie
    across the cut are redone on their whole masked row (`topk_ordered`), so the result is the same.
    """
    rows, keys, count = window.bias.shape[0], window.positions.shape[0], len(starts)
    whole_window = keys == scores.shape[2]
    bias_view = window.bias.view(rows, 1, *((keys,) if whole_window else window.rectangle_hw))

    def band(at, first):              # (M, F, h', w') view of the raw scores ((M, F, N) for the whole window)
        found = scores[at:at + rows, first:first + frames]
        return found if whole_window else found.view(rows, frames, *window_hw)[:, :, window.rows, window.cols]

    if frames == 1 or keys <= k + 1:                                              # whole masked rows
        whole = torch.stack([band(at, first) + bias_view for at, first in starts]).view(count * rows, -1)
        values, index = topk_ordered(whole, k, order=False)
        return values.view(count, rows, -1), index.view(count, rows, -1)
    if peaks is None:
        peaks = torch.stack([band(at, first).amax(1).reshape(rows, keys) for at, first in starts])
    _, chosen = torch.topk(peaks + window.bias, k + 1, dim=-1)                      # (L, M, k+1)
    device, depth, width = scores.device, scores.shape[1], scores.shape[2]
    if whole_window:                  # the chosen chunks of each band (gather on its view)
        picked = torch.stack([torch.gather(band(at, first), 2, chosen[l, :, None, :].expand(rows, frames, k + 1))
                              for l, (at, first) in enumerate(starts)])            # (L, M, F, k+1)
    else:                             # of a rectangle: by flat cell
        first_cells = torch.tensor([(at * depth + first) * width for at, first in starts], device=device)
        cells = (first_cells[:, None, None, None] + (torch.arange(rows, device=device) * (depth * width))[:, None, None]
                 + (torch.arange(frames, device=device) * width)[:, None] + window.positions[chosen][:, :, None, :])
        picked = torch.take(scores, cells)
    picked = picked + torch.gather(window.bias.expand(count, -1, -1), 2, chosen)[:, :, None, :]
    columns = (torch.arange(frames, device=device)[:, None] * keys + chosen[:, :, None, :]).reshape(count, rows, -1)
    values, best = torch.topk(picked.reshape(count, rows, -1), k + 1, dim=-1)       # (L, M, k+1)
    index = torch.gather(columns, 2, best)
    cut = (values[..., k - 1] == values[..., k]) & (values[..., k] > NEG_INF)
    values, index = values[..., :k], index[..., :k]
    if bool(cut.any()):
        tied = cut.nonzero().tolist()
        whole = torch.stack([band(*starts[l])[m] + bias_view[m] for l, m in tied]).view(len(tied), -1)
        fixed_values, fixed_index = topk_ordered(whole, k, order=False)
        for row, (l, m) in enumerate(tied):
            values[l, m], index[l, m] = fixed_values[row], fixed_index[row]
    return values, index


def order_ties(values: torch.Tensor, index: torch.Tensor, *carried: torch.Tensor):
    """Rows of (values, index) sorted by value descending (as they come), equal finite values by index;
    tensors of the same shape in `carried` are permuted along with them. Only rows holding ties are
    rewritten, in place. Returns (values, index, *carried)."""
    tied = _tied_rows(values)
    if bool(tied.any()):
        rows = tied.nonzero(as_tuple=True)
        row_index, by_index = torch.sort(index[rows], dim=-1)
        row_values = torch.gather(values[rows], -1, by_index)
        row_carried = [torch.gather(c[rows], -1, by_index) for c in carried]
        row_values, by_value = torch.sort(row_values, dim=-1, descending=True, stable=True)
        values[rows] = row_values
        index[rows] = torch.gather(row_index, -1, by_value)
        for c, row_c in zip(carried, row_carried):
            c[rows] = torch.gather(row_c, -1, by_value)
    return (values, index, *carried)


def _tied_rows(values: torch.Tensor) -> torch.Tensor:
    """Bool per row of descending `values`: whether it holds two equal finite neighbours."""
    return ((values[..., 1:] == values[..., :-1]) & (values[..., 1:] > NEG_INF)).any(-1)


MIN_PRODUCT = 16     # smallest rows / columns of a matrix product (smaller ones take other BLAS paths)


def products(queries: torch.Tensor, keys_t: torch.Tensor) -> torch.Tensor:
    """queries (M, C) times keys_t (C, N), or batched (n, C, N): (M, N) or (n, M, N), computed on at least
    MIN_PRODUCT rows and columns (zero padding), so that each score is the same whatever M and N are."""
    rows, columns = queries.shape[-2], keys_t.shape[-1]
    queries, keys_t = _at_least(queries, -2), _at_least(keys_t, -1)
    if keys_t.dim() == 2:
        scores = torch.mm(queries, keys_t)
    else:
        scores = torch.bmm(queries.expand(keys_t.shape[0], *queries.shape), keys_t)
    if scores.shape[-2:] != (rows, columns):
        scores = scores[..., :rows, :columns].contiguous()
    return scores


def _at_least(matrix: torch.Tensor, dim: int, size: int = MIN_PRODUCT) -> torch.Tensor:
    """`matrix` with zeros appended along `dim` up to `size`."""
    missing = size - matrix.shape[dim]
    if missing <= 0:
        return matrix
    shape = list(matrix.shape)
    shape[dim] = missing
    return torch.cat([matrix, matrix.new_zeros(shape)], dim=dim)


def window_scores(queries: torch.Tensor, segments: Sequence[torch.Tensor]) -> torch.Tensor:
    """Raw scores (B*M, n, N) float32 of B stacked query tiles (B*M, C) against the key windows of n frames,
    given as segments (n_i, N, C) that follow each other: per query, the frames side by side, so consecutive
    frames are one row of n_i * N scores (a view). Nothing is masked: `bands_topk` leaves out the keys beyond
    a radius. Each segment is one batched product written in place; products too small for that (or not
    float32) go through `products`."""
    rows, keys = queries.shape[0], segments[0].shape[1]
    count = sum(segment.shape[0] for segment in segments)
    scores = torch.empty((rows, count, keys), device=queries.device)
    at = 0
    for segment in segments:
        part = scores[:, at:at + segment.shape[0]].permute(1, 0, 2)        # (n_i, B*M, N) view
        if min(rows, keys) >= MIN_PRODUCT and queries.dtype == torch.float32:
            torch.bmm(queries.expand(segment.shape[0], *queries.shape), segment.transpose(1, 2), out=part)
        else:
            part.copy_(products(queries, segment.transpose(1, 2)))
        at += segment.shape[0]
    return scores


def merge_topk(value_lists: torch.Tensor, label_index: torch.Tensor, k: int):
    """Top-k of concatenated per-slot lists (hw, S) -> (values (hw, k), label indices (hw, k)).

    The lists must be laid out in the seed's slot order, each in tie-rule order (`topk_ordered`): then a
    lower column is a lower (slot, position) among equal values, and `topk_ordered` applies the tie rule.
    """
    values, chosen = topk_ordered(value_lists, k)
    return values, torch.gather(label_index, 1, chosen)


def mix_labels(values: torch.Tensor, label_index: torch.Tensor, labels: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """softmax(values / tau) weighted sum of the labels rows (R, K+1) picked by label_index: (hw, K+1)."""
    return mix_weighted(torch.softmax(values / temperature, dim=1), label_index, labels)


def mix_weighted(weights: torch.Tensor, label_index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of weights (hw, n) times the labels rows (R, K) picked by label_index (hw, n): (hw, K); batched
    over settings with weights (B, hw, n) and labels (B, R, K): (B, hw, K).

    The n terms are added one by one in the order of the kept candidates (first to last), so the sum is
    the same bits whatever the vector width, the batch or k_max of the run.
    """
    rows = label_index.reshape(-1)                                                   # index_select: fastest gather
    picked = (labels.index_select(0, rows) if labels.dim() == 2 else labels.index_select(1, rows)
              ).view(*labels.shape[:-2], *label_index.shape, labels.shape[-1])       # (..., hw, n, K)
    terms = weights[..., None] * picked
    mixed = terms[..., 0, :]
    for column in range(1, terms.shape[-2]):
        mixed = mixed + terms[..., column, :]
    return mixed


#: Weighting rules (lpcache.protocols.base.WEIGHTINGS); the last two keep every candidate tied with the k-th.
WEIGHTINGS = ("softmax_topk", "dino_exp_threshold", "topk_then_softmax")


def candidate_weights(weighting: str, values: torch.Tensor, k: int, temperature):
    """Weights of merged candidates (hw, n >= k, best first; -inf = no candidate) and a bool marking rows
    where the n-th candidate is still kept (more may tie beyond the list: not exact). `temperature` is a
    number (weights (hw, n), marks (hw,)) or a (B, 1, 1) tensor of B settings' temperatures (weights
    (B, hw, n), marks (B, hw)); each setting's weights are the same bits either way.

      softmax_topk:        softmax(v / T) over the first k (exactly k; seed, VFS),
      dino_exp_threshold:  w = exp(v / T); w < (k-th w) set to 0 (ties kept); w / sum(w) (DINO),
      topk_then_softmax:   v < (k-th v) dropped (ties kept); softmax(v / T) over the rest (DINOv3).
    """
    if weighting == "softmax_topk":
        weights = torch.softmax(values[:, :k] / temperature, dim=-1)
        return weights, torch.zeros(weights.shape[:-1], dtype=torch.bool, device=values.device)
    if weighting == "dino_exp_threshold":
        weights = torch.exp(values / temperature)
        kth = weights[..., k - 1:k]
        weights = torch.where(weights < kth, torch.zeros_like(weights), weights)
        beyond = (weights[..., -1] > 0) if values.shape[1] > k else torch.zeros(
            weights.shape[:-1], dtype=torch.bool, device=values.device)
        return weights / weights.sum(dim=-1, keepdim=True), beyond
    if weighting == "topk_then_softmax":
        kept = torch.where(values >= values[:, k - 1:k], values, torch.full_like(values, NEG_INF))
        weights = torch.softmax(kept / temperature, dim=-1)
        beyond = (kept[:, -1] > NEG_INF) if values.shape[1] > k else torch.zeros(
            values.shape[0], dtype=torch.bool, device=values.device)
        return weights, beyond.expand(weights.shape[:-1])
    raise ValueError(f"weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
