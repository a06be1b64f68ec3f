"""One module per CLI command; each defines a click command named `command`."""


def split_names(text):
    """'a, b,,c' -> ['a', 'b', 'c']; None or '' -> None (meaning: all)."""
    names = [s.strip() for s in text.split(",") if s.strip()] if text else []
    return names or None
