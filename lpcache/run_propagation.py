"""`propagate(...)`: one propagation setting over a feature cache and a DAVIS root -> a run folder of masks.

Output size per protocol (the cache's `protocol` attribute):
  * `seed`: frame 0's annotation is resized to the network input size (`input_hw`, 480x880) with PIL NEAREST;
    labels come from it and predictions are written at that size (score with gt_size=input_hw).
  * `native`: the annotation is used at its own size and soft maps are up-sampled straight to it, so the
    masks match the original annotations (score without gt_size).
  * no `protocol` attribute (hand-made caches): `out_size` if given, else the annotation's own size.
  * `dino`, `vfs`, `dinov3`: like `native` (masks written and scored at the annotation's size).
`out_size` overrides the size under the seed's rule (other protocols refuse it: their decoding is defined
at the annotation's size). Frame 0's output is the (resized) annotation with void (255)
pixels written as background (0), as the seed's convert_davis.py ends (see propagation/labels.py).

Propagation rule: it comes from the cache (`propagation_protocol`): caches of protocol seed, native or none
propagate under the seed's rule ("seed"); dino, vfs and dinov3 caches under their own (lpcache.protocols).
`cache_protocol(cache_dir, expected)` reads it and checks a `--protocol` against it; run.json records it
(`"protocol"`).

Identity: run.json holds the run's identity (parameters, backbone id, precision, the cache's shared attributes
`RUN_ATTRS`, out_size); each sequence's `.done.json` holds its own (`sequence_identity`: the cache file's
input_hw, grid_hw, orig_hw and the output size), so one native-protocol cache of mixed frame sizes resumes with
any subset of sequences. A finished sequence whose cache file now has another identity is refused (one
`Error:` naming its `.done.json`; delete that sequence folder to redo it), never silently mixed or replaced.

Safety: the cache is validated (`FeatureCache.validate`) before anything is written; each sequence is checked,
cleared and written under its file lock (`<run>/.<seq>.lock`), so concurrent propagates into one run wait for
each other and skip what the other finished; run.json is written (merged under `<run>/.run.lock`) only once a
sequence has finished, and a failure removes the failing sequence's partial folder (and the run folder, when
this call created it and nothing finished).
"""
import concurrent.futures
import dataclasses
import logging
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from .cache import FeatureCache
from .config import PRESETS, PropagationParams
from .davis import load_davis, read_mask
from .devices import resolve_device
from .errors import InputError
from .propagation.engine import PRECISIONS, iter_propagate
from .propagation.labels import final_ids, label_ids
from .progress import progress_bar
from .provenance import provenance
from .results import DONE, SEQUENCE_KEYS, RunFolder, run_id

log = logging.getLogger(__name__)

#: Scores of a run scored by `propagate --score` / `run` (lpcache.scoring.write_json format).
SCORES_JSON = "scores.json"
#: Cache attributes a whole run shares (recorded in run.json); sizes are per sequence (SEQUENCE_KEYS).
RUN_ATTRS = ("backbone", "checkpoint_sha256", "protocol", "dtype")


def output_size(attrs: Dict, annotation_hw, out_size=None):
    """(H, W) of the written masks for a cache with these attributes (see the module docstring)."""
    if out_size is not None:
        return tuple(int(v) for v in out_size)
    if attrs.get("protocol") == "seed":
        return tuple(int(v) for v in attrs.get("input_hw") or (480, 880))
    return tuple(int(v) for v in annotation_hw)


#: Frame protocols (cache attribute `protocol`; None: hand-made caches) propagated under the seed's rule.
SEED_RULE = (None, "seed", "native")


def propagation_protocol(attrs: Dict, where=None) -> str:
    """The propagation rule of a cache file with these attributes: "seed" for protocol seed, native or none,
    else the protocol itself ("dino", "vfs", "dinov3"); an unregistered name is an InputError (at `where`)."""
    name = attrs.get("protocol")
    if name in SEED_RULE:
        return "seed"
    from . import protocols

    try:
        return protocols.get(name).name
    except InputError as exc:
        raise InputError(f"{where}: {exc}" if where else str(exc)) from None


def cache_protocol(cache_dir, expected=None, sequences=None) -> str:
    """The propagation rule of a feature cache (its files agree on `protocol`: FeatureCache.validate).

    `expected` (a `--protocol` name) must give the same rule (native counts as seed), else an InputError
    saying how the cache was made. `sequences`: the files to read (default: every file of the cache).
    """
    cache = FeatureCache(cache_dir)
    names = None if sequences is None else [s for s in sequences if cache.has(s)]
    attrs = next(iter(cache.validate(names or None).values()), None)
    if attrs is None:
        raise InputError(f"{cache.root}: no feature files (<seq>.h5) in the cache")
    rule = propagation_protocol(attrs, where=cache.root)
    if expected is not None and propagation_protocol({"protocol": expected}) != rule:
        raise InputError(f"{cache.root}: features extracted under protocol {attrs.get('protocol') or 'seed'!r}; "
                         f"--protocol {expected} needs a cache made with lpcache extract --protocol {expected}")
    return rule


def protocol_setting(rule: str, preset=None, where=None, **explicit) -> PropagationParams:
    """The setting to run under propagation rule `rule`: a named preset (`config.PRESETS`, seed rule only), else
    the protocol's defaults with the `explicit` values (None: not given) applied."""
    from . import protocols

    given = {k: v for k, v in explicit.items() if v is not None}
    if preset is None:  # values as given (validated, never rounded) over the protocol's defaults
        return dataclasses.replace(protocols.get(rule).setting(), **given).validate()
    if rule != "seed":
        raise InputError(f"{where or 'preset'}: preset {preset!r} is a seed-protocol setting and this cache "
                         f"propagates under {rule!r}: give the parameters instead (`lpcache protocols`)")
    if preset not in PRESETS:
        raise InputError(f"preset {preset!r}: expected one of {', '.join(sorted(PRESETS))}")
    return dataclasses.replace(PRESETS[preset], **given).validate()


class _Job:
    """One sequence, checked before any work starts."""

    def __init__(self, sequence, cache_path, frames: List[str], first_mask: np.ndarray, out_hw, attrs,
                 protocol="seed"):
        self.sequence = sequence
        self.cache_path = cache_path
        self.frames = frames
        self.first_mask = first_mask
        self.out_hw = out_hw
        self.attrs = attrs
        self.protocol = protocol      # the propagation rule (propagation_protocol)


def prepare_jobs(cache: FeatureCache, sequences, settings: Sequence[PropagationParams], out_size=None) -> List[_Job]:
    """Check every sequence (in cache, frame counts, first mask, parameters) and return the jobs."""
    missing = [s.name for s in sequences if not cache.has(s.name)]
    if missing:
        raise InputError(f"{cache.root}: sequences missing from the cache: {', '.join(missing)}")
    attrs_by_sequence = cache.validate([s.name for s in sequences])
    jobs = []
    for sequence in sequences:
        with cache.open(sequence.name) as cached:
            path, grid_hw = cached.path, cached.grid_hw
            cache_frames = list(cached.frames)
        attrs = attrs_by_sequence[sequence.name]
        rule = propagation_protocol(attrs, where=cache.path(sequence.name))
        if out_size is not None and rule != "seed":
            raise InputError(f"{cache.path(sequence.name)}: --out-size is for the seed's rule; protocol {rule!r} "
                             "writes and scores masks at the annotation's own size, as its reference does")
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
        jobs.append(_Job(sequence, path, frames, first_mask, output_size(attrs, first_mask.shape, out_size), attrs,
                         rule))
    return jobs


def _plain(value):
    """JSON-comparable form of an attribute (tuples as lists)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def shared_attrs(attrs: Dict) -> Dict:
    """The run-level part of a cache file's attributes (`RUN_ATTRS`)."""
    return {key: _plain(attrs.get(key)) for key in RUN_ATTRS}


def run_identity(params: PropagationParams, backbone_id, cache_attrs: Dict, precision, out_size=None) -> Dict:
    """What run.json records and a resumed run must match."""
    return {"params": params.as_dict(), "backbone_id": backbone_id, "precision": precision,
            "cache_attrs": cache_attrs, "out_size": list(out_size) if out_size else None}


def sequence_identity(attrs: Dict, out_hw) -> Dict:
    """What a sequence's `.done.json` records: its cache file's sizes and the written size."""
    return {**{key: _plain(attrs.get(key)) for key in SEQUENCE_KEYS}, "out_hw": list(out_hw)}


@dataclasses.dataclass
class PropagateOutcome:
    """What `propagate_run` did: the run folder, which sequences it propagated or found done, the scores
    (with `score`) and the files the scoring wrote."""

    run_dir: str
    params: PropagationParams
    sequences: List[str]
    propagated: List[str]
    skipped: List[str]
    device: str
    seconds: float
    scores: Optional[object] = None          # lpcache.scoring.ScoreResult
    written: List[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        """'2 sequences propagated, 1 already done, 12.3 s on cpu'."""
        return (f"{len(self.propagated)} sequence{'s' if len(self.propagated) != 1 else ''} propagated, "
                f"{len(self.skipped)} already done, {self.seconds:.1f} s on {self.device}")


def propagate(cache_dir, davis_root, out_dir, params: PropagationParams = PropagationParams(), set_name="val",
              sequences: Optional[Sequence[str]] = None, device=None, precision="float32", score=False,
              out_size=None, jobs=1, progress=True, tile_hw=None) -> str:
    """Propagate frame-0 annotations through cached features; returns the run folder path.

    Masks go to `<out_dir>/<run_id>/<seq>/<frame>.png` (`results.run_id`: backbone id, setting id and, unless
    float32, the precision); finished sequences are skipped on a re-run. The rule is the cache's protocol's;
    `params` is used as given (the default is the seed's: `protocol_setting(cache_protocol(cache_dir))` gives
    the cache's protocol's defaults, as `lpcache propagate` uses). With `score`, the run is scored with
    lpcache.scoring: the official CSVs and scores.json are written into it. `propagate_run` does the same and
    returns a PropagateOutcome (scores included).
    """
    return propagate_run(cache_dir, davis_root, out_dir, params, set_name, sequences, device, precision, score,
                         out_size, jobs, progress, tile_hw).run_dir


def propagate_run(cache_dir, davis_root, out_dir, params: PropagationParams = PropagationParams(), set_name="val",
                  sequences: Optional[Sequence[str]] = None, device=None, precision="float32", score=False,
                  out_size=None, jobs=1, progress=True, tile_hw=None) -> PropagateOutcome:
    """`propagate`, returning a PropagateOutcome (run folder, propagated / skipped sequences, scores, files).

    Progress: one bar (plain lines when stderr is not a terminal) over the frames of every selected sequence,
    finished ones counted as already done, so its ETA is that of the remaining work; a line says what a
    resumed run reuses.
    """
    started = time.perf_counter()
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    params.validate()
    cache = FeatureCache(cache_dir)
    sequence_list = load_davis(davis_root, set_name, sequences)
    if not sequence_list:
        raise InputError(f"{davis_root}: no sequence selected")
    job_list = prepare_jobs(cache, sequence_list, [params], out_size)
    gt_size = _score_size(job_list, out_size) if score else None
    device = resolve_device(device)
    run = RunFolder(out_dir, run_id(params, cache.backbone_id, precision))
    identity = run_identity(params, cache.backbone_id, shared_attrs(job_list[0].attrs), precision, out_size)
    run.check_compatible(identity)
    already = []
    for job in job_list:
        if run.is_done(job.sequence.name):
            run.check_sequence(job.sequence.name, sequence_identity(job.attrs, job.out_hw))
            already.append(job.sequence.name)
    if already:
        notice(f"resuming {run.root}: {len(already)} of {len(job_list)} sequences already done, skipped", progress)
    base = provenance(kind="lpcache.propagate", identity=identity, protocol=job_list[0].protocol,
                      cache_dir=os.path.abspath(cache.root), davis_root=os.path.abspath(davis_root), set=set_name,
                      device=str(device), precision=precision)
    created = [d for d in (os.fspath(out_dir), run.root) if not os.path.exists(d)]
    propagated, skipped = [], []
    total = sum(len(j.frames) for j in job_list)
    initial = sum(len(j.frames) for j in job_list if j.sequence.name in already)
    bar = progress_bar(total, f"propagate {params.id}", unit="frame", enabled=progress, initial=initial)
    try:
        with bar:
            for job in job_list:
                if job.sequence.name in already:
                    skipped.append(job.sequence.name)
                    continue
                entry = _run_sequence(job, params, run, device, precision, tile_hw, bar)
                if entry is None:          # another process finished it meanwhile
                    skipped.append(job.sequence.name)
                    bar.update(len(job.frames))
                    continue
                run.update_run_json(identity, lambda record, e=entry, n=job.sequence.name: _add_sequence(record,
                                                                                                       base, n, e))
                propagated.append(job.sequence.name)
    except BaseException:
        if not propagated:
            _remove_created(created)
        raise
    outcome = PropagateOutcome(run.root, params, [j.sequence.name for j in job_list], propagated, skipped,
                               str(device), 0.0)
    if score:
        outcome.scores, outcome.written = _score_run(run, identity, davis_root, set_name, outcome.sequences,
                                                     gt_size, jobs, progress)
    outcome.seconds = time.perf_counter() - started
    return outcome


def notice(text, progress=True):
    """A one-line message about the work (what a resume reuses, a sweep's size): on stderr when progress is
    shown, else logged at info level (-v)."""
    if progress:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    else:
        log.info("%s", text)


def describe_kept(cache_dir, out_dir, params: PropagationParams, precision="float32") -> str:
    """What an interrupted propagate leaves: '3 finished sequences in <run folder>'."""
    name = run_id(params, os.path.basename(os.path.normpath(os.fspath(cache_dir))), precision)
    folder = os.path.join(os.fspath(out_dir), name)
    done = [n for n in (os.listdir(folder) if os.path.isdir(folder) else [])
            if os.path.isfile(os.path.join(folder, n, DONE))]
    return f"{len(done)} finished sequence{'s' if len(done) != 1 else ''} in {folder}"


def _add_sequence(record: Dict, base: Dict, name, entry: Dict):
    """Merge this call's provenance and one finished sequence into a run.json record."""
    sequences = record.get("sequences") or {}
    record.update(base)
    record["sequences"] = {**sequences, name: entry}


def _remove_created(folders):
    """After a failure before any sequence finished: remove the folders this call created (deepest first)
    when they hold nothing but lock files."""
    for folder in reversed(folders):
        if os.path.isdir(folder) and not os.path.islink(folder):
            leftovers = [n for n in os.listdir(folder) if not (n.startswith(".") and n.endswith(".lock"))]
            if not leftovers:
                shutil.rmtree(folder, ignore_errors=True)


def _run_sequence(job: _Job, params, run: RunFolder, device, precision, tile_hw, bar) -> Optional[Dict]:
    """Under the sequence's lock: skip it if done (same identity), else propagate it.

    Returns the run.json entry of a sequence propagated now, None for a skipped one.
    """
    name = job.sequence.name
    identity = sequence_identity(job.attrs, job.out_hw)
    with run.lock(name):
        if run.is_done(name):
            run.check_sequence(name, identity)
            log.info("%s: already done, skipped", name)
            return None
        try:
            seconds = _propagate_sequence(job, params, run, device, precision, tile_hw, bar, identity)
        except BaseException:
            run.discard_sequence(name)
            raise
    return {"frames": len(job.frames), "out_hw": list(job.out_hw), "seconds": round(seconds, 3),
            "seconds_per_frame": round(seconds / max(1, len(job.frames) - 1), 4)}


def _propagate_sequence(job: _Job, params, run: RunFolder, device, precision, tile_hw, bar,
                        identity: Dict) -> float:
    """Propagate one sequence and write its masks (in a writer thread) and done marker; call under its lock.
    `bar` (lpcache.progress) advances by one per frame, showing the sequence and the frame."""
    from .cache import CachedSequence

    started = time.perf_counter()
    name = job.sequence.name
    run.start_sequence(name)
    with CachedSequence(job.cache_path) as cached, concurrent.futures.ThreadPoolExecutor(1) as writer:
        pending = []
        for t, masks in iter_propagate(cached, job.first_mask, [params], job.out_hw, device=device,
                                       precision=precision, progress=False, tile_hw=tile_hw,
                                       protocol=job.protocol):
            pending.append(writer.submit(run.write_frame, name, job.frames[t], final_ids(masks[params])))
            bar.set_postfix_str(f"{name} {t + 1}/{len(job.frames)}", refresh=False)
            bar.update(1)
            if len(pending) > 8:
                pending.pop(0).result()
        for future in pending:
            future.result()
    seconds = time.perf_counter() - started
    run.finish_sequence(name, {"frames": len(job.frames), "params": params.as_dict(), "precision": precision,
                               "identity": identity, "seconds": round(seconds, 3)})
    log.info("%s: %d frames in %.1f s", name, len(job.frames), seconds)
    return seconds


def _score_size(job_list, out_size):
    """The gt_size to score at: None (each annotation's own size) or the one size every mask is written at
    (seed protocol or --out-size). Sequences written at different sizes cannot be scored at one size."""
    if not (out_size or job_list[0].attrs.get("protocol") == "seed"):
        return None
    sizes = sorted({tuple(job.out_hw) for job in job_list})
    if len(sizes) > 1:
        listed = ", ".join(f"{j.sequence.name} {j.out_hw[0]}x{j.out_hw[1]}" for j in job_list)
        raise InputError(f"{job_list[0].cache_path}: --score: the sequences are written at different sizes "
                         f"({listed}); score them in separate runs")
    return sizes[0]


def _score_run(run, identity, davis_root, set_name, names, gt_size, jobs, progress):
    """Score the run folder (seed protocol or --out-size: against annotations resized to the output size) into
    its CSVs and scores.json (earlier ones removed first); returns (ScoreResult, written paths)."""
    try:
        from . import scoring
    except ImportError:
        raise InputError("--score: lpcache.scoring is not available in this installation") from None
    result, written = scoring.score_to_files(davis_root, run.root, None, set_name,
                                             json_path=os.path.join(run.root, SCORES_JSON), sequences=names,
                                             gt_size=gt_size, jobs=jobs, progress=progress)
    scores = {"global": result.global_scores, "gt_size": list(gt_size) if gt_size else None}
    run.update_run_json(identity, lambda record: record.update(scores=scores))
    log.info("J&F-Mean %.4f", result.global_scores.get("J&F-Mean", float("nan")))
    return result, written
