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
