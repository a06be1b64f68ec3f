"""One module per CLI command; each defines a click command named `command`."""
import click


def split_names(text):
    """'a, b,,c' -> ['a', 'b', 'c']; None or '' -> None (meaning: all)."""
    names = [s.strip() for s in text.split(",") if s.strip()] if text else []
    return names or None


def echo_written(paths, title="Wrote:"):
    """Print `title` and one indented path per line (the files a command wrote)."""
    paths = [p for p in paths if p]
    if paths:
        click.echo(title)
        for path in paths:
            click.echo(f"  {path}")
