"""`lpcache propagate`: cached features + first-frame masks -> a run folder of DAVIS masks."""
import click

from . import echo_written
from .. import options
from ..config import PRESETS, PropagationParams
from ..errors import InputError

EXAMPLE = """\b
Examples:
  lpcache propagate --cache cache --davis DAVIS --out runs --score
  lpcache propagate --cache cache/r18_crw-seed --davis DAVIS --out runs --preset vits8 --sequences bear,dog
  lpcache propagate --cache cache/dino_vits16-dino --davis DAVIS --out runs --protocol dino --score
"""


@click.command("propagate", epilog=EXAMPLE)
@options.cache_option
@options.davis_option
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Runs folder; masks go to OUT/<backbone_id>__<params id>/ (plus _<precision> unless float32).")
@options.set_option
@options.sequences_option
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Named parameters of the seed protocol (vits8: 0.5/12/32/20).")
@options.grid_options(lists=False)
@options.protocol_option
@options.device_option
@options.precision_option
@click.option("--out-size", default=None, metavar="HxW",
              help="Write masks at HxW.  [default: 480x880 for seed caches, else the annotation size]")
@click.option("--score", is_flag=True, help="Score the run afterwards: print J&F, write the CSVs and scores.json.")
@options.jobs_option(help="Scoring processes (--score).")
@options.progress_option
@options.verbose_option
def command(cache_dir, davis_root, out_dir, set_name, sequences, preset, temperature, topk, radius, video_len,
            protocol, device, precision, out_size, score, jobs, progress):
    """Propagate first-frame masks through a feature cache (docs/propagation.md); resumable.

    --cache is a backbone folder, or the root given to `lpcache extract` when it holds one backbone. The
    propagation rule and the parameters not given are the cache's protocol's (`lpcache protocols`).
    """
    from .. import scoring
    from ..cache import resolve_backbone_dir
    from ..davis import parse_hw
    from ..progress import handle_interrupt
    from ..run_propagation import cache_protocol, describe_kept, propagate_run, protocol_setting

    explicit = {"temperature": temperature, "topk": topk, "radius": radius, "video_len": video_len}
    explicit = {k: v for k, v in explicit.items() if v is not None}
    if preset and explicit:
        raise InputError(f"--preset {preset} cannot be combined with --{', --'.join(k.replace('_', '-') for k in explicit)}")
    PropagationParams(**explicit).validate()   # the given values, checked before any file is read
    backbone_dir = resolve_backbone_dir(cache_dir)
    params = protocol_setting(cache_protocol(backbone_dir, protocol, sequences), preset, backbone_dir, **explicit)
    with handle_interrupt(lambda: describe_kept(backbone_dir, out_dir, params, precision)):
        outcome = propagate_run(backbone_dir, davis_root, out_dir, params, set_name=set_name, sequences=sequences,
                                device=device, precision=precision, score=score,
                                out_size=parse_hw(out_size) if out_size else None, jobs=jobs, progress=progress)
    if outcome.scores is not None:
        click.echo(scoring.format_tables(outcome.scores, set_name))
        click.echo("")
    click.echo(f"Masks in {outcome.run_dir} ({outcome.summary()})")
    echo_written(outcome.written)

