"""`lpcache score`: official DAVIS 2017 semi-supervised J&F of a results folder (always recomputed)."""
import os

import click

from . import echo_written
from .. import options

EXAMPLE = """\b
Examples:
  lpcache score --results runs/efficientnet_lite0-seed__t0.7_k8_r18_L20
  lpcache score --results my_masks --davis DAVIS --gt-size 480x880 --json scores.json
"""


@click.command("score", epilog=EXAMPLE)
@click.option("--results", "results_dir", required=True, type=click.Path(),
              help="Folder with <seq>/<frame>.png id masks, e.g. a run folder of `lpcache propagate`.")
@options.davis_option(required=False, default=None,
                      help="DAVIS root (JPEGImages, Annotations, ImageSets).  [default: the run's, from its "
                           "run.json]")
@options.set_option(default=None, show_default=False,
                    help="DAVIS set: the sequences listed in ImageSets/2017/<set>.txt.  [default: the run's, "
                         "else val]")
@options.sequences_option(help="Comma-separated subset of the set.  [default: the run's finished sequences, "
                               "else all of the set]")
@options.jobs_option(help="Sequences scored in parallel.")
@click.option("--gt-size", default=None, metavar="HxW",
              help="Resize annotations to HxW with PIL NEAREST, e.g. 480x880.  [default: the run's mask size "
                   "for seed-protocol runs, else none]")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Folder for the CSVs.  [default: the results folder]")
@click.option("--json", "json_path", default=None, type=click.Path(),
              help="Also write full-precision scores and provenance as JSON.")
@click.option("--per-frame", is_flag=True, help="Include per-frame J and F in the JSON.")
@options.progress_option
@options.verbose_option
def command(results_dir, davis_root, set_name, sequences, jobs, gt_size, out_dir, json_path, per_frame, progress):
    """Score predicted masks exactly like the official davis2017-evaluation (semi-supervised).

    On a run folder made by lpcache (it holds run.json), --davis, --set, the sequences and the protocol size
    come from the run; options given explicitly win, and one that contradicts the run is an error.
    """
    from .. import scoring
    from ..davis import parse_hw
    from ..results import score_options

    chosen = score_options(results_dir, davis_root, set_name, sequences, parse_hw(gt_size) if gt_size else None)
    result, written = scoring.score_to_files(chosen["davis_root"], results_dir, out_dir, chosen["set_name"],
                                             json_path, sequences=chosen["sequences"], gt_size=chosen["gt_size"],
                                             jobs=jobs, progress=progress, keep_per_frame=per_frame)
    click.echo(scoring.format_tables(result, chosen["set_name"]))
    size = chosen["gt_size"]
    click.echo(f"\n{len(result.provenance_extra.get('sequences') or [])} sequences of "
               f"{os.path.abspath(chosen['davis_root'])} ({chosen['set_name']})"
               + (f", annotations resized to {size[0]}x{size[1]}" if size else ""))
    echo_written(written)
