"""`lpcache sweep`: a grid of propagation settings over one or more caches, scored in memory; a leaderboard."""
import os

import click

from . import echo_written
from .. import options

EXAMPLE = """\b
Examples:
  lpcache sweep --cache cache --davis DAVIS --out sweep --temperature 0.05,0.1,0.7 --topk 5,8,12
  lpcache sweep --cache cache/a-seed --cache cache/b-seed --davis DAVIS --out sweep --grid grid.toml
  lpcache sweep --cache cache/dino_vits16-dino --davis DAVIS --out sweep --protocol dino --topk 3,5,10
"""
#: The console lists every setting of a grid up to this size, else the best TOP_SHOWN.
ALL_SHOWN_UP_TO = 20
TOP_SHOWN = 10


@click.command("sweep", epilog=EXAMPLE)
@options.cache_option(multiple=True, help="Feature cache: a backbone folder <root>/<backbone_id>, or an extract "
                                          "root holding one backbone; repeat to compare backbones.")
@options.davis_option
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Output folder (CSVs, leaderboard, plots, shards).")
@options.set_option
@options.sequences_option
@click.option("--grid", "grid_file", default=None, type=click.Path(),
              help="Grid file (.toml or .json): lists under temperature, topk, radius, video_len.")
@options.grid_options
@options.protocol_option
@options.jobs_option(help="Videos in parallel (local processes; on CUDA at most one per visible GPU).")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "dask"]),
              help="Where videos run: this machine, or a dask.distributed cluster (--scheduler).")
@click.option("--scheduler", default=None, help="dask scheduler address for --backend dask, e.g. tcp://host:8786.")
@options.device_option
@options.precision_option
@click.option("--out-size", default=None, metavar="HxW",
              help="Output/scoring size HxW.  [default: from the cache's protocol]")
@click.option("--save-best", default=0, show_default=True, type=click.IntRange(0),
              help="Write DAVIS result folders (<out>/runs) of the N best settings per backbone.")
@click.option("--save-all", is_flag=True, help="Write DAVIS result folders (<out>/runs) of every setting.")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="torch threads per task.  [default: cores / jobs]")
@options.progress_option
@options.verbose_option
def command(caches, davis_root, out_dir, set_name, sequences, grid_file, temperature, topk, radius, video_len,
            protocol, jobs, backend, scheduler, device, precision, out_size, save_best, save_all, threads, progress):
    """Propagate and score a whole hyper-parameter grid; resumable; writes a leaderboard and plots.

    The propagation rule is the caches' protocol (all must share it); an axis not given takes its default.
    """
    from ..cache import resolve_backbone_dir
    from ..pipeline import sweep_table
    from ..progress import handle_interrupt
    from .. import protocols
    from ..sweeping import describe_kept, grid_from_options, sweep, sweep_protocol

    backbone_dirs = [resolve_backbone_dir(c) for c in caches]
    defaults = protocols.get(sweep_protocol(backbone_dirs, protocol, sequences)).defaults
    grid = grid_from_options(grid_file, temperature, topk, radius, video_len, defaults=defaults)
    with handle_interrupt(lambda: describe_kept(out_dir)):
        result = sweep(backbone_dirs, davis_root, out_dir, grid, set_name=set_name, sequences=sequences, jobs=jobs,
                       backend=backend, scheduler=scheduler, device=device, precision=precision,
                       out_size=out_size, save_best=save_best, save_all=save_all, threads=threads,
                       progress=progress)
    settings = len(result.rows) // max(1, len(result.backbones))
    limit = settings if settings <= ALL_SHOWN_UP_TO else TOP_SHOWN
    for backbone in result.backbones:
        rows = [r for r in result.rows if r["backbone"] == backbone]
        shown = "all settings" if limit >= settings else f"best {limit} of {settings} settings"
        click.echo(f"{backbone}: {shown}, J&F on {len(result.sequences)} sequence(s)")
        click.echo(sweep_table(rows, limit))
        best = result.best(backbone)[0]
        click.echo(f"{backbone}: best {best['setting']}  J&F-Mean {best['J&F-Mean']:.3f}  "
                   f"J-Mean {best['J-Mean']:.3f}  F-Mean {best['F-Mean']:.3f}\n")
    outputs = result.outputs or {}
    plots = sorted(p for name, p in outputs.items() if name.endswith(".png"))
    main = [outputs.get(n) for n in ("leaderboard.md", "sweep_results.csv", "sweep_per_object.csv",
                                     "provenance.json", "sweep.json")]
    echo_written(main + [os.path.join(out_dir, "shards")] + list(result.saved_runs))
    if plots:
        echo_written(plots, f"Plots ({len(plots)}):")
