"""Taking off the session's PostgreSQL what a test's charm made there.

The integration tests share one PostgreSQL per session (``tests/integration/conftest.py``), and
``postgres_left_clean`` fails a module that leaves anything on it. A model related to that
server for real makes, through the charm: the database the ``backend-database`` relation asks
for (the model, playing the provider, creates it), pgbouncer's auth role with its function and
grants, and per client database an owner role (``<db>_owner``), the relation users that are its
members, the database itself and its row in the client registry
(``pgbouncer_clients.databases`` in ``postgres``). ``drop_what_the_charm_made`` removes all of
it, whatever state the test stopped in (every step tolerates what is already gone);
``drop_client_databases`` only the client side, for tests that call the adapters themselves.
"""

from collections.abc import Iterable

from adapters.postgres.auth_setup import make_dsn, remove_auth
from adapters.postgres.clients import REGISTRY_SCHEMA, REGISTRY_TABLE
from domain.backend import auth_user_for
from domain.clients import owner_role
from localenv.juju_model import APP
from localenv.postgres_cluster import PostgresCluster


def drop_what_the_charm_made(
    postgres: PostgresCluster,
    client_databases: Iterable[str],
    *,
    backend_database: str = APP,
) -> None:
    """Drop the client databases with everything of theirs (``drop_client_databases``), the
    backend database and pgbouncer's auth role (with its function and schema in ``postgres``).

    The auth role matters beyond one module: its grant on the shared ``pgbouncer_auth`` schema
    of ``postgres`` keeps that schema alive when a later charm removes its own auth role, and
    the later charm's backend role, which then owns the schema, cannot be dropped.
    """
    drop_client_databases(postgres, client_databases)
    postgres.psql(f'DROP DATABASE IF EXISTS "{backend_database}" WITH (FORCE)')
    superuser = make_dsn(postgres.host, postgres.port, postgres.superuser, postgres.password)
    remove_auth(superuser, auth_user_for(postgres.superuser), ["postgres"])


def drop_client_databases(postgres: PostgresCluster, client_databases: Iterable[str]) -> None:
    """Drop the client databases, their registry rows, their owner roles and the (relation)
    users that are members of those; the registry itself goes once no row is left in it."""
    databases = list(client_databases)
    for database in databases:
        postgres.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    forget_in_registry(postgres, databases)
    for database in databases:
        owner = owner_role(database)
        members = postgres.psql(
            "SELECT m.rolname FROM pg_auth_members a"
            " JOIN pg_roles m ON m.oid = a.member JOIN pg_roles o ON o.oid = a.roleid"
            f" WHERE o.rolname = '{owner}'"
        ).split()
        for role in [*members, owner]:
            if postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == "1":
                postgres.psql(f'REASSIGN OWNED BY "{role}" TO "{postgres.superuser}"')
                postgres.psql(f'DROP OWNED BY "{role}"')
                postgres.psql(f'DROP ROLE "{role}"')


def forget_in_registry(postgres: PostgresCluster, databases: list[str]) -> None:
    """Delete the registry rows of ``databases``; drop the registry once it is empty."""
    registry = f"{REGISTRY_SCHEMA}.{REGISTRY_TABLE}"
    if postgres.psql(f"SELECT to_regclass('{registry}') IS NOT NULL") != "t":
        return
    if databases:
        names = ", ".join("'" + database.replace("'", "''") + "'" for database in databases)
        postgres.psql(f"DELETE FROM {registry} WHERE datname IN ({names})")
    # The charm creates the registry on first use; a session starts without it, so the next
    # module's charm must find it absent again (its first-use path is what it tests).
    if postgres.psql(f"SELECT count(*) FROM {registry}") == "0":
        postgres.psql(f"DROP SCHEMA {REGISTRY_SCHEMA} CASCADE")
