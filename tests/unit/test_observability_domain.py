"""domain.observability: the exporters a unit runs, how they log in, and the scrape jobs."""

import pytest

from domain.auth_file import AuthEntry, AuthFile, parse_auth_file, render_auth_file
from domain.errors import InvalidInput
from domain.observability import (
    PASSFILE_PATH,
    STATS_USER,
    ExporterSpec,
    InvalidStatsPassword,
    UnitTargets,
    exporters,
    has_stats_user,
    pgpass_file,
    scrape_jobs,
    with_stats_user,
    with_stats_users,
)
from domain.pgb_config import PgbConfig

PASSWORD = "Abcdefghijklmnopqrstuvwx0123"
AUTH_LINE = '"pgbouncer_auth_relation_id_3" "backendpw-123"\n'


def test_one_exporter_per_process_each_on_its_own_socket_and_port():
    assert exporters(3, 6432) == (
        ExporterSpec(index=0, pgbouncer_port=6432, metrics_port=9127),
        ExporterSpec(index=1, pgbouncer_port=6432, metrics_port=9128),
        ExporterSpec(index=2, pgbouncer_port=6432, metrics_port=9129),
    )


def test_the_connection_string_names_the_process_socket_and_no_password():
    spec = exporters(2, 7000)[1]
    assert spec.service_name == "pgbouncer_exporter_1"
    assert spec.listen_address == ":9128"
    assert spec.connection_string == (
        "host=/var/lib/postgresql/pgbouncer/instance_1 port=7000 dbname=pgbouncer "
        "user=pgbouncer_stats sslmode=disable"
    )
    assert "password" not in spec.connection_string


@pytest.mark.parametrize(
    ("processes", "listen_port", "reason"),
    [
        (0, 6432, "processes: 0 is not an integer >= 1"),
        (2, 9128, "listen_port 9128 collides with the metrics ports 9127-9128"),
        (1, 9127, "listen_port 9127 collides with the metrics ports 9127-9127"),
    ],
)
def test_exporters_refuse_what_cannot_run(processes, listen_port, reason):
    with pytest.raises(InvalidInput) as err:
        exporters(processes, listen_port)
    assert str(err.value) == reason


def test_a_listen_port_just_past_the_metrics_ports_is_fine():
    assert len(exporters(2, 9129)) == 2


def test_the_pgpass_file_lets_the_stats_user_into_the_admin_console_only():
    assert pgpass_file(PASSWORD) == f"*:*:pgbouncer:pgbouncer_stats:{PASSWORD}\n"
    assert PASSFILE_PATH == "/var/lib/postgresql/pgbouncer/exporter.pgpass"


@pytest.mark.parametrize(
    "bad",
    ["short1", "a" * 23, "has:colon" + "a" * 20, "back\\slash" + "a" * 20, "md5" + "0" * 32, ""],
)
def test_a_password_of_another_shape_is_refused_without_showing_it(bad):
    with pytest.raises(InvalidStatsPassword) as err:
        pgpass_file(bad)
    assert bad not in str(err.value) or bad == ""


def test_the_stats_user_joins_the_auth_file_and_every_other_line_stays():
    text = with_stats_user(AUTH_LINE, PASSWORD)
    assert parse_auth_file(text) == AuthFile(
        (
            AuthEntry("pgbouncer_auth_relation_id_3", "backendpw-123"),
            AuthEntry(STATS_USER, PASSWORD),
        )
    )
    assert has_stats_user(text, PASSWORD)


def test_a_new_stats_password_replaces_the_old_line():
    old = with_stats_user(AUTH_LINE, PASSWORD)
    new_password = "Z" * 30
    text = with_stats_user(old, new_password)
    assert parse_auth_file(text).get(STATS_USER) == AuthEntry(STATS_USER, new_password)
    assert not has_stats_user(text, PASSWORD)
    assert has_stats_user(text, new_password)


@pytest.mark.parametrize(
    ("auth", "password", "expected"),
    [
        (None, PASSWORD, False),
        (AUTH_LINE, PASSWORD, False),
        (AUTH_LINE, None, False),
        ("not an auth file", PASSWORD, False),
        (render_auth_file(AuthFile((AuthEntry(STATS_USER, PASSWORD),))), PASSWORD, True),
    ],
)
def test_has_stats_user(auth, password, expected):
    assert has_stats_user(auth, password) is expected


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (None, "pgbouncer_stats"),
        ("monitor", "monitor,pgbouncer_stats"),
        ("pgbouncer_stats", "pgbouncer_stats"),
        ("a,pgbouncer_stats", "a,pgbouncer_stats"),
    ],
)
def test_stats_users_gains_the_stats_user_and_keeps_the_others(current, expected):
    settings = {"logfile": "/x/p.log", "pidfile": "/x/p.pid"}
    if current is not None:
        settings["stats_users"] = current
    cfg = with_stats_users(PgbConfig(databases=(), pgbouncer=settings))
    assert cfg.setting("stats_users") == expected


def test_scrape_jobs_list_every_process_of_every_unit_labelled():
    units = [
        UnitTargets("pgb/10", "pgb-10.pgb-endpoints.m.svc.cluster.local", 1),
        UnitTargets("pgb/0", "pgb-0.pgb-endpoints.m.svc.cluster.local", 2),
    ]
    assert scrape_jobs(units) == [
        {
            "job_name": "pgbouncer",
            "metrics_path": "/metrics",
            "static_configs": [
                {
                    "targets": ["pgb-0.pgb-endpoints.m.svc.cluster.local:9127"],
                    "labels": {"juju_unit": "pgb/0", "pgbouncer_process": "0"},
                },
                {
                    "targets": ["pgb-0.pgb-endpoints.m.svc.cluster.local:9128"],
                    "labels": {"juju_unit": "pgb/0", "pgbouncer_process": "1"},
                },
                {
                    "targets": ["pgb-10.pgb-endpoints.m.svc.cluster.local:9127"],
                    "labels": {"juju_unit": "pgb/10", "pgbouncer_process": "0"},
                },
            ],
        }
    ]


def test_no_unit_no_job():
    assert scrape_jobs([]) == []


@pytest.mark.parametrize(
    ("unit", "hostname", "processes"),
    [
        ("pgb", "pgb-0.x", 1),
        ("pgb/0", "bad host", 1),
        ("pgb/0", "pgb-0.x", 0),
    ],
)
def test_unit_targets_check_themselves(unit, hostname, processes):
    with pytest.raises(InvalidInput, match="is not"):
        UnitTargets(unit, hostname, processes)
