"""The alert rules shipped with the charm, run by Prometheus's own ``promtool test rules``.

``tests/rules/pgbouncer_test.yaml`` feeds each rule a series that should make it fire and
one that should not. The mutation tests below prove the file asserts both: a copy of the
rules where one alert never fires, or always fires, must fail it.
"""

import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "src" / "prometheus_alert_rules" / "pgbouncer.rules"
RULE_TESTS = ROOT / "tests" / "rules" / "pgbouncer_test.yaml"
ALERTS = ("PgBouncerProcessDown", "PgBouncerClientsWaitingTooLong", "PgBouncerPoolSaturated",
          "PgBouncerServerLoginFailures")  # fmt: skip

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool missing: scripts/setup.sh installs Debian's prometheus"
)


def _run_tests(rules_text: str, folder: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """promtool test rules with the shipped tests against ``rules_text``."""
    rules_dir = folder / "src" / "prometheus_alert_rules"
    tests_dir = folder / "tests" / "rules"
    rules_dir.mkdir(parents=True)
    tests_dir.mkdir(parents=True)
    (rules_dir / RULES.name).write_text(rules_text)
    shutil.copy(RULE_TESTS, tests_dir / RULE_TESTS.name)
    assert promtool is not None
    return subprocess.run(
        [promtool, "test", "rules", str(tests_dir / RULE_TESTS.name)],
        capture_output=True,
        text=True,
        check=False,
    )


def _with_expr(alert: str, expr: str) -> str:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = expr
    return yaml.safe_dump(rules)


def test_the_rule_file_names_every_alert_the_issue_asks_for():
    rules = yaml.safe_load(RULES.read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert tuple(names) == ALERTS
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["description"]


@needs_promtool
def test_every_rule_fires_and_stays_quiet_where_it_should(tmp_path):
    result = _run_tests(RULES.read_text(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize("alert", ALERTS)
def test_a_rule_that_never_fires_fails_the_tests(alert, tmp_path):
    result = _run_tests(_with_expr(alert, "vector(1) > 2"), tmp_path)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("alert", ALERTS)
def test_a_rule_that_always_fires_fails_the_tests(alert, tmp_path):
    result = _run_tests(_with_expr(alert, "vector(1)"), tmp_path)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr
