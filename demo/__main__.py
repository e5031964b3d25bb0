"""``make demo``: three units of the charm on real pgbouncer processes, a config change.

What it does, with a progress line for each step:

1. starts a throwaway PostgreSQL (``localenv.postgres_cluster``; md5 passwords, so the auth
   file holds md5 secrets as in the seed's example) with a role and a database for clients;
2. runs three units of the real charm class with ``MultiUnitModel(real=True)``: each unit's
   hooks run under ``ops.testing``, its workload is two real pgbouncer processes in its own
   folder; the model delivers the events Juju would send between the units;
3. stands in for what the model does not drive: the auth file (with an admin user) goes into
   the leader's container through its workload, as the backend handler's auth setup would,
   and ``admin_users`` (no charm option sets it) and a ``[databases]`` entry for the demo
   database (a client relation would add one) go into the leader's pgbouncer.ini through its
   workload; the charm publishes both on the leader's next hook;
4. prints the ``pgb-peers`` relation as the seed's "Expected Interface" table, live, with
   every credential masked;
5. connects ``psql`` through every unit (each process's own unix socket);
6. sets ``pool_mode=transaction`` and shows every unit's reload (SIGHUP, same pids) and the
   new value in each process's ``SHOW CONFIG``;
7. stops everything, on success, failure or Ctrl-C.

Exit status: 0 when every step worked, 1 on a failure, 2 when a program is missing or the
demo cannot run here, 130 on Ctrl-C.
"""

import os
import random
import shutil
import signal
import sys
import time
from types import FrameType

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from adapters.local.workload import find_pgbouncer
from domain.auth_file import md5_secret, parse_auth_file
from domain.pgb_config import ConnString, parse_pgb_ini, render_pgb_ini
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
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster, PostgresError, psql

INSTALL = "sudo apt-get install pgbouncer postgresql"
PROCESSES = 2
UNITS = 3
ADMIN, APP_USER, DATABASE = "demo_admin", "demo_app", "demo"


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
    if shutil.which("runuser") is None:
        missing.append("runuser (util-linux)")
    if missing:
        raise SystemExit(
            f"[demo] missing: {', '.join(missing)}. Install them with:\n    {INSTALL}\n"
            "(or run `make demo`, whose set-up installs them when it runs as root)"
        )
    if os.geteuid() != 0:
        raise SystemExit(
            "[demo] run it as root (`sudo make demo`): pgbouncer and PostgreSQL run as the "
            "`postgres` system user, as in the charm's container, which needs root to start"
        )


def mask_auth(text: str) -> str:
    """The auth file's lines with every secret masked: md5 hashes as md5…, others as ****."""
    lines = []
    for entry in parse_auth_file(text).entries:
        secret = "md5…(masked)" if entry.secret.startswith("md5") else "****"
        lines.append(f'"{entry.user}" "{secret}"')
    return "  ".join(lines)


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
    if model.has_secrets:
        secret_id = app.get(SECRET_ID_KEY, "")
        revisions = {sid: rev for sid, _label, rev in model.secret_info()}
        where = (
            f"in the Juju secret {secret_id} (label {SECRET_LABEL}, key {SECRET_AUTH_KEY}, "
            f"revision {max(revisions.values(), default=0)}), not in the databag: "
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
            f"listen_port = {parsed.setting('listen_port')} (printed below)"
        )
    else:
        summary = "(none yet)"
    rows.append(("cfg_file", summary))
    rows.append(("leader_hostname", app.get("leader_hostname", "(none yet)")))
    passwords = sorted(key for key in app if key.startswith("relation_id_"))
    if passwords:
        rows.extend((key, "****") for key in passwords)
    else:
        rows.append(("relation_id_<N>", "(none: no client relation yet)"))
    for key in sorted(set(app) - {"cfg_file", "leader_hostname", "auth_file", *passwords}):
        rows.append((key, app[key]))
    rows.append(("**unit databags**", ""))
    for n in model.units:
        data = model.unit_data(n)
        rows.append((model.unit_name(n), ", ".join(f"{k}={v}" for k, v in sorted(data.items()))))
    return "\n".join(f"| {key} | {value} |" for key, value in rows)


def masked_cfg(text: str) -> str:
    """pgbouncer.ini with any ``password=`` in a connection string masked."""
    cfg = parse_pgb_ini(text)
    for name, conn in cfg.databases:
        if conn.get("password") is not None:
            cfg = cfg.with_database(name, conn.with_param("password", "****"))
    return render_pgb_ini(cfg)


def show_config(model: MultiUnitModel, n: int, index: int, password: str) -> dict[str, str]:
    out = psql(
        "SHOW CONFIG",
        host=model.local_workload(n).instance_dir(index),
        port=int(model.config["listen_port"]),
        user=ADMIN,
        password=password,
        dbname="pgbouncer",
    )
    return {row.split("|")[0]: row.split("|")[1] for row in out.splitlines()}


def settle(model: MultiUnitModel, seed: int) -> None:
    report = model.settle(random.Random(seed))
    problems = model.divergence()
    if problems:
        raise DemoFailed("the units did not converge: " + "; ".join(problems))
    say(f"    {report.deliveries} hooks delivered; {model.app_status()}")


def run(pg: PostgresCluster, model: MultiUnitModel, passwords: dict[str, str]) -> None:
    port = model.config["listen_port"]
    say(f"{UNITS} units, {PROCESSES} pgbouncer processes each, all on port {port}")
    say(f"    (so_reuseport); the units' folders are under {model.base_dir}")
    say("the backend stand-in: the auth file goes into the leader's container")
    auth = "".join(f'"{user}" "{md5_secret(user, pw)}"\n' for user, pw in passwords.items())
    model.setup_backend(auth)
    say("delivering the hooks Juju would send (install order, joins, pebble-ready...)")
    settle(model, 0)
    leader = model.leader
    if leader is None:
        raise DemoFailed("no leader")

    say("writing admin_users (no charm option sets it) and a [databases] entry (a client "
        "relation would add one; the model runs none) into the leader's pgbouncer.ini "
        "through its workload")  # fmt: skip
    workload = model.workload(leader)
    cfg = parse_pgb_ini(workload.read_cfg() or "")
    cfg = cfg.with_settings({"admin_users": ADMIN}).with_database(
        DATABASE, ConnString({"host": pg.host, "port": str(pg.port), "dbname": DATABASE})
    )
    workload.write_cfg(render_pgb_ini(cfg))
    model.update_status(leader)
    settle(model, 1)

    print("\npgb-peers, live (the seed's Expected Interface):\n")
    print(interface_table(model))
    print("\ncfg_file:\n")
    print("    " + masked_cfg(model.published_cfg() or "").replace("\n", "\n    "))

    say("connecting psql through every unit (each process's unix socket)")
    port = int(model.config["listen_port"])
    for n in model.units:
        for index in range(PROCESSES):
            folder = model.local_workload(n).instance_dir(index)
            answer = psql(
                "SELECT current_user || ' in database ' || current_database()"
                " || ' of PostgreSQL ' || current_setting('server_version')",
                host=folder,
                port=port,
                user=APP_USER,
                password=passwords[APP_USER],
                dbname=DATABASE,
            )
            say(f"    {model.unit_name(n)} process {index}: {answer}")

    before_pids = {n: model.local_workload(n).pids() for n in model.units}
    before = {n: model.counters(n) for n in model.units}
    metrics = model.metrics.copy()
    for n in model.units:
        modes = [show_config(model, n, i, passwords[ADMIN])["pool_mode"] for i in range(2)]
        say(f"    {model.unit_name(n)} SHOW CONFIG pool_mode: {', '.join(modes)}")
    say("juju config pgbouncer-k8s pool_mode=transaction")
    model.set_config(pool_mode="transaction")
    settle(model, 2)
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
            mode = show_config(model, n, index, passwords[ADMIN])["pool_mode"]
            while mode != "transaction" and time.monotonic() < deadline:
                time.sleep(0.05)
                mode = show_config(model, n, index, passwords[ADMIN])["pool_mode"]
            modes.append(mode)
        say(
            f"    {model.unit_name(n)} ({role}): {signals} SIGHUP, {starts} starts, pids "
            f"{'unchanged' if same else 'CHANGED'} {before_pids[n]}; "
            + (f"relation-changed for the new cfg_file: {heard}; " if n != leader else "")
            + f"SHOW CONFIG pool_mode: {', '.join(modes)}"
        )
        if modes != ["transaction"] * PROCESSES or not same or starts:
            raise DemoFailed(f"{model.unit_name(n)} did not reload to pool_mode=transaction")
    say(
        f"    the change took {change.runs()} hook runs "
        f"({', '.join(f'{k} {v}' for k, v in change.per_kind().items())}), "
        f"{change.deferred()} deferrals"
    )


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        check_programs()
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    passwords = {ADMIN: os.urandom(12).hex(), APP_USER: os.urandom(12).hex()}
    pg = PostgresCluster(auth_method="md5")
    model: MultiUnitModel | None = None
    try:
        say("starting a throwaway PostgreSQL")
        pg.start()
        say(f"    PostgreSQL on 127.0.0.1:{pg.port} (data in {pg.socket_dir})")
        pg.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{passwords[APP_USER]}'")
        pg.psql(f"CREATE DATABASE {DATABASE} OWNER {APP_USER}")
        model = MultiUnitModel(
            UNITS,
            real=True,
            processes=PROCESSES,
            backend_port=pg.port,
            config={"listen_port": free_port()},
        )
        run(pg, model, passwords)
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
