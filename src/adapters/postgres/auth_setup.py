"""pgbouncer's ``auth_query`` on the backend: a login role, a schema and a function.

``install_auth`` connects as the backend superuser the relation delivered and, in one
transaction per database:

- creates the login role ``auth_user`` (or, when it exists, resets it to a plain login role:
  no superuser, no replication, no expiry) with ``auth_password``. The password never travels
  in SQL text: psycopg's ``encrypt_password`` (libpq's ``PQencryptPasswordConn``) turns it
  into the verifier the server's ``password_encryption`` asks for, and only that is sent, as
  ``\\password`` in psql does; the server's logs never see the password;
- grants ``auth_user`` CONNECT on the database (PostgreSQL charms revoke it from PUBLIC);
- creates the schema ``pgbouncer_auth`` and the function ``pgbouncer_auth.get_auth(username
  text) RETURNS TABLE(usename name, passwd text)``, both owned by the superuser. The function
  is ``SECURITY DEFINER`` (it reads ``pg_authid``, which only a superuser may) with
  ``search_path = pg_catalog, pg_temp`` (no caller can shadow what it calls), and returns a
  row only for a role that can log in, is not a superuser, has no replication attribute and
  whose ``VALID UNTIL`` has not passed: pgbouncer can never be used to log in as a superuser
  or a replication role;
- revokes everything on the function and the schema from PUBLIC, then grants USAGE on the
  schema and EXECUTE on the function to ``auth_user``.

Every statement is idempotent, so running it again (a new leader, changed credentials, a
retry) converges to the same state. ``remove_auth`` takes ``auth_user``'s privileges away,
drops the function and the schema unless another role still has a grant on them (a second
pgbouncer application in front of the same backend), and drops the role.

Every failure (cannot connect, authentication refused, the user is no superuser, an SQL
error) raises ``BackendUnavailable`` with a one-line message built from the server's primary
message only: psycopg's full text may quote the statement, and nothing here ever puts a
password in a message or a log line.
"""

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adapters.errors import first_line
from adapters.postgres.errors import BackendUnavailable
from domain.backend import AUTH_FUNCTION, AUTH_SCHEMA

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10  # seconds; a hook must not hang on an unreachable backend

_SCHEMA = sql.Identifier(AUTH_SCHEMA)
_FUNCTION = sql.SQL("{}.{}").format(_SCHEMA, sql.Identifier(AUTH_FUNCTION))
_SIGNATURE = f"{AUTH_SCHEMA}.{AUTH_FUNCTION}(text)"

_CREATE_FUNCTION = sql.SQL(
    """
    CREATE OR REPLACE FUNCTION {function}(username text)
    RETURNS TABLE(usename name, passwd text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $body$
        SELECT a.rolname, a.rolpassword
        FROM pg_catalog.pg_authid AS a
        WHERE a.rolname = username
          AND a.rolcanlogin
          AND NOT a.rolsuper
          AND NOT a.rolreplication
          AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > pg_catalog.now())
    $body$
    """
)
_ROLE_ATTRIBUTES = sql.SQL(
    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    " VALID UNTIL 'infinity' PASSWORD {verifier}"
)


def make_dsn(host: str, port: int, user: str, password: str, dbname: str = "postgres") -> str:
    """A libpq connection string, every value quoted as libpq needs."""
    return make_conninfo(
        host=host,
        port=str(port),
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=str(CONNECT_TIMEOUT),
    )


def install_auth(
    conninfo: str, auth_user: str, auth_password: str, databases: Iterable[str]
) -> None:
    """Create or update ``auth_user`` and the auth function in each of ``databases``."""
    names = _unique(databases)
    with _failures_as_unavailable(conninfo, auth_password):
        for index, dbname in enumerate(names):
            with _connect(conninfo, dbname) as conn, conn.transaction():
                if index == 0:
                    _require_superuser(conn)
                    _upsert_role(conn, auth_user, auth_password)
                _install_function(conn, auth_user, dbname)
    logger.info("auth_query function installed in %d database(s)", len(names))


def remove_auth(conninfo: str, auth_user: str, databases: Iterable[str]) -> None:
    """Drop ``auth_user``, and the function and schema it used where no other role uses them."""
    names = _unique(databases)
    with _failures_as_unavailable(conninfo):
        for dbname in names:
            with _connect(conninfo, dbname) as conn, conn.transaction():
                _remove_function(conn, auth_user, dbname)
        with _connect(conninfo, names[0]) as conn, conn.transaction():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(auth_user)))
    logger.info("auth_query function removed from %d database(s)", len(names))


# --- statements -------------------------------------------------------------------------------


def _require_superuser(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not (row and row[0]):
        raise BackendUnavailable(
            "the backend user is not a superuser (extra-user-roles SUPERUSER was not granted):"
            " it cannot install the auth function"
        )


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", [role]).fetchone()
    return row is not None


def _upsert_role(conn: psycopg.Connection, role: str, password: str) -> None:
    # The verifier (SCRAM or md5, as the server's password_encryption says) is computed here:
    # the password itself never reaches the server.
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode()).decode()
    verb = "ALTER" if _role_exists(conn, role) else "CREATE"
    statement = sql.SQL(verb + " ROLE {role} WITH ").format(role=sql.Identifier(role))
    conn.execute(statement + _ROLE_ATTRIBUTES.format(verifier=sql.Literal(verifier)))


def _install_function(conn: psycopg.Connection, role: str, dbname: str) -> None:
    role_id = sql.Identifier(role)
    statements = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), role_id),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_SCHEMA),
        sql.SQL("ALTER SCHEMA {} OWNER TO CURRENT_USER").format(_SCHEMA),
        _CREATE_FUNCTION.format(function=_FUNCTION),
        # CREATE OR REPLACE keeps an existing function's owner: make it this superuser.
        sql.SQL("ALTER FUNCTION {}(text) OWNER TO CURRENT_USER").format(_FUNCTION),
        sql.SQL("REVOKE ALL ON FUNCTION {}(text) FROM PUBLIC").format(_FUNCTION),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(_SCHEMA),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(_SCHEMA, role_id),
        sql.SQL("GRANT EXECUTE ON FUNCTION {}(text) TO {}").format(_FUNCTION, role_id),
    ]
    for statement in statements:
        conn.execute(statement)


# How many roles other than the owner (PUBLIC included) hold a privilege on the object.
_FUNCTION_GRANTEES = sql.SQL(
    """
    SELECT count(*) FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
    WHERE p.oid = pg_catalog.to_regprocedure(%s) AND a.grantee <> p.proowner
    """
)
_SCHEMA_GRANTEES = sql.SQL(
    """
    SELECT count(*) FROM pg_catalog.pg_namespace AS n, pg_catalog.aclexplode(n.nspacl) AS a
    WHERE n.oid = pg_catalog.to_regnamespace(%s) AND a.grantee <> n.nspowner
    """
)


def _other_grantees(conn: psycopg.Connection, query: sql.SQL, name: str) -> int:
    row = conn.execute(query, [name]).fetchone()
    return int(row[0]) if row else 0


def _exists(conn: psycopg.Connection, function: str, name: str) -> bool:
    row = conn.execute(
        sql.SQL("SELECT pg_catalog.{}(%s) IS NOT NULL").format(sql.Identifier(function)), [name]
    ).fetchone()
    return bool(row and row[0])


def _remove_function(conn: psycopg.Connection, role: str, dbname: str) -> None:
    role_id = sql.Identifier(role)
    has_function = _exists(conn, "to_regprocedure", _SIGNATURE)
    has_schema = _exists(conn, "to_regnamespace", AUTH_SCHEMA)
    if _role_exists(conn, role):
        if has_function:
            conn.execute(
                sql.SQL("REVOKE ALL ON FUNCTION {}(text) FROM {}").format(_FUNCTION, role_id)
            )
        if has_schema:
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(_SCHEMA, role_id))
        conn.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                sql.Identifier(dbname), role_id
            )
        )
    if has_function:
        if _other_grantees(conn, _FUNCTION_GRANTEES, _SIGNATURE):
            logger.info("auth function kept in a database: another role still uses it")
            return
        conn.execute(sql.SQL("DROP FUNCTION {}(text)").format(_FUNCTION))
    if has_schema and not _other_grantees(conn, _SCHEMA_GRANTEES, AUTH_SCHEMA):
        # RESTRICT: a schema someone filled with other objects is not ours to drop.
        conn.execute(sql.SQL("DROP SCHEMA {} RESTRICT").format(_SCHEMA))


# --- connections and errors -------------------------------------------------------------------


def _unique(databases: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(databases))
    if not names:
        raise ValueError("at least one database is needed")
    return names


def _connect(conninfo: str, dbname: str) -> psycopg.Connection:
    """A superuser session that no setting of the database can turn against the charm.

    A client owns its database and may ``ALTER DATABASE ... SET`` its ``search_path`` (so that
    an unqualified function or operator resolves to its own) or ``role`` for every session in
    it: the charm's session resets both before running anything.
    """
    conn = psycopg.connect(make_conninfo(conninfo, dbname=dbname), autocommit=True)
    try:
        conn.execute("SET search_path = pg_catalog, pg_temp")
        conn.execute("SET ROLE NONE")
        conn.execute("SET default_transaction_read_only = off")
    except BaseException:
        conn.close()
        raise
    return conn


def _secrets_of(conninfo: str, extra: Sequence[str]) -> list[str]:
    found = [value for value in extra if value]
    try:
        password = conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        password = None
    if isinstance(password, str) and password:
        found.append(password)
    return found


def _describe(err: psycopg.Error) -> str:
    diag = err.diag
    primary = diag.message_primary if err.sqlstate else None
    # Connection failures carry libpq's text, which never quotes a statement.
    text = f"{primary} (SQLSTATE {err.sqlstate})" if primary else first_line(err)
    return " ".join(text.split())


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@contextmanager
def _failures_as_unavailable(conninfo: str, *extra_secrets: str) -> Iterator[None]:
    try:
        yield
    except BackendUnavailable:
        raise
    except psycopg.Error as err:
        message = _scrub(_describe(err), _secrets_of(conninfo, extra_secrets))
        raise BackendUnavailable(f"backend database: {message}") from None
