"""`lpcache sweep`: a grid of propagation settings over one or more caches, scored in memory; a leaderboard."""
import click

from . import split_names


@click.command("sweep")
@click.option("--cache", "caches", multiple=True, required=True, type=click.Path(),
              help="Backbone cache folder <cache>/<backbone_id>; repeat to compare backbones.")
@click.option("--davis", "davis_root", required=True, type=click.Path(),
              help="DAVIS root (JPEGImages, Annotations, ImageSets).")
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Output folder (CSVs, leaderboard, plots, shards).")
@click.option("--set", "set_name", default="val", show_default=True, help="ImageSets/2017/<set>.txt.")
@click.option("--sequences", default=None, help="Comma-separated subset of the set (default: all).")
@click.option("--grid", "grid_file", default=None, type=click.Path(),
              help="Grid file (.toml or .json): lists under temperature, topk, radius, video_len.")
@click.option("--temperature", default=None, help="Comma-separated values, e.g. 0.05,0.1,0.7 (replaces the file's).")
@click.option("--topk", default=None, help="Comma-separated values, e.g. 5,8,12.")
@click.option("--radius", default=None, help="Comma-separated values, e.g. 12,18,32.")
@click.option("--video-len", default=None, help="Comma-separated values, e.g. 7,20.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1),
              help="Videos in parallel (joblib, local backend).")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "dask"]),
              help="Where videos run: this machine, or a dask.distributed cluster (--scheduler).")
@click.option("--scheduler", default=None, help="dask scheduler address for --backend dask, e.g. tcp://host:8786.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--precision", default="float32", show_default=True,
              type=click.Choice(["float32", "tf32", "float16", "bfloat16"]),
              help="Dtype of the affinity products; part of each shard's identity and saved run's id.")
@click.option("--out-size", default=None, help="Output/scoring size HxW (default: from the cache's protocol).")
@click.option("--save-best", default=0, show_default=True, type=click.IntRange(0),
              help="Write DAVIS result folders (<out>/runs) of the N best settings per backbone.")
@click.option("--save-all", is_flag=True, help="Write DAVIS result folders (<out>/runs) of every setting.")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch threads per task (default: cores / jobs).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def command(caches, davis_root, out_dir, set_name, sequences, grid_file, temperature, topk, radius, video_len, jobs,
            backend, scheduler, device, precision, out_size, save_best, save_all, threads, progress):
    """Propagate and score a whole hyper-parameter grid; resumable; writes a leaderboard."""
    from ..sweeping import grid_from_options, sweep

    grid = grid_from_options(grid_file, temperature, topk, radius, video_len)
    names = split_names(sequences)
    result = sweep(list(caches), davis_root, out_dir, grid, set_name=set_name, sequences=names, jobs=jobs,
                   backend=backend, scheduler=scheduler, device=device, precision=precision, out_size=out_size,
                   save_best=save_best, save_all=save_all, threads=threads, progress=progress)
    for backbone in result.backbones:
        best = result.best(backbone)[0]
        click.echo(f"{backbone}: best {best['setting']}  J&F-Mean {best['J&F-Mean']:.3f}  "
                   f"J-Mean {best['J-Mean']:.3f}  F-Mean {best['F-Mean']:.3f}")
    click.echo(f"{len(result.rows)} rows in {out_dir}/sweep_results.csv; leaderboard {out_dir}/leaderboard.md")
