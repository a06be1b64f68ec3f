"""`propagate(...)`: one propagation setting over a feature cache and a DAVIS root -> a run folder of masks.

Output size per protocol (the cache's `protocol` attribute):
  * `seed`: frame 0's annotation is resized to the network input size (`input_hw`, 480x880) with PIL NEAREST;
    labels come from it and predictions are written at that size (score with gt_size=input_hw).
  * `native`: the annotation is used at its own size and soft maps are up-sampled straight to it, so the
    masks match the original annotations (score without gt_size).
  * no `protocol` attribute (hand-made caches): `out_size` if given, else the annotation's own size.
`out_size` overrides the size for every protocol. Frame 0's output is the (resized) annotation.
"""
import concurrent.futures
import logging
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from .cache import IDENTITY_ATTRS, FeatureCache
from .config import PropagationParams
from .davis import load_davis, read_mask
from .errors import InputError
from .propagation.engine import PRECISIONS, iter_propagate, resolve_device
from .propagation.labels import label_ids
from .provenance import provenance
from .results import RunFolder, run_id

log = logging.getLogger(__name__)


def output_size(attrs: Dict, annotation_hw, out_size=None):
    """(H, W) of the written masks for a cache with these attributes (see the module docstring)."""
    if out_size is not None:
        return tuple(int(v) for v in out_size)
    if attrs.get("protocol") == "seed":
        return tuple(int(v) for v in attrs.get("input_hw") or (480, 880))
    return tuple(int(v) for v in annotation_hw)


class _Job:
    """One sequence, checked before any work starts."""

    def __init__(self, sequence, cache_path, frames: List[str], first_mask: np.ndarray, out_hw, attrs):
        self.sequence = sequence
        self.cache_path = cache_path
        self.frames = frames
        self.first_mask = first_mask
        self.out_hw = out_hw
        self.attrs = attrs


def prepare_jobs(cache: FeatureCache, sequences, settings: Sequence[PropagationParams], out_size=None) -> List[_Job]:
    """Check every sequence (in cache, frame counts, first mask, parameters) and return the jobs."""
    missing = [s.name for s in sequences if not cache.has(s.name)]
    if missing:
        raise InputError(f"{cache.root}: sequences missing from the cache: {', '.join(missing)}")
    jobs = []
    for sequence in sequences:
        with cache.open(sequence.name) as cached:
            path, attrs, grid_hw = cached.path, dict(cached.attrs), cached.grid_hw
            cache_frames = list(cached.frames)
        frames = sequence.frame_names
        if len(cache_frames) != len(frames):
            raise InputError(f"{path}: {len(cache_frames)} frames in the cache, {len(frames)} JPEGs in "
                             f"{sequence.image_dir}")
        annotations = sequence.annotation_paths
        if not annotations:
            raise InputError(f"{sequence.annotation_dir or sequence.image_dir}: no first-frame annotation for "
                             f"{sequence.name}")
        first_mask = read_mask(annotations[0])
        if first_mask.ndim != 2:
            raise InputError(f"{annotations[0]}: expected a palette (id) PNG, got shape {first_mask.shape}")
        label_ids(first_mask, where=annotations[0])
        for params in settings:
            try:
                params.validate(grid_hw)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
        jobs.append(_Job(sequence, path, frames, first_mask, output_size(attrs, first_mask.shape, out_size), attrs))
    return jobs


def propagate(cache_dir, davis_root, out_dir, params: PropagationParams = PropagationParams(), set_name="val",
              sequences: Optional[Sequence[str]] = None, device=None, precision="float32", score=False,
              out_size=None, jobs=1, progress=True, tile_hw=None) -> str:
    """Propagate frame-0 annotations through cached features; returns the run folder path.

    Masks go to `<out_dir>/<backbone_id>__<params.id>/<seq>/<frame>.png`; finished sequences are skipped on
    a re-run. With `score`, the run is scored with lpcache.score and the official CSVs are written into it.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    params.validate()
    cache = FeatureCache(cache_dir)
    sequence_list = load_davis(davis_root, set_name, sequences)
    if not sequence_list:
        raise InputError(f"{davis_root}: no sequence selected")
    job_list = prepare_jobs(cache, sequence_list, [params], out_size)
    device = resolve_device(device)
    run = RunFolder(out_dir, run_id(params, cache.backbone_id))
    common = {k: job_list[0].attrs.get(k) for k in IDENTITY_ATTRS}
    identity = {"params": params.as_dict(), "backbone_id": cache.backbone_id, "cache_attrs": common,
                "out_size": list(out_size) if out_size else None}
    run.check_compatible(identity)
    record = run.read_run_json() or {}
    record.update(provenance(kind="lpcache.propagate", identity=identity, cache_dir=os.path.abspath(cache.root),
                             davis_root=os.path.abspath(davis_root), set=set_name, device=str(device),
                             precision=precision))
    record.setdefault("sequences", {})
    os.makedirs(run.root, exist_ok=True)
    run.write_run_json(record)
    bar = tqdm(job_list, desc=f"propagate {params.id}", unit="seq", disable=not progress)
    for job in bar:
        name = job.sequence.name
        if run.is_done(name):
            log.info("%s: already done, skipped", name)
            continue
        bar.set_postfix_str(name)
        seconds = _propagate_sequence(job, params, run, device, precision, tile_hw, progress)
        record["sequences"][name] = {"frames": len(job.frames), "out_hw": list(job.out_hw),
                                     "seconds": round(seconds, 3),
                                     "seconds_per_frame": round(seconds / max(1, len(job.frames) - 1), 4)}
        run.write_run_json(record)
    if score:
        _score_run(run, davis_root, set_name, [j.sequence.name for j in job_list], job_list, jobs, progress, record,
                   out_size)
    return run.root


def _propagate_sequence(job: _Job, params, run: RunFolder, device, precision, tile_hw, progress) -> float:
    """Propagate one sequence and write its masks (in a writer thread) and done marker."""
    from .cache import CachedSequence

    started = time.perf_counter()
    name = job.sequence.name
    run.start_sequence(name)
    with CachedSequence(job.cache_path) as cached, concurrent.futures.ThreadPoolExecutor(1) as writer:
        pending = []
        for t, masks in iter_propagate(cached, job.first_mask, [params], job.out_hw, device=device,
                                       precision=precision, progress=progress, tile_hw=tile_hw):
            pending.append(writer.submit(run.write_frame, name, job.frames[t], masks[params]))
            if len(pending) > 8:
                pending.pop(0).result()
        for future in pending:
            future.result()
    seconds = time.perf_counter() - started
    run.finish_sequence(name, {"frames": len(job.frames), "params": params.as_dict(), "seconds": round(seconds, 3)})
    log.info("%s: %d frames in %.1f s", name, len(job.frames), seconds)
    return seconds


def _score_run(run, davis_root, set_name, names, job_list, jobs, progress, record, out_size):
    """Score the run folder (seed protocol or --out-size: against annotations resized to the output size)."""
    try:
        from . import score as scoring
    except ImportError:
        raise InputError("--score: lpcache.score is not available in this installation") from None
    seed = job_list[0].attrs.get("protocol") == "seed"
    gt_size = tuple(job_list[0].out_hw) if (seed or out_size) else None
    result = scoring.score(davis_root, run.root, set_name=set_name, sequences=names, gt_size=gt_size, jobs=jobs,
                           progress=progress)
    scoring.write_csvs(result, run.root, set_name)
    record["scores"] = {"global": result.global_scores, "gt_size": list(gt_size) if gt_size else None}
    run.write_run_json(record)
    log.info("J&F-Mean %.4f", result.global_scores.get("J&F-Mean", float("nan")))
    return result
