"""`lpcache convert`: seed test.py outputs (`<video#>_<t>_mask.png`, colour) -> DAVIS results folder."""
import click

from ..davis import parse_hw


@click.command("convert")
@click.option("--input", "input_dir", required=True, type=click.Path(),
              help="Folder of <video#>_<t>_mask.png files.")
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="DAVIS results folder to write (<seq>/<frame>.png).")
@click.option("--davis", "davis_root", default=None, type=click.Path(),
              help="DAVIS root: videos numbered in its set's order (without --filelist); annotation sizes.")
@click.option("--set", "set_name", default="val", show_default=True, help="Set of the DAVIS root.")
@click.option("--filelist", default=None, type=click.Path(),
              help="Seed file list (e.g. davis_vallist_480_880.txt) giving the video order.")
@click.option("--filelist-root", default=None, type=click.Path(),
              help="Folder the file list's relative paths start from (default: --davis, else the list's folder).")
@click.option("--size", default=None, help="Output size HxW instead of each sequence's annotation size.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def command(input_dir, out_dir, davis_root, set_name, filelist, filelist_root, size, progress):
    """Map seed colour masks back to palette ids (undoing the B/R swap) and write DAVIS PNGs."""
    from .. import convert as converting

    written = converting.convert(input_dir, out_dir, davis_root=davis_root, set_name=set_name, filelist=filelist,
                                 filelist_root=filelist_root, size=parse_hw(size) if size else None,
                                 progress=progress)
    click.echo(f"Wrote {written} masks into {out_dir}")
