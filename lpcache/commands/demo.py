"""`lpcache demo`: the whole pipeline offline on efficientnet_lite0, on synthetic or real DAVIS data."""
import click

from . import echo_written
from .. import options

EXAMPLE = """\b
Examples:
  lpcache demo --workdir /tmp/lpcache-demo
  lpcache demo --davis DAVIS --sequences blackswan --workdir /tmp/lpcache-demo-real
"""


@click.command("demo", epilog=EXAMPLE)
@options.davis_option(required=False, default=None,
                      help="A real DAVIS root.  [default: a small synthetic one built in the workdir]")
@options.sequences_option
@click.option("--workdir", default="lpcache-demo", show_default=True, type=click.Path(file_okay=False),
              help="Working folder (synthetic data, cache, runs, figures); re-running reuses it.")
@click.option("--protocol", type=click.Choice(["seed", "native"]), default=None,
              help="Frame and mask sizes.  [default: native on synthetic data, seed (480x880) on a DAVIS root]")
@options.device_option
@options.progress_option
@options.verbose_option
def command(davis_root, sequences, workdir, protocol, device, progress):
    """Extract, propagate and score with efficientnet_lite0; print the J&F table and draw two pictures."""
    from ..pipeline import demo
    from ..progress import handle_interrupt

    with handle_interrupt(f"the data, cache and finished sequences in {workdir}"):
        result = demo(davis_root, sequences, workdir, device=device, protocol=protocol, progress=progress)
    click.echo(result.table)
    data = "synthetic data" if davis_root is None else result.davis_root
    count = len(result.sequences)
    click.echo(f"\n{data}, {result.protocol} protocol, {count} sequence{'s' if count != 1 else ''}; "
               f"took {sum(result.seconds.values()):.1f} s on {result.device}")
    echo_written(result.outputs)
    echo_written(result.figures, "Pictures:")
