"""`sweep(...)`: a grid of propagation settings over one or more feature caches, scored in memory.

    grid = load_grid(path) / grid_from_options(path, temperature="0.05,0.1", ...)   -> SweepGrid
    plan = plan_sweep(caches, davis_root, out_dir, grid, ...)                         -> SweepPlan (all checks)
    result = sweep(caches, davis_root, out_dir, grid, ...)                            -> SweepResult

Per (cache, video) one task: one `iter_propagate` call with every setting still missing; each setting's
frame is scored with lpcache.metrics against the ground truth prepared once per frame (identical masks of
different settings are scored once); the per-frame J/F of every setting go to a shard
`<out>/shards/<backbone_id>/<seq>.json`, written atomically. A re-run reads the shards and computes only
the (setting, video) pairs they lack. Tasks run in this process, with joblib over videos (`jobs`), or on a
dask.distributed cluster (`backend="dask"`, `scheduler=ADDRESS`); caches, DAVIS root and output folder must
then be on a filesystem every worker sees.

Protocol: each cache's propagation rule comes from its `protocol` attribute (seed/native/none: the seed's;
dino, vfs, dinov3: their own; `sweep_protocol`), every cache of one sweep shares it, and an axis the grid does
not give takes that protocol's default (`grid_from_options(..., defaults=protocols.get(rule).defaults)`).
sweep.json / provenance.json record it as `propagation_protocol`.

Scores are combined exactly as `lpcache score` does (per-object statistics of the per-frame values in frame
order, then plain means over objects in set order), so each setting's numbers equal `lpcache propagate` +
`lpcache score` for that setting to the last bit.

Identity: a shard records its sequence's own cache attributes (so one native-protocol cache of mixed frame
sizes sweeps over all its sequences) and the precision; saved result folders are named and checked like
`lpcache propagate`'s (`results.run_id`, precision included; run.json written once a sequence finished).
Safety: caches are validated before anything is written; every output path is checked to resolve inside
`out_dir`; a shard is read, merged and rewritten under its file lock (`shards/<backbone_id>/.<seq>.lock`), so
sweeps with different grids on one folder keep each other's settings; a saved sequence is written under its
run folder's sequence lock.
"""
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import metrics
from .atomic import ensure_inside, write_json_atomic
from .cache import IDENTITY_ATTRS, CachedSequence, FeatureCache
from .config import PropagationParams, SweepGrid
from .davis import load_davis, parse_hw, validate_name
from .errors import InputError
from .execution import BACKENDS, plan_local, run_parallel, threads_per_process
from .progress import format_duration, progress_bar
from .provenance import provenance

log = logging.getLogger(__name__)

SHARD_FORMAT = "lpcache.sweep-shard"
SHARD_VERSION = 1


# ----------------------------------------------------------------------------------------------- the grid
def parse_values(text: str, option: str) -> List[str]:
    """'0.05,0.1,0.7' -> ['0.05', '0.1', '0.7']; an empty item is an error."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise InputError(f"{option}: empty list")
    if not all(items):
        raise InputError(f"{option} {text!r}: empty item in the list")
    return items


def load_grid_mapping(path) -> Dict:
    """The raw {key: values} of a TOML (.toml) or JSON (.json) grid file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: grid file not found")
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension == ".toml":
            import tomllib

            with open(path, "rb") as handle:
                mapping = tomllib.load(handle)
        elif extension == ".json":
            with open(path, encoding="utf-8") as handle:
                mapping = json.load(handle)
        else:
            raise InputError(f"{path}: grid file must end in .toml or .json")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid {extension[1:].upper()} file ({exc})") from None
    if not isinstance(mapping, dict):
        raise InputError(f"{path}: expected a table of lists (temperature, topk, radius, video_len)")
    return mapping


def load_grid(path) -> SweepGrid:
    return SweepGrid.from_mapping(load_grid_mapping(path), where=os.fspath(path))


def grid_from_options(grid_file=None, temperature=None, topk=None, radius=None, video_len=None,
                      defaults=None) -> SweepGrid:
    """A grid from a file and/or comma-separated lists; a list given on the command line replaces the file's.

    An axis given nowhere takes `defaults[axis]` (a protocol's `.defaults`; None: the seed's)."""
    mapping = load_grid_mapping(grid_file) if grid_file else {}
    where = os.fspath(grid_file) if grid_file else "command line"
    options = {"temperature": temperature, "topk": topk, "radius": radius, "video_len": video_len}
    if grid_file:
        SweepGrid.from_mapping(mapping, where=where, defaults=defaults)  # the file's own errors, named as such
    for key, text in options.items():
        if text is not None:
            mapping[key] = parse_values(text, "--" + key.replace("_", "-"))
            where = "command line" if not grid_file else f"{grid_file} + command line"
    if not mapping:
        raise InputError("empty grid: give --grid FILE or at least one of --temperature, --topk, --radius, "
                         "--video-len")
    return SweepGrid.from_mapping(mapping, where=where, defaults=defaults)


def sweep_protocol(caches: Sequence, expected=None, sequences=None) -> str:
    """The propagation rule shared by the caches (`run_propagation.cache_protocol` of each, `expected` checked
    against every one); caches of different rules are an InputError. Known before the grid is built, so a
    grid's missing axes can take that protocol's defaults."""
    from .run_propagation import cache_protocol

    rules = {}
    for cache in caches:
        rules.setdefault(cache_protocol(cache, expected, sequences), os.fspath(cache))
    if len(rules) > 1:
        described = "; ".join(f"{path} propagates under {rule!r}" for rule, path in rules.items())
        raise InputError(f"caches of different protocols cannot be compared in one sweep: {described}")
    return next(iter(rules), "seed")


# ----------------------------------------------------------------------------------------------- planning
@dataclasses.dataclass
class VideoTask:
    """One (cache, video) pass: settings to score (into the shard) and settings whose masks to save."""

    backbone_id: str
    cache_path: str
    sequence: object                 # lpcache.davis.Sequence
    frames: List[str]
    first_mask: np.ndarray
    out_hw: tuple
    identity: Dict
    shard_path: str
    score: List[PropagationParams]
    save: List[PropagationParams]
    runs_dir: str                    # where saved result folders go
    device: Optional[str]
    precision: str
    threads: Optional[int] = None
    done_identity: Optional[Dict] = None     # the sequence identity saved sequences record (propagate's)
    run_record: Optional[Dict] = None        # run-level identity and provenance of saved run folders
    protocol: str = "seed"                   # the propagation rule (run_propagation.propagation_protocol)

    @property
    def settings(self) -> List[PropagationParams]:
        return list(dict.fromkeys(list(self.score) + list(self.save)))


@dataclasses.dataclass
class SweepPlan:
    """Everything checked before work starts: caches, sequences, settings, tasks per (cache, video)."""

    caches: List[FeatureCache]
    sequences: list                  # lpcache.davis.Sequence, set order
    settings: List[PropagationParams]
    grid: SweepGrid
    out_dir: str
    davis_root: str
    set_name: str
    protocol: Dict
    tasks: List[VideoTask]           # one per (cache, video), in cache then set order
    out_size: Optional[tuple] = None

    def shard_path(self, backbone_id, seq) -> str:
        return shard_path(self.out_dir, backbone_id, seq)


def shard_path(out_dir, backbone_id, seq) -> str:
    """`<out>/shards/<backbone_id>/<seq>.json`, refused when it would resolve outside `out_dir`."""
    path = os.path.join(out_dir, "shards", validate_name(backbone_id, "backbone id"),
                        validate_name(seq, os.fspath(out_dir)) + ".json")
    ensure_inside(path, out_dir, "shard")
    return path


def shard_lock_path(path) -> str:
    """The lock file of a shard: `.<seq>.lock` beside it."""
    folder, name = os.path.split(path)
    return os.path.join(folder, "." + os.path.splitext(name)[0] + ".lock")


def runs_dir(out_dir) -> str:
    path = os.path.join(out_dir, "runs")
    ensure_inside(path, out_dir, "runs folder")
    return path


def plan_sweep(caches: Sequence, davis_root, out_dir, grid: SweepGrid, set_name="val", sequences=None,
               device=None, precision="float32", out_size=None, save_all=False, threads=None) -> SweepPlan:
    """Check every input (grid, caches, protocols, sequences) and build the tasks; nothing is written."""
    from .run_propagation import prepare_jobs, sequence_identity
    from .devices import resolve_device
    from .propagation.engine import PRECISIONS

    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    grid.validate()
    settings = grid.settings()
    if not caches:
        raise InputError("no cache given (--cache)")
    cache_list = [FeatureCache(c) for c in caches]
    ids = [c.backbone_id for c in cache_list]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"{', '.join(duplicates)}: the same backbone id given twice (--cache)")
    sequence_list = load_davis(davis_root, set_name, sequences)
    if not sequence_list:
        raise InputError(f"{davis_root}: no sequence selected")
    out_size = parse_hw(out_size) if isinstance(out_size, str) else out_size
    for cache in cache_list:
        validate_name(cache.backbone_id, cache.root)
    jobs_per_cache = [prepare_jobs(cache, sequence_list, settings, out_size) for cache in cache_list]
    protocol = _common_protocol(cache_list, jobs_per_cache)
    runs_root = runs_dir(out_dir)
    device_name = str(resolve_device(device))      # recorded as used, never "auto"
    tasks = []
    for cache, jobs in zip(cache_list, jobs_per_cache):
        record = _run_record(cache, jobs, plan_out_size=out_size, davis_root=davis_root, set_name=set_name,
                             device=device_name, precision=precision)
        for job in jobs:
            name = job.sequence.name
            identity = _task_identity(cache, job, precision)
            path = shard_path(out_dir, cache.backbone_id, name)
            done = done_settings(path, identity)
            score = [p for p in settings if p.id not in done]
            done_identity = sequence_identity(job.attrs, job.out_hw)
            save = _to_save(runs_root, cache.backbone_id, settings, name, done_identity, precision, record) \
                if save_all else []
            tasks.append(VideoTask(cache.backbone_id, job.cache_path, job.sequence, job.frames, job.first_mask,
                                   tuple(job.out_hw), identity, path, score, save, runs_root, device_name,
                                   precision, threads, done_identity, record, protocol=job.protocol))
    return SweepPlan(cache_list, sequence_list, settings, grid, os.fspath(out_dir), os.fspath(davis_root),
                     set_name, protocol, tasks, tuple(out_size) if out_size else None)


def _run_record(cache, jobs, plan_out_size, davis_root, set_name, device, precision) -> Dict:
    """Shared attributes and provenance fields of the run folders a sweep saves for one cache."""
    from .run_propagation import shared_attrs

    return {"cache_attrs": shared_attrs(jobs[0].attrs), "out_size": list(plan_out_size) if plan_out_size else None,
            "cache_dir": os.path.abspath(cache.root), "davis_root": os.path.abspath(davis_root), "set": set_name,
            "device": str(device), "precision": precision}


def _saved_identity(record, backbone_id, params) -> Dict:
    """run.json identity of a saved result folder (as `lpcache propagate` records it)."""
    from .run_propagation import run_identity

    return run_identity(params, backbone_id, record["cache_attrs"], record["precision"], record["out_size"])


def _to_save(runs_root, backbone_id, settings, name, done_identity, precision, record) -> List[PropagationParams]:
    """Settings whose result folder lacks sequence `name`; refuses folders made differently (checked now,
    before anything is written)."""
    save = []
    for params in settings:
        run = _run_folder(runs_root, backbone_id, params, precision)
        run.check_compatible(_saved_identity(record, backbone_id, params))
        if run.is_done(name):
            run.check_sequence(name, done_identity)
        else:
            save.append(params)
    return save


def _common_protocol(cache_list, jobs_per_cache) -> Dict:
    """The protocol shared by every cache file, and the input size if all share one ("per sequence" if not).

    Different protocols are an InputError; so are caches whose masks of one sequence would be written (and
    scored) at different sizes. Sequences of one cache may have different sizes (DAVIS-2017 native caches).
    """
    protocols = {}
    for jobs in jobs_per_cache:
        for job in jobs:
            protocols.setdefault(job.attrs.get("protocol"), job.cache_path)
    if len(protocols) > 1:
        described = "; ".join(f"{path} has protocol {p!r}" for p, path in protocols.items())
        raise InputError(f"caches of different protocols cannot be compared in one sweep: {described}")
    for same_sequence in zip(*jobs_per_cache):
        sizes = {tuple(job.out_hw): job.cache_path for job in same_sequence}
        if len(sizes) > 1:
            described = "; ".join(f"{path} writes {hw[0]}x{hw[1]}" for hw, path in sizes.items())
            raise InputError(f"caches scored at different sizes cannot be compared in one sweep "
                             f"({same_sequence[0].sequence.name}): {described}")
    input_sizes = {str(_as_list(job.attrs.get("input_hw"))): _as_list(job.attrs.get("input_hw"))
                   for jobs in jobs_per_cache for job in jobs}
    input_hw = next(iter(input_sizes.values())) if len(input_sizes) == 1 else "per sequence"
    return {"protocol": next(iter(protocols)), "input_hw": input_hw}


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _task_identity(cache, job, precision) -> Dict:
    """What a shard's numbers depend on; a shard with another identity is recomputed."""
    return {"backbone_id": cache.backbone_id, "cache_file": os.path.abspath(job.cache_path),
            "cache_bytes": os.path.getsize(job.cache_path),
            "cache_attrs": {k: _as_list(job.attrs.get(k)) for k in IDENTITY_ATTRS},
            "annotations": os.path.abspath(job.sequence.annotation_dir), "frames": list(job.frames),
            "out_hw": list(job.out_hw), "precision": precision}


def _run_folder(runs_root, backbone_id, params, precision="float32"):
    """The result folder `<runs_root>/<run_id>` (lpcache.results layout; precision in the id unless float32)."""
    from .results import RunFolder, run_id

    return RunFolder(runs_root, run_id(params, backbone_id, precision))


# ----------------------------------------------------------------------------------------------- shards
def read_shard(path) -> Optional[Dict]:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            shard = json.load(handle)
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable shard (%s), recomputed", path, exc)
        return None
    if shard.get("format") != SHARD_FORMAT or shard.get("version") != SHARD_VERSION:
        log.warning("%s: not a version-%d sweep shard, recomputed", path, SHARD_VERSION)
        return None
    return shard


def done_settings(path, identity) -> Dict[str, Dict]:
    """Settings already in the shard at `path` if it was made from the same inputs, else {}."""
    shard = read_shard(path)
    if shard is None:
        return {}
    if shard.get("identity") != identity:
        log.warning("%s: made from other inputs (cache, frames or size changed), recomputed", path)
        return {}
    return shard.get("settings", {})


def shard_arrays(entry: Dict):
    """(J, F) float64 arrays of shape (n_objects, frames) of one setting's shard entry."""
    return np.array(entry["J"], dtype=np.float64), np.array(entry["F"], dtype=np.float64)


# ----------------------------------------------------------------------------------------------- one video
def run_task(task: VideoTask, on_frame=None) -> Dict:
    """Propagate one video for all the task's settings; score and save as asked; update its shard.

    Runs in a worker (joblib / dask) as well as in-process; returns a small summary dict. `on_frame(t)` (in
    process only) is called after each frame t.
    """
    import torch

    previous_threads = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(task.threads)
    try:
        return _run_task(task, on_frame)
    finally:
        torch.set_num_threads(previous_threads)


def _run_task(task: VideoTask, on_frame=None) -> Dict:
    from .scoring import load_gt_sequence

    started = time.perf_counter()
    name = task.sequence.name
    gt = load_gt_sequence(task.sequence, task.out_hw)
    position = {frame: t for t, frame in enumerate(task.frames)}
    missing = [f for f in gt.frame_ids if f not in position]
    if missing:
        raise InputError(f"{task.cache_path}: annotated frames {', '.join(missing[:3])} have no features")
    evaluated = {position[f]: i for i, f in enumerate(gt.frame_ids)}
    shape = (gt.n_objects, len(gt.frame_ids))
    scores = {p: (np.empty(shape), np.empty(shape)) for p in task.score}
    with contextlib.ExitStack() as locks:
        runs = _claim_runs(task, locks)
        try:
            score_seconds = _propagate_task(task, runs, scores, evaluated, gt, on_frame)
        except BaseException:
            for run in runs.values():
                run.discard_sequence(name)
            raise
        seconds = time.perf_counter() - started
        for params, run in runs.items():
            run.finish_sequence(name, {"frames": len(task.frames), "params": params.as_dict(),
                                       "precision": task.precision, "identity": task.done_identity,
                                       "seconds": round(seconds, 3), "by": "lpcache.sweep"})
    for params, run in runs.items():
        _record_saved(task, params, run, seconds)
    if scores:
        _update_shard(task, gt, scores, seconds)
    log.info("%s/%s: %d settings scored, %d saved in %.1f s (scoring %.1f s)", task.backbone_id, name,
             len(task.score), len(runs), seconds, score_seconds)
    return {"backbone_id": task.backbone_id, "sequence": name, "scored": len(task.score),
            "saved": len(runs), "seconds": seconds, "score_seconds": score_seconds}


def _claim_runs(task: VideoTask, locks: contextlib.ExitStack) -> Dict:
    """Lock the saved runs' sequence folders (in path order: no deadlock between sweeps), skip those another
    process finished meanwhile, clear the others; {params: RunFolder} to write."""
    name = task.sequence.name
    folders = {p: _run_folder(task.runs_dir, task.backbone_id, p, task.precision) for p in task.save}
    runs = {}
    for params, run in sorted(folders.items(), key=lambda item: item[1].root):
        locks.enter_context(run.lock(name))
        if run.is_done(name):
            if task.done_identity is not None:
                run.check_sequence(name, task.done_identity)
            continue
        runs[params] = run
    for run in runs.values():
        run.start_sequence(name)
    return runs


def _propagate_task(task: VideoTask, runs: Dict, scores: Dict, evaluated: Dict, gt, on_frame=None) -> float:
    """One propagation pass: write the saved runs' masks and score the evaluated frames; scoring seconds."""
    from .propagation.engine import iter_propagate
    from .propagation.labels import final_ids

    settings = list(dict.fromkeys(list(scores) + list(runs)))
    if not settings:
        return 0.0
    name = task.sequence.name
    score_seconds = 0.0
    on_device = _device_type(task.device) in DEVICE_DECODING
    with CachedSequence(task.cache_path) as cached:
        for t, masks in iter_propagate(cached, task.first_mask, settings, task.out_hw, device=task.device,
                                       precision=task.precision, protocol=task.protocol, masks_on_device=on_device):
            for params, run in runs.items():
                run.write_frame(name, task.frames[t], final_ids(_host(masks[params])))
            if t in evaluated and scores:
                tick = time.perf_counter()
                _score_frame(masks, scores, evaluated[t], gt, task)
                score_seconds += time.perf_counter() - tick
            if on_frame is not None:
                on_frame(t)
    return score_seconds


def _record_saved(task: VideoTask, params, run, seconds):
    """Merge one finished saved sequence into its run folder's run.json (as `lpcache propagate` does)."""
    if task.run_record is None:
        return
    record = task.run_record
    identity = _saved_identity(record, task.backbone_id, params)
    base = provenance(kind="lpcache.sweep", identity=identity, protocol=task.protocol,
                      cache_dir=record["cache_dir"], davis_root=record["davis_root"], set=record["set"],
                      device=record["device"], precision=task.precision)
    entry = {"frames": len(task.frames), "out_hw": list(task.out_hw), "seconds": round(seconds, 3)}

    def update(found):
        sequences = found.get("sequences") or {}
        found.update(base)
        found["sequences"] = {**sequences, task.sequence.name: entry}

    run.update_run_json(identity, update)


#: Device types whose sweeps decode and score on the device (iter_propagate(masks_on_device=True) and
#: lpcache.metrics_device): only the per-frame counts come back to the host. On the CPU, the cv2 + metrics path
#: (bit-identical to `propagate` + `score`) is faster (measured: tests/test_device_decode.py's module notes).
DEVICE_DECODING = {"cuda"}


def _device_type(device) -> str:
    return "cpu" if device is None else str(device).split(":")[0]


def _host(mask):
    """A mask as a numpy array (device masks are uint8 tensors)."""
    return mask.cpu().numpy() if hasattr(mask, "cpu") else mask


def _score_frame(masks, scores, column, gt, task):
    """J/F of every setting's mask of one evaluated frame (device masks: `_score_frame_on_device`)."""
    if any(hasattr(masks[p], "cpu") for p in scores):
        return _score_frame_on_device(masks, scores, column, gt, task)
    prepared = metrics.prepare_gt_frame(gt.frames[column], gt.n_objects)
    for params, (j, f) in scores.items():       # no memo of equal masks: hashing a mask costs more than scoring it
        try:
            j[:, column], f[:, column] = metrics.frame_scores_prepared(masks[params], prepared)
        except ValueError as exc:
            raise InputError(f"{task.cache_path}: {task.sequence.name} frame {gt.frame_ids[column]}: {exc}") from None


def _score_frame_on_device(masks, scores, column, gt, task):
    """J/F of every setting's device mask of one evaluated frame: GT prepared on the device once, integer counts
    for all settings there (lpcache.metrics_device, equal to lpcache.metrics given the masks), J/F on the host."""
    import torch

    from . import metrics_device

    settings = list(scores)
    pred = torch.stack([masks[p] for p in settings])
    prepared = metrics_device.prepare_gt_batch(torch.as_tensor(gt.frames[column]).to(pred.device), gt.n_objects)
    try:
        j, f = metrics_device.scores_from_counts(metrics_device.frame_counts(pred, prepared))
    except ValueError as exc:
        raise InputError(f"{task.cache_path}: {task.sequence.name} frame {gt.frame_ids[column]}: {exc}") from None
    for row, params in enumerate(settings):
        scores[params][0][:, column], scores[params][1][:, column] = j[row], f[row]


def _update_shard(task: VideoTask, gt, scores, seconds):
    """Under the shard's lock: merge the new settings into the shard as it is now (its settings kept only if
    made from the same inputs) and write it, so concurrent sweeps with other grids keep each other's."""
    from .results import waiting_lock

    os.makedirs(os.path.dirname(task.shard_path), exist_ok=True)
    with waiting_lock(shard_lock_path(task.shard_path), task.shard_path):
        old = read_shard(task.shard_path)
        entries = old.get("settings", {}) if old and old.get("identity") == task.identity else {}
        for params, (j, f) in scores.items():
            entries[params.id] = {"params": params.as_dict(), "J": j.tolist(), "F": f.tolist()}
        shard = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "backbone_id": task.backbone_id,
                 "sequence": task.sequence.name, "identity": task.identity, "n_objects": gt.n_objects,
                 "frame_ids": gt.frame_ids, "settings": entries,
                 "provenance": provenance(kind="lpcache.sweep-shard", device=str(task.device),
                                          seconds=round(seconds, 3))}
        write_json_atomic(task.shard_path, shard)


# ----------------------------------------------------------------------------------------------- scheduling
def run_tasks(tasks: Sequence[VideoTask], jobs=1, backend="local", scheduler=None, progress=True,
              desc="sweep") -> List[Dict]:
    """Run the tasks in-process, over local processes (jobs > 1) or on a dask.distributed cluster: one code
    path, lpcache.execution.run_parallel (on CUDA at most one local process per GPU).

    Progress is counted in video frames: tasks with nothing left to do count as done (so the ETA is that of
    the remaining work); in-process the bar moves frame by frame, showing the video and its settings count;
    from workers it moves by a whole video as each one finishes.
    """
    done_frames = sum(len(t.frames) for t in tasks if not t.settings)
    total_frames = sum(len(t.frames) for t in tasks)
    tasks = sorted((t for t in tasks if t.settings), key=lambda t: -len(t.frames) * len(t.settings))
    if not tasks:
        return []
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    device = tasks[0].device
    processes, _ = plan_local(jobs, device)
    with progress_bar(total_frames, desc, unit="frame", enabled=progress, initial=done_frames) as bar:
        if backend == "local" and (processes == 1 or len(tasks) == 1):
            return [run_task(task, _frame_ticker(task, bar)) for task in tasks]
        if backend == "local":
            threads = threads_per_process(processes)
            for task in tasks:
                task.threads = task.threads or threads
        return run_parallel(_run_task_on, tasks, jobs, backend, scheduler, device,
                            on_result=lambda summary: _video_done(bar, summary, tasks))


def _frame_ticker(task: VideoTask, bar):
    """on_frame callback advancing `bar` by one frame of `task`: '<backbone>/<seq> 12/82, 24 settings'."""
    count, settings = len(task.frames), len(task.settings)
    label = f"{task.backbone_id}/{task.sequence.name}"

    def tick(t):
        bar.set_postfix_str(f"{label} {t + 1}/{count}, {settings} setting{'s' if settings != 1 else ''}",
                            refresh=False)
        bar.update(1)

    return tick


def _video_done(bar, summary: Dict, tasks):
    """Advance `bar` by the frames of the video a worker finished."""
    for task in tasks:
        if task.backbone_id == summary["backbone_id"] and task.sequence.name == summary["sequence"]:
            bar.set_postfix_str(f"{task.backbone_id}/{task.sequence.name} done", refresh=False)
            bar.update(len(task.frames))
            return


def _run_task_on(task: VideoTask, device=None) -> Dict:
    """run_task in a worker; `device` ("cuda:<i>", given by run_parallel) pins it to its process's GPU."""
    return run_task(dataclasses.replace(task, device=device) if device else task)


# ----------------------------------------------------------------------------------------------- results
@dataclasses.dataclass
class SweepResult:
    """Global table (one row per backbone and setting) and per-object rows, full precision."""

    rows: List[Dict]
    per_object: List[Dict]
    sequences: List[str]
    grid: SweepGrid
    backbones: List[str]
    protocol: Dict
    outputs: Dict[str, str] = dataclasses.field(default_factory=dict)   # {name: path} of write_report
    saved_runs: List[str] = dataclasses.field(default_factory=list)     # result folders written (--save-best)
    device: Optional[str] = None

    def best(self, backbone: str, n=1) -> List[Dict]:
        """The n best rows of one backbone by J&F-Mean (ties: grid order)."""
        rows = [r for r in self.rows if r["backbone"] == backbone]
        return sorted(rows, key=lambda r: -r["J&F-Mean"])[:n]


def collect(plan: SweepPlan) -> SweepResult:
    """Combine the shards of every (cache, video) into the sweep's tables, as `lpcache score` would."""
    rows, per_object = [], []
    for cache in plan.caches:
        shards = {}
        for sequence in plan.sequences:
            path = plan.shard_path(cache.backbone_id, sequence.name)
            shard = read_shard(path)
            if shard is None:
                raise InputError(f"{path}: shard missing after the sweep")
            shards[sequence.name] = shard
        for params in plan.settings:
            object_rows = []
            for sequence in plan.sequences:
                entry = shards[sequence.name]["settings"].get(params.id)
                if entry is None:
                    raise InputError(f"{plan.shard_path(cache.backbone_id, sequence.name)}: setting {params.id} "
                                     "missing after the sweep")
                object_rows.extend(metrics.sequence_rows(sequence.name, *shard_arrays(entry)))
            base = {"backbone": cache.backbone_id, "setting": params.id, **params.as_dict()}
            rows.append({**base, **metrics.global_statistics(object_rows)})
            for row in object_rows:
                per_object.append({**base, "object": row.key, **row.as_dict()})
    return SweepResult(rows, per_object, [s.name for s in plan.sequences], plan.grid,
                       [c.backbone_id for c in plan.caches], plan.protocol)


# ----------------------------------------------------------------------------------------------- the whole
def sweep(caches: Sequence, davis_root, out_dir, grid: SweepGrid, set_name="val", sequences=None, jobs=1,
          backend="local", scheduler=None, device=None, precision="float32", out_size=None, save_best=0,
          save_all=False, threads=None, progress=True) -> SweepResult:
    """Run (or resume) a sweep and write its CSVs, leaderboard, plots and sweep.json into out_dir."""
    from . import report

    started = time.perf_counter()
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "dask" and not scheduler:
        raise InputError("--backend dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    if save_best < 0:
        raise InputError(f"--save-best {save_best}: must be 0 or more")
    plan = plan_sweep(caches, davis_root, out_dir, grid, set_name, sequences, device, precision, out_size,
                      save_all, threads)
    skipped = sum(len(plan.settings) - len(t.score) for t in plan.tasks)
    device_name = plan.tasks[0].device if plan.tasks else str(device)
    notice(describe_size(plan, progress), progress)
    created = not os.path.exists(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    try:
        summaries = run_tasks(plan.tasks, jobs, backend, scheduler, progress)
    except BaseException:
        if created:
            _remove_if_only_locks(out_dir)
        raise
    result = collect(plan)
    saved = _save_best(plan, result, save_best, jobs, backend, scheduler, progress)
    if save_all:
        saved = sorted(set(saved) | {_run_folder(runs_dir(plan.out_dir), c.backbone_id, p, precision).root
                                     for c in plan.caches for p in plan.settings})
    seconds = time.perf_counter() - started
    record = provenance(kind="lpcache.sweep", caches=[os.path.abspath(c.root) for c in plan.caches],
                        davis_root=os.path.abspath(davis_root), set=set_name, sequences=result.sequences,
                        grid=grid.as_dict(), settings=[p.id for p in plan.settings], protocol=plan.protocol,
                        propagation_protocol=plan.tasks[0].protocol if plan.tasks else None,
                        device=device_name, precision=precision, backend=backend, jobs=jobs,
                        videos_run=len(summaries), pairs_reused=skipped, saved_runs=saved,
                        seconds=round(seconds, 3))
    result.outputs = report.write_report(result, out_dir, record)
    result.saved_runs, result.device = saved, device_name
    return result


def notice(text, progress=True):
    """One line about the work on stderr (progress shown), else logged at info level."""
    from .run_propagation import notice as show

    show(text, progress)


def describe_size(plan: SweepPlan, estimate=True) -> str:
    """'sweep: 12 settings x 3 videos x 246 frames (1 backbone); 1 of 3 videos already done; rough estimate
    2m10s on cpu' (the estimate: a timed affinity product of one frame, times the frames left)."""
    frames = sum(len(s.frame_names) for s in plan.sequences)
    videos = len(plan.tasks)
    todo = [t for t in plan.tasks if t.settings]
    text = (f"sweep: {len(plan.settings)} setting{'s' if len(plan.settings) != 1 else ''} x "
            f"{len(plan.sequences)} video{'s' if len(plan.sequences) != 1 else ''} x {frames} frames "
            f"({len(plan.caches)} backbone{'s' if len(plan.caches) != 1 else ''})")
    if len(todo) < videos:
        text += f"; {videos - len(todo)} of {videos} videos already done, reused"
    if not todo:
        return text
    seconds = estimate_seconds(plan, todo) if estimate else None
    if seconds is not None:
        text += f"; rough estimate {format_duration(seconds)} on {todo[0].device}"
    return text


def estimate_seconds(plan: SweepPlan, todo: Sequence[VideoTask]) -> Optional[float]:
    """Rough seconds for the tasks left: the frames to propagate times the time of one frame's affinity
    product and top-k (timed once on the device, on random features of the cache's size); None if it fails."""
    import torch

    task = max(todo, key=lambda t: len(t.frames))
    try:
        with CachedSequence(task.cache_path) as cached:
            (h, w), channels = cached.grid_hw, cached.channels
        context = min(max(p.video_len for p in task.settings), len(task.frames) - 1) + 1
        cells = h * w
        rows = min(cells, 256)
        device = torch.device(task.device)
        queries = torch.randn(rows, channels, device=device)
        keys = torch.randn(cells * context, channels, device=device)
        kmax = min(max(p.topk for p in task.settings), cells * context)
        torch.topk(queries[:8] @ keys.T, kmax, dim=1)           # warm-up
        started = time.perf_counter()
        torch.topk(queries @ keys.T, kmax, dim=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        per_frame = (time.perf_counter() - started) * cells / rows
    except (RuntimeError, InputError, OSError) as exc:
        log.debug("no estimate: %s", exc)
        return None
    return per_frame * sum(len(t.frames) for t in todo)


def describe_kept(out_dir) -> str:
    """What an interrupted sweep leaves: '4 shards (finished videos) in <out>/shards'."""
    folder = os.path.join(os.fspath(out_dir), "shards")
    count = sum(1 for _, _, names in os.walk(folder) for n in names if n.endswith(".json"))
    return f"{count} shard{'s' if count != 1 else ''} (finished videos' scores) in {folder}"


def _remove_if_only_locks(folder):
    """Remove a folder this sweep created when a failure left nothing in it but folders and lock files."""
    for parent, _, names in os.walk(folder):
        if any(not (n.startswith(".") and n.endswith(".lock")) for n in names):
            return
    shutil.rmtree(folder, ignore_errors=True)


def _save_best(plan, result, count, jobs, backend, scheduler, progress) -> List[str]:
    """Second pass: write DAVIS result folders for the `count` best settings of each backbone."""
    if not count:
        return []
    chosen = {b: [PropagationParams(r["temperature"], r["topk"], r["radius"], r["video_len"])
                  for r in result.best(b, count)] for b in result.backbones}
    runs_root = runs_dir(plan.out_dir)
    tasks = []
    for task in plan.tasks:
        save = _to_save(runs_root, task.backbone_id, chosen[task.backbone_id], task.sequence.name,
                        task.done_identity, task.precision, task.run_record)
        tasks.append(dataclasses.replace(task, score=[], save=save))
    run_tasks(tasks, jobs, backend, scheduler, progress, desc="save best")
    precision = plan.tasks[0].precision if plan.tasks else "float32"
    return [_run_folder(runs_root, b, p, precision).root for b, ps in chosen.items() for p in ps]
