"""plan_metrics: one row per case, one ``==`` on the whole effect list."""

import pytest

from domain.auth_file import AuthEntry, AuthFile, render_auth_file
from domain.effects import PublishCfg, Reload, StoreAuth, WriteAuth, WriteCfg
from domain.observability import (
    STATS_USER,
    EnsureExporters,
    GenerateStatsPassword,
    MetricsView,
    PublishProcesses,
    WritePassfile,
    exporters,
    plan_metrics,
)
from domain.pgb_config import parse_pgb_ini
from tests.unit.peer_fixtures import AUTH_A, CFG_A, CFG_PORT

PW = "0123456789abcdef0123456789abcdef"
PGPASS = f"*:*:pgbouncer:pgbouncer_stats:{PW}\n"
# CFG_A with the stats user, as render_pgb_ini writes it (connection parameters sorted).
CFG_STATS = """\
[databases]
app = auth_user=pgbouncer_auth_relation_id_3 dbname=app host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = session
stats_users = pgbouncer_stats
user = postgres
"""
AUTH_STATS = render_auth_file(
    AuthFile(
        (
            AuthEntry("pgbouncer_auth_relation_id_3", "md5aad46d9afbcc8c8248d254d567b577c1"),
            AuthEntry(STATS_USER, PW),
        )
    )
)
RUN_2 = EnsureExporters(exporters(2, 6432))


def view(**fields):
    base = {
        "is_leader": True,
        "processes": 2,
        "stats_password": PW,
        "cfg": parse_pgb_ini(CFG_STATS),
        "auth": AUTH_STATS,
        "passfile": PGPASS,
        "backend_credentials": True,
        "published_processes": "2",
    }
    base.update(fields)
    return MetricsView(**base)


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("settled leader: only the exporters' check", view(), [RUN_2]),
        ("settled follower", view(is_leader=False), [RUN_2]),
        ("leader without a password generates one", view(stats_password=None),
         [GenerateStatsPassword()]),
        ("follower without a password waits", view(is_leader=False, stats_password=None), []),
        ("no config yet: no exporter", view(cfg=None), []),
        ("count not published", view(published_processes=None), [RUN_2, PublishProcesses(2)]),
        ("passfile missing", view(passfile=None), [WritePassfile(PGPASS), RUN_2]),
        ("another listen port", view(cfg=parse_pgb_ini(CFG_PORT.replace(
            "pool_mode = session\n", "pool_mode = session\nstats_users = pgbouncer_stats\n"))),
         [EnsureExporters(exporters(2, 7432))]),
        ("leader adds stats_users, reloads, publishes", view(cfg=parse_pgb_ini(CFG_A)),
         [WriteCfg(CFG_STATS), Reload(), PublishCfg(CFG_STATS), RUN_2]),
        ("leader adds the auth line, reloads, stores", view(auth=AUTH_A),
         [WriteAuth(AUTH_STATS), Reload(), StoreAuth(AUTH_STATS), RUN_2]),
        ("backend not ready: the line is kept local", view(auth=AUTH_A, backend_credentials=False),
         [WriteAuth(AUTH_STATS), Reload(), RUN_2]),
        ("no auth file yet (no backend): none made", view(auth=None), [RUN_2]),
        ("both files at once: one reload", view(cfg=parse_pgb_ini(CFG_A), auth=AUTH_A),
         [WriteCfg(CFG_STATS), WriteAuth(AUTH_STATS), Reload(), PublishCfg(CFG_STATS),
          StoreAuth(AUTH_STATS), RUN_2]),
        ("a follower never writes the leader's files",
         view(is_leader=False, cfg=parse_pgb_ini(CFG_A), auth=AUTH_A), [RUN_2]),
    ],
)  # fmt: skip
def test_plan_metrics(name, given, expected):
    assert plan_metrics(given) == expected, name
