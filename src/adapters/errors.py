"""One short line for an error from ops or Pebble, for a status or a log line.

ops' errors carry the hook tool's whole output; a status is one line. Every adapter formats
the errors it translates with ``first_line``, so they read the same everywhere.
"""


def first_line(err: BaseException) -> str:
    """The first line of the error's message, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
