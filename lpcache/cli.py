"""The `lpcache` command line: a click group with one thin command per stage.

Each command lives in `lpcache/commands/<name>.py` as a click command called `command`
that parses options and calls one library function. Every error becomes a one-line `Error: ...` on
stderr and exit status 1 (see LpcacheGroup); Ctrl-C exits with status 130.
"""
import importlib
import logging
import sys

import click

from . import __version__
from .errors import LpcacheError
from .options import verbose_option

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
    "protocols",
]


def one_line(text) -> str:
    """Fold a message (which may carry a library's multi-line text) onto one line."""
    return " ".join(str(text).split())


#: What to lower when a command runs out of GPU memory.
OOM_ADVICE = {
    "extract": "lower --batch-size or use --device cpu",
    "run": "lower --batch-size or use --device cpu",
    "sweep": "lower --jobs or use --device cpu",
}
INTERRUPTED = "Interrupted: finished work is kept; re-running resumes"

log = logging.getLogger("lpcache")


def _is_out_of_memory(exc) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def error_line(exc, command=None) -> str:
    """The one `Error: ...` line for an exception that escaped a command."""
    if isinstance(exc, LpcacheError):
        return f"Error: {one_line(exc)}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"Error: {where}{one_line(exc.strerror or exc)}"
    if _is_out_of_memory(exc):
        advice = OOM_ADVICE.get(command, "use --device cpu")
        return f"Error: out of GPU memory ({advice}): {one_line(exc)[:300]}"
    if isinstance(exc, MemoryError):
        return "Error: out of memory (use fewer --jobs or fewer sequences at once)"
    return f"Error: internal error: {type(exc).__name__}: {one_line(exc)} (re-run with -vv for the traceback)"


class LpcacheGroup(click.Group):
    """Every failure of a command becomes one `Error:` line on stderr and exit status 1.

    LpcacheError and operating-system errors (disk full, permission) carry their file; GPU out-of-memory
    names the option to lower; any other exception is an internal error whose traceback is logged at
    debug level (-vv). Ctrl-C exits with status 130, keeping finished work.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the one place that turns failures into one line
            if not isinstance(exc, (LpcacheError, OSError)):
                log.debug("traceback of the internal error", exc_info=True)
            click.echo(error_line(exc, ctx.invoked_subcommand), err=True)
            sys.exit(1)


@click.group(cls=LpcacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lpcache")
@verbose_option
def cli():
    """Evaluate visual backbones on DAVIS by label propagation.

    Stages: extract (backbone -> feature cache), propagate / sweep (cache -> masks),
    score (masks -> DAVIS J&F); `run` chains them, `demo` tries it all on synthetic data.

    \b
    Example (about a minute on a 2-core CPU):
      lpcache demo --workdir /tmp/lpcache-demo
    \b
    Step by step:
      lpcache extract --davis DAVIS --cache cache --sequences bear,blackswan
      lpcache propagate --cache cache --davis DAVIS --out runs --score
      lpcache score --results runs/<run>
    """


for _name in COMMANDS:
    cli.add_command(importlib.import_module(f"lpcache.commands.{_name}").command)


def main():
    cli(prog_name="lpcache")


if __name__ == "__main__":
    main()
