"""The backend adapter's one error, in a module that does not import psycopg.

psycopg costs more to import than the rest of the charm together, and most hooks (every peer
event, update-status) never talk to PostgreSQL. Callers import ``BackendUnavailable`` from
here and the psycopg-based modules (``auth_setup``) inside the code path that connects.
"""


class BackendUnavailable(Exception):
    """The backend cannot be set up now; the message is one line and holds no secret."""


class ClientRefused(BackendUnavailable):
    """A client's request is refused by what the backend holds (a database or role of that
    name is someone else's): retrying changes nothing until the request or the backend does."""
