"""`lpcache visualize`: overlay GIF and contact sheet of one sequence of a run folder."""
import click


@click.command("visualize")
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--seq", required=True, help="Sequence name (a folder of RUN).")
@click.option("--davis", "davis_root", required=True, type=click.Path(), help="DAVIS root with the frames.")
@click.option("--out", "out_dir", default=None, type=click.Path(), help="Output folder (default: RUN/vis).")
@click.option("--set", "set_name", default="val", show_default=True, help="ImageSets/2017/<set>.txt.")
@click.option("--fps", default=8, show_default=True, type=click.IntRange(1, 50), help="GIF frame rate.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def command(run_dir, seq, davis_root, out_dir, set_name, fps, progress):
    """Write <seq>.gif (frames with coloured masks) and <seq>_sheet.png (thumbnail grid)."""
    from ..visualize import visualize

    gif_path, sheet_path = visualize(run_dir, seq, davis_root, out_dir, set_name=set_name, fps=fps, progress=progress)
    click.echo(f"Wrote {gif_path} and {sheet_path}")
