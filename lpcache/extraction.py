"""Stage 1: DAVIS frames -> backbone -> HDF5 feature cache (`<cache>/<backbone_id>/<seq>.h5`).

JPEGs are decoded (and re-encoded for the seed protocol) in DataLoader workers, batches never span two
sequences, forward passes run on `device` (optional autocast on CUDA, OOM back-off to smaller batches),
and a background thread writes HDF5 so writing overlaps the next forward pass. Complete sequences whose
attributes, shape and frame count match the request are skipped without reading their values (the deep
check is `lpcache cache verify`); partial or unreadable ones are redone.

Features are computed as the seed computes them, so float32 caches are bit-identical to the seed's
features: the network gets a contiguous NCHW float32 batch, and its output is L2-normalised with
`F.normalize(dim=1)` (eps 1e-12) on the CPU copy of the NCHW output (the seed moves features to the CPU
before normalising), then stored as NHWC. The float16 default is that float32 result cast to float16
(round to nearest; ~2^-11 relative per value): measured end to end, J&F within 6e-5 of the seed.
Non-finite or un-normalisable features (a zero or non-finite norm) are refused, naming the file and frame.

backbone_id: `<backbone>-<protocol>`, plus `-<first 8 hex of the checkpoint sha256>` when a checkpoint
file is given explicitly, or `-random` for random weights (tests, benchmarks); the embedded default
checkpoint of `efficientnet_lite0` adds nothing. `timm:<model>` becomes `timm-<model>`.
"""
import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
from typing import Dict, List, Optional, Sequence as SequenceType

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from . import backbones
from .cache import FeatureCache, SequenceWriter, SUFFIX, attr_differences, CachedSequence
from .davis import load_davis, load_filelist
from .devices import resolve_device
from .errors import InputError
from .progress import progress_bar
from .provenance import provenance, versions
from .transforms import input_hw as protocol_input_hw, normalize, prepare_frame

log = logging.getLogger(__name__)
RANDOM_INIT = "random-init"


@dataclasses.dataclass
class SequenceJob:
    """One sequence to extract: its frames and the attributes its cache file must carry."""

    name: str
    image_paths: List[str]
    frame_names: List[str]
    orig_hw: tuple
    input_hw: tuple
    grid_hw: tuple
    attrs: Dict


@dataclasses.dataclass
class ExtractResult:
    backbone_id: str
    backbone_dir: str
    extracted: List[str]
    skipped: List[str]
    frames: int
    bytes_written: int
    seconds: float
    forward_seconds: float
    loop_seconds: float = 0.0  # the frame loop alone: from the first batch to the last file closed

    @property
    def frames_per_second(self) -> float:
        """Frames per second of the frame loop (setup excluded)."""
        return self.frames / self.loop_seconds if self.loop_seconds else 0.0


def make_backbone_id(name: str, protocol: str, checkpoint_sha256: Optional[str], explicit_checkpoint: bool) -> str:
    base = name.replace("timm:", "timm-").replace("/", "_").replace(":", "_")
    parts = [base, protocol]
    if checkpoint_sha256 == RANDOM_INIT:
        parts.append("random")
    elif explicit_checkpoint and checkpoint_sha256:
        parts.append(checkpoint_sha256[:8])
    return "-".join(parts)


def _frame_hw(path):
    """(H, W) of a frame from its header (lpcache.images: size-checked, one-line errors)."""
    from .images import image_hw

    return image_hw(path, "frame")


def _load_sequences(davis_root, set_name, filelist, sequences):
    if filelist:
        found = load_filelist(filelist, root=davis_root, sequences=sequences)
        if sequences:
            missing = sorted(set(sequences) - {s.name for s in found})
            if missing:
                raise InputError(f"{filelist}: sequences not in the file list: {', '.join(missing)}")
        return found
    if davis_root is None:
        raise InputError("no DAVIS root given (--davis)")
    return load_davis(davis_root, set_name, sequences)


def plan_jobs(seqs, spec, protocol, dtype, checkpoint_sha256, backbone_id, load_info) -> List[SequenceJob]:
    """Check every sequence's frames and annotations; return the jobs with their target attributes."""
    jobs = []
    for seq in seqs:
        paths = seq.image_paths
        if not paths:
            raise InputError(f"{seq.image_dir}: no JPEG frames for sequence {seq.name}")
        n_annotations = len(seq.annotation_paths)
        if n_annotations not in (0, 1, len(paths)):
            raise InputError(f"{seq.annotation_dir}: {n_annotations} annotations for {len(paths)} frames "
                             f"(annotation/frame count mismatch)")
        orig_hw = _frame_hw(paths[0])
        in_hw = protocol_input_hw(protocol, orig_hw, spec.stride)
        grid_hw = spec.grid_hw(in_hw)
        attrs = {"backbone": spec.to_dict(), "backbone_id": backbone_id, "checkpoint_sha256": checkpoint_sha256,
                 "input_hw": list(in_hw), "orig_hw": list(orig_hw), "protocol": protocol, "dtype": dtype,
                 "versions": versions(), "provenance": provenance(stage="extract", **load_info)}
        jobs.append(SequenceJob(seq.name, paths, seq.frame_names, orig_hw, in_hw, grid_hw, attrs))
    return jobs


def _is_done(job: SequenceJob, path: str, force: bool) -> bool:
    """True when a complete, matching file exists; InputError when it was made differently.

    Cheap: attributes, shapes and completeness only (`CachedSequence` checks them on open); no feature
    value is read. `lpcache cache verify` reads them all.
    """
    if force or not os.path.isfile(path):
        return False
    try:
        with CachedSequence(path) as cached:
            differences = attr_differences(cached.attrs, job.attrs)
            n_frames, grid_hw = cached.n_frames, cached.grid_hw
    except InputError as exc:
        log.warning("%s; redoing it", exc)
        return False
    if not differences and tuple(grid_hw) != tuple(job.grid_hw):
        differences = [f"grid_hw: cache has {list(grid_hw)}, request has {list(job.grid_hw)}"]
    if differences:
        raise InputError(f"{path}: the cache was made differently ({'; '.join(differences)}); "
                         f"use another --cache folder or --force")
    if n_frames != len(job.frame_names):
        log.warning("%s: %d frames, the sequence has %d; redoing it", path, n_frames, len(job.frame_names))
        return False
    return True


class FrameDataset(Dataset):
    """Item i -> (uint8 frame (H, W, 3), job index, frame index, error message or '')."""

    def __init__(self, jobs: List[SequenceJob], protocol: str, multiple: int):
        self.items = [(j, f) for j, job in enumerate(jobs) for f in range(len(job.image_paths))]
        self.jobs, self.protocol, self.multiple = jobs, protocol, multiple

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        job_index, frame_index = self.items[index]
        job = self.jobs[job_index]
        path = job.image_paths[frame_index]
        try:
            if _frame_hw(path) != tuple(job.orig_hw):
                raise InputError(f"{path}: frame size {_frame_hw(path)} differs from the sequence's {job.orig_hw}")
            frame = prepare_frame(path, self.protocol, self.multiple)
        except InputError as exc:
            return torch.zeros(0, dtype=torch.uint8), job_index, frame_index, str(exc)
        return torch.from_numpy(frame), job_index, frame_index, ""


def _batches(jobs, batch_size):
    """Index batches in order that never span two sequences."""
    start = 0
    out = []
    for job in jobs:
        n = len(job.image_paths)
        out.extend(list(range(start + s, start + min(s + batch_size, n))) for s in range(0, n, batch_size))
        start += n
    return out


def _collate(items):
    errors = [item[3] for item in items if item[3]]
    if errors:
        return None, None, None, errors[0]
    frames = torch.stack([item[0] for item in items])
    return frames, items[0][1], items[0][2], ""


def _worker_init(_):
    torch.set_num_threads(1)


class BackgroundWriter:
    """A thread that owns the SequenceWriters; `put` blocks when `depth` blocks are waiting."""

    def __init__(self, backbone_dir, jobs: List[SequenceJob], channels: int, dtype: str, depth: int = 4):
        self.backbone_dir, self.jobs, self.channels, self.dtype = backbone_dir, jobs, channels, dtype
        self.queue = queue.Queue(maxsize=depth)
        self.error: Optional[BaseException] = None
        self.completed: List[str] = []
        self.bytes_written = 0
        self.write_seconds = 0.0
        self._open: Dict[int, SequenceWriter] = {}
        self._thread = threading.Thread(target=self._run, name="lpcache-writer", daemon=True)
        self._thread.start()

    def put(self, job_index: int, feats: np.ndarray):
        self.raise_if_failed()
        self.queue.put((job_index, feats))

    def raise_if_failed(self):
        if self.error is not None:
            raise self.error

    def finish(self, abort=False):
        self.queue.put(("abort",) if abort else None)
        self._thread.join()
        if not abort:
            self.raise_if_failed()

    def _run(self):
        while True:
            item = self.queue.get()
            if item is None or item[0] == "abort":
                self._abort_all()  # on a normal finish nothing is left open
                return
            if self.error is not None:
                continue
            try:
                self._write(*item)
            except BaseException as exc:  # handed to the main thread
                path = os.path.join(self.backbone_dir, self.jobs[item[0]].name + SUFFIX)
                self.error = exc if isinstance(exc, InputError) else InputError(f"{path}: write failed ({exc})")
                self._abort_all()

    def _write(self, job_index, feats):
        started = time.perf_counter()
        job = self.jobs[job_index]
        writer = self._open.get(job_index)
        if writer is None:
            writer = SequenceWriter(self.backbone_dir, job.name, job.frame_names, job.grid_hw, self.channels,
                                    self.dtype, job.attrs)
            self._open[job_index] = writer
        writer.write(feats, normalized=True)
        if writer.written == writer.n_frames:
            writer.close()
            del self._open[job_index]
            self.completed.append(job.name)
            self.bytes_written += os.path.getsize(writer.path)
            log.info("%s: %d frames written", writer.path, writer.n_frames)
        self.write_seconds += time.perf_counter() - started

    def _abort_all(self):
        for writer in self._open.values():
            writer.abort()
        self._open.clear()


class BatchForward:
    """uint8 frames (B, H, W, 3) -> L2-normalised float32 features (B, h, w, C), the seed's way (module doc).

    Forward passes on `device` with optional CUDA autocast; on CUDA OOM, halve the batch and retry.
    """

    def __init__(self, model, spec, device, amp=False):
        self.model, self.spec, self.device = model, spec, torch.device(device)
        self.amp = amp and self.device.type == "cuda"
        if amp and not self.amp:
            log.warning("--amp applies on CUDA only; running in float32 on %s", self.device)
        self.limit = None
        self.contiguous = False           # NCHW output made contiguous before the L2 norm (protocol's choice)
        self.seconds = 0.0

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> np.ndarray:
        started = time.perf_counter()
        frames = frames.to(self.device, non_blocking=True)
        if frames.dtype == torch.uint8:   # lpcache's seed/native frames: x / 255, backbone mean/std
            x = normalize(frames, self.spec.mean, self.spec.std).contiguous()
        else:                             # a protocol plug-in's input, normalised as its reference does
            x = frames.to(torch.float32).contiguous()
        limit = self.limit or x.shape[0]
        outputs, start = [], 0
        while start < x.shape[0]:
            chunk = x[start:start + limit]
            try:
                with torch.autocast(self.device.type, enabled=self.amp), _exact_float32(self.device, not self.amp):
                    y = self.model(chunk)
            except torch.cuda.OutOfMemoryError:
                if limit == 1:
                    raise InputError(f"out of memory on {self.device} even with batch size 1") from None
                limit = max(1, limit // 2)
                self.limit = limit
                torch.cuda.empty_cache()
                log.warning("out of memory on %s: batch size reduced to %d", self.device, limit)
                continue
            y = y.float().cpu()
            outputs.append(F.normalize(y.contiguous() if self.contiguous else y, dim=1).permute(0, 2, 3, 1))
            start += chunk.shape[0]
        result = torch.cat(outputs).numpy()
        self.seconds += time.perf_counter() - started
        return result


def _follow_reference_forward(protocol, model, forward):
    """A protocol plug-in's forward as its reference runs it: frames one at a time and/or attention computed
    explicitly (timm's `fused_attn = False` on every attention module), where the protocol says so."""
    from . import protocols

    rule = protocols.get(protocol)
    if rule.frames_per_forward:
        forward.limit = rule.frames_per_forward
    forward.contiguous = rule.contiguous_features
    if not rule.fused_attention:
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = False
    log.info("protocol %s: %s frame(s) per forward pass, %s attention", protocol, forward.limit or "batch",
             "fused" if rule.fused_attention else "explicit")


@contextlib.contextmanager
def _exact_float32(device, enabled):
    """On CUDA, float32 convolutions and matrix products without TF32 (on by default for cuDNN), so float32
    features match the CPU's to ~1e-6; --amp is the fast option."""
    if not enabled or device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def _run_frames(todo, spec, protocol, forward, writer, batch_size, num_workers, device, desc, progress) -> int:
    """Decode (DataLoader workers), forward, and hand features to the writer; returns frames done."""
    if not todo:
        return 0
    loader = DataLoader(FrameDataset(todo, protocol, spec.stride), batch_sampler=_batches(todo, batch_size),
                        num_workers=num_workers, collate_fn=_collate, worker_init_fn=_worker_init,
                        pin_memory=torch.device(device).type == "cuda")
    done = 0
    with progress_bar(sum(len(job.image_paths) for job in todo), desc, unit="frame", enabled=progress) as bar:
        for frames, job_index, _, error in loader:
            if error:
                raise InputError(error)
            feats = forward(frames)
            expected = (frames.shape[0], *todo[job_index].grid_hw, spec.channels)
            if feats.shape != expected:
                raise InputError(f"{desc}: features of shape {feats.shape}, expected {expected}")
            writer.put(job_index, feats)
            done += frames.shape[0]
            bar.update(frames.shape[0])
    return done


def extract(davis_root=None, cache_dir="cache", backbone="efficientnet_lite0", checkpoint=None, set_name="val",
            filelist=None, sequences: Optional[SequenceType[str]] = None, protocol="seed", dtype="float16",
            batch_size=8, device=None, amp=False, force=False, num_workers=2, random_init=False,
            progress=True, trust_checkpoint=False) -> ExtractResult:
    """Extract one backbone's features for the chosen DAVIS sequences into `cache_dir`. See module doc.

    `trust_checkpoint`: load the checkpoint with full unpickling (only for files you trust); recorded as
    `checkpoint_trusted` in each file's provenance.
    """
    from . import protocols

    protocols.get(protocol)   # an unknown name is an InputError listing the registered ones
    if batch_size < 1:
        raise InputError(f"batch size {batch_size}: must be at least 1")
    if dtype not in ("float16", "float32"):
        raise InputError(f"dtype {dtype!r}: expected float16 or float32")
    device = str(resolve_device(device))
    started = time.perf_counter()
    seqs = _load_sequences(davis_root, set_name, filelist, sequences)
    model, spec, report = backbones.create(backbone, checkpoint, random_init=random_init and checkpoint is None,
                                           trust_checkpoint=trust_checkpoint)
    model = model.to(device)
    sha = report.sha256 if report else RANDOM_INIT
    load_info = {"checkpoint": report.path if report else None,
                 "checkpoint_tensors": f"{report.matched}/{report.total}" if report else None,
                 "checkpoint_trusted": bool(report.trusted) if report else False}
    bid = make_backbone_id(spec.name, protocol, sha, explicit_checkpoint=checkpoint is not None)
    backbone_dir = os.path.join(os.fspath(cache_dir), bid)
    jobs = plan_jobs(seqs, spec, protocol, dtype, sha, bid, load_info)
    todo = [job for job in jobs if not _is_done(job, os.path.join(backbone_dir, job.name + SUFFIX), force)]
    skipped = [job.name for job in jobs if job.name not in {j.name for j in todo}]
    if skipped:
        log.info("%d sequences already complete, skipped: %s", len(skipped), ", ".join(skipped))
    try:
        os.makedirs(backbone_dir, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{backbone_dir}: cannot create the cache folder ({exc})") from None
    forward = BatchForward(model, spec, device, amp)
    _follow_reference_forward(protocol, model, forward)
    writer = BackgroundWriter(backbone_dir, todo, spec.channels, dtype)
    loop_started = time.perf_counter()
    try:
        done = _run_frames(todo, spec, protocol, forward, writer, batch_size, num_workers, device,
                           desc=bid, progress=progress)
        writer.finish()
    except BaseException:
        writer.finish(abort=True)
        raise
    loop_seconds = time.perf_counter() - loop_started
    FeatureCache(backbone_dir).update_manifest()
    seconds = time.perf_counter() - started
    result = ExtractResult(bid, backbone_dir, writer.completed, skipped, done, writer.bytes_written, seconds,
                           forward.seconds, loop_seconds)
    log.info("%s: %d sequences extracted (%d skipped), %d frames in %.1f s (frame loop %.1f s, %.2f frames/s; "
             "forward %.1f s, writing %.1f s in the background), %.3f GB written", bid, len(result.extracted),
             len(skipped), done, seconds, loop_seconds, result.frames_per_second, forward.seconds,
             writer.write_seconds, result.bytes_written / 1e9)
    return result
