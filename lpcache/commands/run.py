"""`lpcache run`: extract (if not cached) -> propagate, or sweep when several values are given -> score."""
import click

from . import split_names

from ..config import PRECISIONS



@click.command("run")
@click.option("--davis", "davis_root", required=True, type=click.Path(), help="DAVIS root (JPEGImages, Annotations, ImageSets).")
@click.option("--workdir", required=True, type=click.Path(file_okay=False),
              help="Working folder: cache/, runs/ or sweep/, pipeline.json (re-running resumes).")
@click.option("--set", "set_name", default="val", show_default=True, help="ImageSets/2017/<set>.txt.")
@click.option("--sequences", default=None, help="Comma-separated subset of the set (default: all).")
@click.option("--backbone", default="efficientnet_lite0", show_default=True, help="Backbone name (`lpcache backbones`) or timm:<model>.")
@click.option("--checkpoint", type=click.Path(), default=None, help="Checkpoint file in the backbone's published format.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Load the checkpoint with full unpickling: only for files you trust.")
@click.option("--random-init", is_flag=True, help="Random weights when no checkpoint is given (tests, timing).")
@click.option("--protocol", type=click.Choice(["seed", "native"]), default="seed", show_default=True,
              help="seed: frames and GT at 480x880 (published numbers); native: frames at their own size.")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True, help="Cache dtype.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Frames per forward pass.")
@click.option("--num-workers", default=0, show_default=True, type=click.IntRange(0), help="JPEG decoding processes.")
@click.option("--temperature", default=None, help="Value(s), comma-separated [0.7]; several values -> sweep.")
@click.option("--topk", default=None, help="Value(s), comma-separated [8].")
@click.option("--radius", default=None, help="Value(s), comma-separated [18].")
@click.option("--video-len", default=None, help="Value(s), comma-separated [20].")
@click.option("--grid", "grid_file", default=None, type=click.Path(), help="Sweep grid file (.toml or .json).")
@click.option("--save-best", default=1, show_default=True, type=click.IntRange(0), help="Sweep: masks of the N best settings.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="float32", show_default=True, help="Affinity dtype.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="Parallel scoring / sweep videos.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def command(davis_root, workdir, set_name, sequences, backbone, checkpoint, trust_checkpoint, random_init, protocol,
            dtype, batch_size, num_workers, temperature, topk, radius, video_len, grid_file, save_best, device, precision,
            jobs, progress):
    """Evaluate a backbone end to end and print the J&F table."""
    from ..pipeline import run_pipeline
    from ..sweeping import grid_from_options

    values = (temperature, topk, radius, video_len)
    grid = grid_from_options(grid_file, *values) if grid_file or any(v is not None for v in values) else None
    names = split_names(sequences)
    result = run_pipeline(davis_root, workdir, backbone=backbone, checkpoint=checkpoint, random_init=random_init,
                          trust_checkpoint=trust_checkpoint,
                          set_name=set_name, sequences=names, protocol=protocol, dtype=dtype, batch_size=batch_size,
                          num_workers=num_workers, device=device, grid=grid, precision=precision, jobs=jobs,
                          save_best=save_best, progress=progress)
    click.echo(result.table)
    where = result.run_dir or result.sweep_dir
    click.echo(f"\n{result.protocol} protocol, {len(result.sequences)} sequences; results in {where}")
