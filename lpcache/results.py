"""Run folders: `<runs>/<run_id>/<seq>/<frame>.png` palette masks, per-sequence done markers, run.json.

Layout:
    <runs>/<run_id>/run.json              run identity (parameters, backbone id, precision, the cache's shared
                                          attributes, out_size), device, timings, provenance
    <runs>/<run_id>/<seq>/00000.png ...   DAVIS palette PNGs (object ids), each written atomically
    <runs>/<run_id>/<seq>/.done.json      written last: the sequence is complete (frames, seconds, and the
                                          sequence's own identity: its cache file's input_hw/grid_hw/orig_hw)
    <runs>/<run_id>/.<seq>.lock           file lock held while the sequence is checked, cleared or written
    <runs>/<run_id>/.run.lock             file lock held while run.json is read, merged and rewritten
A sequence folder without `.done.json` is partial: a re-run clears it (under its lock) and redoes it; a done
one is skipped. run_id = `<backbone_id>__<params.id>` for float32, `<backbone_id>__<params.id>_<precision>`
otherwise, e.g. `r18_crw__t0.7_k8_r18_L20` and `r18_crw__t0.7_k8_r18_L20_bfloat16` (see `run_id`).

Every path is checked to resolve inside its root before anything is written or removed (a sequence name is
one path component; a symlinked sequence folder pointing elsewhere is refused).
"""
import contextlib
import dataclasses
import json
import logging
import os
import shutil
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np
from filelock import FileLock, Timeout

from .atomic import ensure_inside, write_json_atomic
from .davis import validate_name, write_mask
from .errors import InputError

log = logging.getLogger(__name__)

RUN_JSON = "run.json"
DONE = ".done.json"
RUN_LOCK = ".run.lock"
DEFAULT_PRECISION = "float32"


def run_id(params, backbone_id: Optional[str] = None, precision: str = DEFAULT_PRECISION) -> str:
    """`<backbone_id>__<params.id>` (just `params.id` without a backbone id), `_<precision>` unless float32."""
    name = f"{backbone_id}__{params.id}" if backbone_id else params.id
    return name if precision == DEFAULT_PRECISION else f"{name}_{precision}"


@contextlib.contextmanager
def waiting_lock(path, what):
    """Hold a FileLock on `path`; when another process holds it, log that and wait."""
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s: locked by another process, waiting", what)
        lock.acquire()
    try:
        yield lock
    finally:
        lock.release()



def _read_json_object(path, what, hint="") -> Dict:
    """A JSON object from `path`, or one InputError line naming the file (unreadable, or not an object)."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable {what} ({exc}){hint}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: not a {what} (expected a JSON object)")
    return value

class RunFolder:
    """One run's folder of masks."""

    def __init__(self, runs_dir, name):
        self.runs_dir = os.fspath(runs_dir)
        self.name = validate_name(name, self.runs_dir)
        self.root = os.path.join(self.runs_dir, name)
        ensure_inside(self.root, self.runs_dir, "run folder")

    @property
    def run_json(self) -> str:
        return os.path.join(self.root, RUN_JSON)

    def sequence_dir(self, seq) -> str:
        """`<root>/<seq>`, refused when `seq` is not one plain name or the folder resolves outside the run."""
        folder = os.path.join(self.root, validate_name(seq, self.root))
        ensure_inside(folder, self.root, "sequence folder")
        return folder

    def lock(self, seq):
        """Context manager: the file lock of sequence `seq` (taken before checking, clearing or writing it)."""
        os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, f".{validate_name(seq, self.root)}.lock")
        ensure_inside(path, self.root, "lock file")
        return waiting_lock(path, self.sequence_dir(seq))

    def is_done(self, seq) -> bool:
        return os.path.isfile(os.path.join(self.sequence_dir(seq), DONE))

    def done_info(self, seq) -> Dict:
        return _read_json_object(os.path.join(self.sequence_dir(seq), DONE), "done marker")

    def check_sequence(self, seq, identity: Dict):
        """Refuse a finished `seq` whose done marker records another sequence identity (its cache file changed).

        Markers written before identities were recorded (no "identity" key) are accepted.
        """
        recorded = self.done_info(seq).get("identity")
        if recorded is None:
            return
        diffs = _differences(recorded, json.loads(json.dumps(identity)))
        if diffs:
            raise InputError(f"{os.path.join(self.sequence_dir(seq), DONE)}: sequence {seq} was made from another "
                             f"cache file ({'; '.join(diffs)}); delete {self.sequence_dir(seq)} to redo it, or "
                             "choose another --out")

    def start_sequence(self, seq) -> str:
        """Clear whatever a previous, interrupted run left for `seq`; return its folder. Call under `lock(seq)`."""
        folder = self.sequence_dir(seq)
        if os.path.islink(folder):
            raise InputError(f"{folder}: is a symbolic link; lpcache writes only real folders inside {self.root}")
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        return folder

    def discard_sequence(self, seq):
        """Remove the unfinished folder of `seq` (after a failure; call under `lock(seq)`)."""
        folder = self.sequence_dir(seq)
        if os.path.isdir(folder) and not os.path.islink(folder) and not self.is_done(seq):
            shutil.rmtree(folder, ignore_errors=True)

    def write_frame(self, seq, frame_name, ids: np.ndarray):
        write_mask(os.path.join(self.sequence_dir(seq), frame_name + ".png"), ids)

    def finish_sequence(self, seq, info: Dict):
        write_json_atomic(os.path.join(self.sequence_dir(seq), DONE), info)

    def write_sequence(self, seq, frame_names: Iterable[str], masks: Iterable[np.ndarray], info: Dict):
        """All masks of a sequence, then the done marker (under the sequence's lock)."""
        with self.lock(seq):
            self.start_sequence(seq)
            for name, ids in zip(frame_names, masks):
                self.write_frame(seq, name, ids)
            self.finish_sequence(seq, info)

    def read_run_json(self) -> Optional[Dict]:
        if not os.path.isfile(self.run_json):
            return None
        return _read_json_object(self.run_json, "run record", "; choose another --out or delete it")

    def check_compatible(self, identity: Dict):
        """Refuse to resume a folder whose run.json records another cache, parameters or precision."""
        found = self.read_run_json()
        if found is None:
            return
        diffs = _differences(_recorded_identity(found), json.loads(json.dumps(identity)))
        if diffs:
            raise InputError(f"{self.run_json}: this run folder was made differently ({'; '.join(diffs)}); "
                             "choose another --out or delete it")

    def write_run_json(self, record: Dict):
        write_json_atomic(self.run_json, record)

    def update_run_json(self, identity: Dict, update: Callable[[Dict], None]) -> Dict:
        """Under the run lock: re-read run.json, check it against `identity`, apply `update`, write it back.

        Concurrent processes on one run therefore merge (each adds its own sequences) instead of overwriting.
        """
        os.makedirs(self.root, exist_ok=True)
        with waiting_lock(os.path.join(self.root, RUN_LOCK), self.run_json):
            self.check_compatible(identity)
            record = self.read_run_json() or {}
            update(record)
            self.write_run_json(record)
        return record


#: Keys of the run's shared cache identity; per-sequence sizes live in each `.done.json`.
SEQUENCE_KEYS = ("input_hw", "grid_hw", "orig_hw")


def _recorded_identity(record: Dict) -> Dict:
    """A run.json's identity in today's form: precision from the record, per-sequence sizes dropped.

    Runs written before precision and per-sequence identities were recorded stay resumable with the same
    request (their precision was recorded beside the identity).
    """
    identity = dict(record.get("identity") or {})
    identity.setdefault("precision", record.get("precision", DEFAULT_PRECISION))
    if isinstance(identity.get("cache_attrs"), dict):
        identity["cache_attrs"] = {k: v for k, v in identity["cache_attrs"].items() if k not in SEQUENCE_KEYS}
    return identity


def _differences(old: Dict, new: Dict):
    return [f"{k}: folder has {old.get(k)!r}, request has {v!r}" for k, v in new.items() if old.get(k) != v]


# ----------------------------------------------------------------------------------------------- scoring a run
@dataclasses.dataclass
class RunScoreDefaults:
    """What `lpcache score --results RUN` takes from a run folder made by lpcache (its run.json)."""

    run_json: str
    davis_root: Optional[str]
    set_name: Optional[str]
    sequences: List[str]                   # the finished ones, in run.json's order
    out_sizes: Dict[str, tuple]            # written mask size per finished sequence
    gt_size: Optional[tuple]               # the size to resize annotations to (seed protocol / out_size), or None


def run_score_defaults(results_dir) -> Optional[RunScoreDefaults]:
    """Read `<results_dir>/run.json` (None when there is none): the DAVIS root, set, finished sequences and the
    size their masks were written at. Annotations are resized to that size (gt_size) when the run resized
    them: seed protocol, or an explicit out_size (see lpcache.run_propagation.output_size)."""
    folder = os.path.normpath(os.fspath(results_dir))
    if not os.path.isfile(os.path.join(folder, RUN_JSON)):
        return None
    run = RunFolder(os.path.dirname(folder) or ".", os.path.basename(folder))
    record = run.read_run_json() or {}
    identity = record.get("identity") or {}
    entries = record.get("sequences") or {}
    done = [name for name in entries if run.is_done(name)]
    sizes = {}
    for name in done:
        hw = (entries.get(name) or {}).get("out_hw") or (run.done_info(name).get("identity") or {}).get("out_hw")
        if hw:
            sizes[name] = tuple(int(v) for v in hw)
    resized = bool(identity.get("out_size")) or (identity.get("cache_attrs") or {}).get("protocol") == "seed"
    distinct = set(sizes.values())
    gt_size = distinct.pop() if resized and len(distinct) == 1 else None
    return RunScoreDefaults(run.run_json, record.get("davis_root"), record.get("set"), done, sizes, gt_size)


def score_options(results_dir, davis_root=None, set_name=None, sequences=None, gt_size=None) -> Dict:
    """The options to score `results_dir` with: the given ones, completed from its run.json when it has one.

    Explicit values win, but a --gt-size other than the size the masks were written at, or a sequence the
    run has not finished, is an InputError naming the fix. Returns {davis_root, set_name, sequences, gt_size}.
    """
    found = run_score_defaults(results_dir)
    if found is None:
        if davis_root is None:
            raise InputError(f"{results_dir}: no run.json (not a run folder made by lpcache): give --davis")
        return {"davis_root": davis_root, "set_name": set_name or "val", "sequences": sequences, "gt_size": gt_size}
    if not found.sequences:
        raise InputError(f"{found.run_json}: the run has no finished sequence to score (re-run the propagate that "
                         "made it)")
    if sequences:
        missing = [s for s in sequences if s not in found.sequences]
        if missing:
            raise InputError(f"{found.run_json}: sequences not finished in this run: {', '.join(missing)} (drop "
                             f"them from --sequences; it holds {', '.join(found.sequences)})")
    if gt_size is not None:
        wrong = {n: hw for n, hw in found.out_sizes.items() if tuple(hw) != tuple(gt_size)}
        if wrong and (not sequences or any(n in wrong for n in sequences)):
            name, hw = next(iter(wrong.items()))
            fix = f"use --gt-size {hw[0]}x{hw[1]}" if found.gt_size else "drop --gt-size"
            raise InputError(f"{found.run_json}: --gt-size {gt_size[0]}x{gt_size[1]} differs from the size the "
                             f"masks were written at ({name}: {hw[0]}x{hw[1]}); {fix}")
    davis_root = davis_root or found.davis_root
    if davis_root is None:
        raise InputError(f"{found.run_json}: records no DAVIS root: give --davis")
    return {"davis_root": davis_root, "set_name": set_name or found.set_name or "val",
            "sequences": sequences or found.sequences, "gt_size": gt_size if gt_size is not None else found.gt_size}
