"""The client applications' roles and databases on the backend, kept apart from each other.

The model
---------
Each client database has an owner role (``domain.clients.owner_role``: ``<db>_owner``, without
login) that owns the database and, through it, everything created in it. A client relation's
login role (``relation_id_<N>``) is a member of that owner role and, in that database, its
sessions start as the owner role (``ALTER ROLE ... IN DATABASE ... SET role``), so the tables
it creates belong to the owner role, not to the relation user. The relation goes: its user is
dropped, what it still owned is handed to the owner role first. The same application related
again gets a new user, member of the same owner role: its earlier data is there at once.

Which application a database belongs to is recorded on the backend, in the maintenance
database: the table ``pgbouncer_clients.databases`` (database name and oid, model uuid,
application name), owned by ``pg_database_owner`` (there: the server's bootstrap superuser, so
it outlives any one relation user) and readable by no other role (clients never
connect to the maintenance database through pgbouncer, and PUBLIC has no access to the schema).
A COMMENT on the database would not do: a client owning a database (or creating one with
CREATEDB) can write its comment. ``domain.clients.database_claim`` decides from that record.

``create_client`` connects as the backend superuser the ``backend-database`` relation
delivered and, holding an advisory lock so two charms in front of one backend do not race:

- refuses, changing nothing, a relation user or an owner role of that name that exists without
  this charm's mark (a role COMMENT, which only a superuser or a CREATEROLE role can write, and
  no client has CREATEROLE), and a database ``database_claim`` refuses
  (``ClientRefused``, a ``BackendUnavailable``: the caller blocks);
- creates or resets the relation user: ``LOGIN``, no superuser, no replication, no RLS bypass,
  no CREATEROLE, no expiry, ``CREATEDB`` exactly as asked, its password sent as the verifier
  libpq computes (never the password itself);
- creates the owner role, the database owned by it, and the record; or takes its own database
  back; or adopts a database an earlier version of this charm created owned by the relation
  user (ownership moves to the owner role);
- closes the database: everything revoked from PUBLIC (CONNECT, TEMP, CREATE); only the owner
  role (hence the relation users), the backend's superusers and the roles the charm grants
  CONNECT to (pgbouncer's auth role) may connect.

``drop_client`` ends the relation user's sessions, hands what it owns to the owner role of its
database (``REASSIGN OWNED``) and drops its privileges (``DROP OWNED``) in every database it
has objects or privileges in, then drops the role. A role without this charm's mark is left
alone.

Every session the charm opens as the superuser starts with ``search_path = pg_catalog,
pg_temp`` and ``SET ROLE NONE`` (``auth_setup._connect``): a client owning its database can
``ALTER DATABASE ... SET search_path`` or ``SET role`` for every session in it, the charm's
included, and must never get a superuser to run its functions or operators.

Every failure raises ``adapters.postgres.errors.BackendUnavailable`` with a one-line message
built from the server's primary message only, the client's password scrubbed from it.
"""

import logging
from collections.abc import Iterable

import psycopg
from psycopg import sql

# The connection and error handling are auth_setup's: one backend adapter, one error style.
from adapters.postgres.auth_setup import _connect, _failures_as_unavailable
from adapters.postgres.errors import BackendUnavailable, ClientRefused
from domain.clients import (
    ClaimAction,
    ClientApp,
    DatabaseRecord,
    ExistingDatabase,
    check_extra_roles,
    database_claim,
    owner_role,
)

logger = logging.getLogger(__name__)

__all__ = [
    "REGISTRY_SCHEMA",
    "REGISTRY_TABLE",
    "BackendUnavailable",
    "ClientRefused",
    "create_client",
    "drop_client",
    "owner_mark",
    "restrict_client",
    "role_mark",
]

REGISTRY_SCHEMA = "pgbouncer_clients"
REGISTRY_TABLE = "databases"
_REGISTRY = sql.SQL("{}.{}").format(
    sql.Identifier(REGISTRY_SCHEMA), sql.Identifier(REGISTRY_TABLE)
)
# One lock for every charm in front of this backend: claims are checked then acted on.
_LOCK_KEY = 0x70676273  # "pgbs"

_FIXED_ATTRIBUTES = sql.SQL("LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS NOCREATEROLE INHERIT")
# What a client may be given beyond LOGIN (on, off); domain.clients refuses anything else.
_OPTIONAL_ATTRIBUTES = {"CREATEDB": (sql.SQL("CREATEDB"), sql.SQL("NOCREATEDB"))}
_OWNER_ATTRIBUTES = sql.SQL(
    "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
)
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


def owner_mark(database: str) -> str:
    """The comment that says a role is the owner role this charm made for ``database``."""
    return f"pgbouncer-k8s owner role of database {database}"


def create_client(
    conninfo: str,
    user: str,
    password: str,
    database: str,
    extra_roles: Iterable[str],
    mark: str,
    app: ClientApp,
) -> bool:
    """Set up ``user`` with ``password`` in ``database``, which must be ``app``'s or new.

    Returns whether the database was created now. Raises ``ClientRefused`` (nothing changed)
    when the database or a role of those names is someone else's.
    """
    wanted = {role.upper() for role in extra_roles}
    check_extra_roles(wanted)  # the domain refused these already; never grant past it
    owner = owner_role(database)
    with (
        _failures_as_unavailable(conninfo, password),
        _connect(conninfo, _MAINTENANCE_DB) as conn,
    ):
        conn.execute("SELECT pg_catalog.pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            created = _create_client(conn, user, password, database, owner, wanted, mark, app)
        finally:
            conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", [_LOCK_KEY])
        with _connect(conninfo, database) as client_db:
            _close_database(client_db, database, owner, user, created)
    logger.info(
        "client role %s ready; database %s %s",
        user,
        database,
        "created" if created else "already there",
    )
    return created


def restrict_client(conninfo: str, user: str, mark: str, database: str) -> bool:
    """Take from ``user`` (this charm's client role) every attribute beyond a plain login and
    every membership but its database's owner role: for a relation served before its request
    became one the charm refuses (an earlier version granted CREATEROLE, with which the role
    could have granted itself anything). Returns whether the role was this charm's and there.
    """
    keep = owner_role(database)
    with _failures_as_unavailable(conninfo), _connect(conninfo, _MAINTENANCE_DB) as conn:
        if _role_comment(conn, user) != mark:
            return False
        with conn.transaction():
            role = sql.Identifier(user)
            conn.execute(
                sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS").format(
                    role
                )
            )
            for (granted,) in conn.execute(_MEMBERSHIPS, [user]).fetchall():
                if granted != keep:
                    conn.execute(
                        sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(str(granted)), role)
                    )
    logger.warning("client role %s restricted to its own database", user)
    return True


def drop_client(conninfo: str, user: str, mark: str, database: str | None = None) -> bool:
    """Drop ``user`` (this charm's client role); what it owned goes to the owner role of
    ``database`` (or of the client database it is a member of). Returns whether a role was
    dropped; False when there is none or it is not this charm's."""
    with _failures_as_unavailable(conninfo):
        with _connect(conninfo, _MAINTENANCE_DB) as conn:
            comment = _role_comment(conn, user)
            if comment is None:
                logger.info("client role %s is already gone", user)
                return False
            if comment != mark:
                logger.warning("role %s is not this charm's client role: left in place", user)
                return False
            heir = _heir(conn, user, database)
            # No new session, then none left: a session of the role could create objects
            # after the reassignment, and would keep the role from being dropped.
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(user)))
            conn.execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                " WHERE usename = %s",
                [user],
            )
            databases = _databases_with_dependencies(conn, user)
        for dbname in dict.fromkeys([_MAINTENANCE_DB, *databases]):
            with _connect(conninfo, dbname) as conn, conn.transaction():
                role = sql.Identifier(user)
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(role, heir))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        with _connect(conninfo, _MAINTENANCE_DB) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
    logger.info("client role %s dropped; what it owned is kept", user)
    return True


# --- create_client's steps ----------------------------------------------------------------------


def _create_client(
    conn: psycopg.Connection,
    user: str,
    password: str,
    database: str,
    owner: str,
    wanted: set[str],
    mark: str,
    app: ClientApp,
) -> bool:
    """Check everything, then change the roles and the database; whether it was created."""
    with conn.transaction():
        _ensure_registry(conn)
    user_comment = _role_comment(conn, user)
    if user_comment is not None and user_comment != mark:
        raise ClientRefused(
            f"role {user} already exists on the backend and is not this charm's client role:"
            " not taking it over"
        )
    owner_comment = _role_comment(conn, owner)
    if owner_comment is not None and owner_comment != owner_mark(database):
        raise ClientRefused(
            f"role {owner} already exists on the backend and is not this charm's owner role"
            f" of database {database}: not taking it over"
        )
    existing = _existing_database(conn, database)
    claim = database_claim(
        database,
        app,
        existing,
        _record(conn, database, existing),
        user,
        relation_user_is_ours=user_comment == mark,
    )
    if claim.action is ClaimAction.REFUSE:
        raise ClientRefused(claim.reason)
    with conn.transaction():
        _upsert_role(conn, user, password, wanted, mark, exists=user_comment is not None)
        if owner_comment is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} WITH ").format(sql.Identifier(owner)) + _OWNER_ATTRIBUTES
            )
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(owner), sql.Literal(owner_mark(database))
                )
            )
        # Membership without ADMIN: the relation user cannot hand the owner role to anyone.
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(user)))
        # Recorded before the database exists: a crash in between leaves a record the same
        # application takes back (the database is then owned by its owner role, which no
        # one else can give a database to).
        _write_record(conn, database, existing.oid if existing else None, app)
    if claim.action is ClaimAction.CREATE:
        # CREATE DATABASE cannot run in a transaction block: autocommit, alone.
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        )
    elif claim.action is ClaimAction.ADOPT or (existing and existing.owner != owner):
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        )
    created = _existing_database(conn, database)
    if created is None:  # dropped under us by someone else: nothing to serve
        raise BackendUnavailable(f"database {database} vanished while it was set up")
    with conn.transaction():
        _write_record(conn, database, created.oid, app)
        # In its database the relation user works as the owner role: what it creates is the
        # owner role's, and stays when the relation goes.
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET role = {}").format(
                sql.Identifier(user), sql.Identifier(database), sql.Literal(owner)
            )
        )
    return claim.action is ClaimAction.CREATE


def _close_database(
    conn: psycopg.Connection, database: str, owner: str, user: str, created: bool
) -> None:
    """PUBLIC loses every privilege on the database; what the relation user owned in it (an
    adopted database) goes to the owner role."""
    with conn.transaction():
        db = sql.Identifier(database)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}").format(
                db, sql.Identifier(owner)
            )
        )
        if not created:
            conn.execute(
                sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                    sql.Identifier(user), sql.Identifier(owner)
                )
            )


def _ensure_registry(conn: psycopg.Connection) -> None:
    schema = sql.Identifier(REGISTRY_SCHEMA)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
    conn.execute(
        sql.SQL(
            """
            CREATE TABLE IF NOT EXISTS {} (
                datname name PRIMARY KEY,
                datoid oid UNIQUE,
                model_uuid text NOT NULL,
                application text NOT NULL,
                recorded_at timestamptz NOT NULL DEFAULT pg_catalog.now()
            )
            """
        ).format(_REGISTRY)
    )
    conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(_REGISTRY))
    # Owned by whoever owns the maintenance database (the server's bootstrap superuser), not
    # by this relation's user: the backend may hand the charm another user one day, and the
    # old one must stay droppable.
    conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO pg_database_owner").format(schema))
    conn.execute(sql.SQL("ALTER TABLE {} OWNER TO pg_database_owner").format(_REGISTRY))


def _existing_database(conn: psycopg.Connection, database: str) -> ExistingDatabase | None:
    row = conn.execute(
        "SELECT oid, pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database"
        " WHERE datname = %s",
        [database],
    ).fetchone()
    return None if row is None else ExistingDatabase(oid=int(row[0]), owner=str(row[1]))


def _record(
    conn: psycopg.Connection, database: str, existing: ExistingDatabase | None
) -> DatabaseRecord | None:
    """The record of the database: by its oid when it exists (a record of the name with
    another oid is of a database that was dropped), by its name otherwise."""
    if existing is not None:
        row = conn.execute(
            sql.SQL(
                "SELECT datoid, model_uuid, application FROM {} WHERE datoid = %s"
                " OR (datname = %s AND datoid IS NULL)"
            ).format(_REGISTRY),
            [existing.oid, database],
        ).fetchone()
    else:
        row = conn.execute(
            sql.SQL("SELECT datoid, model_uuid, application FROM {} WHERE datname = %s").format(
                _REGISTRY
            ),
            [database],
        ).fetchone()
    if row is None:
        return None
    oid = None if row[0] is None else int(row[0])
    return DatabaseRecord(oid=oid, app=ClientApp(model_uuid=str(row[1]), name=str(row[2])))


def _write_record(
    conn: psycopg.Connection, database: str, oid: int | None, app: ClientApp
) -> None:
    # A database renamed since keeps its oid: its old row goes, the name's row is this one.
    if oid is not None:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE datoid = %s AND datname <> %s").format(_REGISTRY),
            [oid, database],
        )
    conn.execute(
        sql.SQL(
            """
            INSERT INTO {} (datname, datoid, model_uuid, application) VALUES (%s, %s, %s, %s)
            ON CONFLICT (datname) DO UPDATE SET datoid = EXCLUDED.datoid,
                model_uuid = EXCLUDED.model_uuid, application = EXCLUDED.application,
                recorded_at = pg_catalog.now()
            """
        ).format(_REGISTRY),
        [database, oid, app.model_uuid, app.name],
    )


def _role_comment(conn: psycopg.Connection, role: str) -> str | None:
    """None when the role does not exist, else its comment ('' when it has none)."""
    row = conn.execute(
        "SELECT coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '')"
        " FROM pg_catalog.pg_roles WHERE rolname = %s",
        [role],
    ).fetchone()
    return None if row is None else str(row[0])


def _upsert_role(
    conn: psycopg.Connection, role: str, password: str, extra: set[str], mark: str, exists: bool
) -> None:
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode()).decode()
    optional = [on if name in extra else off for name, (on, off) in _OPTIONAL_ATTRIBUTES.items()]
    statement = _ALTER_ROLE if exists else _CREATE_ROLE
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


# --- drop_client's steps ------------------------------------------------------------------------


_MEMBERSHIPS = """
    SELECT r.rolname FROM pg_catalog.pg_auth_members AS m
    JOIN pg_catalog.pg_roles AS r ON r.oid = m.roleid
    JOIN pg_catalog.pg_roles AS u ON u.oid = m.member
    WHERE u.rolname = %s ORDER BY 1
"""


def _heir(conn: psycopg.Connection, user: str, database: str | None) -> sql.Composable:
    """Who gets what ``user`` owned: the owner role of its database, else the superuser."""
    candidates = []
    if database is not None:
        candidates.append(owner_role(database))
    rows = conn.execute(_MEMBERSHIPS, [user]).fetchall()
    candidates.extend(str(row[0]) for row in rows)
    for candidate in candidates:
        comment = _role_comment(conn, candidate)
        if comment is not None and comment.startswith(owner_mark("")):
            return sql.Identifier(candidate)
    return sql.SQL("CURRENT_USER")


def _databases_with_dependencies(conn: psycopg.Connection, role: str) -> list[str]:
    """The databases holding objects the role owns or has privileges on (pg_shdepend)."""
    rows = conn.execute(
        """
        SELECT DISTINCT d.datname
        FROM pg_catalog.pg_shdepend AS s
        JOIN pg_catalog.pg_database AS d ON d.oid = s.dbid
        WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
          AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)
          AND d.datallowconn
        ORDER BY 1
        """,
        [role],
    ).fetchall()
    return [str(row[0]) for row in rows]
