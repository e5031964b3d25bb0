"""The Grafana dashboard shipped over ``grafana-dashboard``: valid, and only real metrics.

``EXPORTER_METRICS`` is what the Go ``pgbouncer_exporter`` 0.7.0 (the one the workload image
ships) publishes, from its collector's column mappings for ``SHOW STATS``, ``SHOW POOLS``,
``SHOW DATABASES``, ``SHOW LISTS`` and ``SHOW CONFIG``, plus ``pgbouncer_up``. A query naming
anything else would draw an empty panel forever.
"""

import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "src" / "grafana_dashboards" / "pgbouncer.json"
RULES = ROOT / "src" / "prometheus_alert_rules" / "pgbouncer.rules"

EXPORTER_METRICS = frozenset(
    {
        "pgbouncer_up",
        "pgbouncer_version_info",
        # SHOW STATS
        "pgbouncer_stats_queries_pooled_total",
        "pgbouncer_stats_queries_duration_seconds_total",
        "pgbouncer_stats_received_bytes_total",
        "pgbouncer_stats_sent_bytes_total",
        "pgbouncer_stats_client_wait_seconds_total",
        "pgbouncer_stats_sql_transactions_pooled_total",
        "pgbouncer_stats_server_in_transaction_seconds_total",
        # SHOW POOLS
        "pgbouncer_pools_client_active_connections",
        "pgbouncer_pools_client_waiting_connections",
        "pgbouncer_pools_server_active_connections",
        "pgbouncer_pools_server_idle_connections",
        "pgbouncer_pools_server_used_connections",
        "pgbouncer_pools_server_testing_connections",
        "pgbouncer_pools_server_login_connections",
        "pgbouncer_pools_client_maxwait_seconds",
        # SHOW DATABASES
        "pgbouncer_databases_pool_size",
        "pgbouncer_databases_reserve_pool",
        "pgbouncer_databases_max_connections",
        "pgbouncer_databases_current_connections",
        "pgbouncer_databases_paused",
        "pgbouncer_databases_disabled",
        # SHOW LISTS, SHOW CONFIG
        "pgbouncer_databases",
        "pgbouncer_users",
        "pgbouncer_pools",
        "pgbouncer_free_clients",
        "pgbouncer_used_clients",
        "pgbouncer_login_clients",
        "pgbouncer_free_servers",
        "pgbouncer_used_servers",
        "pgbouncer_config_max_client_connections",
        "pgbouncer_config_max_user_connections",
    }
)
_PROMQL_WORDS = frozenset(
    {"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "by", "on", "without",
     "ignoring", "group_left", "group_right", "and", "or", "unless", "label_replace", "vector",
     "histogram_quantile", "topk", "bottomk", "abs", "clamp_min", "offset", "bool"}
)  # fmt: skip


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label lists, strings, functions removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {name for name in names if name not in _PROMQL_WORDS}


def _exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_is_json_with_the_datasource_variable_cos_fills():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"]
    assert dashboard["uid"]
    variables = {item["name"] for item in dashboard["templating"]["list"]}
    assert "prometheusds" in variables
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${prometheusds}"
            assert panel["targets"]


def test_the_metric_name_reader_sees_what_a_query_reads():
    expr = (
        'sum by (database) (rate(a_total{x="y"}[5m])) / on (database) '
        'max(label_replace(b, "d", "$1", "n", "(.+)"))'
    )
    assert _metric_names(expr) == {"a_total", "b"}


def test_every_query_uses_only_metrics_the_exporter_publishes():
    used = set().union(*(_metric_names(expr) for expr in _exprs()))
    assert used, "no query found"
    assert used - EXPORTER_METRICS == set()


def test_every_alert_rule_uses_only_metrics_the_exporter_publishes():
    rules = yaml.safe_load(RULES.read_text())
    used = set().union(
        *(_metric_names(rule["expr"]) for group in rules["groups"] for rule in group["rules"])
    )
    assert used - EXPORTER_METRICS == set()


@pytest.mark.parametrize(
    "metric",
    [
        "pgbouncer_pools_client_active_connections",
        "pgbouncer_pools_client_waiting_connections",
        "pgbouncer_pools_server_active_connections",
        "pgbouncer_databases_pool_size",
        "pgbouncer_stats_sql_transactions_pooled_total",
        "pgbouncer_stats_queries_pooled_total",
        "pgbouncer_stats_client_wait_seconds_total",
    ],
)
def test_the_dashboard_shows_what_the_issue_asks_for(metric):
    assert any(metric in _metric_names(expr) for expr in _exprs())


def test_totals_sum_over_processes_and_units():
    # A panel's first query is the application's total: aggregated, never one process.
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        first = panel["targets"][0]["expr"]
        assert re.match(r"(sum|max|count)\b", first), panel["title"]
        assert "pgbouncer_process=" not in first


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_every_query_is_valid_promql(tmp_path):
    # promtool parses the expressions of a rule file: one recording rule per query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{i}",
                        "expr": expr.replace("$__rate_interval", "5m"),
                    }
                    for i, expr in enumerate(_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
