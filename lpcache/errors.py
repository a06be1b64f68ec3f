"""The one exception type that the CLI turns into a one-line error and a non-zero exit."""


class LpcacheError(Exception):
    """A user-facing error: the message names the file and the problem, on one line."""


class InputError(LpcacheError):
    """Bad input data (a missing file, a wrong size, a bad value)."""
