"""`lpcache propagate`: cached features + first-frame masks -> a run folder of DAVIS masks."""
import click

from . import split_names

from ..config import PRECISIONS, PRESETS, PropagationParams
from ..davis import parse_hw
from ..errors import InputError


@click.command("propagate")
@click.option("--cache", "cache_dir", required=True, type=click.Path(), help="Cache folder of one backbone: CACHE_DIR/<backbone_id>.")
@click.option("--davis", "davis_root", required=True, type=click.Path(), help="DAVIS root (JPEGImages, Annotations, ImageSets).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Runs folder; masks go to OUT/<backbone_id>__<params id>/ "
              "(plus _<precision> unless float32).")
@click.option("--set", "set_name", default="val", show_default=True, help="ImageSets/2017/<set>.txt.")
@click.option("--sequences", default=None, help="Comma-separated subset of the set (default: all).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None, help="Named parameters (vits8: 0.5/12/32/20).")
@click.option("--temperature", type=float, default=None, help="Softmax temperature [0.7].")
@click.option("--topk", type=int, default=None, help="Neighbours per query [8].")
@click.option("--radius", type=float, default=None, help="Short-term neighbourhood radius in grid cells [18].")
@click.option("--video-len", type=int, default=None, help="Short-term context length in frames [20].")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="float32", show_default=True,
              help="dtype of the affinity products (tf32/float16/bfloat16 are for GPUs); part of the run id.")
@click.option("--out-size", default=None, help="Write masks at HxW (default: 480x880 for seed caches, else the annotation size).")
@click.option("--score", is_flag=True, help="Score the run afterwards (writes the official CSVs into the run folder).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="Scoring processes (--score).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def command(cache_dir, davis_root, out_dir, set_name, sequences, preset, temperature, topk, radius, video_len,
            device, precision, out_size, score, jobs, progress):
    """Propagate first-frame masks through a feature cache (propagation-spec.md)."""
    from ..run_propagation import propagate

    explicit = {"temperature": temperature, "topk": topk, "radius": radius, "video_len": video_len}
    explicit = {k: v for k, v in explicit.items() if v is not None}
    if preset and explicit:
        raise InputError(f"--preset {preset} cannot be combined with --{', --'.join(k.replace('_', '-') for k in explicit)}")
    params = PRESETS[preset] if preset else PropagationParams(**explicit)
    names = split_names(sequences)
    run_dir = propagate(cache_dir, davis_root, out_dir, params.validate(), set_name=set_name, sequences=names,
                        device=device, precision=precision, score=score,
                        out_size=parse_hw(out_size) if out_size else None, jobs=jobs, progress=progress)
    click.echo(f"Masks in {run_dir}")
