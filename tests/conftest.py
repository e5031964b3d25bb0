"""Test-wide settings: hypothesis profiles.

``HYPOTHESIS_PROFILE=fuzz`` runs the property tests with large example counts (a dedicated
fuzzing run); the default keeps the suite quick and deterministic for CI.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=200, deadline=None, derandomize=True)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- the secrets audit (tests/secrets_audit.py) -------------------------------------------

AUDIT_TEST = "test_no_credential_leaked_anywhere_in_the_suite"


def pytest_configure(config):
    from tests import secrets_audit

    secrets_audit.install()


def pytest_collection_modifyitems(items):
    # The audit reads what every other test produced, so it runs last.
    items.sort(key=lambda item: item.name == AUDIT_TEST)
