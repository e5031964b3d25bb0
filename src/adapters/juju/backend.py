"""The ``backend-database`` relation: this charm on the requirer side of ``postgresql_client`` v0.

What the relation carries (the interface's README in canonical/charm-relation-interfaces, and
what PostgreSQL charms send through data-platform-libs' ``data_interfaces``):

- the requirer (this charm's leader) writes in its application databag ``database`` (the
  database it asks for), ``extra-user-roles`` (``SUPERUSER``: installing the auth function
  needs it) and, where Juju has secrets, ``requested-secrets``, a JSON list of the fields the
  provider must put in Juju secrets instead of the databag;
- the provider answers in its application databag with ``endpoints`` (``host:port`` of the
  primary, comma-separated), ``read-only-endpoints``, ``version``, ``database`` (the one it
  created) and the credentials: with Juju secrets, ``secret-user`` holds the URI of a secret
  whose content has ``username`` and ``password``; without them (Juju 2.9), ``username`` and
  ``password`` are plain fields of the databag.

The charm does not use ``data_interfaces`` itself: a charm library must be vendored into
``lib/charms/`` with ``charmcraft fetch-lib``, which needs the network, and the charm uses four
fields of it. This module reads those fields into the domain's values with a cattrs converter,
like ``converters`` does for the peer relation. Nothing here writes a credential anywhere.
"""

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
import ops
from cattrs.gen import make_dict_structure_fn, override

from adapters.errors import first_line
from adapters.juju.converters import optional_str, problems, strict_str
from domain.backend import (
    BackendCredentials,
    BackendEndpoints,
    HostPort,
    InvalidBackendData,
    parse_endpoints,
)
from domain.errors import InvalidInput
from domain.hook_view import BackendView

BACKEND_RELATION = "backend-database"
EXTRA_USER_ROLES = "SUPERUSER"
REQUESTED_SECRETS = ("username", "password", "tls", "tls-ca", "uris")
DATABASE_KEY = "database"
EXTRA_USER_ROLES_KEY = "extra-user-roles"
REQUESTED_SECRETS_KEY = "requested-secrets"
ENDPOINTS_KEY = "endpoints"
USER_SECRET_KEY = "secret-user"


class BackendSecretUnavailable(Exception):
    """The secret named in ``secret-user`` cannot be read now (not granted yet, or gone)."""


def backend_relation(model: ops.Model) -> ops.Relation | None:
    return model.get_relation(BACKEND_RELATION)


def has_credentials(model: ops.Model) -> bool:
    """Whether the provider has answered with endpoints and credentials (read or not)."""
    relation = backend_relation(model)
    if relation is None or relation.app is None:
        return False
    remote = relation.data[relation.app]
    return bool(remote.get(ENDPOINTS_KEY)) and bool(
        remote.get(USER_SECRET_KEY) or (remote.get("username") and remote.get("password"))
    )


def backend_secret_relation(model: ops.Model, secret: ops.Secret) -> int | None:
    """The backend relation's id when ``secret`` is the credentials secret it names in
    ``secret-user`` (the provider published a new revision: a rotated password), else None."""
    relation = backend_relation(model)
    if relation is None or relation.app is None or secret.id is None:
        return None
    try:
        uri = relation.data[relation.app].get(USER_SECRET_KEY)
    except ops.ModelError:
        return None
    if uri and _secret_key(uri) == _secret_key(secret.id):
        return relation.id
    return None


def _secret_key(uri: str) -> str:
    # The same secret is written "secret:<id>" or "secret://<model uuid>/<id>".
    return uri.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def request_database(model: ops.Model, relation: ops.Relation, database: str) -> None:
    """Write the request in this application's databag (leader only); unchanged keys stay."""
    wanted = {DATABASE_KEY: database, EXTRA_USER_ROLES_KEY: EXTRA_USER_ROLES}
    if model.juju_version.has_secrets:
        # Like data_interfaces: without Juju secrets the provider sends plain fields, and
        # asking for secrets would only confuse an older provider.
        wanted[REQUESTED_SECRETS_KEY] = json.dumps(list(REQUESTED_SECRETS))
    databag = relation.data[model.app]
    for key, value in wanted.items():
        if databag.get(key) != value:
            databag[key] = value


# --- reading the provider's answer ------------------------------------------------------------

backend_converter = cattrs.Converter(forbid_extra_keys=False)


def _endpoints(value: object, _type: object) -> tuple[HostPort, ...]:
    if value is None or value == "":
        return ()
    return parse_endpoints(strict_str(value, _type))


# cattrs writes and compiles this function's source; only the leader reads the provider's
# answer, so it is made on first use rather than on every hook's import.
@functools.cache
def _endpoints_structure() -> Callable[[Mapping[str, Any], Any], BackendEndpoints]:
    return make_dict_structure_fn(
        BackendEndpoints,
        backend_converter,
        endpoints=override(struct_hook=_endpoints),
        read_only_endpoints=override(rename="read-only-endpoints", struct_hook=_endpoints),
    )


backend_converter.register_structure_hook(str, strict_str)
backend_converter.register_structure_hook(str | None, optional_str)
backend_converter.register_structure_hook(
    BackendEndpoints, lambda raw, type_: _endpoints_structure()(raw, type_)
)


# Attribute names that differ from the databag keys they come from.
_DATABAG_KEYS = {"read_only_endpoints": "read-only-endpoints"}


def structure_endpoints(raw: Mapping[str, str]) -> BackendEndpoints:
    """The provider's endpoints, database and version; ``InvalidBackendData`` says what is
    wrong."""
    try:
        return backend_converter.structure(dict(raw), BackendEndpoints)
    except (cattrs.BaseValidationError, InvalidInput) as err:
        where = "backend-database relation data"
        raise InvalidBackendData(f"{where}: {problems(err, _DATABAG_KEYS)}") from None


def structure_credentials(raw: Mapping[str, str]) -> BackendCredentials:
    """The backend user; ``InvalidBackendData`` never quotes the password."""
    try:
        return backend_converter.structure(dict(raw), BackendCredentials)
    except (cattrs.BaseValidationError, InvalidInput) as err:
        where = "backend-database credentials"
        raise InvalidBackendData(f"{where}: {problems(err, _DATABAG_KEYS)}") from None


def read_endpoints(relation: ops.Relation) -> BackendEndpoints | None:
    """Where the backend is; None until the provider has written ``endpoints``."""
    if relation.app is None:
        return None
    remote = relation.data[relation.app]
    if not remote.get(ENDPOINTS_KEY):
        return None
    return structure_endpoints(remote)


def read_credentials(model: ops.Model, relation: ops.Relation) -> BackendCredentials | None:
    """The backend user from the ``secret-user`` secret, or from the plain fields where the
    provider sends them (Juju without secrets); None until the provider has sent them.

    Raises ``BackendSecretUnavailable`` when the secret cannot be read now and
    ``InvalidBackendData`` when its content is not a user name and a password.
    """
    if relation.app is None:
        return None
    remote = relation.data[relation.app]
    uri = remote.get(USER_SECRET_KEY)
    if uri and model.juju_version.has_secrets:
        try:
            # refresh: follow the provider's newest revision (a rotated password).
            content = model.get_secret(id=uri).get_content(refresh=True)
        except ops.SecretNotFoundError:
            raise BackendSecretUnavailable(
                "the backend's credentials secret is not readable (not granted yet, or gone)"
            ) from None
        except ops.ModelError as err:
            raise BackendSecretUnavailable(
                f"cannot read the backend's credentials secret: {first_line(err)}"
            ) from None
        raw = {key: content[key] for key in ("username", "password") if key in content}
        return structure_credentials(raw)
    username, password = remote.get("username"), remote.get("password")
    if not (username and password):
        return None
    return structure_credentials({"username": username, "password": password})


def read_backend_view(
    model: ops.Model, relation: ops.Relation, *, credentials: bool, gone: bool = False
) -> BackendView:
    """The relation as the domain sees it; ``credentials``: whether to read the secret (one
    ``secret-get``), which only the hooks that reach the backend need."""
    view = BackendView(relation_id=relation.id, requested_database=model.app.name, gone=gone)
    try:
        endpoints = read_endpoints(relation)
        user = read_credentials(model, relation) if credentials else None
    except BackendSecretUnavailable as err:
        return attrs.evolve(view, unavailable=str(err))
    except InvalidInput as err:
        return attrs.evolve(view, invalid=str(err))
    except ops.ModelError as err:
        message = f"cannot read the backend-database relation: {first_line(err)}"
        return attrs.evolve(view, unavailable=message)
    return attrs.evolve(view, endpoints=endpoints, credentials=user)
