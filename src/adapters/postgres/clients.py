"""The client applications' roles and databases on the backend.

``create_client`` connects as the backend superuser the ``backend-database`` relation
delivered and:

- creates the login role of a client relation (``relation_id_<N>``) or, when it exists and is
  this charm's (see below), resets it: ``LOGIN``, no superuser, no replication, no RLS bypass,
  no expiry, ``CREATEDB`` / ``CREATEROLE`` exactly as the client asked, and its password. As in
  ``auth_setup``, the password never travels in SQL text: libpq computes the verifier the
  server's ``password_encryption`` asks for (SCRAM-SHA-256 or md5) and only that is sent;
- marks the role with a comment naming this charm, its model and the relation. A role of that
  name that exists without the mark belongs to someone else (a PostgreSQL charm names its own
  relation users ``relation_id_<N>`` too, with the ids of its model): it is never altered,
  and the client is refused with a message saying why;
- creates the requested database owned by that role when it does not exist; when it does
  (another relation asked for the same database, or the client came back), the role gets
  every privilege on the database itself, and the database keeps its owner.

``drop_client`` removes a client's role and leaves its data: in every database where the role
owns objects or holds privileges, what it owns is reassigned to the backend superuser and its
privileges are revoked (``REASSIGN OWNED`` then ``DROP OWNED``, which also covers shared
objects such as a database it owns); its open sessions are ended; then the role is dropped. A
role without this charm's mark is left alone.

Every failure raises ``adapters.postgres.errors.BackendUnavailable`` (one exception for the
whole backend adapter) with a one-line message built from the server's primary message only,
the client's password scrubbed from it: nothing here ever puts a password in a message or a
log line.
"""

import logging
from collections.abc import Iterable

import psycopg
from psycopg import sql

# The connection and error handling are auth_setup's: one backend adapter, one error style.
from adapters.postgres.auth_setup import _connect, _failures_as_unavailable
from adapters.postgres.errors import BackendUnavailable

logger = logging.getLogger(__name__)

__all__ = ["BackendUnavailable", "create_client", "drop_client", "role_mark"]

_FIXED_ATTRIBUTES = sql.SQL("LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS INHERIT")
# What a client may be given beyond LOGIN (on, off); domain.clients refuses anything else.
_OPTIONAL_ATTRIBUTES = {
    "CREATEDB": (sql.SQL("CREATEDB"), sql.SQL("NOCREATEDB")),
    "CREATEROLE": (sql.SQL("CREATEROLE"), sql.SQL("NOCREATEROLE")),
}
_CREATE_ROLE = sql.SQL(
    "CREATE ROLE {role} WITH {attributes} VALID UNTIL 'infinity' PASSWORD {verifier}"
)
_ALTER_ROLE = sql.SQL(
    "ALTER ROLE {role} WITH {attributes} VALID UNTIL 'infinity' PASSWORD {verifier}"
)
_MAINTENANCE_DB = "postgres"


def role_mark(model_uuid: str, app: str, relation_id: int) -> str:
    """The comment that says a role is this charm's client role for one relation."""
    return (
        f"pgbouncer-k8s client role: model {model_uuid}, application {app}, relation {relation_id}"
    )


def create_client(
    conninfo: str,
    user: str,
    password: str,
    database: str,
    extra_roles: Iterable[str],
    mark: str,
) -> bool:
    """Create or reset ``user`` with ``password`` and ``extra_roles``; create ``database``
    owned by it if missing. Returns whether the database was created now."""
    wanted = {role.upper() for role in extra_roles}
    with (
        _failures_as_unavailable(conninfo, password),
        _connect(conninfo, _MAINTENANCE_DB) as conn,
    ):
        with conn.transaction():
            _upsert_role(conn, user, password, wanted, mark)
        # CREATE DATABASE cannot run in a transaction block: autocommit, alone.
        created = _ensure_database(conn, database, user)
    logger.info(
        "client role %s ready; database %s %s",
        user,
        database,
        "created" if created else "already there",
    )
    return created


def drop_client(conninfo: str, user: str, mark: str) -> bool:
    """Drop ``user`` (this charm's client role), keeping what it owned. Returns whether a role
    was dropped; False when there is none or it is not this charm's."""
    with _failures_as_unavailable(conninfo):
        with _connect(conninfo, _MAINTENANCE_DB) as conn:
            comment = _role_comment(conn, user)
            if comment is None:
                logger.info("client role %s is already gone", user)
                return False
            if comment != mark:
                logger.warning("role %s is not this charm's client role: left in place", user)
                return False
            databases = _databases_with_dependencies(conn, user)
        for dbname in dict.fromkeys([_MAINTENANCE_DB, *databases]):
            with _connect(conninfo, dbname) as conn, conn.transaction():
                role = sql.Identifier(user)
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        with _connect(conninfo, _MAINTENANCE_DB) as conn:
            conn.execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                " WHERE usename = %s",
                [user],
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
    logger.info("client role %s dropped; what it owned is kept", user)
    return True


# --- statements -------------------------------------------------------------------------------


def _role_comment(conn: psycopg.Connection, role: str) -> str | None:
    """None when the role does not exist, else its comment ('' when it has none)."""
    row = conn.execute(
        "SELECT coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '')"
        " FROM pg_catalog.pg_roles WHERE rolname = %s",
        [role],
    ).fetchone()
    return None if row is None else str(row[0])


def _upsert_role(
    conn: psycopg.Connection, role: str, password: str, extra: set[str], mark: str
) -> None:
    comment = _role_comment(conn, role)
    if comment is not None and comment != mark:
        raise BackendUnavailable(
            f"role {role} already exists on the backend and is not this charm's client role:"
            " not taking it over"
        )
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode()).decode()
    optional = [on if name in extra else off for name, (on, off) in _OPTIONAL_ATTRIBUTES.items()]
    statement = _ALTER_ROLE if comment is not None else _CREATE_ROLE
    conn.execute(
        statement.format(
            role=sql.Identifier(role),
            attributes=sql.SQL(" ").join([_FIXED_ATTRIBUTES, *optional]),
            verifier=sql.Literal(verifier),
        )
    )
    conn.execute(
        sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(mark))
    )


def _ensure_database(conn: psycopg.Connection, database: str, owner: str) -> bool:
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", [database]
    ).fetchone()
    if exists is None:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        )
        return True
    conn.execute(
        sql.SQL("GRANT ALL PRIVILEGES ON DATABASE {} TO {}").format(
            sql.Identifier(database), sql.Identifier(owner)
        )
    )
    return False


def _databases_with_dependencies(conn: psycopg.Connection, role: str) -> list[str]:
    """The databases holding objects the role owns or has privileges on (pg_shdepend)."""
    rows = conn.execute(
        """
        SELECT DISTINCT d.datname
        FROM pg_catalog.pg_shdepend AS s
        JOIN pg_catalog.pg_database AS d ON d.oid = s.dbid
        WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass
          AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)
          AND d.datallowconn
        ORDER BY 1
        """,
        [role],
    ).fetchall()
    return [str(row[0]) for row in rows]
