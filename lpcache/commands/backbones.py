"""`lpcache backbones`: the registered backbones and their checkpoint formats."""
import click


@click.command("backbones")
def command():
    """List the backbones: name, layer, stride, channels, checkpoint format."""
    from ..backbones import list_backbones

    for spec in list_backbones():
        default = " (embedded weights)" if spec.default_checkpoint else ""
        click.echo(f"{spec.name:20s} {spec.architecture:18s} {spec.layer:18s} stride {spec.stride:2d} "
                   f"{spec.channels:5d} ch  {spec.checkpoint_format.describe()}{default}")
    click.echo(f"{'timm:<model>':20s} any timm model: features_only at stride 8 (else 16), or ViT tokens; "
               "--checkpoint FILE")
