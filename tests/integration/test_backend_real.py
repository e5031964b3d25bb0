"""The backend's auth setup against a real PostgreSQL, and real pgbouncer using it.

Each test gets its own databases in the session's PostgreSQL and its own role names, so the
shared ``pgbouncer_auth`` schema of one test never holds another test's grants. Clients are
the real ``psql``; pgbouncer runs through ``LocalWorkload`` from the files the charm's own
domain functions render. The last tests run the whole charm under ``ops.testing`` with the
``LocalWorkload`` in place of Pebble.
"""

import dataclasses
import os
import secrets
from collections.abc import Callable, Iterator

import pytest
from ops import testing

from adapters.juju.secret_store import SECRET_LABEL
from adapters.postgres.auth_setup import BackendUnavailable, install_auth, make_dsn, remove_auth
from charm import PgBouncerK8sCharm
from domain.backend import auth_user_for, with_auth_query
from domain.backend_service import RELATION_REMOVED
from domain.charm_config import CharmConfig, initial_config
from domain.peer_data import short_digest
from domain.pgb_config import ConnString, render_pgb_ini
from domain.ports import WorkloadPort
from localenv.local_workload import LocalWorkload
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster, PostgresError, psql
from localenv.processes import wait_until
from tests.unit.charm_harness import CONFIG, META, MODEL

pytestmark = pytest.mark.real

PROCESSES = 2


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def _password() -> str:
    return secrets.token_urlsafe(18)


@pytest.fixture
def new_db(postgres: PostgresCluster) -> Iterator[Callable[[], str]]:
    """Creates databases for one test; drops them (and their connections) afterwards."""
    made: list[str] = []

    def make() -> str:
        name = _name("pgb_db")
        postgres.psql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    yield make
    for name in made:
        postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def new_role(postgres: PostgresCluster) -> Iterator[Callable[..., tuple[str, str]]]:
    """Creates login roles for one test: ``new_role("SUPERUSER")`` -> (name, password)."""
    made: list[str] = []

    def make(*attributes: str) -> tuple[str, str]:
        name, password = _name("pgb_role"), _password()
        postgres.psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        if attributes:
            postgres.psql(f"ALTER ROLE {name} {' '.join(attributes)}")
        made.append(name)
        return name, password

    yield make
    for name in made:
        postgres.psql(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
def superuser_dsn(postgres: PostgresCluster) -> str:
    return make_dsn(postgres.host, postgres.port, postgres.superuser, postgres.password)


@pytest.fixture
def installed(
    postgres: PostgresCluster, superuser_dsn: str, new_db: Callable[[], str]
) -> Iterator[tuple[str, str, str]]:
    """install_auth done in a fresh database: (database, auth user, auth password)."""
    database = new_db()
    auth_user, auth_pw = _name("pgbouncer_auth_t"), _password()
    install_auth(superuser_dsn, auth_user, auth_pw, [database])
    yield database, auth_user, auth_pw
    remove_auth(superuser_dsn, auth_user, [database])


def get_auth(postgres: PostgresCluster, database: str, auth: tuple[str, str], role: str) -> str:
    user, password = auth
    return postgres.psql(
        f"SELECT usename || '|' || passwd FROM pgbouncer_auth.get_auth('{role}')",
        dbname=database,
        user=user,
        password=password,
    )


# --- the function -----------------------------------------------------------------------------


def test_get_auth_returns_the_stored_secret_of_a_login_role(postgres, installed, new_role):
    database, auth_user, auth_pw = installed
    role, _ = new_role()
    stored = postgres.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")
    assert stored.startswith("SCRAM-SHA-256$")

    assert get_auth(postgres, database, (auth_user, auth_pw), role) == f"{role}|{stored}"


def test_get_auth_returns_a_role_whose_validity_has_not_ended(postgres, installed, new_role):
    database, auth_user, auth_pw = installed
    role, _ = new_role("VALID UNTIL '2999-01-01'")

    assert get_auth(postgres, database, (auth_user, auth_pw), role).startswith(f"{role}|SCRAM")


@pytest.mark.parametrize(
    "attributes",
    ["SUPERUSER", "NOLOGIN", "REPLICATION", "VALID UNTIL '2001-01-01'"],
)
def test_get_auth_returns_nothing_for_roles_pgbouncer_must_not_log_in(
    postgres, installed, new_role, attributes
):
    database, auth_user, auth_pw = installed
    role, _ = new_role(attributes)

    assert get_auth(postgres, database, (auth_user, auth_pw), role) == ""


def test_get_auth_returns_nothing_for_the_bootstrap_superuser_or_a_stranger(postgres, installed):
    database, auth_user, auth_pw = installed

    assert get_auth(postgres, database, (auth_user, auth_pw), postgres.superuser) == ""
    assert get_auth(postgres, database, (auth_user, auth_pw), "no_such_role") == ""


@pytest.mark.parametrize("catalog", ["pg_authid", "pg_shadow"])
def test_the_auth_user_cannot_read_the_password_catalogs(postgres, installed, catalog):
    database, auth_user, auth_pw = installed

    with pytest.raises(PostgresError, match="permission denied"):
        postgres.psql(
            f"SELECT rolpassword FROM pg_catalog.{catalog}"
            if catalog == "pg_authid"
            else f"SELECT passwd FROM pg_catalog.{catalog}",
            dbname=database,
            user=auth_user,
            password=auth_pw,
        )


def test_other_roles_cannot_call_the_function(postgres, installed, new_role):
    database, _, _ = installed
    role, password = new_role()

    with pytest.raises(PostgresError, match="permission denied for schema pgbouncer_auth"):
        get_auth(postgres, database, (role, password), role)


def test_function_is_security_definer_with_a_fixed_search_path_and_private(postgres, installed):
    database, auth_user, _ = installed
    row = postgres.psql(
        "SELECT p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner), p.proacl,"
        " pg_get_userbyid(n.nspowner), n.nspacl"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.oid = 'pgbouncer_auth.get_auth(text)'::regprocedure",
        dbname=database,
    )
    secdef, config, owner, acl, schema_owner, schema_acl = row.split("|")
    assert secdef == "t"
    assert config == '{"search_path=pg_catalog, pg_temp"}'
    assert owner == schema_owner == postgres.superuser
    # Only the owner and the auth user: no "=X/..." entry (PUBLIC).
    assert acl == f"{{{owner}=X/{owner},{auth_user}=X/{owner}}}"
    assert schema_acl == f"{{{owner}=UC/{owner},{auth_user}=U/{owner}}}"


def test_install_is_idempotent_and_changes_the_password(postgres, superuser_dsn, installed):
    database, auth_user, old_pw = installed
    new_pw = _password()

    install_auth(superuser_dsn, auth_user, new_pw, [database])
    install_auth(superuser_dsn, auth_user, new_pw, [database])

    assert postgres.psql("SELECT current_user", user=auth_user, password=new_pw) == auth_user
    with pytest.raises(PostgresError, match="password authentication failed"):
        postgres.psql("SELECT 1", user=auth_user, password=old_pw)
    count = postgres.psql(
        "SELECT count(*) FROM pg_proc WHERE proname = 'get_auth'", dbname=database
    )
    assert count == "1"


def test_install_resets_a_role_someone_made_superuser(postgres, superuser_dsn, installed):
    database, auth_user, auth_pw = installed
    postgres.psql(f"ALTER ROLE {auth_user} SUPERUSER VALID UNTIL '2001-01-01'")

    install_auth(superuser_dsn, auth_user, auth_pw, [database])

    row = postgres.psql(
        f"SELECT rolsuper, rolvaliduntil FROM pg_roles WHERE rolname='{auth_user}'"
    )
    assert row == "f|infinity"


def test_remove_leaves_no_role_schema_or_function(postgres, superuser_dsn, new_db):
    databases = [new_db(), new_db()]
    auth_user = _name("pgbouncer_auth_t")
    install_auth(superuser_dsn, auth_user, _password(), databases)

    remove_auth(superuser_dsn, auth_user, databases)
    remove_auth(superuser_dsn, auth_user, databases)

    assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{auth_user}'") == "0"
    for database in databases:
        left = postgres.psql(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'pgbouncer_auth'),"
            " (SELECT count(*) FROM pg_proc WHERE proname = 'get_auth')",
            dbname=database,
        )
        assert left == "0|0"


def test_remove_keeps_the_function_another_auth_user_still_uses(postgres, superuser_dsn, new_db):
    database = new_db()
    first, second = _name("pgbouncer_auth_a"), _name("pgbouncer_auth_b")
    second_pw = _password()
    install_auth(superuser_dsn, first, _password(), [database])
    install_auth(superuser_dsn, second, second_pw, [database])

    remove_auth(superuser_dsn, first, [database])

    assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{first}'") == "0"
    assert get_auth(postgres, database, (second, second_pw), postgres.superuser) == ""
    remove_auth(superuser_dsn, second, [database])


# --- faults -----------------------------------------------------------------------------------


def test_wrong_password_fails_without_quoting_it(postgres, new_db):
    wrong = "Wr0ng-" + _password()
    auth_pw = _password()
    dsn = make_dsn(postgres.host, postgres.port, postgres.superuser, wrong)

    with pytest.raises(BackendUnavailable) as caught:
        install_auth(dsn, _name("pgbouncer_auth_t"), auth_pw, [new_db()])

    message = str(caught.value)
    assert "password authentication failed" in message
    assert wrong not in message
    assert auth_pw not in message
    assert "\n" not in message


def test_a_user_without_superuser_is_refused_before_any_change(postgres, new_db, new_role):
    role, password = new_role()
    auth_user = _name("pgbouncer_auth_t")
    dsn = make_dsn(postgres.host, postgres.port, role, password)

    with pytest.raises(BackendUnavailable, match="not a superuser"):
        install_auth(dsn, auth_user, _password(), [new_db()])

    assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{auth_user}'") == "0"


def test_an_sql_error_names_the_problem_not_the_statement(postgres, superuser_dsn):
    with pytest.raises(BackendUnavailable) as caught:
        install_auth(superuser_dsn, _name("pgbouncer_auth_t"), _password(), ["no_such_db"])

    assert str(caught.value).endswith('database "no_such_db" does not exist')


# --- real pgbouncer ---------------------------------------------------------------------------


@pytest.fixture
def workload(workload_dir: str) -> Iterator[LocalWorkload]:
    with LocalWorkload(workload_dir, processes=PROCESSES) as workload:
        yield workload


def leader_cfg(postgres: PostgresCluster, port: int, **databases: str) -> str:
    """The charm's initial config on ``port``, with ``[databases]`` entries to the fixture."""
    cfg = initial_config(CharmConfig(listen_port=port), PROCESSES)
    cfg = cfg.with_settings({"listen_addr": "127.0.0.1"})
    for name, dbname in databases.items():
        conn = ConnString({"host": postgres.host, "port": str(postgres.port), "dbname": dbname})
        cfg = cfg.with_database(name, conn)
    return render_pgb_ini(cfg)


def through(port: int, user: str, password: str, dbname: str = "mydb") -> str:
    return psql(
        "SELECT current_user",
        host="127.0.0.1",
        port=port,
        user=user,
        password=password,
        dbname=dbname,
    )


def test_pgbouncer_authenticates_clients_through_auth_query(
    postgres, superuser_dsn, new_db, new_role, workload
):
    database = new_db()
    auth_user, auth_pw = _name("pgbouncer_auth_t"), _password()
    install_auth(superuser_dsn, auth_user, auth_pw, [database])
    app, app_pw = new_role()
    port = free_port()
    files = with_auth_query(leader_cfg(postgres, port, mydb=database), auth_user, auth_pw)

    workload.write_auth(files.auth)
    workload.write_cfg(files.cfg)
    workload.reload()
    try:
        # The client is in no auth file: pgbouncer asked get_auth for its secret.
        assert through(port, app, app_pw) == app
        with pytest.raises(PostgresError, match="authentication failed"):
            through(port, app, "not-" + app_pw)
        with pytest.raises(PostgresError):
            through(port, postgres.superuser, postgres.password)
    finally:
        workload.stop()
        remove_auth(superuser_dsn, auth_user, [database])


# --- the whole charm --------------------------------------------------------------------------


class LocalCharm(PgBouncerK8sCharm):
    """The charm with real local pgbouncer processes in place of the Pebble container."""

    processes = PROCESSES
    workload: LocalWorkload | None = None

    def make_workload(self) -> WorkloadPort:
        assert LocalCharm.workload is not None
        return LocalCharm.workload


@pytest.fixture
def local_charm(workload: LocalWorkload) -> Iterator[type[LocalCharm]]:
    LocalCharm.workload = workload
    yield LocalCharm
    LocalCharm.workload = None


@dataclasses.dataclass
class Backend:
    """What the provider created: a superuser for the relation and a database."""

    user: str
    password: str
    database: str


@pytest.fixture
def backend_user(
    postgres: PostgresCluster, superuser_dsn: str, new_db, new_role
) -> Iterator[Backend]:
    user, password = new_role("SUPERUSER")
    backend = Backend(user, password, new_db())
    yield backend
    # The charm installed the function in "postgres" too: leave nothing for the next test.
    remove_auth(superuser_dsn, auth_user_for(user), [backend.database, "postgres"])


def charm_state(
    postgres: PostgresCluster, backend: Backend, juju: str, port: int
) -> tuple[testing.State, testing.Relation, testing.PeerRelation]:
    remote = {
        "endpoints": f"{postgres.host}:{postgres.port}",
        "database": backend.database,
        "version": "15",
    }
    secrets_ = set()
    if juju.startswith("3"):
        secret = testing.Secret(
            tracked_content={"username": backend.user, "password": backend.password}
        )
        remote["secret-user"] = secret.id
        secrets_.add(secret)
    else:
        remote |= {"username": backend.user, "password": backend.password}
    relation = testing.Relation(
        "backend-database", remote_app_name="postgresql-k8s", remote_app_data=remote
    )
    peer = testing.PeerRelation("pgb-peers")
    state = testing.State(
        leader=True,
        model=MODEL,
        config={"listen_port": port},
        relations={peer, relation},
        secrets=secrets_,
    )
    return state, relation, peer


def context(charm: type[LocalCharm], juju: str) -> testing.Context[LocalCharm]:
    return testing.Context(
        charm, meta=META, config=CONFIG, juju_version=juju, app_name="pgbouncer-k8s"
    )


@pytest.mark.parametrize("juju", ["3.6.0", "2.9.44"])
def test_charm_sets_up_auth_query_and_a_client_connects(
    postgres, backend_user, local_charm, workload, new_role, juju
):
    port = free_port()
    # The leader's pgbouncer.ini before the relation: what pebble-ready rendered.
    workload.write_cfg(leader_cfg(postgres, port, mydb=backend_user.database, pg="postgres"))
    state, relation, peer = charm_state(postgres, backend_user, juju, port)
    app, app_pw = new_role()
    ctx = context(local_charm, juju)

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    auth_user = auth_user_for(backend_user.user)
    auth_text = workload.read_auth()
    cfg_text = workload.read_cfg()
    assert auth_text is not None
    assert cfg_text is not None
    assert auth_text.startswith(f'"{auth_user}" "')
    assert auth_text.count("\n") == 1
    assert f"auth_user = {auth_user}\n" in cfg_text
    assert "auth_query = SELECT usename, passwd FROM pgbouncer_auth.get_auth($1)\n" in cfg_text
    assert os.path.isfile(os.path.join(workload.base_dir, "userlist.txt"))
    assert None not in workload.pids()
    assert out.deferred == []
    assert out.unit_status == testing.ActiveStatus(
        f"pgbouncer on port {port}, 2 processes, config {short_digest(cfg_text)}"
    )
    # Published at once, the auth file in the store.
    peer_data = out.get_relation(peer.id).local_app_data
    assert peer_data["cfg_file"] == cfg_text
    if juju.startswith("3"):
        assert out.get_secret(label=SECRET_LABEL).latest_content == {"auth-file": auth_text}
        for databag in (peer_data, out.get_relation(relation.id).local_app_data):
            assert backend_user.password not in "".join(databag.values())
            assert auth_text.split()[1] not in "".join(databag.values())
    else:
        assert peer_data["auth_file"] == auth_text
    # A client in no auth file gets in, through both databases.
    assert through(port, app, app_pw, "mydb") == app
    assert through(port, app, app_pw, "pg") == app


def test_charm_second_relation_changed_changes_nothing(
    postgres, backend_user, local_charm, workload
):
    port = free_port()
    workload.write_cfg(leader_cfg(postgres, port, mydb=backend_user.database))
    state, relation, _ = charm_state(postgres, backend_user, "3.6.0", port)
    ctx = context(local_charm, "3.6.0")
    first = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    files = (workload.read_cfg(), workload.read_auth())
    mtimes = {name: os.stat(os.path.join(workload.base_dir, name)).st_mtime_ns for name in
              ("pgbouncer.ini", "userlist.txt")}  # fmt: skip
    counters = (workload.starts, workload.signals_sent)

    out = ctx.run(ctx.on.relation_changed(first.get_relation(relation.id), remote_unit=0), first)

    assert (workload.read_cfg(), workload.read_auth()) == files
    assert {
        name: os.stat(os.path.join(workload.base_dir, name)).st_mtime_ns for name in mtimes
    } == mtimes
    assert (workload.starts, workload.signals_sent) == counters
    assert out.deferred == []


def test_charm_relation_broken_drops_the_role_and_the_settings(
    postgres, backend_user, local_charm, workload, new_role
):
    port = free_port()
    workload.write_cfg(leader_cfg(postgres, port, mydb=backend_user.database))
    state, relation, _ = charm_state(postgres, backend_user, "3.6.0", port)
    ctx = context(local_charm, "3.6.0")
    set_up = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    auth_user = auth_user_for(backend_user.user)
    assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{auth_user}'") == "1"

    out = ctx.run(ctx.on.relation_broken(set_up.get_relation(relation.id)), set_up)

    assert out.unit_status == testing.BlockedStatus(RELATION_REMOVED)
    assert out.deferred == []
    assert workload.read_auth() is None
    cfg_text = workload.read_cfg()
    assert cfg_text is not None
    assert "auth_user" not in cfg_text
    assert "auth_query" not in cfg_text
    assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{auth_user}'") == "0"
    assert "auth-file" not in out.get_secret(label=SECRET_LABEL).latest_content
    # pgbouncer restarted without auth_user (a reload would keep it): a client not in any
    # auth file is refused at once instead of waiting on the dropped auth role.
    app, app_pw = new_role()
    assert wait_until(lambda: None not in workload.pids())
    with pytest.raises(PostgresError, match="password authentication failed"):
        through(port, app, app_pw)


def test_charm_with_refused_credentials_waits_defers_and_writes_nothing(
    postgres, backend_user, local_charm, workload
):
    port = free_port()
    cfg = leader_cfg(postgres, port, mydb=backend_user.database)
    workload.write_cfg(cfg)
    wrong = Backend(backend_user.user, "Wr0ng-" + _password(), backend_user.database)
    state, relation, peer = charm_state(postgres, wrong, "3.6.0", port)
    ctx = context(local_charm, "3.6.0")

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "password authentication failed" in out.unit_status.message
    assert wrong.password not in out.unit_status.message
    assert len(out.deferred) == 1
    assert workload.read_auth() is None
    assert workload.read_cfg() == cfg
    assert out.get_relation(peer.id).local_app_data == {}
    auth_user = auth_user_for(backend_user.user)
    assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{auth_user}'") == "0"


def test_charm_follows_a_rotated_backend_password(
    postgres, superuser_dsn, backend_user, local_charm, workload, new_role
):
    """The PostgreSQL charm changes the relation user's password and publishes a new revision
    of its secret: on secret-changed the leader reads it and sets up with it (here it has to:
    the auth role was dropped behind its back, and only the new password can recreate it)."""
    port = free_port()
    workload.write_cfg(leader_cfg(postgres, port, mydb=backend_user.database))
    state, relation, _ = charm_state(postgres, backend_user, "3.6.0", port)
    ctx = context(local_charm, "3.6.0")
    set_up = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    auth_user = auth_user_for(backend_user.user)
    remove_auth(superuser_dsn, auth_user, [backend_user.database, "postgres"])
    rotated = _password()
    postgres.psql(f"ALTER ROLE {backend_user.user} PASSWORD '{rotated}'")
    (old,) = [s for s in set_up.secrets if "username" in s.tracked_content]
    secret = dataclasses.replace(
        old, latest_content={"username": backend_user.user, "password": rotated}
    )
    before = dataclasses.replace(set_up, secrets=(set_up.secrets - {old}) | {secret})

    out = ctx.run(ctx.on.secret_changed(secret), before)

    assert out.deferred == []
    assert out.unit_status == testing.ActiveStatus(
        f"pgbouncer on port {port}, 2 processes, config {short_digest(workload.read_cfg())}"
    )
    assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{auth_user}'") == "1"
    # pgbouncer's auth_query works again: a client in no auth file gets in.
    app, app_pw = new_role()
    assert through(port, app, app_pw, "mydb") == app


def test_charm_with_a_stale_backend_password_after_rotation_waits_and_defers(
    postgres, superuser_dsn, backend_user, local_charm, workload
):
    """Negative control: the password changed on the server but the secret's new revision
    still holds the old one; the leader says so and retries, it does not claim success."""
    port = free_port()
    workload.write_cfg(leader_cfg(postgres, port, mydb=backend_user.database))
    state, relation, _ = charm_state(postgres, backend_user, "3.6.0", port)
    ctx = context(local_charm, "3.6.0")
    set_up = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    postgres.psql(f"ALTER ROLE {backend_user.user} PASSWORD '{_password()}'")
    (old,) = [s for s in set_up.secrets if "username" in s.tracked_content]
    secret = dataclasses.replace(
        old, latest_content={"username": backend_user.user, "password": "St4le-" + _password()}
    )

    stale = dataclasses.replace(set_up, secrets=(set_up.secrets - {old}) | {secret})
    out = ctx.run(ctx.on.secret_changed(secret), stale)

    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "password authentication failed" in out.unit_status.message
    assert len(out.deferred) == 1
