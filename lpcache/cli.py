"""The `lpcache` command line: a click group with one thin command per stage.

Each command lives in `lpcache/commands/<name>.py` as a click command called `command`
that parses options and calls one library function. Errors of type LpcacheError become a
one-line `Error: ...` on stderr and exit status 1.
"""
import importlib
import logging
import sys

import click

from . import __version__
from .errors import LpcacheError

#: Modules of `lpcache.commands`, in the order `lpcache --help` lists them.
COMMANDS = [
    "extract",
    "backbones",
    "cache",
    "score",
    "convert",
    "propagate",
    "sweep",
    "fetch_davis",
    "visualize",
    "run",
    "demo",
]


def one_line(text) -> str:
    """Fold a message (which may carry a library's multi-line text) onto one line."""
    return " ".join(str(text).split())


class LpcacheGroup(click.Group):
    """Turns LpcacheError and operating-system errors (disk full, permission) into one `Error:` line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LpcacheError as exc:
            click.echo(f"Error: {one_line(exc)}", err=True)
            sys.exit(1)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{one_line(exc.strerror or exc)}", err=True)
            sys.exit(1)


@click.group(cls=LpcacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lpcache")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose):
    """Evaluate visual backbones on DAVIS by label propagation.

    Stages: extract (backbone -> feature cache), propagate / sweep (cache -> masks),
    score (masks -> DAVIS J&F).
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


for _name in COMMANDS:
    cli.add_command(importlib.import_module(f"lpcache.commands.{_name}").command)


def main():
    cli(prog_name="lpcache")


if __name__ == "__main__":
    main()
