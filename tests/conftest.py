"""Test-wide settings: hypothesis profiles, and Pebble as the real daemon answers.

``HYPOTHESIS_PROFILE=fuzz`` runs the property tests with large example counts (a dedicated
fuzzing run); the default keeps the suite quick and deterministic for CI.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.pebble_double import PebbleWorld, use_realistic_pebble

settings.register_profile("default", max_examples=200, deadline=None, derandomize=True)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- Pebble as the real daemon answers ----------------------------------------------------


@pytest.fixture(autouse=True)
def pebble_world(monkeypatch: pytest.MonkeyPatch) -> PebbleWorld:
    """Every ops.testing run talks to ``tests.pebble_double.RealisticPebble``; the test can
    make services refuse to start and read what was signalled, started and stopped."""
    return use_realistic_pebble(monkeypatch)


# --- the secrets audit (tests/secrets_audit.py) -------------------------------------------

AUDIT_TEST = "test_no_credential_leaked_anywhere_in_the_suite"


def pytest_configure(config):
    from tests import secrets_audit

    secrets_audit.install()


def pytest_collection_modifyitems(items):
    # The audit reads what every other test produced, so it runs last.
    items.sort(key=lambda item: item.name == AUDIT_TEST)
