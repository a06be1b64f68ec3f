"""`lpcache demo`: the whole pipeline offline on efficientnet_lite0, on synthetic or real DAVIS data."""
import click

from . import split_names


@click.command("demo")
@click.option("--davis", "davis_root", default=None, type=click.Path(),
              help="A real DAVIS root (default: build a small synthetic one in the workdir).")
@click.option("--sequences", default=None, help="Comma-separated subset of the set (default: all).")
@click.option("--workdir", default="lpcache-demo", show_default=True, type=click.Path(file_okay=False),
              help="Working folder (synthetic data, cache, runs); re-running reuses it.")
@click.option("--protocol", type=click.Choice(["seed", "native"]), default=None,
              help="Default: native on synthetic data, seed (480x880) on a real DAVIS root.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def command(davis_root, sequences, workdir, protocol, device, progress):
    """Extract, propagate and score with efficientnet_lite0; print the J&F table."""
    from ..pipeline import demo

    names = split_names(sequences)
    result = demo(davis_root, names, workdir, device=device, protocol=protocol, progress=progress)
    click.echo(result.table)
    data = "synthetic data" if davis_root is None else result.davis_root
    count = len(result.sequences)
    click.echo(f"\n{data}, {result.protocol} protocol, {count} sequence{'s' if count != 1 else ''}; "
               f"masks in {result.run_dir}; took {sum(result.seconds.values()):.1f} s")
