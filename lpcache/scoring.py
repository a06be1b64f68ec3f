"""Score a DAVIS results folder (or in-memory masks) exactly like the official semi-supervised scorer.

    score(davis_root, results_dir, set_name="val", sequences=None, gt_size=None, jobs=1, progress=True,
          keep_per_frame=False) -> ScoreResult
    write_csvs(result, out_dir, set_name)   global_results-<set>.csv, per-sequence_results-<set>.csv
    score_to_files(davis_root, results_dir, out_dir, set_name, json_path, **options)
                                            both: removes earlier outputs first, so a failed run leaves none
    write_json(result, path)                {"global": {...}, "per_object": {...}, "provenance": {...}}
In memory (the sweep):
    gt = load_gt_sequence(sequence, gt_size)              -> GroundTruth (evaluated frames, n_objects)
    score_sequence_masks(name, gt_frames, pred_frames, n_objects) -> SequenceResult
    score_sequence_prepared(name, prepared_frames, pred_frames)   -> SequenceResult (GT work done once)
Evaluated frames are all annotation PNGs but the first and the last; N objects = max id of the first one.
"""
import dataclasses
import logging
import os
import struct
import time
import zlib
from typing import Dict, List, Optional, Sequence as SequenceType

import numpy as np

from . import davis, metrics
from .atomic import write_json_atomic, write_text_atomic
from .errors import InputError
from .progress import progress_bar
from .provenance import provenance

try:
    import deflate as _libdeflate
except ImportError:  # optional speed-up of PNG decoding
    _libdeflate = None

log = logging.getLogger(__name__)
VOID = 255


# ----------------------------------------------------------------------------------------------- reading
def read_ids(path, expected_hw=None) -> np.ndarray:
    """Raw values of an id PNG (palette indices for mode P), as a 2-D array; refuses colour images.

    Gives exactly `numpy.array(PIL.Image.open(path))` (what the official scorer reads). With expected_hw,
    a file of another size is refused from its header, before any pixel is decoded; so is a file larger than
    `davis.MAX_IMAGE_PIXELS`.
    """
    try:
        fast = _read_unfiltered_8bit_png(path, expected_hw)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, ValueError, zlib.error, struct.error) as exc:
        raise InputError(f"{path}: unreadable image ({exc})") from None
    if fast is not None:
        return fast
    with davis.open_image(path) as image:  # size-limited, one-line errors for broken files
        _check_size(path, (image.size[1], image.size[0]), expected_hw)
        array = np.array(image)
        mode = image.mode
    if array.ndim != 2:
        raise InputError(f"{path}: colour image (mode {mode}); expected a palette or greyscale PNG of object ids")
    return array


def _check_size(path, hw, expected_hw):
    if expected_hw is not None and tuple(hw) != tuple(expected_hw):
        raise InputError(f"{path}: size {hw[1]}x{hw[0]} differs from the annotation's "
                         f"{expected_hw[1]}x{expected_hw[0]}")


_FAST_PATH_MAX_PIXELS = 1 << 26


def _read_unfiltered_8bit_png(path, expected_hw=None) -> Optional[np.ndarray]:
    """Fast path for the common id PNG: 8-bit palette or grey, not interlaced, every row filter 0 (None).

    PIL and the DAVIS masks write palette PNGs this way; then the pixels are the inflated bytes minus the
    filter byte of each row. Any other PNG returns None (the caller decodes it with PIL).
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour_type, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    _check_size(path, (height, width), expected_hw)
    if depth != 8 or colour_type not in (0, 3) or interlace != 0 or width * height > _FAST_PATH_MAX_PIXELS:
        return None
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    expected_bytes = height * (width + 1)
    raw = _inflate(b"".join(chunks), expected_bytes)
    if raw is None:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    if rows[:, 0].any():
        return None
    return rows[:, 1:]


def _inflate(data: bytes, expected_bytes: int):
    """The zlib stream `data` inflated, or None unless it gives exactly `expected_bytes` bytes.

    With the `deflate` package (libdeflate, about 8x faster than zlib on these masks: most of scoring's time
    went into inflating PNGs) when it is installed, else the standard zlib module; both give the same bytes.
    """
    if _libdeflate is not None:
        try:
            raw = _libdeflate.zlib_decompress(data, expected_bytes + 1)  # + 1: a longer stream is detected
        except _libdeflate.DeflateError:
            return None
        return raw if len(raw) == expected_bytes else None
    inflater = zlib.decompressobj()
    raw = inflater.decompress(data, expected_bytes)
    return raw if len(raw) == expected_bytes and not inflater.unconsumed_tail else None


@dataclasses.dataclass
class GroundTruth:
    """The evaluated frames of one sequence (void set to 0) and its number of objects."""

    name: str
    frame_ids: List[str]
    frames: List[np.ndarray]
    n_objects: int


def _annotation_paths(sequence: davis.Sequence):
    """The sequence's annotation PNGs (sorted), refused when there is no folder or fewer than 3 files."""
    if sequence.annotation_dir is None:
        raise InputError(f"{sequence.name}: annotation folder not found")
    paths = sequence.annotation_paths
    if len(paths) < 3:
        raise InputError(f"{sequence.annotation_dir}: {len(paths)} annotated frame(s); scoring needs at least 3 "
                         "(the first and the last are not evaluated)")
    return paths


def _read_gt_frame(path, gt_size=None, first_shape=None) -> np.ndarray:
    """One annotation as ids, resized (PIL NEAREST) to gt_size if given, void (255) set to 0; its size must be
    `first_shape` when given."""
    ids = read_ids(path)
    if gt_size is not None:
        ids = davis.resize_mask_nearest(ids, gt_size)
    if first_shape is not None and ids.shape != first_shape:
        raise InputError(f"{path}: size {ids.shape[1]}x{ids.shape[0]} differs from the first annotation's "
                         f"{first_shape[1]}x{first_shape[0]}")
    if ids.size and ids.max() >= VOID and np.any(ids == VOID):  # max first: one cheap pass in the usual case
        ids = np.where(ids == VOID, 0, ids)
    return ids


def _frame_id(path) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def load_gt_sequence(sequence: davis.Sequence, gt_size=None) -> GroundTruth:
    """Annotations of one sequence, resized (PIL NEAREST) to gt_size=(H, W) if given, minus first/last."""
    paths = _annotation_paths(sequence)
    first = _read_gt_frame(paths[0], gt_size)
    frames = [_read_gt_frame(path, gt_size, first.shape) for path in paths[1:-1]]
    return GroundTruth(sequence.name, [_frame_id(p) for p in paths[1:-1]], frames, int(first.max()))


def read_prediction(path, gt_frame: np.ndarray, n_objects: int, sequence: str) -> np.ndarray:
    """One predicted frame, checked against its GT frame: same size, ids <= n_objects, no 255."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: predicted frame not found")
    ids = read_ids(path, gt_frame.shape)
    top = int(ids.max()) if ids.size else 0
    if top == VOID:
        raise InputError(f"{path}: holds 255 (void); predictions must hold object ids only")
    if top > n_objects:
        raise InputError(f"{path}: object id {top} but sequence {sequence} has {n_objects} object(s) in its "
                         "first annotation")
    if ids.size and int(ids.min()) < 0:
        raise InputError(f"{path}: holds negative values")
    return ids


# ----------------------------------------------------------------------------------------------- scoring
@dataclasses.dataclass
class SequenceResult:
    """Per-object rows of one sequence plus its per-frame J and F, shape (n_objects, T)."""

    name: str
    rows: List[metrics.ObjectRow]
    j: np.ndarray
    f: np.ndarray
    frame_ids: Optional[List[str]] = None


def score_sequence_prepared(name, prepared_frames: SequenceType[metrics.PreparedFrame],
                            pred_frames) -> SequenceResult:
    """Score predicted id masks (one per evaluated frame, in order) against prepared GT frames."""
    if len(prepared_frames) == 0:
        raise ValueError(f"{name}: no evaluated frame")
    accumulator = metrics.SequenceScores(name, prepared_frames[0].n_objects)
    count = 0
    for prepared, pred in zip(prepared_frames, pred_frames):
        accumulator.add(*metrics.frame_scores_prepared(pred, prepared))
        count += 1
    if count != len(prepared_frames):
        raise ValueError(f"{name}: {count} predicted frames for {len(prepared_frames)} evaluated frames")
    j, f = accumulator.per_frame()
    return SequenceResult(name, metrics.sequence_rows(name, j, f), j, f)


def score_sequence_masks(name, gt_frames, pred_frames, n_objects: int) -> SequenceResult:
    """Score in-memory masks: gt_frames / pred_frames are the evaluated frames only, in order, GT with void
    already 0 (as `load_gt_sequence` gives them)."""
    gt_frames = list(gt_frames)
    pred_frames = list(pred_frames)
    if len(gt_frames) != len(pred_frames):
        raise ValueError(f"{name}: {len(pred_frames)} predicted frames for {len(gt_frames)} evaluated frames")
    if not gt_frames:
        raise ValueError(f"{name}: no evaluated frame")
    accumulator = metrics.SequenceScores(name, n_objects)
    for gt, pred in zip(gt_frames, pred_frames):
        accumulator.add(*metrics.frame_scores(pred, gt, n_objects))
    j, f = accumulator.per_frame()
    return SequenceResult(name, metrics.sequence_rows(name, j, f), j, f)


def score_sequence_dir(sequence: davis.Sequence, results_dir, gt_size=None) -> SequenceResult:
    """Score `<results_dir>/<seq>/<frame>.png` against the sequence's annotations.

    Frame by frame: each annotation and each prediction is decoded once and dropped after its frame is scored
    (holding a whole sequence's frames costs more in fresh memory pages than it saves).
    """
    if not sequence.image_paths:
        raise InputError(f"{sequence.image_dir}: no JPEG frame for sequence {sequence.name}")
    paths = _annotation_paths(sequence)
    first = _read_gt_frame(paths[0], gt_size)
    n_objects = int(first.max())
    folder = os.path.join(results_dir, sequence.name)
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: results folder of sequence {sequence.name} not found")
    accumulator = metrics.SequenceScores(sequence.name, n_objects)
    frame_ids = []
    for path in paths[1:-1]:
        frame_ids.append(_frame_id(path))
        gt_frame = _read_gt_frame(path, gt_size, first.shape)
        pred = read_prediction(os.path.join(folder, f"{frame_ids[-1]}.png"), gt_frame, n_objects, sequence.name)
        accumulator.add(*metrics.frame_scores(pred, gt_frame, n_objects))
    j, f = accumulator.per_frame()
    return SequenceResult(sequence.name, metrics.sequence_rows(sequence.name, j, f), j, f, frame_ids)


@dataclasses.dataclass
class ScoreResult:
    """Global table, per-object table (official order), optional per-frame values, provenance.

    `provenance` is built on first access: collecting library versions imports torch, which costs
    seconds, and a plain `lpcache score` (CSV only) never needs it.
    """

    global_scores: Dict[str, float]
    per_object: Dict[str, Dict[str, float]]
    provenance_extra: dict = dataclasses.field(default_factory=dict)
    per_frame: Optional[Dict[str, Dict[str, object]]] = None
    _provenance: Optional[dict] = dataclasses.field(default=None, repr=False)

    @property
    def provenance(self) -> dict:
        if self._provenance is None:
            self._provenance = provenance(**self.provenance_extra)
        return self._provenance


def combine(sequence_results: SequenceType[SequenceResult], keep_per_frame=False, **provenance_extra) -> ScoreResult:
    """Global statistics over all objects of the given sequences (in the given order)."""
    rows = [row for result in sequence_results for row in result.rows]
    if not rows:
        raise InputError("no object to score: every first annotation is empty")
    per_frame = None
    if keep_per_frame:
        per_frame = {r.name: {"frames": r.frame_ids, "J": r.j.tolist(), "F": r.f.tolist()} for r in sequence_results}
    return ScoreResult(metrics.global_statistics(rows), {row.key: row.as_dict() for row in rows},
                       dict(provenance_extra), per_frame)


def score(davis_root, results_dir, set_name="val", sequences=None, gt_size=None, jobs=1, progress=True,
          keep_per_frame=False) -> ScoreResult:
    """Recompute J&F of a results folder against a DAVIS root (never reads old CSVs)."""
    started = time.perf_counter()
    if not os.path.isdir(results_dir):
        raise InputError(f"{results_dir}: results folder not found")
    sequence_list = davis.load_davis(davis_root, set_name, sequences)
    if not sequence_list:
        raise InputError(f"{davis.set_file(davis_root, set_name)}: no sequence to score")
    results = _map_sequences(sequence_list, results_dir, gt_size, jobs, progress)
    by_name = {r.name: r for r in results}
    ordered = [by_name[s.name] for s in sequence_list]
    elapsed = time.perf_counter() - started
    log.info("scored %d sequences in %.2f s", len(ordered), elapsed)
    return combine(ordered, keep_per_frame, task="semi-supervised", davis_root=os.path.abspath(davis_root),
                   results_dir=os.path.abspath(results_dir), set=set_name,
                   sequences=[s.name for s in sequence_list],
                   gt_size=list(gt_size) if gt_size else None, seconds=round(elapsed, 3))


def _run_parallel(tasks, jobs, bar):
    """joblib over processes (fork-based "multiprocessing" backend: starts in milliseconds, where loky's
    fresh interpreters cost about a second per run here), advancing the progress bar as tasks complete."""
    from joblib import Parallel

    class ProgressParallel(Parallel):
        def print_progress(self):
            if self.n_completed_tasks > bar.n:
                bar.update(self.n_completed_tasks - bar.n)

    return ProgressParallel(n_jobs=jobs, backend="multiprocessing", batch_size=1)(tasks)


def _map_sequences(sequence_list, results_dir, gt_size, jobs, progress):
    bar = progress_bar(len(sequence_list), "score", unit="seq", enabled=progress)
    try:
        if jobs == 1 or len(sequence_list) == 1:
            out = []
            for sequence in sequence_list:
                out.append(score_sequence_dir(sequence, results_dir, gt_size))
                bar.update()
            return out
        from joblib import delayed

        # Longest sequences first for a better balance; the caller restores the set order.
        work = sorted(sequence_list, key=lambda s: -len(s.annotation_paths))
        return _run_parallel((delayed(score_sequence_dir)(s, results_dir, gt_size) for s in work), jobs, bar)
    finally:
        bar.close()


# ----------------------------------------------------------------------------------------------- output
def _fmt(value) -> str:
    return "%.3f" % value


def global_csv_text(result: ScoreResult) -> str:
    """Official `global_results-<set>.csv` text (pandas to_csv with float_format %.3f)."""
    header = ",".join(metrics.GLOBAL_COLUMNS)
    return header + "\n" + ",".join(_fmt(result.global_scores[c]) for c in metrics.GLOBAL_COLUMNS) + "\n"


def per_sequence_csv_text(result: ScoreResult) -> str:
    """Official `per-sequence_results-<set>.csv` text: one row per object, J-Mean and F-Mean."""
    lines = ["Sequence,J-Mean,F-Mean"]
    for key, row in result.per_object.items():
        lines.append(f"{key},{_fmt(row['J-Mean'])},{_fmt(row['F-Mean'])}")
    return "\n".join(lines) + "\n"


def csv_paths(out_dir, set_name):
    return (os.path.join(out_dir, f"global_results-{set_name}.csv"),
            os.path.join(out_dir, f"per-sequence_results-{set_name}.csv"))


def write_csvs(result: ScoreResult, out_dir, set_name="val"):
    """Write both official CSVs atomically; returns their paths."""
    global_path, per_sequence_path = csv_paths(out_dir, set_name)
    write_text_atomic(global_path, global_csv_text(result))
    write_text_atomic(per_sequence_path, per_sequence_csv_text(result))
    return global_path, per_sequence_path


def output_paths(out_dir, set_name="val", json_path=None):
    """The files a scoring run writes: both CSVs, and the JSON when asked for."""
    return list(csv_paths(out_dir, set_name)) + ([os.fspath(json_path)] if json_path else [])


def remove_outputs(out_dir, set_name="val", json_path=None):
    """Delete the CSVs (and JSON) of an earlier run, so that a failed run never leaves old scores beside new
    masks."""
    for path in output_paths(out_dir, set_name, json_path):
        if os.path.lexists(path) and not os.path.isdir(path):
            os.remove(path)


def score_to_files(davis_root, results_dir, out_dir=None, set_name="val", json_path=None, **options):
    """Score a results folder and write its CSVs to `out_dir` (default: the results folder), and the JSON
    when `json_path` is given. Earlier outputs are removed first: after a failure none is left.
    Returns (result, written paths). `options` go to `score`."""
    out_dir = out_dir or results_dir
    remove_outputs(out_dir, set_name, json_path)
    result = score(davis_root, results_dir, set_name=set_name, **options)
    written = list(write_csvs(result, out_dir, set_name))
    if json_path:
        write_json(result, json_path)
        written.append(os.fspath(json_path))
    return result, written


def write_json(result: ScoreResult, path):
    """Full-precision scores: {"global", "per_object", "provenance"} (+ "per_frame" if kept)."""
    record = {"global": result.global_scores, "per_object": result.per_object, "provenance": result.provenance}
    if result.per_frame is not None:
        record["per_frame"] = result.per_frame
    write_json_atomic(path, record)


def format_tables(result: ScoreResult, set_name="val") -> str:
    """The two tables as text, like the official script prints them (3 decimals)."""
    columns = metrics.GLOBAL_COLUMNS
    widths = [max(len(c), 6) for c in columns]
    lines = [f"--------------------------- Global results for {set_name} ---------------------------",
             " ".join(c.rjust(w) for c, w in zip(columns, widths)),
             " ".join(_fmt(result.global_scores[c]).rjust(w) for c, w in zip(columns, widths)),
             "", f"---------- Per sequence results for {set_name} ----------"]
    key_width = max([len("Sequence")] + [len(k) for k in result.per_object])
    lines.append(f"{'Sequence'.rjust(key_width)} J-Mean F-Mean")
    for key, row in result.per_object.items():
        lines.append(f"{key.rjust(key_width)} {_fmt(row['J-Mean']).rjust(6)} {_fmt(row['F-Mean']).rjust(6)}")
    return "\n".join(lines)
