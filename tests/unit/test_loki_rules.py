"""The Loki alert rule: matches the line pgbouncer really writes, with the library's topology
placeholder. (No Loki ruler runs here to evaluate LogQL; the Prometheus rules are the ones run
by promtool. tests/integration/test_metrics_real.py shows a real pgbouncer writing the line.)"""

import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "src" / "loki_alert_rules" / "pgbouncer.rules"
LOG_TEXT = "server login failed"


def _rule() -> dict[str, object]:
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    (rule,) = group["rules"]
    return rule


def test_the_rule_matches_the_login_failure_line_of_this_application():
    rule = _rule()
    expr = str(rule["expr"])
    assert f'|= "{LOG_TEXT}"' in expr
    assert "{%%juju_topology%%}" in expr
    assert rule["labels"] == {"severity": "critical"}


@pytest.mark.skipif(shutil.which("pgbouncer") is None, reason="pgbouncer not installed")
def test_pgbouncer_writes_that_line():
    binary = shutil.which("pgbouncer")
    assert binary is not None
    strings = subprocess.run(["strings", binary], capture_output=True, text=True, check=True)
    assert any(line.startswith(LOG_TEXT) for line in strings.stdout.splitlines())
