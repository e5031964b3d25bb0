"""The ``tls`` and ``tls-ca`` fields of a client's answer (``postgresql_client`` v0).

As the interface defines them: ``tls`` is ``"True"`` or ``"False"`` (whether the provider
serves TLS) and ``tls-ca`` the CA clients verify the server with. Where the client asked for
them as secrets (``requested-secrets`` names ``tls`` or ``tls-ca``) and Juju has secrets, they
travel in a secret of this application granted to the relation, named by ``secret-tls``, as
data-platform-libs' providers do, and always as plain fields too (a CA is public, and a
client library that did not ask for the secret reads them there). What to say is the
domain's decision (``domain.tls.client_tls_fields``).
"""

from __future__ import annotations

import json

import ops

from adapters.errors import first_line
from adapters.juju.clients import ClientDatabag, ClientSecretUnavailable

TLS_SECRET_KEY = "secret-tls"
TLS_FIELDS = ("tls", "tls-ca")


def tls_secret_label(relation_id: int) -> str:
    return f"database-{relation_id}-tls"


def _asked_as_secret(relation: ops.Relation) -> bool:
    if relation.app is None:
        return False
    raw = relation.data[relation.app].get("requested-secrets")
    try:
        names = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        return False
    return isinstance(names, list) and any(name in TLS_FIELDS for name in names)


def put_client_tls(
    model: ops.Model, databag: ClientDatabag, fields: dict[str, str | None]
) -> None:
    """Write ``tls`` and ``tls-ca`` as the domain decided (``domain.tls.client_tls_fields``):
    as plain fields always (the CA is public, and the next hook compares against them), and
    also in the ``secret-tls`` secret where the client asked for them as secrets."""
    databag.update(fields)
    relation = databag.relation
    if not (model.juju_version.has_secrets and _asked_as_secret(relation)):
        return
    content = {key: value for key, value in fields.items() if value is not None}
    label = tls_secret_label(relation.id)
    try:
        try:
            secret = model.get_secret(label=label)
        except ops.SecretNotFoundError:
            secret = model.app.add_secret(
                content, label=label, description="pgbouncer-k8s TLS for a client"
            )
            secret.grant(relation)
        if secret.peek_content() != content:
            secret.set_content(content)
        if databag.get(TLS_SECRET_KEY) is None:
            databag.update({TLS_SECRET_KEY: secret.id or secret.get_info().id})
    except ops.ModelError as err:
        raise ClientSecretUnavailable(
            f"cannot write the client's TLS secret: {first_line(err)}"
        ) from None
