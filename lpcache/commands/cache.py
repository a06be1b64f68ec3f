"""`lpcache cache info|verify`: what a feature cache holds, and whether every file is sound."""
import click

from ..cache import describe_cache, verify_cache
from ..errors import InputError


@click.group("cache")
def command():
    """Inspect a feature cache."""


@command.command("info")
@click.argument("cache_dir", type=click.Path())
def info(cache_dir):
    """Backbones, sequences, frames, grid, dtype and size of CACHE_DIR."""
    for record in describe_cache(cache_dir):
        grids = ", ".join(f"{h}x{w}" for h, w in record["grids"]) or "-"
        click.echo(f"{record['backbone_id']}: {record['sequences']} sequences, {record['frames']} frames, "
                   f"grid {grids}, {','.join(map(str, record['channels'])) or '-'} ch, "
                   f"{','.join(map(str, record['dtypes'])) or '-'}, "
                   f"protocol {','.join(map(str, record['protocols'])) or '-'}, {record['bytes'] / 1e6:.1f} MB")
        if record["partial"]:
            click.echo(f"  {len(record['partial'])} unfinished .partial files (redone by the next extract)")
        if record["unreadable"]:
            click.echo(f"  unreadable: {', '.join(record['unreadable'])} (run `lpcache cache verify`)")


@command.command("verify")
@click.argument("cache_dir", type=click.Path())
def verify(cache_dir):
    """Read every file of CACHE_DIR; exit 1 naming the files that are bad."""
    results = verify_cache(cache_dir)
    bad = [(path, problem) for path, problem in results if problem]
    for path, problem in bad:
        click.echo(f"BAD {path}: {problem}")
    if bad:
        raise InputError(f"{bad[0][0]}: {bad[0][1]} ({len(bad)} of {len(results)} files bad)")
    click.echo(f"{len(results)} files OK")
