"""`lpcache cache info|verify`: what a feature cache holds, and whether every file is sound."""
import click

from .. import options
from ..errors import InputError

INFO_EXAMPLE = """\b
Examples:
  lpcache cache info cache
  lpcache cache info cache/efficientnet_lite0-seed -v
"""
VERIFY_EXAMPLE = """\b
Example:
  lpcache cache verify cache
"""


@click.group("cache", epilog=INFO_EXAMPLE)
@options.verbose_option
def command():
    """Inspect a feature cache: a root given to `lpcache extract --cache`, or one backbone folder in it."""


@command.command("info", epilog=INFO_EXAMPLE)
@click.argument("cache_dir", type=click.Path())
@options.verbose_option
def info(cache_dir):
    """Backbones, sequences, frames, grid, dtype and size of CACHE_DIR (with -v: its sequences too)."""
    from ..cache import describe_cache

    for record in describe_cache(cache_dir):
        grids = ", ".join(f"{h}x{w}" for h, w in record["grids"]) or "-"
        click.echo(f"{record['backbone_id']}: {record['sequences']} sequences, {record['frames']} frames, "
                   f"grid {grids}, {','.join(map(str, record['channels'])) or '-'} ch, "
                   f"{','.join(map(str, record['dtypes'])) or '-'}, "
                   f"protocol {','.join(map(str, record['protocols'])) or '-'}, {record['bytes'] / 1e6:.1f} MB")
        click.echo(f"  folder: {record['path']}")
        if options.verbosity():
            click.echo(f"  sequences: {', '.join(_sequences(record['path'])) or '-'}")
        if record["partial"]:
            click.echo(f"  {len(record['partial'])} unfinished .partial files (redone by the next extract)")
        if record["unreadable"]:
            click.echo(f"  unreadable: {', '.join(record['unreadable'])} (run `lpcache cache verify`)")


def _sequences(folder):
    from ..cache import FeatureCache

    return FeatureCache(folder).sequences


@command.command("verify", epilog=VERIFY_EXAMPLE)
@click.argument("cache_dir", type=click.Path())
@options.verbose_option
def verify(cache_dir):
    """Read every file of CACHE_DIR; exit 1 naming the files that are bad."""
    from ..cache import verify_cache

    results = verify_cache(cache_dir)
    bad = [(path, problem) for path, problem in results if problem]
    for path, problem in bad:
        click.echo(f"BAD {path}: {problem}")
    if bad:
        raise InputError(f"{bad[0][0]}: {bad[0][1]} ({len(bad)} of {len(results)} files bad)")
    click.echo(f"{len(results)} files OK")
