"""Client isolation on the shared backend, attacked as a hostile client would.

The real PostgreSQL 15 of the session and a real pgbouncer 1.18 (``LocalWorkload``) in front of
it. Clients are set up exactly as the charm's leader sets them up (``create_client``, then
``install_auth`` in the client's database, then the two ``[databases]`` entries of
``with_client`` behind ``auth_query``), and connect with the real ``psql``, through pgbouncer
unless a test says it goes to PostgreSQL directly (a client that can reach the server's port:
the stronger attacker). Every attack has its positive control: the same statement succeeds for
the rightful owner, so a refusal is the guard's, not a broken setup.
"""

import dataclasses
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql as pgsql

from adapters.postgres.auth_setup import install_auth, make_dsn, remove_auth
from adapters.postgres.clients import (
    REGISTRY_SCHEMA,
    REGISTRY_TABLE,
    ClientRefused,
    create_client,
    drop_client,
    restrict_client,
    role_mark,
)
from domain.backend import AUTH_SCHEMA, BackendEndpoints, HostPort, with_auth_query
from domain.charm_config import CharmConfig, initial_config
from domain.clients import ClientApp, ClientRequest, InvalidClientRequest, owner_role, with_client
from domain.pgb_config import render_pgb_ini
from localenv.local_workload import LocalWorkload
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster, PostgresError, psql
from localenv.processes import pgrep
from tests.charm_leftovers import forget_in_registry

pytestmark = pytest.mark.real

MODEL = "5b1f1a0e-0000-4000-8000-00000000beef"
PGB_APP = "pgbouncer-k8s"


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@dataclasses.dataclass
class Client:
    relation_id: int
    database: str
    app: ClientApp
    user: str
    password: str

    @property
    def owner(self) -> str:
        return owner_role(self.database)


class Backend:
    """The backend as the charm sees it: a superuser for the relation, the auth role, and a
    pgbouncer serving every client database set up through it."""

    def __init__(self, postgres: PostgresCluster, workload: LocalWorkload) -> None:
        self.pg = postgres
        self.admin, self.admin_password = _name("pgb_admin"), secrets.token_urlsafe(18)
        postgres.psql(f"CREATE ROLE {self.admin} LOGIN SUPERUSER PASSWORD '{self.admin_password}'")
        self.dsn = make_dsn(postgres.host, postgres.port, self.admin, self.admin_password)
        self.auth_user, self.auth_password = _name("pgbouncer_auth"), secrets.token_urlsafe(18)
        install_auth(self.dsn, self.auth_user, self.auth_password, ["postgres"])
        self.workload = workload
        self.port = free_port()
        self.clients: list[Client] = []
        self.databases: set[str] = set()
        self.roles: set[str] = set()

    def serve(self, database: str, app: ClientApp, extra_roles: tuple[str, ...] = ()) -> Client:
        """What the leader does for a request; raises what create_client raises."""
        relation_id = secrets.randbelow(900_000) + 100_000
        request = ClientRequest(relation_id, database, extra_roles)
        password = secrets.token_urlsafe(18)
        self.databases.add(database)
        self.roles |= {request.user, request.owner}
        create_client(
            self.dsn,
            request.user,
            password,
            database,
            extra_roles,
            role_mark(MODEL, PGB_APP, relation_id),
            app,
        )
        install_auth(self.dsn, self.auth_user, self.auth_password, [database])
        client = Client(relation_id, database, app, request.user, password)
        self.clients.append(client)
        self.publish()
        return client

    def broken(self, client: Client) -> bool:
        """What relation-broken does on the backend."""
        self.clients.remove(client)
        self.publish()
        return drop_client(
            self.dsn, client.user, role_mark(MODEL, PGB_APP, client.relation_id), client.database
        )

    def publish(self) -> None:
        cfg = initial_config(CharmConfig(listen_port=self.port), 1)
        cfg = cfg.with_settings({"listen_addr": "127.0.0.1"})
        backend = BackendEndpoints(endpoints=(HostPort(self.pg.host, self.pg.port),))
        for client in self.clients:
            request = ClientRequest(client.relation_id, client.database)
            cfg = with_client(cfg, request, backend, self.auth_user)
        files = with_auth_query(render_pgb_ini(cfg), self.auth_user, self.auth_password)
        self.workload.write_auth(files.auth)
        self.workload.write_cfg(files.cfg)
        self.workload.reload()

    # -- connecting -------------------------------------------------------------------------

    def via_pgbouncer(self, who: Client, sql: str, dbname: str | None = None) -> str:
        return psql(
            sql,
            host="127.0.0.1",
            port=self.port,
            user=who.user,
            password=who.password,
            dbname=dbname or who.database,
        )

    def direct(self, who: Client, sql: str, dbname: str | None = None) -> str:
        return self.pg.psql(
            sql, dbname=dbname or who.database, user=who.user, password=who.password
        )

    def statements(self, who: Client, *sqls: str, dbname: str | None = None) -> None:
        """Each statement on its own, in one direct session (CREATE DATABASE needs that)."""
        conninfo = make_dsn(self.pg.host, self.pg.port, who.user, who.password)
        with psycopg.connect(conninfo, dbname=dbname or who.database, autocommit=True) as conn:
            for statement in sqls:
                conn.execute(pgsql.SQL(statement))  # pyright: ignore[reportArgumentType]

    def as_admin(self, sql: str, dbname: str = "postgres") -> str:
        return self.pg.psql(sql, dbname=dbname)

    def cleanup(self) -> None:
        self.workload.stop()
        superuser = make_dsn(self.pg.host, self.pg.port, self.pg.superuser, self.pg.password)
        for database in self.databases:
            quoted = database.replace('"', '""')
            self.as_admin(f'DROP DATABASE IF EXISTS "{quoted}" WITH (FORCE)')
        forget_in_registry(self.pg, list(self.databases))
        remove_auth(superuser, self.auth_user, ["postgres"])
        for role in [
            *sorted(self.roles, key=lambda r: not r.startswith("relation_id")),
            self.admin,
        ]:
            if self.as_admin(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == "1":
                quoted = role.replace('"', '""')
                self.as_admin(f'REASSIGN OWNED BY "{quoted}" TO {self.pg.superuser}')
                self.as_admin(f'DROP OWNED BY "{quoted}"')
                self.as_admin(f'DROP ROLE "{quoted}"')


def _backend(postgres: PostgresCluster) -> Iterator[Backend]:
    base = tempfile.mkdtemp(prefix="pgb-isolation-")
    workload = LocalWorkload(base, processes=1)
    made = Backend(postgres, workload)
    try:
        yield made
    finally:
        made.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        assert pgrep(base) == [], "pgbouncer processes left running"


@pytest.fixture
def backend(postgres: PostgresCluster) -> Iterator[Backend]:
    yield from _backend(postgres)


@pytest.fixture(scope="module")
def campaign(postgres: PostgresCluster) -> Iterator[tuple[Backend, Client, Client]]:
    """One backend for the whole campaign: an attacker (with CREATEDB) and its victim."""
    for made in _backend(postgres):
        attacker = made.serve(
            _name("attacker_db"), ClientApp(MODEL, _name("attacker")), ("CREATEDB",)
        )
        victim = made.serve(_name("victim_db"), ClientApp(MODEL, _name("victim")))
        made.via_pgbouncer(
            victim, "CREATE TABLE private (s text); INSERT INTO private VALUES ('x')"
        )
        yield made, attacker, victim


@pytest.fixture
def apps() -> Callable[[str], ClientApp]:
    return lambda name: ClientApp(MODEL, _name(name))


def denied(call: Callable[[], object], pattern: str = "permission denied|must be") -> str:
    with pytest.raises(PostgresError) as caught:
        call()
    message = str(caught.value)
    assert re.search(pattern, message), message
    return message


# --- 3. closed databases -----------------------------------------------------------------------


def test_another_client_cannot_log_in_to_a_clients_database(backend, apps):
    alpha = backend.serve(_name("alpha_db"), apps("alpha"))
    beta = backend.serve(_name("beta_db"), apps("beta"))

    # Positive control: each client reaches its own database through pgbouncer.
    who = "SELECT session_user || '@' || current_database()"
    assert backend.via_pgbouncer(alpha, who) == f"{alpha.user}@{alpha.database}"
    assert backend.via_pgbouncer(beta, who) == f"{beta.user}@{beta.database}"
    assert backend.via_pgbouncer(alpha, who, alpha.database + "_readonly") == (
        f"{alpha.user}@{alpha.database}"
    )
    # The attack: beta's credentials against alpha's database, through pgbouncer and directly.
    denied(lambda: backend.via_pgbouncer(beta, who, alpha.database), "permission denied|failed")
    denied(lambda: backend.direct(beta, who, alpha.database), "permission denied for database")
    denied(
        lambda: backend.via_pgbouncer(beta, who, alpha.database + "_readonly"),
        "permission denied|failed",
    )
    # Nothing is left for PUBLIC: CONNECT, TEMP and CREATE all gone.
    acl = backend.as_admin(
        f"SELECT count(*) FROM pg_database, aclexplode(datacl) AS a"
        f" WHERE datname = '{alpha.database}' AND a.grantee = 0"
    )
    assert acl == "0"
    for privilege in ("CONNECT", "TEMP", "CREATE"):
        assert (
            backend.as_admin(
                f"SELECT has_database_privilege('{beta.user}', '{alpha.database}', '{privilege}')"
            )
            == "f"
        )
        assert (
            backend.as_admin(
                f"SELECT has_database_privilege('{alpha.user}', '{alpha.database}', '{privilege}')"
            )
            == "t"
        )


# --- 2. a database is handed only to the application it was created for -----------------------


def test_an_existing_database_someone_else_owns_is_refused_and_not_granted(backend, apps):
    stranger, stranger_pw = _name("stranger"), secrets.token_urlsafe(12)
    database = _name("theirs")
    backend.roles.add(stranger)
    backend.databases.add(database)
    backend.as_admin(f"CREATE ROLE {stranger} LOGIN PASSWORD '{stranger_pw}'")
    backend.as_admin(f"CREATE DATABASE {database} OWNER {stranger}")
    backend.as_admin(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
    backend.as_admin("CREATE TABLE secret_stuff (n int)", database)

    with pytest.raises(ClientRefused, match=f"database {database} already exists and was not"):
        backend.serve(database, apps("alpha"))

    request_user = next(r for r in backend.roles if r.startswith("relation_id_"))
    # No role, no grant, no record, the owner unchanged.
    assert (
        backend.as_admin(f"SELECT count(*) FROM pg_roles WHERE rolname = '{request_user}'") == "0"
    )
    assert (
        backend.as_admin(
            f"SELECT count(*) FROM pg_database, aclexplode(datacl) AS a, pg_roles AS r"
            f" WHERE datname = '{database}' AND r.oid = a.grantee"
            " AND r.rolname LIKE 'relation_id%'"
        )
        == "0"
    )
    assert (
        backend.as_admin(
            f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'"
        )
        == stranger
    )
    assert (
        backend.as_admin(
            f"SELECT count(*) FROM {REGISTRY_SCHEMA}.{REGISTRY_TABLE} WHERE datname = '{database}'"
        )
        == "0"
    )


def test_a_database_created_for_one_application_is_refused_to_another(backend, apps):
    alpha_app, beta_app = apps("alpha"), apps("beta")
    alpha = backend.serve(_name("shared_name"), alpha_app)
    backend.via_pgbouncer(alpha, "CREATE TABLE orders (n int); INSERT INTO orders VALUES (1)")

    with pytest.raises(ClientRefused, match=f"belongs to another application \\({alpha_app.name}"):
        backend.serve(alpha.database, beta_app)
    # The same name from an application of the same name in another model is another app.
    with pytest.raises(ClientRefused, match="belongs to another application"):
        backend.serve(alpha.database, ClientApp("other-model", alpha_app.name))

    # Positive control: a second relation of the rightful application gets it, and its data.
    again = backend.serve(alpha.database, alpha_app)
    assert backend.via_pgbouncer(again, "SELECT n FROM orders") == "1"


def test_a_createdb_client_cannot_plant_a_database_for_another_application(backend, apps):
    """CREATEDB is allowed: the database it makes is its own, served to no one, and a database
    it names after another application's future request is refused to that application."""
    planter = backend.serve(_name("planter"), apps("planter"), ("CREATEDB",))
    victim_db = _name("victim_db")
    backend.databases.add(victim_db)
    # It creates the database as itself and tries to forge the charm's records.
    backend.statements(
        planter,
        "SET ROLE NONE",
        f"CREATE DATABASE {victim_db}",
        f"COMMENT ON DATABASE {victim_db} IS 'pgbouncer-k8s: victim'",
    )
    denied(
        lambda: backend.direct(
            planter,
            f"INSERT INTO {REGISTRY_SCHEMA}.{REGISTRY_TABLE} VALUES ('{victim_db}', 1, 'm', 'v')",
            "postgres",
        )
    )
    with pytest.raises(ClientRefused, match=f"database {victim_db} already exists"):
        backend.serve(victim_db, apps("victim"))
    # pgbouncer does not serve the database it made: no entry names it.
    denied(
        lambda: backend.via_pgbouncer(planter, "SELECT 1", victim_db),
        # pgbouncer answers an unknown database as a failed login, revealing nothing.
        "no such database|password authentication failed",
    )
    # It cannot copy another client's database either.
    other = backend.serve(_name("other_db"), apps("other"))
    copy = _name("copy")
    backend.databases.add(copy)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to copy"):
        backend.statements(
            planter, "SET ROLE NONE", f"CREATE DATABASE {copy} TEMPLATE {other.database}"
        )


# --- 4. ownership that survives the relation --------------------------------------------------


def test_the_same_application_related_again_works_on_its_earlier_rows(backend, apps):
    app = apps("shop")
    first = backend.serve(_name("shop_db"), app)
    backend.via_pgbouncer(first, "CREATE TABLE orders (id int primary key, item text)")
    backend.via_pgbouncer(first, "INSERT INTO orders VALUES (1, 'tea')")
    backend.via_pgbouncer(first, "CREATE SCHEMA billing; CREATE TABLE billing.invoices (n int)")
    # A table made after leaving the owner role: still handed to it on relation-broken.
    backend.via_pgbouncer(first, "SET ROLE NONE; CREATE TABLE made_as_myself (n int)")
    owners = backend.as_admin(
        "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables"
        " WHERE tablename IN ('orders', 'invoices')",
        first.database,
    )
    assert owners == first.owner

    assert backend.broken(first) is True
    assert backend.as_admin(f"SELECT count(*) FROM pg_roles WHERE rolname = '{first.user}'") == "0"

    second = backend.serve(first.database, app)
    assert second.user != first.user
    assert backend.via_pgbouncer(second, "SELECT item FROM orders WHERE id = 1") == "tea"
    backend.via_pgbouncer(second, "INSERT INTO orders VALUES (2, 'cake')")
    backend.via_pgbouncer(second, "UPDATE orders SET item = 'green tea' WHERE id = 1")
    backend.via_pgbouncer(second, "INSERT INTO billing.invoices VALUES (7)")
    backend.via_pgbouncer(second, "INSERT INTO made_as_myself VALUES (3)")
    backend.via_pgbouncer(second, "ALTER TABLE orders ADD COLUMN price int")
    assert backend.via_pgbouncer(
        second, "SELECT string_agg(item, ',' ORDER BY id) FROM orders"
    ) == ("green tea,cake")


def test_relation_broken_drops_only_the_relation_user(backend, apps):
    app = apps("keep")
    client = backend.serve(_name("keep_db"), app)
    backend.via_pgbouncer(client, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
    backend.broken(client)
    assert backend.as_admin("SELECT n FROM kept", client.database) == "42"
    assert (
        backend.as_admin(f"SELECT count(*) FROM pg_roles WHERE rolname = '{client.owner}'") == "1"
    )
    assert (
        backend.as_admin(
            f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{client.database}'"
        )
        == client.owner
    )
    denied(lambda: backend.direct(client, "SELECT 1"), "authentication failed|does not exist")


# --- 1, 5 and the campaign: what a served client tries next -------------------------------------


ESCALATIONS = [
    # (what the attacker runs in its own database, what the server answers)
    ("ALTER ROLE CURRENT_USER SUPERUSER", "permission denied|must be superuser"),
    ("ALTER ROLE {user} SUPERUSER", "permission denied|must be superuser"),
    ("ALTER ROLE {user} CREATEROLE", "permission denied"),
    ("ALTER ROLE {user} REPLICATION", "permission denied|must be superuser"),
    ("ALTER ROLE {user} BYPASSRLS", "permission denied|must be superuser"),
    ("ALTER ROLE {user} CREATEDB", "permission denied"),
    ("ALTER ROLE {other_user} PASSWORD 'stolen'", "permission denied"),
    ("ALTER ROLE {auth_user} PASSWORD 'stolen'", "permission denied"),
    ("CREATE ROLE sneaky LOGIN PASSWORD 'x'", "permission denied"),
    ("GRANT pg_execute_server_program TO {user}", "must have admin option|permission denied"),
    ("GRANT pg_read_server_files TO {user}", "must have admin option|permission denied"),
    ("GRANT pg_write_server_files TO {user}", "must have admin option|permission denied"),
    ("GRANT pg_read_all_data TO {user}", "must have admin option|permission denied"),
    ("GRANT {auth_user} TO {user}", "must have admin option|permission denied"),
    ("GRANT {other_owner} TO {user}", "must have admin option|permission denied"),
    ("GRANT {other_user} TO {user}", "must have admin option|permission denied"),
    ("GRANT {owner} TO {other_user}", "must have admin option|permission denied"),
    ("SET ROLE {other_owner}", "permission denied to set role"),
    ("SET ROLE {other_user}", "permission denied to set role"),
    ("SET ROLE {auth_user}", "permission denied to set role"),
    ("SET ROLE {admin}", "permission denied to set role"),
    ("SET SESSION AUTHORIZATION {other_user}", "permission denied to set session authorization"),
    (
        "ALTER ROLE {user} SET role = '{other_owner}'",
        "permission denied to set role|permission denied",
    ),
    ("COPY (SELECT 1) TO PROGRAM 'id'", "permission denied|must be superuser or have privileges"),
    (
        "CREATE TEMP TABLE t (x text); COPY t FROM PROGRAM 'id'",
        "permission denied|must be superuser",
    ),
    (
        "CREATE TEMP TABLE t (x text); COPY t FROM '/etc/passwd'",
        "permission denied|must be superuser",
    ),
    ("SELECT pg_read_file('/etc/passwd')", "permission denied"),
    ("SELECT pg_ls_dir('.')", "permission denied"),
    ("SELECT lo_import('/etc/passwd')", "permission denied|must be superuser"),
    ("CREATE EXTENSION dblink", "permission denied|must be superuser|not trusted"),
    ("CREATE EXTENSION file_fdw", "permission denied|must be superuser|not trusted"),
    ("CREATE EXTENSION adminpack", "permission denied|must be superuser|not trusted"),
    ("CREATE EXTENSION plperlu", "permission denied|must be superuser|not trusted|not available"),
    (
        "CREATE FUNCTION sh() RETURNS int LANGUAGE c AS '/bin/sh', 'main'",
        "permission denied for language c",
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE internal AS 'int4in'",
        "permission denied for language internal",
    ),
    ("SELECT * FROM pg_authid", "permission denied"),
    ("SELECT passwd FROM pg_shadow", "permission denied"),
    ("SELECT * FROM {auth_schema}.get_auth('{other_user}')", "permission denied"),
    ("SET ROLE NONE; SELECT * FROM {auth_schema}.get_auth('{other_user}')", "permission denied"),
    (
        "CREATE FUNCTION {auth_schema}.x() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "permission denied",
    ),
    ("DROP SCHEMA {auth_schema} CASCADE", "must be owner|permission denied"),
    (
        "ALTER FUNCTION {auth_schema}.get_auth(text) SECURITY INVOKER",
        "must be owner|permission denied",
    ),
    (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{other_user}'",
        "permission denied|must be a member",
    ),
    (
        "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION pg_catalog.now()",
        "permission denied|must be superuser",
    ),
    ("ALTER SYSTEM SET log_statement = 'all'", "permission denied|must be superuser"),
    ("SET session_preload_libraries = 'x'", "permission denied"),
    ("ALTER DATABASE {database} SET session_preload_libraries = 'x'", "permission denied"),
    ("LOAD '/tmp/x.so'", "permission denied|access to library"),
    (
        "CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1' PUBLICATION p",
        "must be superuser|permission denied",
    ),
    ("SELECT * FROM {registry}", "permission denied"),
    ("ALTER ROLE {user} RENAME TO hijacked", "permission denied|session user cannot be renamed"),
    ("ALTER ROLE {user} CONNECTION LIMIT -1", "permission denied"),
    ("ALTER ROLE {user} VALID UNTIL 'infinity'", "permission denied"),
    ("ALTER ROLE {user} NOINHERIT", "permission denied"),
    ("COMMENT ON ROLE {user} IS 'forged mark'", "must have CREATEROLE|permission denied"),
    ("COMMENT ON ROLE {other_owner} IS 'forged mark'", "must have CREATEROLE|permission denied"),
    ("ALTER DATABASE {other_database} SET search_path = public", "must be owner"),
    ("ALTER DATABASE {database} OWNER TO {other_owner}", "must be (able to SET ROLE|member)"),
    ("DROP DATABASE {other_database}", "must be owner"),
    ("REASSIGN OWNED BY {other_owner} TO CURRENT_USER", "permission denied"),
    ("ALTER SCHEMA public OWNER TO {other_owner}", "must be (able to SET ROLE|member)"),
    ("CREATE TABLE stolen (n int); ALTER TABLE stolen OWNER TO {other_owner}", "must be member"),
]


@pytest.mark.parametrize(("attack", "refusal"), ESCALATIONS)
def test_a_served_client_cannot_escalate(campaign, attack, refusal):
    backend, attacker, victim = campaign
    sql = attack.format(
        other_database=victim.database,
        user=attacker.user,
        owner=attacker.owner,
        database=attacker.database,
        other_user=victim.user,
        other_owner=victim.owner,
        auth_user=backend.auth_user,
        admin=backend.admin,
        auth_schema=AUTH_SCHEMA,
        registry=f"{REGISTRY_SCHEMA}.{REGISTRY_TABLE}",
    )
    dbname = "postgres" if "{registry}" in attack else None
    if dbname:
        # The attacker reaches the maintenance database only by going around pgbouncer.
        denied(lambda: backend.direct(attacker, sql, dbname), refusal)
    else:
        denied(lambda: backend.via_pgbouncer(attacker, sql), refusal)
        denied(lambda: backend.direct(attacker, sql), refusal)
    # Whatever it tried, it has no more than it had, and the victim its data.
    assert (
        backend.as_admin(
            "SELECT rolsuper::text || rolcreaterole::text || rolreplication::text"
            f" || rolbypassrls::text FROM pg_roles WHERE rolname = '{attacker.user}'"
        )
        == "falsefalsefalsefalse"
    )
    assert (
        backend.as_admin(
            f"SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m"
            f" JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
            f" WHERE u.rolname = '{attacker.user}'"
        )
        == attacker.owner
    )
    assert backend.via_pgbouncer(victim, "SELECT s FROM private") == "x"


def test_another_clients_statements_stay_hidden_in_pg_stat_activity(campaign):
    backend, attacker, victim = campaign
    conninfo = make_dsn("127.0.0.1", backend.port, victim.user, victim.password, victim.database)
    look = (
        "SELECT coalesce(string_agg(query, ','), '') FROM pg_stat_activity"
        f" WHERE usename = '{victim.user}' AND query LIKE '%victim secret%'"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT 'victim secret' AS s")
        # Positive control: the victim, as itself (not its owner role), sees its statement.
        assert "SELECT 'victim secret'" in backend.via_pgbouncer(victim, "SET ROLE NONE; " + look)
        for attempt in (look, "SET ROLE NONE; " + look):
            assert "SELECT 'victim secret'" not in backend.via_pgbouncer(attacker, attempt)


def test_positive_controls_the_owner_does_what_the_attacker_cannot(backend, apps):
    """The same kinds of statement, on what the client owns, succeed."""
    client = backend.serve(_name("owner_db"), apps("owner"), ("CREATEDB",))
    run = lambda sql: backend.via_pgbouncer(client, sql)  # noqa: E731
    run("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    run("CREATE SCHEMA mine; CREATE TABLE mine.t (n int)")
    run("CREATE TEMP TABLE scratch (n int); INSERT INTO scratch VALUES (1)")
    run("CREATE EXTENSION IF NOT EXISTS pgcrypto")  # a trusted extension
    run("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$")
    # Its own role's settings, once it steps out of the owner role.
    run(f"SET ROLE NONE; ALTER ROLE {client.user} SET work_mem = '8MB'")
    run(f"ALTER DATABASE {client.database} SET statement_timeout = '1min'")
    assert run("SELECT current_user") == client.owner
    assert run("SET ROLE NONE; SELECT current_user").splitlines()[-1] == client.user
    # The auth role, as pgbouncer uses it, still works in this database.
    assert (
        backend.pg.psql(
            f"SELECT usename FROM {AUTH_SCHEMA}.get_auth('{client.user}')",
            dbname=client.database,
            user=backend.auth_user,
            password=backend.auth_password,
        )
        == client.user
    )


def test_the_auth_function_is_refused_to_every_client_role(backend, apps):
    client = backend.serve(_name("auth_db"), apps("auth"), ("CREATEDB",))
    call = f"SELECT passwd FROM {AUTH_SCHEMA}.get_auth('{client.user}')"
    for sql in (call, "SET ROLE NONE; " + call, f"SET ROLE {client.owner}; " + call):
        denied(lambda sql=sql: backend.via_pgbouncer(client, sql), "permission denied")
    # No client role reaches the auth role, directly or through any membership.
    for role in (client.user, client.owner):
        assert (
            backend.as_admin(
                f"SELECT pg_has_role('{role}', '{backend.auth_user}', 'USAGE')"
                f" OR pg_has_role('{role}', '{backend.auth_user}', 'MEMBER')"
                f" OR has_function_privilege('{role}', '{AUTH_SCHEMA}.get_auth(text)', 'EXECUTE')"
                f" OR has_schema_privilege('{role}', '{AUTH_SCHEMA}', 'USAGE')",
                client.database,
            )
            == "f"
        )
    # Positive control: the auth role itself may call it.
    assert backend.pg.psql(
        call, dbname=client.database, user=backend.auth_user, password=backend.auth_password
    ).startswith("SCRAM-SHA-256$")


# --- attacks on the charm's own sessions --------------------------------------------------------


def test_database_settings_planted_by_the_owner_cannot_turn_the_charms_session(backend, apps):
    """The client owns its database: it can ALTER DATABASE ... SET search_path and role for
    every session in it. It plants an operator and a function that would make it superuser
    if the charm's superuser session ever resolved an unqualified name to them."""
    app = apps("trap")
    client = backend.serve(_name("trap_db"), app)
    backend.via_pgbouncer(
        client,
        f"""
        CREATE SCHEMA trap;
        CREATE FUNCTION trap.escalate(a name, b name) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE 'ALTER ROLE {client.owner} SUPERUSER';
            RETURN a OPERATOR(pg_catalog.=) b;
        END $$;
        CREATE OPERATOR trap.= (LEFTARG = name, RIGHTARG = name, FUNCTION = trap.escalate);
        GRANT USAGE ON SCHEMA trap TO PUBLIC;
        ALTER DATABASE {client.database} SET search_path = trap, pg_catalog;
        """,
    )
    # The trap works on an unguarded superuser session (the control: the attack is real).
    backend.as_admin(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'nobody'", client.database
    )
    is_superuser = f"SELECT rolsuper FROM pg_roles WHERE rolname = '{client.owner}'"
    assert backend.as_admin(is_superuser) == "t"
    backend.as_admin(f"ALTER ROLE {client.owner} NOSUPERUSER")

    # The charm serves it again and runs relation-broken: its sessions are guarded.
    backend.serve(client.database, app)
    assert backend.as_admin(is_superuser) == "f"
    backend.broken(client)
    assert backend.as_admin(is_superuser) == "f"
    # Taking the auth function out of its database runs the most catalog queries of all.
    remove_auth(backend.dsn, backend.auth_user, [client.database, "postgres"])
    install_auth(backend.dsn, backend.auth_user, backend.auth_password, ["postgres"])
    assert backend.as_admin(is_superuser) == "f"


def test_a_trap_planted_for_auth_query_never_runs_as_the_auth_role_or_the_function_owner(
    backend, apps
):
    """pgbouncer runs auth_query as the auth role in the client's own database, whose settings
    the client controls. It plants operators that log who runs them; logins go on working, and
    the log stays empty: the query is schema-qualified and the function's own search_path is
    fixed."""
    client = backend.serve(_name("authtrap_db"), apps("authtrap"))
    backend.via_pgbouncer(
        client,
        f"""
        CREATE SCHEMA trap;
        CREATE TABLE trap.log (who name, at timestamptz DEFAULT now());
        GRANT USAGE ON SCHEMA trap TO PUBLIC;
        GRANT INSERT, SELECT ON trap.log TO PUBLIC;
        CREATE FUNCTION trap.eq_name(a name, b name) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO trap.log (who) VALUES (current_user);
            RETURN a OPERATOR(pg_catalog.=) b;
        END $$;
        CREATE FUNCTION trap.eq_text(a name, b text) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO trap.log (who) VALUES (current_user);
            RETURN a OPERATOR(pg_catalog.=) b;
        END $$;
        CREATE OPERATOR trap.= (LEFTARG = name, RIGHTARG = name, FUNCTION = trap.eq_name);
        CREATE OPERATOR trap.= (LEFTARG = name, RIGHTARG = text, FUNCTION = trap.eq_text);
        CREATE FUNCTION trap.get_auth(username text) RETURNS TABLE(usename name, passwd text)
            LANGUAGE sql AS $$ SELECT username::name, 'stolen'::text $$;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA trap TO PUBLIC;
        ALTER DATABASE {client.database} SET search_path = trap, pg_catalog;
        """,
    )
    # The control: an unguarded session there does run the trap.
    backend.as_admin("SELECT count(*) FROM pg_roles WHERE rolname = 'x'::name", client.database)
    assert backend.as_admin("SELECT count(*) FROM trap.log", client.database) != "0"
    backend.as_admin("TRUNCATE trap.log", client.database)

    # New logins through pgbouncer: each one runs auth_query as the auth role, in this database.
    backend.workload.restart()
    assert backend.via_pgbouncer(client, "SELECT session_user") == client.user
    denied(
        lambda: backend.via_pgbouncer(dataclasses.replace(client, password="stolen"), "SELECT 1"),
        "SASL authentication failed|password authentication failed",
    )
    assert backend.as_admin("SELECT count(*) FROM trap.log", client.database) == "0"


def test_a_role_setting_planted_on_the_database_does_not_move_the_charms_session(backend, apps):
    app = apps("roleset")
    client = backend.serve(_name("roleset_db"), app)
    backend.via_pgbouncer(client, f"ALTER DATABASE {client.database} SET role = '{client.owner}'")
    # Positive control: an unguarded superuser session there runs as the client's role.
    assert backend.as_admin("SELECT current_user", client.database) == client.owner
    again = backend.serve(client.database, app)
    assert backend.via_pgbouncer(again, "SELECT count(*) FROM pg_class") != ""
    assert backend.broken(client) is True


# --- 1. refused extra roles create nothing ----------------------------------------------------


@pytest.mark.parametrize("extra", ["CREATEROLE", "SUPERUSER", "pg_execute_server_program"])
def test_a_refused_role_never_reaches_the_backend(backend, extra):
    with pytest.raises(InvalidClientRequest, match="refused"):
        create_client(
            backend.dsn,
            "relation_id_999999",
            "pw",
            _name("never"),
            (extra,),
            "mark",
            ClientApp(MODEL, "x"),
        )
    assert (
        backend.as_admin("SELECT count(*) FROM pg_roles WHERE rolname = 'relation_id_999999'")
        == "0"
    )


def test_sql_in_a_database_name_is_a_name_not_sql(backend, apps):
    """The domain refuses such names before the adapter; the adapter quotes them anyway."""
    evil = 'x"; CREATE ROLE injected SUPERUSER; --'
    backend.databases.add(evil)
    create_client(
        backend.dsn,
        "relation_id_999998",
        secrets.token_urlsafe(12),
        evil,
        (),
        "mark",
        apps("evil"),
    )
    backend.roles |= {"relation_id_999998", owner_role(evil)}
    assert backend.as_admin("SELECT count(*) FROM pg_roles WHERE rolname = 'injected'") == "0"
    assert (
        backend.as_admin(
            "SELECT count(*) FROM pg_database"
            " WHERE datname = 'x\"; CREATE ROLE injected SUPERUSER; --'"
        )
        == "1"
    )


# --- a relation served by an earlier version with CREATEROLE ------------------------------------


def test_createrole_was_a_real_hole_and_restrict_client_closes_it(backend, apps):
    """What an earlier version of the charm handed out: CREATEROLE. On PostgreSQL 15 the role
    grants itself pg_execute_server_program and another client's role (the attack of the
    issue, run for real), then restrict_client takes all of it back."""
    victim = backend.serve(_name("victim_db"), apps("victim"))
    backend.via_pgbouncer(
        victim, "CREATE TABLE private (s text); INSERT INTO private VALUES ('x')"
    )
    client = backend.serve(_name("old_db"), apps("old"))
    backend.as_admin(f"ALTER ROLE {client.user} CREATEROLE")  # as the earlier version did

    # The hole: it grants itself the server's shell and the victim's data, and uses both.
    backend.direct(client, "SET ROLE NONE; GRANT pg_execute_server_program TO CURRENT_USER")
    backend.direct(client, f"SET ROLE NONE; GRANT {victim.owner} TO CURRENT_USER")
    shell = "SET ROLE NONE; CREATE TEMP TABLE out (s text); COPY out FROM PROGRAM 'id -un';"
    assert backend.direct(client, shell + " SELECT s FROM out").splitlines()[-1] == "postgres"
    backend.as_admin(f"GRANT CONNECT ON DATABASE {victim.database} TO {client.user}")
    assert backend.direct(client, "SELECT s FROM private", victim.database) == "x"

    assert restrict_client(
        backend.dsn, client.user, role_mark(MODEL, PGB_APP, client.relation_id), client.database
    )
    assert (
        backend.as_admin(
            f"SELECT rolcreaterole::text || rolsuper::text FROM pg_roles"
            f" WHERE rolname = '{client.user}'"
        )
        == "falsefalse"
    )
    denied(
        lambda: backend.direct(client, shell + " SELECT s FROM out"),
        "must be superuser or have privileges of the pg_execute_server_program role",
    )
    denied(
        lambda: backend.direct(client, "SET ROLE NONE; SELECT s FROM private", victim.database),
        "permission denied",
    )
    # Its own database stays its own.
    assert backend.via_pgbouncer(client, "SELECT current_user") == client.owner
    # A role without this charm's mark is not touched.
    assert not restrict_client(backend.dsn, victim.user, "another mark", victim.database)
