"""The exporters' Pebble layer: one service per process, nothing secret in the plan."""

from adapters.pebble.exporters import exporter_layer
from domain.observability import exporters


def test_one_service_per_process_after_its_pgbouncer():
    layer = exporter_layer(exporters(2, 6432))
    services = layer["services"]
    assert isinstance(services, dict)
    assert sorted(services) == ["pgbouncer_exporter_0", "pgbouncer_exporter_1"]
    second = services["pgbouncer_exporter_1"]
    assert second == {
        "override": "replace",
        "summary": "metrics of pgbouncer process 1",
        "command": (
            "pgbouncer_exporter --web.listen-address=:9128 --web.telemetry-path=/metrics"
            " --pgBouncer.pid-file=/var/lib/postgresql/pgbouncer/instance_1/pgbouncer.pid"
        ),
        "startup": "enabled",
        "after": ["pgbouncer_1"],
        "user": "postgres",
        "group": "postgres",
        "environment": {
            "PGBOUNCER_EXPORTER_CONNECTION_STRING": (
                "host=/var/lib/postgresql/pgbouncer/instance_1 port=6432 dbname=pgbouncer "
                "user=pgbouncer_stats sslmode=disable"
            ),
            "PGPASSFILE": "/var/lib/postgresql/pgbouncer/exporter.pgpass",
        },
    }


def test_no_password_in_commands_or_environment():
    layer = exporter_layer(exporters(3, 6432))
    services = layer["services"]
    assert isinstance(services, dict)
    for service in services.values():
        assert "password" not in service["command"].lower()
        for key, value in service["environment"].items():
            assert "password" not in key.lower()
            assert "password" not in value.lower()
