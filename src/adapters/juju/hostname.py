"""A unit's stable DNS name in the Kubernetes cluster.

Juju creates a headless service ``<app>-endpoints`` for every Kubernetes charm, and each unit's
pod is ``<app>-<n>``, so the name is known from the unit, application and model names alone.
It is computed, never looked up in DNS: a lookup can fail or be slow during a hook, and the
name must be the same whichever unit computes it.
"""

CLUSTER_DOMAIN = "svc.cluster.local"


def unit_hostname(unit_name: str, model_name: str) -> str:
    """``pgbouncer-k8s/0`` in model ``db``: ``pgbouncer-k8s-0.pgbouncer-k8s-endpoints.db…``."""
    app, _, number = unit_name.rpartition("/")
    if not app or not number.isdigit():
        raise ValueError(f"not a unit name: {unit_name!r}")
    return f"{app}-{number}.{app}-endpoints.{model_name}.{CLUSTER_DOMAIN}"
