#!/usr/bin/env python3
"""The charmcraft entrypoint of pgbouncer-k8s. The charm lives in ``app.charm``."""

import ops

from app.charm import PgBouncerK8sCharm

__all__ = ["PgBouncerK8sCharm"]

if __name__ == "__main__":  # pragma: no cover
    ops.main(PgBouncerK8sCharm)
