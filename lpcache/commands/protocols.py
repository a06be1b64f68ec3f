"""`lpcache protocols`: the registered label-propagation protocols, their switches, defaults and sources."""
import click


@click.command("protocols")
def command():
    """List the protocols: switches, default parameters, scoring size, what they reproduce.

    \b
    Example:
      lpcache protocols
    """
    from .. import protocols

    for name in protocols.names():
        proto = protocols.get(name)
        switches = proto.switches
        defaults = ", ".join(f"{k} {v:g}" for k, v in proto.defaults.items())
        click.echo(f"{name}: {proto.summary}")
        click.echo(f"  switches: context {switches.context}, frame 0 windowed {str(switches.first_frame_masked).lower()}, "
                   f"window {switches.window}, weighting {switches.weighting}")
        click.echo(f"  defaults: {defaults}; scored at the {proto.score_size} size")
        for line in proto.published:
            click.echo(f"  reproduces: {line}")
        if proto.reference_code:
            click.echo(f"  reference: {proto.reference_code}")
        click.echo("")
    click.echo("Propagation under dino, vfs and dinov3 is defined by lpcache.protocols.<name>.reference (tested "
               "against each repository's own outputs); the CLI engine runs seed and native today.")
