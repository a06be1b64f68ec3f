"""`lpcache visualize`: overlay GIF and contact sheet of one sequence of a run folder."""
import click

from .. import options

EXAMPLE = """\b
Example:
  lpcache visualize runs/efficientnet_lite0-seed__t0.7_k8_r18_L20 --seq bear
"""


@click.command("visualize", epilog=EXAMPLE)
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--seq", required=True, help="Sequence name (a folder of RUN).")
@options.davis_option(help="DAVIS root with the frames.")
@click.option("--out", "out_dir", default=None, type=click.Path(), help="Output folder.  [default: RUN/vis]")
@options.set_option
@click.option("--fps", default=8, show_default=True, type=click.IntRange(1, 50), help="GIF frame rate.")
@options.progress_option
@options.verbose_option
def command(run_dir, seq, davis_root, out_dir, set_name, fps, progress):
    """Write <seq>.gif (frames with coloured masks) and <seq>_sheet.png (thumbnail grid)."""
    from ..visualize import visualize

    gif_path, sheet_path = visualize(run_dir, seq, davis_root, out_dir, set_name=set_name, fps=fps, progress=progress)
    click.echo(f"Wrote {gif_path} and {sheet_path}")
