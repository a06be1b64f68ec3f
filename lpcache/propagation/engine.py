"""The per-video propagation loop, for many settings at once (propagation-spec.md, sections 5-9 and 13).

Per target frame t the engine computes, once for all settings:
  * the unrestricted top-kmax list of frame 0 (slot 0, the long-term memory), from the full product;
  * for each radius, one top-kmax list per *band* of the largest context (`context_bands`): a run of
    consecutive source frames side by side (a smaller context length starts a new band, so every setting's
    context is whole bands; a frame the seed repeats, frame 0 while t <= L, is a band of its own), from
    tile-vs-window products. One top-k over a band's frames costs much less than one per frame: on CPU a
    top-k's cost grows with the lists it builds (k log k each), not only with the scores it reads. Targets
    go in blocks of B consecutive frames whose query tiles share one product against the union of their key
    windows, written per query with the frames side by side and oldest first, so a band is a view; a smaller
    radius copies its part of the window (the rectangle it can reach) and masks it.
Each setting (tau, k, r, L) then takes the top-k of the concatenation of its context's band lists (the
repeated frame's list once per slot it fills, as the seed repeats it), softmax(scores / tau), and mixes its
own fed-back soft labels.
Only the last Lmax + B - 1 frames' features (stored per column block) and Lmax soft labels are kept.

Every top-k and merge follows one tie rule (kernels.py): score descending, then the candidate's place in
the seed's order (context slot, then grid position), lower first; and each score is computed the same way
whatever the product's shape. So a setting run alone and the same setting inside a sweep (other k_max,
Lmax, radii, tile plan, block size) give bit-identical soft maps on CPU. On CUDA, cuBLAS may pick another
kernel for another shape, so scores (and then rare masks) can differ by rounding between such runs.
"""
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class _Band:
    """A run of context slots whose candidates share one top-kmax list: distinct frames (oldest first), or one
    frame repeated `copies` times (the seed's padding with frame 0). `start` is its first slot among the
    windowed slots of the largest context; `row` its list's row in the block's list tensors."""

    frames: Tuple[int, ...]
    copies: int
    start: int
    row: int = -1


def context_bands(context, first_frame_masked, target, lengths) -> List[_Band]:
    """The windowed slots of `target`'s largest context (context_frames) cut into bands, in slot order: the
    masked frame-0 slot alone, then the others cut where a smaller context's slots begin (so every context
    is whole bands: its head and the bands from `suffix_start` on) and around runs of one repeated frame."""
    lengths = sorted(set(lengths))
    windowed = context_frames(context, target, lengths[-1])
    head = 1 if first_frame_masked else 0
    windowed = windowed if first_frame_masked else windowed[1:]
    cuts = {head, len(windowed)} | {suffix_start(context, first_frame_masked, target, lengths[-1], length)
                                    for length in lengths}
    bands = [_Band((0,), 1, 0)] if head else []
    edges = sorted(cuts)
    for begin, end in zip(edges, edges[1:]):
        slot = begin
        while slot < end:
            stop = slot + 1
            while stop < end and windowed[stop] == windowed[slot]:
                stop += 1
            if stop - slot > 1:                                           # one frame repeated
                bands.append(_Band((windowed[slot],), stop - slot, slot))
            else:                                                         # distinct frames up to the next repeat
                while stop < end and windowed[stop] != windowed[stop - 1] and not (
                        stop + 1 < end and windowed[stop + 1] == windowed[stop]):
                    stop += 1
                bands.append(_Band(tuple(windowed[slot:stop]), 1, slot))
            slot = stop
    return bands


def suffix_start(context, first_frame_masked, target, largest, length) -> int:
    """Where the context of `length` begins among the windowed slots of the `largest` one (after the head):
    each context's slots after frame 0's are a suffix of the largest one's (asserted)."""
    tail = context_frames(context, target, length)[1:]
    tail_largest = context_frames(context, target, largest)[1:]
    assert tail_largest[len(tail_largest) - len(tail):] == tail, (context, target, length)
    return (1 if first_frame_masked else 0) + len(tail_largest) - len(tail)


def bands_in_context(bands: Sequence[_Band], start: int, first_frame_masked) -> List[_Band]:
    """The bands of one context: the head band (masked frame 0) and those from `start` (suffix_start) on."""
    head = 1 if first_frame_masked else 0
    return [band for band in bands if band.start < head or band.start >= start]


class _Shared:
    """One target's candidate lists shared by all settings: frame 0's unrestricted list, and per radius the
    top-kmax list of each band of its context (the block's list tensors, its bands' rows)."""

    def __init__(self, first_values, first_index, bands, values, index, largest_len):
        self.largest_len = largest_len     # the video_len whose context the bands cut
        self.first_values = first_values   # (hw, kmax) unrestricted frame-0 scores
        self.first_index = first_index     # (hw, kmax) positions in frame 0
        self.bands = bands                 # [_Band] in slot order
        self.values = values               # radius -> (n_lists, hw, kmax) radius-restricted scores, by band row
        self.index = index                 # radius -> (n_lists, hw, kmax) ordinal in band * hw + position


DEFAULT_BLOCK = {"cpu": 2, "cuda": 8}    # targets per block: bigger products (CPU), fewer launches (GPU)


class _Affinity:
    """Streams source frames into a store (per column block) and builds _Shared lists for blocks of targets.

    The B targets t..t+B-1 of a block share one product per tile: their query tiles stacked (B*M rows)
    against the key windows of every frame one of them needs (t-Lmax..t+B-2, and frame 0 while t <= Lmax).
    Store slot 0 holds frame 0, slot 1 + (f - 1) % R frame f >= 1 with R = Lmax + B - 1, so those frames,
    oldest first, are at most three runs of consecutive slots (one batched product each). Each target
    takes the top-kmax of each of its bands (one list row per distinct band of a target). When a product
    runs out of memory, the block's targets are split into smaller groups (fewer query rows) from then on.
    """

    def __init__(self, grid_hw, channels, radii, kmax, max_len, device, precision, tile_hw=None, block=None,
                 window="circle_lt", first_frame_masked=False, context="padded_first", lengths=()):
        self.grid_hw = grid_hw
        self.context = context           # the protocol's context rule (protocols.base.CONTEXTS)
        self.lengths = sorted({max_len, *lengths})   # the settings' context lengths: each context is whole bands
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
        # the stored frames oldest first, as runs of consecutive store slots (the ring wraps once at most)
        by_age = sorted(range(low, high), key=lambda slot: self.slot_frames[slot])
        column = {self.slot_frames[slot]: at for at, slot in enumerate(by_age)}
        runs = [[by_age[0], by_age[0] + 1]]
        for slot in by_age[1:]:
            if slot == runs[-1][1]:
                runs[-1][1] += 1
            else:
                runs.append([slot, slot + 1])
        bands, lists = [], []            # per target: its bands; per list row: (target, first and last column + 1)
        for target in range(count):
            rows, target_bands = {}, context_bands(self.context, self.first_frame_masked, t + target, self.lengths)
            for band in target_bands:
                if band.frames not in rows:
                    rows[band.frames] = len(lists)
                    at = column[band.frames[0]]
                    assert [column[f] for f in band.frames] == list(range(at, at + len(band.frames)))
                    lists.append((target, at, at + len(band.frames)))
            bands.append([dataclasses.replace(band, row=rows[band.frames]) for band in target_bands])
        shape = (len(lists), self.hw, self.kmax)               # positions row-major
        values = {r: torch.empty(shape, device=self.device) for r in self.plan.radii}
        index = {r: torch.empty(shape, dtype=torch.long, device=self.device) for r in self.plan.radii}
        for tile in self.plan.tiles:
            (y0, y1), (x0, x1), (ky0, ky1) = tile.rows, tile.cols, tile.key_rows
            queries = queries_all[:, y0:y1, x0:x1].reshape(count * (y1 - y0) * (x1 - x0), -1)
            store = self.store[tile.block]
            segments = [store[first:stop, ky0:ky1].reshape(stop - first, -1, store.shape[-1]) for first, stop in runs]
            scores = kernels.window_scores(queries, segments)                       # (B'*M, n, N) raw
            queries_n = len(tile.query_index)
            by_length = {}                # list rows by frame count: one batched top-k per count and radius
            for row, (target, first, stop) in enumerate(lists):
                by_length.setdefault(stop - first, []).append(row)
            for frames, rows in by_length.items():
                starts = [(lists[row][0] * queries_n, lists[row][1]) for row in rows]
                peaks = None                  # each position's largest score over a band's frames
                if frames > 1:
                    peaks = torch.stack([scores[at:at + queries_n, first:first + frames].amax(1)
                                         for at, first in starts])                           # (L, M, N)
                row_index = torch.tensor(rows, device=self.device)[:, None]
                for radius in self.plan.radii:
                    window = tile.windows[radius]
                    part = None
                    if peaks is not None:     # a smaller radius reads its rectangle of the larger one's maxima
                        part = peaks if radius == self.plan.radii[0] else peaks[:, :, window.positions]
                    tile_values, columns = kernels.bands_topk(scores, starts, frames, window,
                                                              (ky1 - ky0, store.shape[2]), self.kmax, part)
                    keys_in = len(window.key_index)
                    values[radius][row_index, tile.query_index] = tile_values
                    index[radius][row_index, tile.query_index] = (torch.div(columns, keys_in, rounding_mode="floor")
                                                                  * self.hw + window.key_index[columns % keys_in])
        for radius in self.plan.radii:   # equal values by (slot, position)
            kernels.order_ties(values[radius], index[radius])
        return [_Shared(first_values_j, first_index_j, bands[j], values, index, self.lengths[-1])
                for j, (first_values_j, first_index_j) in enumerate(zip(first_values.split(self.hw),
                                                                          first_index.split(self.hw)))]

    def _first_lists(self, queries, chunk=1024):
        """Unrestricted top-kmax of every query against frame 0 (slot 0), in chunks of queries: `bands_topk`
        with the grid's rows as the band (chunks: grid columns), so its columns are the positions."""
        values = torch.empty((queries.shape[0], self.kmax), device=self.device)
        index = torch.empty((queries.shape[0], self.kmax), dtype=torch.long, device=self.device)
        height, width = self.grid_hw
        columns = torch.arange(width, device=self.device)
        for start in range(0, queries.shape[0], chunk):
            scores = kernels.products(queries[start:start + chunk], self.first_t).float()
            rows = scores.shape[0]
            nothing_outside = torch.zeros((rows, width), dtype=torch.bool, device=self.device)
            row = kernels.SubWindow(slice(0, 1), slice(0, width), nothing_outside, columns, columns)   # a grid row
            found = kernels.bands_topk(scores.view(rows, height, width), [(0, 0)], height, row, (1, width),
                                       self.kmax)
            values[start:start + chunk], index[start:start + chunk] = kernels.order_ties(found[0][0], found[1][0])
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
        values_all, index_all = shared.values[self.radius], shared.index[self.radius]
        hw = values_all.shape[1]
        start = suffix_start(rule.context, rule.first_frame_masked, t, shared.largest_len, self.video_len)
        value_lists, index_lists = [], []
        if not rule.first_frame_masked:                                    # frame 0's unrestricted slot
            value_lists.append(shared.first_values[:, :n])
            index_lists.append(shared.first_index[:, :n])                 # frame 0: label slot 0
        # the bands in context order, each list in tie-rule order: merge_topk then breaks ties by
        # (slot, position) as the tie rule says; a repeated frame's list comes once per slot it fills
        for band in bands_in_context(shared.bands, start, rule.first_frame_masked):
            band_index = index_all[band.row, :, :n]
            if len(band.frames) == 1:
                labels = band_index + self.slot(band.frames[0]) * hw
            else:
                offsets = torch.tensor([self.slot(f) * hw for f in band.frames], device=band_index.device)
                labels = offsets[torch.div(band_index, hw, rounding_mode="floor")] + band_index % hw
            value_lists += [values_all[band.row, :, :n]] * band.copies
            index_lists += [labels] * band.copies
        values, label_index = kernels.merge_topk(torch.cat(value_lists, 1), torch.cat(index_lists, 1), n)
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
    affinity computed once for the largest radius and context length; top-kmax lists per radius and band
    of consecutive source frames (`context_bands`); every setting derived from them (propagation-spec.md section 13). tile_hw / block (query
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
        affinity = _Affinity(grid_hw, channels, [p.radius for p in settings], max(candidates.values()), max_len,
                             device, precision, tile_hw, block, switches.window, switches.first_frame_masked,
                             switches.context, [p.video_len for p in settings])
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
