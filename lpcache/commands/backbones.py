"""`lpcache backbones`: the registered backbones and their checkpoint formats, as a table."""
import click

from .. import options

EXAMPLE = """\b
Example:
  lpcache backbones
  lpcache extract --davis DAVIS --cache cache --backbone r18_crw --checkpoint crw.pth
"""
COLUMNS = ("name", "architecture", "layer", "stride", "channels", "checkpoint")


def backbone_rows():
    """One row (tuple of text, COLUMNS order) per registered backbone, then the timm:<model> line."""
    from ..backbones import list_backbones

    rows = []
    for spec in list_backbones():
        checkpoint = spec.checkpoint_format.describe() + (" (embedded weights)" if spec.default_checkpoint else "")
        rows.append((spec.name, spec.architecture, spec.layer, str(spec.stride), str(spec.channels), checkpoint))
    rows.append(("timm:<model>", "any timm model", "features_only / ViT tokens", "8|16", "-",
                 "--checkpoint FILE"))
    return rows


def format_table(header, rows) -> str:
    """Left-aligned columns (numbers right-aligned) under a header and a dashed rule."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    numeric = [all(str(r[i]).isdigit() or r[i] == "-" for r in rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).rjust(w) if n else str(c).ljust(w)
                         for c, w, n in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


@click.command("backbones", epilog=EXAMPLE)
@options.verbose_option
def command():
    """List the backbones: name, architecture, layer, stride, channels, checkpoint format."""
    click.echo(format_table(COLUMNS, backbone_rows()))
