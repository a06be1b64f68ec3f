"""`lpcache run`: extract (if not cached) -> propagate, or sweep when several values are given -> score."""
import click

from . import echo_written
from .. import options

EXAMPLE = """\b
Examples:
  lpcache run --davis DAVIS --workdir work --sequences bear,blackswan
  lpcache run --davis DAVIS --workdir work --backbone timm:resnet18 --temperature 0.05,0.7 --topk 5,8
  lpcache run --davis DAVIS --workdir work --backbone dino_vits16 --checkpoint dino.pth --protocol dino
"""


@click.command("run", epilog=EXAMPLE)
@options.davis_option
@click.option("--workdir", required=True, type=click.Path(file_okay=False),
              help="Working folder: cache/, runs/ or sweep/, pipeline.json (re-running resumes).")
@options.set_option
@options.sequences_option
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              help="Backbone name (`lpcache backbones`) or timm:<model>.")
@click.option("--checkpoint", type=click.Path(), default=None, help="Checkpoint file in the backbone's published format.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Load the checkpoint with full unpickling: only for files you trust.")
@click.option("--random-init", is_flag=True, help="Random weights when no checkpoint is given (tests, timing).")
@options.protocol_option(default="seed", show_default=True,
                         help="Frames extracted, propagated and scored under this protocol (`lpcache protocols`): "
                              "seed: frames and GT at 480x880 (published numbers); native: frames at their own "
                              "size; dino, vfs, dinov3: each reference's input, rule and defaults.")
@options.dtype_option
@options.batch_size_option
@options.num_workers_option
@options.grid_options
@click.option("--grid", "grid_file", default=None, type=click.Path(), help="Sweep grid file (.toml or .json).")
@click.option("--save-best", default=1, show_default=True, type=click.IntRange(0),
              help="Sweep: masks of the N best settings.")
@options.device_option
@options.precision_option
@options.jobs_option(help="Parallel scoring / sweep videos.")
@options.progress_option
@options.verbose_option
def command(davis_root, workdir, set_name, sequences, backbone, checkpoint, trust_checkpoint, random_init, protocol,
            dtype, batch_size, num_workers, temperature, topk, radius, video_len, grid_file, save_best, device,
            precision, jobs, progress):
    """Evaluate a backbone end to end and print the J&F table.

    One value per grid option propagates one setting; several values (or --grid) run a sweep. Parameters not
    given take the protocol's defaults.
    """
    from .. import protocols
    from ..pipeline import run_pipeline
    from ..progress import handle_interrupt
    from ..run_propagation import propagation_protocol
    from ..sweeping import grid_from_options

    values = (temperature, topk, radius, video_len)
    defaults = protocols.get(propagation_protocol({"protocol": protocol})).defaults
    grid = grid_from_options(grid_file, *values, defaults=defaults) \
        if grid_file or any(v is not None for v in values) else None
    with handle_interrupt(f"the cache and finished sequences in {workdir}"):
        result = run_pipeline(davis_root, workdir, backbone=backbone, checkpoint=checkpoint, random_init=random_init,
                              trust_checkpoint=trust_checkpoint, set_name=set_name, sequences=sequences,
                              protocol=protocol, dtype=dtype, batch_size=batch_size, num_workers=num_workers,
                              device=device, grid=grid, precision=precision, jobs=jobs, save_best=save_best,
                              progress=progress)
    click.echo(result.table)
    count = len(result.sequences)
    click.echo(f"\n{result.protocol} protocol, {count} sequence{'s' if count != 1 else ''}; took "
               f"{sum(result.seconds.values()):.1f} s on {result.device}; results in {result.run_dir or result.sweep_dir}")
    echo_written(result.outputs)
