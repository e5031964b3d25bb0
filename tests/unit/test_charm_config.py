"""Tests of domain.charm_config: the charm's options and the settings they decide.

The expected pgbouncer.ini is written out literally; the real pgbouncer accepting it is checked
in test_pgb_config.py (test_real_pgbouncer_starts_on_the_initial_config).
"""

import pytest

from domain.charm_config import POOL_MODES, CharmConfig, apply_charm_config, initial_config
from domain.errors import InvalidCharmConfig
from domain.pgb_config import ConnString, parse_pgb_ini, render_pgb_ini

INITIAL_INI_DEFAULTS_2_PROCESSES = """\
[databases]

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
auth_type = md5
default_pool_size = 49
ignore_startup_parameters = extra_float_digits,options
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
max_client_conn = 10000
max_db_connections = 50
min_pool_size = 0
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = session
reserve_pool_size = 0
server_tls_sslmode = prefer
so_reuseport = 1
unix_socket_dir = /var/lib/postgresql/pgbouncer
user = postgres
"""


def test_defaults() -> None:
    assert CharmConfig() == CharmConfig(
        listen_port=6432, pool_mode="session", max_db_connections=100
    )
    assert POOL_MODES == ("session", "transaction", "statement")


def test_initial_config_golden() -> None:
    cfg = initial_config(CharmConfig(), 2)
    assert render_pgb_ini(cfg) == INITIAL_INI_DEFAULTS_2_PROCESSES
    assert parse_pgb_ini(INITIAL_INI_DEFAULTS_2_PROCESSES) == cfg
    assert cfg.databases == ()


def test_initial_config_follows_the_options() -> None:
    cfg = initial_config(
        CharmConfig(listen_port=7000, pool_mode="transaction", max_db_connections=0), 4
    )
    assert cfg.setting("listen_port") == "7000"
    assert cfg.setting("pool_mode") == "transaction"
    assert cfg.setting("max_db_connections") == "0"
    assert cfg.setting("default_pool_size") == "20"
    assert cfg.setting("min_pool_size") == "0"
    assert cfg.setting("reserve_pool_size") == "0"


def test_apply_charm_config_changes_only_charm_settings() -> None:
    app = ConnString({"host": "10.0.0.1", "dbname": "app"})
    start = (
        initial_config(CharmConfig(), 2)
        .with_database("app", app)
        .with_settings({"max_client_conn": "500", "admin_users": "ops"})
    )
    changed = apply_charm_config(
        start, CharmConfig(listen_port=6543, pool_mode="statement", max_db_connections=30), 3
    )
    assert changed.database("app") == app
    assert changed.setting("max_client_conn") == "500"
    assert changed.setting("admin_users") == "ops"
    assert dict(changed.pgbouncer) == {
        **dict(start.pgbouncer),
        "listen_port": "6543",
        "pool_mode": "statement",
        "max_db_connections": "10",
        "default_pool_size": "9",
        "min_pool_size": "0",
        "reserve_pool_size": "0",
    }


def test_apply_charm_config_is_idempotent() -> None:
    cfg = initial_config(CharmConfig(), 2)
    assert apply_charm_config(cfg, CharmConfig(), 2) == cfg


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"listen_port": 0}, "listen_port: 0 is not a port from 1024 to 65535"),
        ({"listen_port": 1023}, "listen_port: 1023 is not a port from 1024 to 65535"),
        ({"listen_port": 65536}, "listen_port: 65536 is not a port from 1024 to 65535"),
        ({"listen_port": True}, "listen_port: True is not a port from 1024 to 65535"),
        ({"listen_port": "6432"}, "listen_port: '6432' is not a port from 1024 to 65535"),
        (
            {"pool_mode": "Session"},
            "pool_mode: 'Session' is not one of session, transaction, statement",
        ),
        ({"pool_mode": ""}, "pool_mode: '' is not one of session, transaction, statement"),
        (
            {"max_db_connections": -1},
            "max_db_connections: -1 is not an integer >= 0 (0 means unlimited)",
        ),
        (
            {"max_db_connections": 1.5},
            "max_db_connections: 1.5 is not an integer >= 0 (0 means unlimited)",
        ),
    ],
)
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidCharmConfig) as caught:
        CharmConfig(**options)  # pyright: ignore[reportArgumentType]
    assert str(caught.value) == message


@pytest.mark.parametrize("processes", [0, -1])
def test_processes_must_be_positive(processes: int) -> None:
    with pytest.raises(InvalidCharmConfig, match=r"^processes: -?\d+ is not an integer >= 1$"):
        initial_config(CharmConfig(), processes)
