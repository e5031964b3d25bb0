"""``make demo``: three units of the charm on real pgbouncer processes, related for real to a
PostgreSQL and to a client application, then a config change.

What it does, with a progress line for each step:

1. starts a throwaway PostgreSQL (``localenv.postgres_cluster``);
2. runs three units of the real charm class with ``MultiUnitModel(real=True)``: each unit's
   hooks run under ``ops.testing``, its workload is two real pgbouncer processes in its own
   folder; the model delivers the events Juju would send between the units;
3. relates them to the PostgreSQL (``relate_backend``: the ``backend-database`` relation, the
   cluster superuser's credentials in a Juju secret of the provider); the leader's real
   handler installs ``auth_query`` on the PostgreSQL, writes the auth file and config, and
   publishes them; the followers take them through ``pgb-peers``;
4. relates a client application ``myapp`` asking for database ``appdb``
   (``relate_client``): the leader's real handler creates the role ``relation_id_<N>`` and
   the database on the PostgreSQL, adds the pgbouncer entries, and hands the credentials in a
   Juju secret once every unit acknowledged the config;
5. prints the ``pgb-peers`` relation as the seed's "Expected Interface" table, live, with
   every credential masked, and the client relation's answer;
6. connects ``psql`` as the client, with the credentials the charm handed it, through every
   process of every unit (each process's own unix socket): pgbouncer looks the client's
   password up with ``auth_query``;
7. sets ``pool_mode=transaction`` and shows every unit's reload (SIGHUP, same pids) and the
   new value in each process's ``SHOW CONFIG``. ``SHOW CONFIG`` needs an admin user and no
   charm option sets ``admin_users``: that one setting is a stand-in, written into the
   leader's pgbouncer.ini through its workload (the charm's auth user, whose password the
   charm put in the auth file), and the charm publishes it to the followers;
8. relates the units to a certificate authority (``relate_certificates``: the provider side
   played with the TLS library's own helpers): each unit requests its own certificate, puts
   it in place and serves TLS after a reload; ``psql`` with ``sslmode=verify-full`` and the
   CA connects through every process of every unit by the unit's own hostname (each unit
   listens on its own loopback address, as each pod has its own IP; ``hostaddr`` maps the
   name to it), and the client relation now says ``tls`` True with the CA;
9. stops everything, on success, failure or Ctrl-C.

Exit status: 0 when every step worked, 1 on a failure, 2 when a program is missing or the
demo cannot run here, 130 on Ctrl-C.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from types import FrameType

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from domain.auth_file import parse_auth_file
from domain.backend import auth_password, auth_user_for
from domain.peer_data import RELATION_PASSWORD_PREFIX
from domain.pgb_config import parse_pgb_ini, render_pgb_ini
from localenv.binaries import pg_program
from localenv.juju_model import (
    APP,
    APP_CHANGED,
    META,
    PEER,
    PEER_RELATION_ID,
    SECRET_AUTH_KEY,
    MultiUnitModel,
)
from localenv.local_workload import CONSOLE_NAME, find_pgbouncer
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster, PostgresError, psql
from localenv.tls_provider import CertificateAuthority

INSTALL = "sudo apt-get install pgbouncer postgresql"
PROCESSES = 2
UNITS = 3
CLIENT_APP, CLIENT_DATABASE = "myapp", "appdb"


class DemoFailed(Exception):
    """A step did not do what it should; the message says which and why."""


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def check_programs() -> None:
    """Every program the demo runs is there, and we may run pgbouncer as its user."""
    missing = []
    try:
        find_pgbouncer()
    except FileNotFoundError:
        missing.append("pgbouncer")
    for program in ("initdb", "pg_ctl", "psql"):
        try:
            pg_program(program)
        except FileNotFoundError:
            missing.append(f"PostgreSQL's {program}")
            break
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        # As root, PostgreSQL runs as the postgres system user, through runuser.
        missing.append("runuser (util-linux)")
    if missing:
        raise SystemExit(
            f"[demo] missing: {', '.join(missing)}. Install them with:\n    {INSTALL}\n"
            "(or run `make demo`, whose set-up installs them when it runs as root)"
        )


def mask_auth(text: str) -> str:
    """The auth file's lines with every secret masked: md5 hashes as md5…, others as ****."""
    lines = []
    for entry in parse_auth_file(text).entries:
        secret = "md5…(masked)" if entry.secret.startswith("md5") else "****"
        lines.append(f'"{entry.user}" "{secret}"')
    return "  ".join(lines)


def _store_content(model: MultiUnitModel) -> tuple[str, dict[str, str], int]:
    """The peer secret store's Juju secret: (id, latest content, revisions)."""
    secret_id = model.app_data.get(SECRET_ID_KEY, "")
    key = secret_id.rsplit("/", 1)[-1].removeprefix("secret:")
    for sid, _label, revision in model.secret_info():
        if key and sid.rsplit("/", 1)[-1].removeprefix("secret:") == key:
            return secret_id, model.secrets()[sid], revision
    return secret_id, {}, 0


def interface_table(model: MultiUnitModel) -> str:
    """The seed's "Expected Interface" table with the live values, credentials masked."""
    app = model.app_data
    peer_meta = META["peers"][PEER]
    rows = [
        (f"relation (id: {PEER_RELATION_ID})", APP),
        ("---", "---"),
        ("**metadata**", ""),
        ("relation name", PEER),
        ("interface", peer_meta["interface"]),
        ("leader unit", str(model.leader)),
        ("type", "peer"),
        ("**application databag**", ""),
    ]
    auth = model.published_auth()
    secret_id, content, revision = _store_content(model)
    if model.has_secrets:
        where = (
            f"in the Juju secret {secret_id} (label {SECRET_LABEL}, key {SECRET_AUTH_KEY}, "
            f"revision {revision}), not in the databag: "
        )
    else:
        where = "in the application databag (Juju without secrets): "
    rows.append(("auth_file", where + (mask_auth(auth) if auth else "(none yet)")))
    cfg = app.get("cfg_file")
    if cfg is not None:
        parsed = parse_pgb_ini(cfg)
        summary = (
            f"the leader's pgbouncer.ini, {len(cfg.splitlines())} lines: "
            f"databases {', '.join(name for name, _conn in parsed.databases) or '(none)'}; "
            f"pool_mode = {parsed.setting('pool_mode')}; "
            f"auth_user = {parsed.setting('auth_user')}; "
            f"listen_port = {parsed.setting('listen_port')} (printed below)"
        )
    else:
        summary = "(none yet)"
    rows.append(("cfg_file", summary))
    rows.append(("leader_hostname", app.get("leader_hostname", "(none yet)")))
    if model.has_secrets:
        prefix = RELATION_PASSWORD_PREFIX.replace("_", "-")
        keys = sorted(key for key in content if key.startswith(prefix))
        passwords = [key.replace("-", "_") for key in keys]
        rows.extend(
            (name, f"**** (in the Juju secret {secret_id}, key {key}, not in the databag)")
            for name, key in zip(passwords, keys, strict=True)
        )
    else:
        passwords = sorted(key for key in app if key.startswith(RELATION_PASSWORD_PREFIX))
        rows.extend((key, "****") for key in passwords)
    if not passwords:
        rows.append(("relation_id_<N>", "(none: no client relation yet)"))
    for key in sorted(set(app) - {"cfg_file", "leader_hostname", "auth_file", *passwords}):
        rows.append((key, app[key]))
    rows.append(("**unit databags**", ""))
    for n in model.units:
        data = model.unit_data(n)
        rows.append((model.unit_name(n), ", ".join(f"{k}={v}" for k, v in sorted(data.items()))))
    return "\n".join(f"| {key} | {value} |" for key, value in rows)


def client_table(model: MultiUnitModel, relation_id: int) -> str:
    """What the leader wrote in the client relation: the answer, the secret's ID."""
    rows = [
        (f"relation (id: {relation_id})", f"{CLIENT_APP} -> {APP}:database"),
        ("---", "---"),
    ]
    for key, value in sorted(model.relation_data(relation_id).items()):
        if key == "secret-user":
            value += " (a Juju secret granted to the relation: username, password, uris)"
        rows.append((key, value))
    return "\n".join(f"| {key} | {value} |" for key, value in rows)


def masked_cfg(text: str) -> str:
    """pgbouncer.ini with any ``password=`` in a connection string masked."""
    cfg = parse_pgb_ini(text)
    for name, conn in cfg.databases:
        if conn.get("password") is not None:
            cfg = cfg.with_database(name, conn.with_param("password", "****"))
    return render_pgb_ini(cfg)


def show_config(
    model: MultiUnitModel, n: int, index: int, admin: tuple[str, str]
) -> dict[str, str]:
    out = psql(
        "SHOW CONFIG",
        host=model.local_workload(n).instance_dir(index),
        port=int(model.config["listen_port"]),
        user=admin[0],
        password=admin[1],
        dbname="pgbouncer",
    )
    return {row.split("|")[0]: row.split("|")[1] for row in out.splitlines()}


def settle(model: MultiUnitModel, seed: int, *, converge: bool = True) -> None:
    report = model.settle(random.Random(seed), allow_deferred=not converge)
    problems = model.divergence()
    if converge and problems:
        raise DemoFailed("the units did not converge: " + "; ".join(problems))
    waiting = f"; still deferred: {report.still_deferring}" if report.still_deferring else ""
    say(f"    {report.deliveries} hooks delivered; {model.app_status()}{waiting}")


def units_status(model: MultiUnitModel) -> str:
    statuses = {model.unit_status(n) for n in model.units}
    return "; ".join(sorted(statuses))


def run(pg: PostgresCluster, model: MultiUnitModel) -> None:
    port = int(model.config["listen_port"])
    say(f"{UNITS} units, {PROCESSES} pgbouncer processes each, all on port {port}")
    say(f"    (so_reuseport); the units' folders are under {model.base_dir}")
    say("delivering the hooks Juju would send (install order, joins, pebble-ready...)")
    settle(model, 0, converge=False)
    say(f"    units: {units_status(model)}")
    leader = model.leader
    if leader is None:
        raise DemoFailed("no leader")

    say(f"juju integrate {APP}:backend-database postgresql-k8s (the PostgreSQL on port {pg.port};")
    say(f"    its superuser's credentials in a Juju secret granted to {APP})")
    model.relate_backend(pg)
    settle(model, 1)
    say(f"    units: {units_status(model)}")
    auth_user = auth_user_for(pg.superuser)
    roles = pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{auth_user}'")
    functions = pg.psql(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'pgbouncer_auth' AND p.proname = 'get_auth'"
    )
    if roles != "1" or functions != "1":
        raise DemoFailed(f"auth_query is not set up on the PostgreSQL ({auth_user}: {roles})")
    say(f"    on the PostgreSQL: role {auth_user} and pgbouncer_auth.get_auth() installed")

    say(f"juju integrate {CLIENT_APP} {APP} (database {CLIENT_DATABASE!r})")
    relation_id = model.relate_client(CLIENT_APP, CLIENT_DATABASE)
    settle(model, 2)
    say(f"    units: {units_status(model)}")
    try:
        client = model.client_credentials(relation_id)
    except LookupError as err:
        raise DemoFailed(f"the client got no credentials: {err}") from None
    say(
        f"    {CLIENT_APP} got user {client['username']} for database {client['database']}, "
        f"endpoints {client['endpoints']}"
    )

    print("\npgb-peers, live (the seed's Expected Interface):\n")
    print(interface_table(model))
    print(f"\nthe client relation ({CLIENT_APP}), live:\n")
    print(client_table(model, relation_id))
    print("\ncfg_file:\n")
    print("    " + masked_cfg(model.published_cfg() or "").replace("\n", "\n    "))

    say(f"connecting psql as {CLIENT_APP} ({client['username']}, the password the charm handed")
    say("    it) through every process of every unit: pgbouncer asks auth_query for it")
    for n in model.units:
        for index in range(PROCESSES):
            folder = model.local_workload(n).instance_dir(index)
            answer = psql(
                "SELECT session_user || ' in database ' || current_database()"
                " || ' of PostgreSQL ' || current_setting('server_version')",
                host=folder,
                port=port,
                user=client["username"],
                password=client["password"],
                dbname=client["database"],
            )
            say(f"    {model.unit_name(n)} process {index}: {answer}")
    say("    client connected through every unit")

    auth_pw = auth_password(model.published_auth(), auth_user)
    if auth_pw is None:
        raise DemoFailed(f"no password for {auth_user} in the published auth file")
    admin = (auth_user, auth_pw)
    say(f"stand-in for admin_users only (no charm option sets it): admin_users = {auth_user}")
    say("    (the charm's auth user, in the auth file the charm wrote) goes into the leader's")
    say("    pgbouncer.ini through its workload; the charm publishes it on its next hook")
    workload = model.workload(leader)
    cfg = parse_pgb_ini(workload.read_cfg() or "")
    workload.write_cfg(render_pgb_ini(cfg.with_settings({"admin_users": auth_user})))
    model.update_status(leader)
    settle(model, 3)

    before_pids = {n: model.local_workload(n).pids() for n in model.units}
    before = {n: model.counters(n) for n in model.units}
    metrics = model.metrics.copy()
    for n in model.units:
        modes = [show_config(model, n, i, admin)["pool_mode"] for i in range(PROCESSES)]
        say(f"    {model.unit_name(n)} SHOW CONFIG pool_mode: {', '.join(modes)}")
    say(f"juju config {APP} pool_mode=transaction")
    model.set_config(pool_mode="transaction")
    settle(model, 4)
    change = model.metrics.since(metrics)
    for n in model.units:
        role = "leader" if n == leader else "follower"
        signals = model.counters(n)["signals"] - before[n]["signals"]
        starts = model.counters(n)["starts"] - before[n]["starts"]
        same = model.local_workload(n).pids() == before_pids[n]
        heard = change.runs(APP_CHANGED, model.unit_name(n))
        modes = []
        for index in range(PROCESSES):
            deadline = time.monotonic() + 5
            mode = show_config(model, n, index, admin)["pool_mode"]
            while mode != "transaction" and time.monotonic() < deadline:
                time.sleep(0.05)
                mode = show_config(model, n, index, admin)["pool_mode"]
            modes.append(mode)
        say(
            f"    {model.unit_name(n)} ({role}): {signals} SIGHUP, {starts} starts, pids "
            f"{'unchanged' if same else 'CHANGED'} {before_pids[n]}; "
            + (f"relation-changed for the new cfg_file: {heard}; " if n != leader else "")
            + f"SHOW CONFIG pool_mode: {', '.join(modes)}"
        )
        if modes != ["transaction"] * PROCESSES or not same or starts or not signals:
            raise DemoFailed(f"{model.unit_name(n)} did not reload to pool_mode=transaction")
    say("    every unit reloaded with pool_mode=transaction")
    say(
        f"    the change took {change.runs()} hook runs "
        f"({', '.join(f'{k} {v}' for k, v in change.per_kind().items())}), "
        f"{change.deferred()} deferrals"
    )
    answer = psql(
        "SELECT session_user",
        host=model.local_workload(leader).instance_dir(0),
        port=port,
        user=client["username"],
        password=client["password"],
        dbname=client["database"],
    )
    say(f"    {CLIENT_APP} still connects in transaction mode (as {answer})")
    run_tls(model, relation_id)


def tls_logins(model: MultiUnitModel, n: int) -> list[int]:
    """TLS logins each process of unit ``n`` logged (pgbouncer logs version and cipher; the
    per-process copies log to standard error, which the local workload keeps in a file)."""
    counts = []
    for index in range(PROCESSES):
        log = os.path.join(model.local_workload(n).instance_dir(index), CONSOLE_NAME)
        with open(log, encoding="utf-8", errors="replace") as file:
            counts.append(sum("login attempt" in line and "tls=TLS" in line for line in file))
    return counts


def verify_full(model: MultiUnitModel, n: int, client: dict[str, str], ca_path: str) -> str:
    """psql with sslmode=verify-full to unit ``n`` by its hostname: its \\conninfo line."""
    conninfo = " ".join(
        f"{key}='{value}'"
        for key, value in {
            "host": model.hostname(n),
            "hostaddr": model.unit_address(n),
            "port": str(model.config["listen_port"]),
            "user": client["username"],
            "password": client["password"],
            "dbname": client["database"],
            "sslmode": "verify-full",
            "sslrootcert": ca_path,
        }.items()
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    result = subprocess.run(
        [pg_program("psql"), "--no-psqlrc", "-At", "-c", "\\conninfo", conninfo],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise DemoFailed(f"verify-full to {model.unit_name(n)} failed: {result.stderr.strip()}")
    ssl = [line for line in result.stdout.splitlines() if line.startswith("SSL connection")]
    if not ssl:
        raise DemoFailed(f"{model.unit_name(n)}: psql connected without TLS")
    return ssl[0]


def run_tls(model: MultiUnitModel, relation_id: int) -> None:
    say("juju integrate self-signed-certificates pgbouncer-k8s:certificates")
    ca = CertificateAuthority("demo CA")
    ca_path = os.path.join(model.base_dir, "demo-ca.pem")
    with open(ca_path, "w", encoding="ascii") as file:
        file.write(ca.pem)
    before_pids = {n: model.local_workload(n).pids() for n in model.units}
    model.relate_certificates(ca)
    settle(model, 5)
    say(f"    units: {units_status(model)}")
    answer = model.relation_data(relation_id)
    ca_told = answer.get("tls-ca", "").strip() == ca.pem.strip()
    say(f"    {CLIENT_APP} is told tls={answer.get('tls')}, tls-ca = the demo CA: {ca_told}")
    if answer.get("tls") != "True" or not ca_told:
        raise DemoFailed("the client relation does not say tls True with the CA")
    client = model.client_credentials(relation_id)
    say("psql sslmode=verify-full sslrootcert=<the CA> through every process of every unit,")
    say("    by the unit's hostname (hostaddr maps it to the unit's own loopback address)")
    for n in model.units:
        line = ""
        for _ in range(60):
            line = verify_full(model, n, client, ca_path)
            if all(tls_logins(model, n)):
                break
        counts = tls_logins(model, n)
        if not all(counts):
            raise DemoFailed(f"{model.unit_name(n)}: a process served no TLS login")
        same = model.local_workload(n).pids() == before_pids[n]
        say(
            f"    {model.unit_name(n)} as {model.hostname(n)}: {line}; TLS logins per "
            f"process {counts}; pids {'unchanged' if same else 'CHANGED'}"
        )
        if not same:
            raise DemoFailed(f"{model.unit_name(n)} restarted to turn TLS on")
    say("    TLS verified through every unit")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        check_programs()
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    pg = PostgresCluster()
    model: MultiUnitModel | None = None
    try:
        say("starting a throwaway PostgreSQL")
        pg.start()
        say(f"    PostgreSQL on 127.0.0.1:{pg.port} (data in {pg.socket_dir})")
        model = MultiUnitModel(
            UNITS,
            real=True,
            processes=PROCESSES,
            backend=False,
            unit_addresses=True,
            config={"listen_port": free_port()},
        )
        run(pg, model)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (DemoFailed, PostgresError, OSError, RuntimeError, ValueError) as err:
        say(f"FAILED: {type(err).__name__}: {err}")
        return 1
    finally:
        say("cleaning up: stopping every pgbouncer and PostgreSQL")
        if model is not None:
            model.close()
        pg.stop()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
