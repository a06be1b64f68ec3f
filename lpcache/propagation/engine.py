"""The per-video propagation loop, for many settings at once (propagation-spec.md, sections 5-9 and 13).

Per target frame t the engine computes, once for all settings:
  * the unrestricted top-kmax list of frame 0 (slot 0, the long-term memory), from the full product;
  * for the largest radius and each distinct source frame of the largest context (frames max(0, t-Lmax)..t-1),
    that frame's top-kmax list restricted to the radius, from tile-vs-window products. Targets go in blocks of
    B consecutive frames whose query tiles share one product against the union of their key windows;
  * for each smaller radius, the same lists narrowed to its window (`_Affinity._group_lists`): the in-radius
    entries of the largest radius's list are an exact prefix of the smaller radius's own list, and a row is
    recomputed only where that prefix is too short to decide a merge it feeds (`_uncertain_rows`: about 1 %
    of rows on real features), so a sweep over radii costs one top-k pass, not one per radius.
Each setting (tau, k, r, L) then takes the top-k of the concatenation of its L + 1 slot lists (frame 0
repeated as often as the seed repeats it), softmax(scores / tau), and mixes its own fed-back soft labels.
Only the last Lmax + B - 1 frames' features (stored per column block) and Lmax soft labels are kept.

Every top-k and merge follows one tie rule (kernels.py): score descending, then the candidate's place in
the seed's order (context slot, then grid position), lower first; and each score is computed the same way
whatever the product's shape. So a setting run alone and the same setting inside a sweep (other k_max,
Lmax, radii, tile plan, block size) give bit-identical soft maps on CPU. On CUDA, cuBLAS may pick another
kernel for another shape, so scores (and then rare masks) can differ by rounding between such runs.
"""
import logging
import queue
import threading
import time
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..config import PRECISIONS, PropagationParams  # noqa: F401 (PRECISIONS re-exported)
from ..davis import resize_mask_nearest
from ..devices import resolve_device, resolve_precision  # noqa: F401 (resolve_device re-exported)
from ..errors import InputError
from . import kernels
from ..protocols.base import KEEPS_TIES, context_frames
from .kernels import NEG_INF
from .labels import downsample_onehot, label_ids, upsample_argmax  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


class _ReadAhead:
    """Frames of a CachedSequence (or an array) as float32 numpy arrays, read by a thread ahead of use.

    Every frame is checked for NaN/Inf as it is read: by CachedSequence.frame (naming the file and the
    frame), else here (InputError naming the frame).
    """

    def __init__(self, frames_feats, depth=3):
        self.source = frames_feats
        self.count = _frame_count(frames_feats)
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self, index):
        source = self.source
        if callable(getattr(source, "frame", None)):
            return source.frame(index)
        if hasattr(source, "feats"):
            frame = np.asarray(source.feats[index], dtype=np.float32)
        elif isinstance(source, torch.Tensor):
            frame = source[index].detach().to("cpu", torch.float32).numpy()
        else:
            frame = np.asarray(source[index], dtype=np.float32)
        if not np.isfinite(frame).all():
            where = f"{source.path}: " if hasattr(source, "path") else ""
            raise InputError(f"{where}frame {index}: non-finite feature values")
        return frame

    def _run(self):
        for index in range(self.count):
            try:
                item = self._read(index)
            except BaseException as exc:  # handed to the consumer
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or isinstance(item, BaseException):
                return

    def __iter__(self):
        try:
            for _ in range(self.count):
                item = self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._thread.join(timeout=5)


def _frame_count(frames_feats) -> int:
    if hasattr(frames_feats, "n_frames"):
        return frames_feats.n_frames
    return int(frames_feats.shape[0])


def _grid_shape(frames_feats):
    if hasattr(frames_feats, "grid_hw"):
        return tuple(frames_feats.grid_hw), frames_feats.channels
    shape = tuple(frames_feats.shape)
    return (shape[1], shape[2]), shape[3]


class _Shared:
    """Per-target candidate lists shared by all settings."""

    def __init__(self, first_values, first_index, sources, values, index):
        self.first_values = first_values   # (hw, kmax) unrestricted frame-0 scores
        self.first_index = first_index     # (hw, kmax) positions in frame 0
        self.sources = sources             # {frame: row} of the per-frame lists
        self.values = values               # radius -> (n_src, hw, kmax) radius-restricted scores
        self.index = index                 # radius -> (n_src, hw, kmax) positions in that frame


DEFAULT_BLOCK = {"cpu": 2, "cuda": 8}    # targets per block: bigger products (CPU), fewer launches (GPU)


class _Affinity:
    """Streams source frames into a store (per column block) and builds _Shared lists for blocks of targets.

    The B targets t..t+B-1 of a block share one product per tile: their query tiles stacked (B*M rows)
    against the key windows of every frame one of them needs (t-Lmax..t+B-2, and frame 0 while t <= Lmax).
    Store slot 0 holds frame 0, slot 1 + (f - 1) % R frame f >= 1 with R = Lmax + B - 1, so those frames
    are one contiguous run of slots: 0..t+B-2 before the ring wraps, else all of 1..R. A target ignores
    the rows of frames outside its own context. When a product runs out of memory, the block's targets
    are split into smaller groups (fewer query rows per product) from then on.
    """

    def __init__(self, grid_hw, channels, radii, kmax, max_len, device, precision, tile_hw=None, block=None,
                 window="circle_lt", first_frame_masked=False, context="padded_first", merges=None):
        self.grid_hw = grid_hw
        self.context = context           # the protocol's context rule (protocols.base.CONTEXTS)
        self.merges = merges or {}       # radius -> [(video_len, n)]: the merges its lists feed (settings groups)
        self.recomputed_rows = 0         # rows of smaller radii recomputed by their own top-k
        self.first_frame_masked = first_frame_masked   # frame 0 only in the windowed products, no full slot
        self.hw = grid_hw[0] * grid_hw[1]
        self.kmax = kmax
        self.device = device
        self.dtype = resolve_precision(precision, device)
        self.block = block or DEFAULT_BLOCK.get(device.type, 1)
        self.group = self.block          # targets per product (lowered on out-of-memory)
        self.ring = max_len + self.block - 1
        tile_hw = tile_hw or kernels.choose_tile(grid_hw, max(radii), channels, device, self.block, self.ring + 1,
                                                 window)
        self.plan = kernels.plan_tiles(grid_hw, radii, tile_hw, device, window)
        self.store = [torch.empty((self.ring + 1, grid_hw[0], x1 - x0, channels), dtype=self.dtype, device=device)
                      for x0, x1 in self.plan.blocks]
        self.slot_frames = [None] * (self.ring + 1)
        self.first_t = None              # frame 0 as (C, hw), for the unrestricted slot
        self.seconds = 0.0

    def add_source(self, t, frame: torch.Tensor):
        """Make frame t (h, w, C) available as a source for later targets."""
        frame = frame.to(self.dtype)
        if t == 0:
            self.first_t = frame.reshape(self.hw, -1).t().contiguous()
        slot = 0 if t == 0 else 1 + (t - 1) % self.ring
        for store, block in zip(self.store, kernels.column_blocks(frame, self.plan)):
            store[slot].copy_(block)
        self.slot_frames[slot] = t

    def lists(self, t, frames: Sequence[torch.Tensor]) -> List[_Shared]:
        """The shared lists of targets t..t+B'-1 (t >= 1, B' = len(frames) <= block), whose features are
        `frames` (h, w, C); frames t..t+B'-2 must already be sources. On out-of-memory the targets go in
        groups half as large (down to one); one target that does not fit re-raises."""
        start = time.perf_counter()
        while True:
            try:
                shared = []
                for first in range(0, len(frames), self.group):
                    shared += self._group_lists(t + first, frames[first:first + self.group])
                break
            except torch.OutOfMemoryError:
                if self.group == 1:
                    raise
                self.group = (self.group + 1) // 2
                log.warning("out of memory on %s: %d target(s) per product from now on", self.device, self.group)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        self.seconds += time.perf_counter() - start
        return shared

    def _group_lists(self, t, frames: Sequence[torch.Tensor]) -> List[_Shared]:
        """`lists` for targets t..t+len(frames)-1 in one product per tile."""
        count = len(frames)
        queries_all = torch.stack([frame.to(self.dtype) for frame in frames])          # (B', h, w, C)
        if self.first_frame_masked:
            first_values = first_index = torch.empty((count * self.hw, 0), device=self.device)
        else:
            first_values, first_index = self._first_lists(queries_all.reshape(count * self.hw, -1))
        last_needed = t + count - 2
        low, high = (0, last_needed + 1) if last_needed <= self.ring else (1, self.ring + 1)
        if self.first_frame_masked:
            low = 0                      # frame 0 (store slot 0) is restricted like every other frame
        largest, smaller = self.plan.radii[0], self.plan.radii[1:]
        shape = (high - low, count, self.hw, self.kmax)      # (n, B', hw, kmax), positions row-major
        top_values = torch.empty(shape, device=self.device)
        top_index = torch.empty(shape, dtype=torch.long, device=self.device)
        inside = {radius: torch.empty(shape, dtype=torch.bool, device=self.device) for radius in smaller}
        for tile in self.plan.tiles:
            (y0, y1), (x0, x1), (ky0, ky1) = tile.rows, tile.cols, tile.key_rows
            queries = queries_all[:, y0:y1, x0:x1].reshape(count * (y1 - y0) * (x1 - x0), -1)
            keys = self.store[tile.block][low:high, ky0:ky1]
            keys = keys.reshape(high - low, keys.shape[1] * keys.shape[2], keys.shape[3])
            scores = kernels.window_scores(queries, keys, tile.outside[largest]).float()   # (n, B'*M, N)
            tile_values, tile_index = kernels.topk_ordered(scores, self.kmax, order=False)
            tile_index = tile_index.reshape(high - low, count, -1, self.kmax)
            top_values[:, :, tile.query_index] = tile_values.reshape(tile_index.shape)
            top_index[:, :, tile.query_index] = tile.key_index[tile_index]
            for radius in smaller:      # which kept keys are inside the smaller radius, from its tile mask
                outside = tile.outside[radius].expand(high - low, count, *tile.outside[radius].shape)
                inside[radius][:, :, tile.query_index] = ~torch.gather(outside, 3, tile_index)
        # equal values by position; the inside flags follow their entries
        top_values, top_index, *flags = kernels.order_ties(top_values, top_index, *[inside[r] for r in smaller])
        last = top_values[..., -1]       # every key beyond a list scores <= its last value
        values, index = {largest: top_values}, {largest: top_index}
        for radius, kept in zip(smaller, flags):    # the entries inside it, in order: an exact prefix
            *lists, known = kernels.keep_in_order(top_values, top_index, kept & (top_values > NEG_INF))
            uncertain = self._uncertain_rows(radius, lists[0], known, last, first_values, t, low, high)
            self._recompute(radius, uncertain, *lists, queries_all, low)
            values[radius], index[radius] = lists
        radii = self.plan.radii
        sources = {f: row for row, f in enumerate(self.slot_frames[low:high])}
        return [_Shared(first_values_j, first_index_j, sources,
                        {r: values[r][:, j] for r in radii}, {r: index[r][:, j] for r in radii})
                for j, (first_values_j, first_index_j) in enumerate(zip(first_values.split(self.hw),
                                                                          first_index.split(self.hw)))]

    def _uncertain_rows(self, radius, values, known, last, first_values, t, low, high) -> torch.Tensor:
        """(n, B', hw) True where a row, whose first `known` entries are exact and whose missing ones all
        score <= `last`, may miss a candidate that one of radius's merges (n candidates) would take: where
        fewer than n are known and the merge's n-th known candidate does not score above `last`."""
        open_rows = (known < self.kmax) & (last > NEG_INF)      # the computed list did not run out of keys
        if radius not in self.merges or not bool(open_rows.any()):   # no merge known: every row must be whole
            return open_rows
        uncertain = torch.zeros_like(open_rows)
        row_of = {f: row for row, f in enumerate(self.slot_frames[low:high])}
        for target in range(values.shape[1]):
            first = first_values[target * self.hw:(target + 1) * self.hw]
            for video_len, n in self.merges[radius]:
                slots = context_frames(self.context, t + target, video_len)
                frames = sorted(set(slots if self.first_frame_masked else slots[1:]))
                rows = torch.tensor([row_of[f] for f in frames], device=values.device)
                lists = values[rows, target, :, :n].permute(1, 0, 2).reshape(self.hw, -1)
                if not self.first_frame_masked:
                    lists = torch.cat([first[:, :n], lists], 1)
                # the merge's n-th known score; merging repeated slots (as the seed does) only raises it
                nth = torch.topk(lists, n, dim=1).values[:, -1] if lists.shape[1] >= n else lists.new_full(
                    (self.hw,), NEG_INF)
                unsure = (known[rows, target] < n) & (last[rows, target] > NEG_INF) & (last[rows, target] >= nth)
                uncertain[rows, target] |= unsure
        return uncertain

    def _recompute(self, radius, rows, values, index, queries_all, low):
        """Overwrite the marked rows (n, B', hw) of radius's lists with their own top-kmax, computed as the
        windowed products compute them (same scores, same tie rule)."""
        if not bool(rows.any()):
            return
        channels = queries_all.shape[-1]
        for tile in self.plan.tiles:
            source, target, local = rows[:, :, tile.query_index].nonzero(as_tuple=True)
            if not len(source):
                continue
            (y0, y1), (x0, x1), (ky0, ky1) = tile.rows, tile.cols, tile.key_rows
            tile_queries = queries_all[:, y0:y1, x0:x1].reshape(queries_all.shape[0], -1, channels)
            for row in source.unique().tolist():
                pick = source == row
                queries = tile_queries[target[pick], local[pick]]
                keys = self.store[tile.block][low + row, ky0:ky1].reshape(-1, channels)
                scores = kernels.products(queries, keys.t()).float()
                scores.masked_fill_(tile.outside[radius][local[pick]], NEG_INF)
                top_values, top_index = kernels.topk_ordered(scores, self.kmax)
                positions = tile.query_index[local[pick]]
                values[row, target[pick], positions] = top_values
                index[row, target[pick], positions] = tile.key_index[top_index]
            self.recomputed_rows += len(source)

    def _first_lists(self, queries, chunk=1024):
        """Unrestricted top-kmax of every query against frame 0 (slot 0), in chunks of queries."""
        values = torch.empty((queries.shape[0], self.kmax), device=self.device)
        index = torch.empty((queries.shape[0], self.kmax), dtype=torch.long, device=self.device)
        for start in range(0, queries.shape[0], chunk):
            scores = kernels.products(queries[start:start + chunk], self.first_t).float()
            values[start:start + chunk], index[start:start + chunk] = kernels.topk_ordered(scores, self.kmax)
        return values, index


class _Group:
    """Settings sharing a radius and a context length: one merged candidate list per target for all of them
    (each setting takes its first n candidates: the tie rule orders candidates totally, so the top n of the
    longest list is the top n), then the weights and the mixing batched over the settings that keep the same
    number of candidates (they differ only in temperature). Each setting feeds back its own soft labels,
    kept in one label bank (settings, slots, hw, K): slot 0 holds frame 0, slot 1 + (f - 1) % L frame f."""

    def __init__(self, settings: Sequence[PropagationParams], first_soft: torch.Tensor, switches,
                 candidates: Dict[PropagationParams, int]):
        self.settings = sorted(settings, key=lambda p: candidates[p])   # equal counts side by side
        self.radius, self.video_len = settings[0].radius, settings[0].video_len
        self.switches = switches
        self.longest = max(candidates[p] for p in settings)
        self.batches = []                # (count, first, last + 1) over self.settings
        for count in sorted({candidates[p] for p in settings}):
            members = [i for i, p in enumerate(self.settings) if candidates[p] == count]
            self.batches.append((count, members[0], members[-1] + 1))
        self.temperatures = torch.tensor([p.temperature for p in self.settings], dtype=torch.float32,
                                         device=first_soft.device).reshape(-1, 1, 1)
        self.bank = first_soft.new_empty((len(self.settings), self.video_len + 1) + tuple(first_soft.shape))
        self.bank[:, 0] = first_soft

    def slot(self, frame: int) -> int:
        """The label-bank slot of a frame's soft labels."""
        return 0 if frame == 0 else 1 + (frame - 1) % self.video_len

    def step(self, t, shared: _Shared) -> Dict[PropagationParams, torch.Tensor]:
        rule, n = self.switches, self.longest
        slots = context_frames(rule.context, t, self.video_len)
        hw = shared.values[self.radius].shape[1]
        windowed = slots if rule.first_frame_masked else slots[1:]
        device = shared.values[self.radius].device
        rows = torch.tensor([shared.sources[f] for f in windowed], device=device)
        offsets = torch.tensor([self.slot(f) * hw for f in windowed], device=device)
        slot_values = shared.values[self.radius][rows, :, :n]             # (S, hw, n)
        slot_index = shared.index[self.radius][rows, :, :n] + offsets[:, None, None]
        # the slots in context order (frame 0 first, then the others oldest first), each list in tie-rule
        # order: merge_topk then breaks ties by (slot, position) as the tie rule says
        value_lists = slot_values.permute(1, 0, 2).reshape(hw, len(windowed) * n)
        index_lists = slot_index.permute(1, 0, 2).reshape(hw, len(windowed) * n)
        if not rule.first_frame_masked:                                    # frame 0's unrestricted slot
            value_lists = torch.cat([shared.first_values[:, :n], value_lists], 1)
            index_lists = torch.cat([shared.first_index[:, :n], index_lists], 1)   # frame 0: slot 0
        values, label_index = kernels.merge_topk(value_lists, index_lists, n)
        banks = self.bank.reshape(len(self.settings), -1, self.bank.shape[-1])  # (settings, slots * hw, K)
        preds = {}
        mixed_all = []
        for count, first, stop in self.batches:
            batch = self.settings[first:stop]
            weights = self._weights(t, batch, values[:, :count], self.temperatures[first:stop])  # (B, hw, count)
            mixed = kernels.mix_weighted(weights, label_index[:, :count], banks[first:stop])        # (B, hw, K)
            if rule.weighting == "topk_then_softmax":                      # DINOv3 renormalises per cell
                mixed = mixed / mixed.sum(dim=-1, keepdim=True)
            preds.update(zip(batch, mixed))
            mixed_all.append(mixed)
        self.bank[:, self.slot(t)] = torch.cat(mixed_all)                 # read above, now frame t's labels
        return preds

    def _weights(self, t, batch, values: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
        """The batch's weights of its first candidates; refuses ties it cannot keep exactly."""
        weights, beyond = kernels.candidate_weights(self.switches.weighting, values, batch[0].topk, temperatures)
        for params, rows in zip(batch, beyond.reshape(len(batch), -1)):
            if bool(rows.any()):
                raise InputError(f"frame {t}: more than {values.shape[1]} candidates tie with the {params.topk}-th "
                                 f"of setting {params.id} in {int(rows.sum())} cell(s); the kept set would not be "
                                 f"exact")
        return weights


#: Extra candidates kept per list (beyond k) for weightings that keep ties with the k-th (KEEPS_TIES).
TIE_MARGIN = 8


def iter_propagate(frames_feats, first_mask_ids: np.ndarray, settings: Sequence[PropagationParams],
                   out_hw, device="cpu", precision="float32", progress=False, tile_hw=None, block=None,
                   protocol="seed", masks_on_device=False
                   ) -> Iterator[Tuple[int, Dict[PropagationParams, np.ndarray]]]:
    """Yield (t, {params: ids (H, W) uint8}) for t = 0..T-1, frame by frame, for every setting at once.

    frames_feats: a CachedSequence (streamed with read-ahead), or an array/tensor (T, h, w, C) of
    L2-normalised features (float16 or float32; computed in float32 unless `precision` says otherwise).
    first_mask_ids: frame 0's ids; resized with PIL NEAREST to out_hw if its size differs. Frame 0's
    output is the protocol's first_output of that annotation (the annotation itself for most). Work shared between settings: each (target, source frame)
    affinity computed once for the largest radius and context length; per-source-frame top-kmax lists
    per radius; every setting derived from them (propagation-spec.md section 13). tile_hw / block (query
    tile shape, targets per block) default to the device's choice; they change speed, never the masks.
    protocol: a registered protocol (name or lpcache.protocols.Protocol): its switches (context, window,
    frame-0 restriction, weighting), label initialisation and decoding; each protocol's `reference` is the
    dense definition the engine is tested against.
    masks_on_device: decode every setting's soft map on `device` in batches (the protocol's `decode_batch`)
    and yield the masks of t >= 1 as uint8 tensors there (the sweep on CUDA: the soft maps never leave the
    device); a protocol without `decode_batch` decodes on the host as usual. Out of memory halves the batch.
    Raises InputError for a frame holding NaN/Inf (before yielding that frame) and when a product does
    not fit in memory even for one target at a time (naming what to lower).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    settings = list(dict.fromkeys(settings))
    if not settings:
        raise ValueError("no propagation setting given")
    device = resolve_device(device)
    grid_hw, channels = _grid_shape(frames_feats)
    for params in settings:
        params.validate(grid_hw)
    out_hw = tuple(int(v) for v in out_hw)
    rule = _protocol(protocol)
    switches = rule.switches
    first_mask = resize_mask_nearest(np.asarray(first_mask_ids), out_hw)   # labels start from the output size
    label_ids(first_mask)                                                     # InputError when there is no object
    first_out = rule.first_output(first_mask, out_hw)
    ids, first_labels = rule.init_labels(first_mask, grid_hw)
    first_soft = torch.from_numpy(np.ascontiguousarray(first_labels, dtype=np.float32)).reshape(-1, len(ids))
    first_soft = first_soft.to(device)
    margin = min(TIE_MARGIN, grid_hw[0] * grid_hw[1]) if switches.weighting in KEEPS_TIES else 0
    candidates = {p: p.topk + margin for p in settings}
    max_len = max(p.video_len for p in settings)
    groups = {}
    for p in settings:
        groups.setdefault((p.radius, p.video_len), []).append(p)
    groups = [_Group(members, first_soft, switches, candidates) for members in groups.values()]
    on_device = masks_on_device and rule.decode_batch is not None
    decoder = _DeviceDecoder(rule.decode_batch, len(settings)) if on_device else None
    previous_tf32 = _set_tf32(precision == "tf32", device)
    try:
        merges = {}
        for group in groups:
            merges.setdefault(float(group.radius), []).append((group.video_len, group.longest))
        affinity = _Affinity(grid_hw, channels, [p.radius for p in settings], max(candidates.values()), max_len,
                             device, precision, tile_hw, block, switches.window, switches.first_frame_masked,
                             switches.context, merges)
        reader = _ReadAhead(frames_feats)
        count, frames = reader.count, iter(reader)
        bar = tqdm(total=count, desc="frames", unit="fr", disable=not progress, leave=False)
        mix_seconds = 0.0
        affinity.add_source(0, torch.from_numpy(next(frames)).to(device))
        yield 0, {p: first_out.copy() for p in settings}
        bar.update()
        t = 1
        while t < count:
            block = [torch.from_numpy(next(frames)).to(device) for _ in range(min(affinity.block, count - t))]
            for offset, frame in enumerate(block[:-1]):
                affinity.add_source(t + offset, frame)
            shared_lists = affinity.lists(t, block)
            affinity.add_source(t + len(block) - 1, block[-1])
            for offset, shared in enumerate(shared_lists):
                start = time.perf_counter()
                out = {}
                preds = {}
                for group in groups:
                    preds.update(group.step(t + offset, shared))
                if on_device:
                    out = decoder.decode(settings, preds, ids, grid_hw, out_hw)
                for params in [p for p in settings if p not in out]:     # in the order given
                    soft = preds[params].reshape(grid_hw[0], grid_hw[1], len(ids))
                    out[params] = rule.decode_labels(soft.float().cpu().numpy(), ids, out_hw)
                mix_seconds += time.perf_counter() - start
                shared_lists[offset] = None
                yield t + offset, out
                bar.update()
            t += len(block)
        bar.close()
        log.debug("affinity %.2f s, mixing+upsampling %.2f s", affinity.seconds, mix_seconds)
    except torch.OutOfMemoryError:
        where = getattr(frames_feats, "path", "features")
        raise InputError(f"{where}: out of memory on {device} at grid {grid_hw[0]}x{grid_hw[1]} with "
                         f"{len(settings)} setting(s): use fewer settings, --precision float16, or "
                         f"--device cpu") from None
    finally:
        _set_tf32(previous_tf32, device)


class _DeviceDecoder:
    """Decodes all settings' soft maps of a frame on their device in batches; out of memory halves the batch."""

    def __init__(self, decode_batch, count):
        self.decode_batch = decode_batch
        self.batch = count

    def decode(self, settings, preds, ids, grid_hw, out_hw) -> Dict[PropagationParams, torch.Tensor]:
        soft = torch.stack([preds[p] for p in settings]).reshape(len(settings), grid_hw[0], grid_hw[1], len(ids))
        while True:
            try:
                masks = self.decode_batch(soft.float(), ids, out_hw, self.batch)
                return dict(zip(settings, masks))
            except torch.OutOfMemoryError:
                if self.batch == 1:
                    raise
                self.batch = (self.batch + 1) // 2
                log.warning("out of memory decoding on %s: %d setting(s) per batch from now on", soft.device,
                            self.batch)
                if soft.device.type == "cuda":
                    torch.cuda.empty_cache()


def _protocol(protocol):
    """A Protocol from its name (or itself); it must define the engine's three label functions."""
    from .. import protocols

    rule = protocols.get(protocol) if isinstance(protocol, str) else protocol
    if rule.init_labels is None or rule.decode_labels is None or rule.first_output is None:
        raise ValueError(f"protocol {rule.name!r} does not define init_labels / decode_labels / first_output")
    return rule


def _set_tf32(enabled, device):
    if device.type != "cuda":
        return None
    previous = torch.backends.cuda.matmul.allow_tf32
    if enabled is not None:
        torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    return previous


def propagate_video(frames_feats, first_mask_ids, params: PropagationParams, out_hw, device="cpu",
                    **kw) -> np.ndarray:
    """Masks (T, H, W) uint8 of one setting; goes through iter_propagate with that one setting."""
    masks = [out[params] for _, out in iter_propagate(frames_feats, first_mask_ids, [params], out_hw,
                                                       device=device, **kw)]
    return np.stack(masks)
