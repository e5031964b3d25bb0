"""The Loki alert rule: matches the line pgbouncer really writes, with the library's topology
placeholder. (No Loki ruler runs here to evaluate LogQL; the Prometheus rules are the ones run
by promtool. tests/integration/test_metrics_real.py shows a real pgbouncer writing the line.)"""

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "src" / "loki_alert_rules" / "pgbouncer.rules"
# The alternatives the rule matches (|~, RE2), and the log lines each must catch or not.
PATTERN = "ERROR S: login failed|server login failed"


def _rule() -> dict[str, object]:
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    (rule,) = group["rules"]
    return rule


def test_the_rule_filters_this_application_on_the_login_failure_lines():
    rule = _rule()
    expr = str(rule["expr"])
    assert f'|~ "{PATTERN}"' in expr
    assert "{%%juju_topology%%}" in expr
    assert rule["labels"] == {"severity": "critical"}


@pytest.mark.parametrize(
    ("line", "matched"),
    [
        # pgbouncer 1.18, PostgreSQL refusing its password (seen in test_metrics_real.py)
        ('2026-12-02 12:57:22.833 UTC [16648] ERROR S: login failed: FATAL: password '
         'authentication failed for user "pgb_metrics_app"', True),
        ("2026-12-02 12:00:00.000 UTC [1] WARNING server login failed: FATAL: role "
         '"x" does not exist', True),
        # a client pgbouncer itself refuses: not a server login
        ("2026-12-02 12:00:00.000 UTC [1] WARNING C-0x1: app/bob@127.0.0.1:5 login failed: "
         "db=app user=bob", False),
        ("2026-12-02 12:00:00.000 UTC [1] LOG stats: 0 xacts/s, 0 queries/s", False),
    ],
)  # fmt: skip
def test_the_pattern_tells_server_login_failures_from_the_rest(line, matched):
    assert (re.search(PATTERN, line) is not None) is matched


@pytest.mark.skipif(shutil.which("pgbouncer") is None, reason="pgbouncer not installed")
def test_pgbouncer_has_both_lines():
    binary = shutil.which("pgbouncer")
    assert binary is not None
    strings = subprocess.run(["strings", binary], capture_output=True, text=True, check=True)
    lines = strings.stdout.splitlines()
    assert "S: login failed" in lines
    assert any(line.startswith("server login failed") for line in lines)
