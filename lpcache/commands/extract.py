"""`lpcache extract`: backbone features of DAVIS sequences into the HDF5 cache."""
import click

from .. import options

EXAMPLE = """\b
Examples:
  lpcache extract --davis DAVIS --cache cache --sequences bear,blackswan
  lpcache extract --davis DAVIS --cache cache --backbone timm:resnet18 --protocol native
"""

@click.command("extract", epilog=EXAMPLE)
@options.davis_option(required=False, default=None,
                      help="DAVIS root (JPEGImages/480p, ImageSets/2017); with --filelist, what its paths start "
                           "from.")
@options.set_option
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              help="Backbone name (`lpcache backbones`) or timm:<model>.")
@click.option("--checkpoint", type=click.Path(), help="Checkpoint file in the backbone's published format.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Load the checkpoint with full unpickling: only for files you trust.")
@click.option("--random-init", is_flag=True, help="Random weights when no checkpoint is given (tests, timing).")
@click.option("--cache", "cache_dir", required=True, type=click.Path(file_okay=False),
              help="Cache root; features go to CACHE/<backbone_id>/<seq>.h5.")
@click.option("--filelist", type=click.Path(), help="Seed file list (<image dir> <annotation dir> per line), "
              "relative to --davis.")
@options.sequences_option(help="Comma-separated subset of the set or list.  [default: all of the set]")
@options.protocol_option(default="seed", show_default=True,
                         help="Frame protocol (`lpcache protocols`): seed: 480x880 (published numbers); native: "
                              "the frames' own size; dino, vfs, dinov3: each reference's own resize and "
                              "normalisation.")
@options.dtype_option
@options.batch_size_option
@options.num_workers_option
@options.device_option
@click.option("--amp", is_flag=True, help="Autocast the forward pass (CUDA only).")
@click.option("--force", is_flag=True, help="Redo sequences that are already in the cache.")
@options.progress_option
@options.verbose_option
def command(davis_root, set_name, backbone, checkpoint, trust_checkpoint, random_init, cache_dir, filelist, sequences,
            protocol, dtype, batch_size, num_workers, device, amp, force, progress):
    """Extract features of DAVIS sequences into CACHE/<backbone_id>/<seq>.h5 (resumable)."""
    from ..extraction import extract

    result = extract(davis_root=davis_root, cache_dir=cache_dir, backbone=backbone, checkpoint=checkpoint,
                     set_name=set_name, filelist=filelist, sequences=sequences, protocol=protocol, dtype=dtype,
                     batch_size=batch_size, device=device, amp=amp, force=force, num_workers=num_workers,
                     random_init=random_init, trust_checkpoint=trust_checkpoint, progress=progress)
    click.echo(f"{result.backbone_dir}: {len(result.extracted)} sequences extracted, {len(result.skipped)} "
               f"already complete; {result.frames} frames in {result.seconds:.1f} s "
               f"({result.frames_per_second:.2f} frames/s); {result.bytes_written / 1e9:.3f} GB written")
