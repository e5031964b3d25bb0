"""The backend's CA, from the ``backend-database`` relation (``postgresql_client`` v0).

A PostgreSQL charm with TLS on answers ``tls`` ("True") and ``tls-ca`` (its CA chain, PEM):
in the ``secret-tls`` secret where the requirer asked for them as secrets (this charm does,
``adapters.juju.backend.REQUESTED_SECRETS``), else as plain fields. Every unit reads it for
itself: the secret is granted to the relation, so to every unit of this application, and a
CA is not a secret anyway. ``read_backend_ca`` returns the text as sent; ``domain.tls``
decides whether it is usable.
"""

from __future__ import annotations

import ops

from adapters.errors import first_line
from adapters.juju.backend import backend_relation

TLS_SECRET_KEY = "secret-tls"
TLS_KEY = "tls"
TLS_CA_KEY = "tls-ca"


class BackendCaUnavailable(Exception):
    """The backend's TLS secret cannot be read now."""


def _enabled(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _secret_key(secret_id: str) -> str:
    # A secret's ID without its "secret:" or "secret://<model>/" prefix.
    return secret_id.rsplit("/", 1)[-1].removeprefix("secret:")


def is_backend_tls_secret(model: ops.Model, secret_id: str | None) -> bool:
    """Whether ``secret_id`` is the backend's TLS secret (its CA lives there)."""
    relation = backend_relation(model)
    if secret_id is None or relation is None or relation.app is None:
        return False
    uri = relation.data[relation.app].get(TLS_SECRET_KEY)
    return bool(uri) and _secret_key(uri) == _secret_key(secret_id)


def read_backend_ca(model: ops.Model) -> str | None:
    """The CA the backend's server certificate chains to; None where it publishes none."""
    relation = backend_relation(model)
    if relation is None or relation.app is None:
        return None
    remote = relation.data[relation.app]
    uri = remote.get(TLS_SECRET_KEY)
    if uri and model.juju_version.has_secrets:
        try:
            content = model.get_secret(id=uri).get_content(refresh=True)
        except ops.SecretNotFoundError:
            raise BackendCaUnavailable("the backend's TLS secret is not readable") from None
        except ops.ModelError as err:
            raise BackendCaUnavailable(
                f"cannot read the backend's TLS secret: {first_line(err)}"
            ) from None
        tls, ca = content.get(TLS_KEY), content.get(TLS_CA_KEY)
    else:
        tls, ca = remote.get(TLS_KEY), remote.get(TLS_CA_KEY)
    # A CA without "tls" true is left over from before the backend turned TLS off.
    if ca and ca.strip() and (tls is None or _enabled(tls)):
        return ca
    return None
