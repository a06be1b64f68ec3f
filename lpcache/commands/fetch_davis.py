"""`lpcache fetch-davis`: download (resumable) or take a local DAVIS 2017 archive, verify it, unpack it."""
import click

from .. import options
from ..fetch_davis import DAVIS_URL

EXAMPLE = """\b
Examples:
  lpcache fetch-davis DAVIS
  lpcache fetch-davis DAVIS --archive ~/Downloads/DAVIS-2017-trainval-480p.zip
"""


@click.command("fetch-davis", epilog=EXAMPLE)
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--archive", default=None, type=click.Path(dir_okay=False),
              help="Use this local DAVIS-2017-trainval-480p.zip instead of downloading.")
@click.option("--url", default=DAVIS_URL, show_default=True, help="Where to download the archive from.")
@click.option("--sha256", default=None, help="Expected sha256 of the archive (checked when given).")
@click.option("--keep-archive", is_flag=True, help="Keep the downloaded zip after unpacking.")
@click.option("--force", is_flag=True,
              help="Unpack again even if ROOT already is a DAVIS root, replacing files and folders of the same "
                   "name in ROOT (without it, such a conflict is refused).")
@options.progress_option
@options.verbose_option
def command(root, archive, url, sha256, keep_archive, force, progress):
    """Make ROOT a DAVIS 2017 root (JPEGImages/480p, Annotations/480p, ImageSets/2017).

    Re-running resumes an interrupted download (HTTP Range into ROOT/<archive>.partial). Nothing in ROOT
    that fetch-davis did not create is deleted or replaced, unless --force.
    """
    from ..fetch_davis import fetch_davis

    fetch_davis(root, archive=archive, url=url, sha256=sha256, keep_archive=keep_archive, force=force,
                progress=progress)
    click.echo(f"DAVIS root ready: {root}")
