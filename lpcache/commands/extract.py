"""`lpcache extract`: backbone features of DAVIS sequences into the HDF5 cache."""
import click

from . import split_names


@click.command("extract")
@click.option("--davis", "davis_root", type=click.Path(), help="DAVIS root (JPEGImages/480p, ImageSets/2017).")
@click.option("--set", "set_name", default="val", show_default=True, help="DAVIS set (ImageSets/2017/<set>.txt).")
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              help="Backbone name (`lpcache backbones`) or timm:<model>.")
@click.option("--checkpoint", type=click.Path(), help="Checkpoint file in the backbone's published format.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Load the checkpoint with full unpickling: only for files you trust.")
@click.option("--random-init", is_flag=True, help="Random weights when no checkpoint is given (tests, timing).")
@click.option("--cache", "cache_dir", required=True, type=click.Path(), help="Cache folder.")
@click.option("--filelist", type=click.Path(), help="Seed file list (<image dir> <annotation dir> per line), "
              "relative to --davis.")
@click.option("--sequences", help="Comma-separated sequence names (default: all of the set / list).")
@click.option("--protocol", type=click.Choice(["seed", "native"]), default="seed", show_default=True)
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--num-workers", default=2, show_default=True, type=click.IntRange(min=0),
              help="DataLoader processes decoding JPEGs (0: in the main process).")
@click.option("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--amp", is_flag=True, help="Autocast the forward pass (CUDA only).")
@click.option("--force", is_flag=True, help="Redo sequences that are already in the cache.")
def command(davis_root, set_name, backbone, checkpoint, trust_checkpoint, random_init, cache_dir, filelist, sequences,
            protocol, dtype, batch_size, num_workers, device, amp, force):
    """Extract features of DAVIS sequences into CACHE/<backbone_id>/<seq>.h5 (resumable)."""
    from ..extraction import extract

    names = split_names(sequences)
    result = extract(davis_root=davis_root, cache_dir=cache_dir, backbone=backbone, checkpoint=checkpoint,
                     set_name=set_name, filelist=filelist, sequences=names, protocol=protocol, dtype=dtype,
                     batch_size=batch_size, device=device, amp=amp, force=force, num_workers=num_workers,
                     random_init=random_init, trust_checkpoint=trust_checkpoint)
    click.echo(f"{result.backbone_dir}: {len(result.extracted)} sequences extracted, {len(result.skipped)} "
               f"already complete; {result.frames} frames in {result.seconds:.1f} s "
               f"({result.frames_per_second:.2f} frames/s); {result.bytes_written / 1e9:.3f} GB written")
