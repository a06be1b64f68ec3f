"""`lpcache convert`: seed test.py outputs (`<video#>_<t>_mask.png`, colour) -> DAVIS results folder."""
import click

from .. import options
from ..davis import parse_hw

EXAMPLE = """\b
Example:
  lpcache convert --input seed_out --out runs/seed --davis DAVIS
"""


@click.command("convert", epilog=EXAMPLE)
@click.option("--input", "input_dir", required=True, type=click.Path(),
              help="Folder of <video#>_<t>_mask.png files.")
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="DAVIS results folder to write (<seq>/<frame>.png).")
@options.davis_option(required=False, default=None,
                      help="DAVIS root: videos numbered in its set's order (without --filelist); annotation sizes.")
@options.set_option
@click.option("--filelist", default=None, type=click.Path(),
              help="Seed file list (e.g. davis_vallist_480_880.txt) giving the video order.")
@click.option("--filelist-root", default=None, type=click.Path(),
              help="Folder the file list's relative paths start from.  [default: --davis, else the list's folder]")
@click.option("--size", default=None, metavar="HxW",
              help="Output size.  [default: each sequence's annotation size]")
@options.progress_option
@options.verbose_option
def command(input_dir, out_dir, davis_root, set_name, filelist, filelist_root, size, progress):
    """Map seed colour masks back to palette ids (undoing the B/R swap) and write DAVIS PNGs."""
    from .. import convert as converting

    written = converting.convert(input_dir, out_dir, davis_root=davis_root, set_name=set_name, filelist=filelist,
                                 filelist_root=filelist_root, size=parse_hw(size) if size else None,
                                 progress=progress)
    click.echo(f"Wrote {written} masks into {out_dir}")
