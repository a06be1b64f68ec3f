"""`lpcache score`: official DAVIS 2017 semi-supervised J&F of a results folder (always recomputed)."""
import click

from . import split_names

from ..davis import parse_hw


@click.command("score")
@click.option("--davis", "davis_root", required=True, type=click.Path(),
              help="DAVIS root (JPEGImages, Annotations, ImageSets).")
@click.option("--results", "results_dir", required=True, type=click.Path(),
              help="Folder with <seq>/<frame>.png id masks.")
@click.option("--set", "set_name", default="val", show_default=True, help="ImageSets/2017/<set>.txt.")
@click.option("--sequences", default=None, help="Comma-separated subset of the set (default: all).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="Sequences scored in parallel.")
@click.option("--gt-size", default=None,
              help="Resize annotations to HxW with PIL NEAREST, e.g. 480x880 (seed protocol).")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Folder for the CSVs (default: the results folder).")
@click.option("--json", "json_path", default=None, type=click.Path(),
              help="Also write full-precision scores and provenance as JSON.")
@click.option("--per-frame", is_flag=True, help="Include per-frame J and F in the JSON.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def command(davis_root, results_dir, set_name, sequences, jobs, gt_size, out_dir, json_path, per_frame, progress):
    """Score predicted masks exactly like the official davis2017-evaluation (semi-supervised)."""
    from .. import scoring

    names = split_names(sequences)
    size = parse_hw(gt_size) if gt_size else None
    result, written = scoring.score_to_files(davis_root, results_dir, out_dir, set_name, json_path, sequences=names,
                                             gt_size=size, jobs=jobs, progress=progress, keep_per_frame=per_frame)
    click.echo(scoring.format_tables(result, set_name))
    click.echo(f"\nWrote {' and '.join(written)}")
