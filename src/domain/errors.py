"""The one family of errors the domain raises for bad input.

Every parser, value constructor and service in ``domain`` reports bad input by raising a
subclass of ``InvalidInput`` whose message names where the problem is (section and key, line
number, option name) and why. Adapters catch ``InvalidInput`` and nothing broader (no
``ValueError``, no ``TypeError``), so any other exception escaping the domain is a bug, not
bad input. Messages never contain secret values.
"""


class InvalidInput(ValueError):
    """Input the domain refuses; ``str(err)`` is a precise, secret-free reason."""


class InvalidPgbConfig(InvalidInput):
    """A pgbouncer.ini text or value that pgbouncer would refuse or misread."""


class InvalidAuthFile(InvalidInput):
    """An auth file (pgbouncer ``auth_file``) with a line pgbouncer cannot read."""


class InvalidCharmConfig(InvalidInput):
    """A charm config option outside what the charm supports."""


class InvalidPeerData(InvalidInput):
    """Peer relation data that does not have the shape the contract gives it."""


class InvalidEffect(InvalidInput):
    """An effect built with a value it cannot carry out (a decision bug in the core)."""


class InvalidStatus(InvalidInput):
    """A status reason that cannot be shown (an empty message)."""
