"""Command-line options shared by the commands, defined once (same names, defaults and help everywhere).

Each `*_option` works bare or called with overrides of click.option's keywords:

    @click.command("propagate")
    @cache_option()                                  # --cache, required
    @davis_option                                    # --davis, required
    @set_option
    @sequences_option                                # value: a list of names, or None for all
    @grid_options(lists=False)                       # --temperature --topk --radius --video-len, one value each
    @protocol_option                                 # --protocol: None for the cache's protocol
    @device_option                                   # value: None for auto (the library's meaning)
    @precision_option
    @jobs_option(help="Scoring processes (--score).")
    @progress_option
    @verbose_option                                  # -v after the subcommand adds to the group's -v
    def command(cache_dir, davis_root, set_name, sequences, temperature, topk, radius, video_len, protocol,
                device, precision, jobs, progress): ...

Defaults are shown one way, `[default: ...]`: show_default=True, or the same text written into the help
where the value is None and decided later (`all of the set` sequences, the seed's grid values).
Values reach the command already converted:
  --sequences "a, b"  -> ["a", "b"] (None when not given: all)  -- do not split it again
  --device auto       -> None (cuda when available, else cpu: lpcache.propagation.engine.resolve_device)
  -v/--verbose        -> not passed to the command (expose_value=False); it sets the logging level.
Put `@verbose_option` on the group and on every command: counts add up, so `lpcache -v propagate` and
`lpcache propagate -v` are the same. It configures logging itself (the group needs no basicConfig).
"""
import logging
import sys

import click

from .config import PRECISIONS, PropagationParams

#: Default of --num-workers everywhere (JPEG decoding processes of extract / run / demo).
NUM_WORKERS = 2
#: Logging format of the command line.
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
_VERBOSITY_KEY = "lpcache.verbosity"


def _shared(*decls, **attrs):
    """An option usable as `@name` or as `@name(**overrides)` (overrides replace click.option keywords)."""

    def option(function=None, **overrides):
        decorator = click.option(*decls, **{**attrs, **overrides})
        return decorator(function) if function is not None else decorator

    return option


# ---------------------------------------------------------------------------------------------- conversions
def _names(ctx, param, value):
    """'a, b,,c' -> ['a', 'b', 'c']; None or '' -> None (meaning: all)."""
    names = [s.strip() for s in value.split(",") if s.strip()] if value else []
    return names or None


def _device(ctx, param, value):
    """'auto' -> None (the library's automatic choice); anything else is passed on as the torch device."""
    return None if value is None or value.strip().lower() == "auto" else value.strip()


# ---------------------------------------------------------------------------------------------- the options
davis_option = _shared(
    "--davis", "davis_root", required=True, type=click.Path(),
    help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets/2017).")

set_option = _shared(
    "--set", "set_name", default="val", show_default=True,
    help="DAVIS set: the sequences listed in ImageSets/2017/<set>.txt.")

def _shown(help_text, default_text) -> str:
    """Help ending in `[default: ...]` exactly as click writes it, for a default decided later (None)."""
    return f"{help_text}  [default: {default_text}]"


sequences_option = _shared(
    "--sequences", default=None, callback=_names, metavar="A,B,...",
    help=_shown("Comma-separated subset of the set.", "all of the set"))

device_option = _shared(
    "--device", default="auto", show_default=True, callback=_device,
    help="torch device, e.g. cpu, cuda, cuda:1; auto: cuda if available, else cpu.")

precision_option = _shared(
    "--precision", type=click.Choice(PRECISIONS), default="float32", show_default=True,
    help="dtype of the affinity products (tf32/float16/bfloat16 are for GPUs).")

jobs_option = _shared(
    "--jobs", default=1, show_default=True, type=click.IntRange(1),
    help="Processes in parallel (videos to propagate, sequences to score).")

num_workers_option = _shared(
    "--num-workers", default=NUM_WORKERS, show_default=True, type=click.IntRange(0),
    help="Processes decoding JPEGs for extraction (0: in the main process).")

progress_option = _shared(
    "--progress/--no-progress", default=True, show_default=True,
    help="Show progress: bars on a terminal, a plain line every 10 s / 10 % otherwise.")


class ProtocolName(click.ParamType):
    """A registered protocol's name (lpcache.protocols), checked when given: the registry (which imports the
    plug-in modules) is not loaded at start-up, and a new plug-in module needs no edit here."""

    name = "protocol"

    def convert(self, value, param, ctx):
        from . import protocols
        from .errors import InputError

        try:
            return protocols.get(value).name
        except InputError as exc:
            self.fail(str(exc), param, ctx)


#: --protocol (dest protocol): None = the cache's (propagate, sweep). `lpcache run` (and extract) use it with
#: `default="seed", show_default=True` and their own help: there it is the protocol frames are extracted under.
protocol_option = _shared(
    "--protocol", type=ProtocolName(), default=None,
    help=_shown("Protocol (`lpcache protocols`): its propagation rule and default parameters; must agree with "
                "the cache's (native counts as seed).", "the cache's protocol"))


def cache_option(function=None, multiple=False, **overrides):
    """--cache: a backbone folder <root>/<backbone_id> (dest cache_dir; `multiple=True`: dest caches, a tuple)."""
    attrs = {"required": True, "type": click.Path(file_okay=False),
             "help": "Feature cache of one backbone: <root>/<backbone_id> as written by `lpcache extract`."}
    if multiple:
        attrs.update(multiple=True, help="Feature cache of one backbone, <root>/<backbone_id>; repeat to "
                                         "compare backbones.")
    decorator = click.option("--cache", "caches" if multiple else "cache_dir", **{**attrs, **overrides})
    return decorator(function) if function is not None else decorator


# ---------------------------------------------------------------------------------------------- grid
_GRID_HELP = {
    "temperature": ("Softmax temperature", "0.05,0.1,0.7"),
    "topk": ("Neighbours per query", "5,8,12"),
    "radius": ("Short-term neighbourhood radius in grid cells", "12,18,32"),
    "video_len": ("Short-term context length in frames", "7,20"),
}
_GRID_TYPES = {"temperature": float, "topk": int, "radius": float, "video_len": int}


def grid_options(function=None, lists=True):
    """--temperature, --topk, --radius, --video-len (dests temperature, topk, radius, video_len; default None).

    lists=True: comma-separated text, e.g. "0.05,0.7" (parse with lpcache.sweeping.grid_from_options);
    lists=False: one number each (propagate). The default shown is PropagationParams' (the seed's); a value
    not given takes the protocol's default (`lpcache protocols`), which is the seed's for seed/native caches.
    """
    def decorate(f):
        for name in reversed(list(_GRID_HELP)):
            text, example = _GRID_HELP[name]
            default = getattr(PropagationParams, name)
            if lists:
                extra = {"help": f"{text}: comma-separated values, e.g. {example}.", "metavar": "V,V,..."}
            else:
                extra = {"help": f"{text}.", "type": _GRID_TYPES[name]}
            extra["help"] = _shown(extra["help"][:-1] + " (unset: the protocol's default; the seed's shown).",
                                   f"{default:g}")
            f = click.option("--" + name.replace("_", "-"), name, default=None, **extra)(f)
        return f

    return decorate(function) if function is not None else decorate


# ---------------------------------------------------------------------------------------------- verbosity
def log_level(verbosity: int) -> int:
    """0 -> WARNING, 1 -> INFO, 2 or more -> DEBUG."""
    return logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is when a record is emitted (click's runner swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(verbosity: int):
    """Set the root logger's level for `verbosity`, adding one stderr handler the first time."""
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(log_level(verbosity))


def _verbosity(ctx, param, value):
    """Add this -v count to the one of the enclosing command(s) and apply the sum."""
    total = ctx.meta.get(_VERBOSITY_KEY, 0) + (value or 0)
    ctx.meta[_VERBOSITY_KEY] = total
    configure_logging(total)
    return total


verbose_option = _shared(
    "-v", "--verbose", count=True, callback=_verbosity, expose_value=False, is_eager=True,
    help="More log output: -v info, -vv debug (before or after the command name).")


def verbosity(ctx=None) -> int:
    """The total -v count of the current command line (group and subcommand)."""
    ctx = ctx or click.get_current_context()
    return ctx.meta.get(_VERBOSITY_KEY, 0)


#: --dtype of a feature cache (extract, run).
dtype_option = _shared(
    "--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True, help="Cache dtype.")

#: --batch-size: frames per forward pass (extract, run).
batch_size_option = _shared(
    "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Frames per forward pass.")
