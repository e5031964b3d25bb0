"""The ``database`` relation: this charm on the provider side of ``postgresql_client`` v0.

What the relation carries (the interface's README in canonical/charm-relation-interfaces):

- the client (requirer) writes in its application databag ``database`` (the database it
  wants), optionally ``extra-user-roles`` (comma-separated role attributes) and, where it
  handles Juju secrets, ``requested-secrets`` (a JSON list of the fields to send in secrets);
- a client on the library's v1 protocol writes ``version: v1`` and a JSON list of
  ``requests`` instead, and gets one response per request (``clients_v1``): the same
  decisions, the same answer keys, in the v1 shape;
- this charm's leader answers in its own application databag with ``database``,
  ``endpoints``, ``read-only-endpoints``, ``version`` and the credentials: where Juju has
  secrets, ``secret-user`` holds the URI of a secret owned by this application, granted to
  the relation, whose content has ``username``, ``password`` and ``uris``; for a client that
  did not send ``requested-secrets`` (its library predates secrets), or on a Juju without
  them (2.9), ``username``, ``password`` and ``uris`` are plain fields of the databag, as the
  interface's own provider answers such a client.

``structure_request`` reads the client's databag with a cattrs converter and ``request_of``
makes it a ``domain.clients.ClientRequest``; a request that cannot be served raises
``InvalidClientRequest`` naming the key; ``read_client_view`` gives the domain the whole
relation as a ``ClientView``.
``ClientDatabag`` writes the answer, comparing before each write so an unchanged value costs
no ``relation-set``. ``ClientCredentials`` hands the credentials once and keeps the ``uris``
current. ``ClientRelations`` carries out the domain's client effects by relation id. Nothing
here logs or raises a message holding a credential.
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
from adapters.juju.clients_v1 import V1Answer, is_v1, read_v1_request
from adapters.juju.converters import optional_str, problems
from domain.clients import ClientRequest, InvalidClientRequest, parse_extra_roles
from domain.errors import InvalidInput
from domain.hook_view import ClientView

CLIENT_RELATION = "database"
DATABASE_KEY = "database"
EXTRA_USER_ROLES_KEY = "extra-user-roles"
REQUESTED_SECRETS_KEY = "requested-secrets"
USER_SECRET_KEY = "secret-user"
CREDENTIAL_FIELDS = ("username", "password", "uris")


class ClientSecretUnavailable(Exception):
    """The client's credentials secret cannot be created, read or written now."""


def client_secret_label(relation_id: int) -> str:
    return f"database-relation-{relation_id}"


# --- reading the request -------------------------------------------------------------------------


@attrs.frozen
class RequestFields:
    """The client's databag as sent, before the domain checks it."""

    database: str | None = None
    extra_user_roles: str | None = None
    requested_secrets: tuple[str, ...] | None = None


request_converter = cattrs.Converter(forbid_extra_keys=False)


def _json_names(value: object, _type: object) -> tuple[str, ...] | None:
    if value is None or value == "":
        return None
    try:
        names = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        raise InvalidClientRequest("expected a JSON list of field names") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InvalidClientRequest("expected a JSON list of field names")
    return tuple(names)


# cattrs writes and compiles this function's source; only the leader reads a client's
# request, so it is made on first use rather than on every hook's import.
@functools.cache
def _request_structure() -> Callable[[Mapping[str, Any], Any], RequestFields]:
    return make_dict_structure_fn(
        RequestFields,
        request_converter,
        extra_user_roles=override(rename=EXTRA_USER_ROLES_KEY),
        requested_secrets=override(rename=REQUESTED_SECRETS_KEY, struct_hook=_json_names),
    )


request_converter.register_structure_hook(str | None, optional_str)
request_converter.register_structure_hook(
    RequestFields, lambda raw, type_: _request_structure()(raw, type_)
)

_DATABAG_KEYS = {
    "extra_user_roles": EXTRA_USER_ROLES_KEY,
    "requested_secrets": "requested-secrets",
}


def structure_request(raw: Mapping[str, str]) -> RequestFields:
    if is_v1(raw):
        request = read_v1_request(raw)
        if request is None:
            return RequestFields()
        # A v1 client always reads its credentials from a secret.
        return RequestFields(request.database, request.extra_user_roles, CREDENTIAL_FIELDS)
    try:
        return request_converter.structure(dict(raw), RequestFields)
    except (cattrs.BaseValidationError, InvalidInput) as err:
        raise InvalidClientRequest(problems(err, _DATABAG_KEYS)) from None


def request_of(relation_id: int, fields: RequestFields) -> ClientRequest | None:
    if fields.database is None:
        return None
    return ClientRequest(
        relation_id=relation_id,
        database=fields.database,
        extra_user_roles=parse_extra_roles(fields.extra_user_roles),
    )


# --- writing the answer --------------------------------------------------------------------------


class ClientDatabag:
    """This application's databag in one client relation (leader only)."""

    def __init__(self, model: ops.Model, relation: ops.Relation):
        self.relation = relation
        self._databag = relation.data[model.app]
        # A v1 client's answer is a response in a list (``clients_v1``), under the same keys.
        self._v1: V1Answer | None = None
        remote = relation.data[relation.app] if relation.app is not None else {}
        if is_v1(remote):
            try:
                request = read_v1_request(remote)
            except InvalidClientRequest:
                request = None  # refused by the domain; nothing is answered
            if request is not None:
                self._v1 = V1Answer(self._databag, request)

    @property
    def database(self) -> str | None:
        """The database this charm set up for the client (written once it was set up)."""
        return self.get(DATABASE_KEY)

    @property
    def credentials_handed(self) -> bool:
        return bool(self.get(USER_SECRET_KEY) or self.get("password"))

    def get(self, key: str) -> str | None:
        if self._v1 is not None:
            return self._v1.get(key)
        return self._databag.get(key) or None

    def update(self, fields: Mapping[str, str | None]) -> list[str]:
        """Set the given keys (None removes one); returns the keys that changed."""
        if self._v1 is not None:
            return self._v1.update(fields)
        changed = []
        for key, value in fields.items():
            if value is None:
                if key in self._databag:
                    del self._databag[key]
                    changed.append(key)
            elif self._databag.get(key) != value:
                self._databag[key] = value
                changed.append(key)
        return changed


class ClientCredentials:
    """The client's ``username``, ``password`` and ``uris``: a Juju secret granted to the
    relation where Juju has secrets, else plain fields of the databag."""

    def __init__(self, model: ops.Model, databag: ClientDatabag):
        self._model = model
        self._databag = databag
        self._label = client_secret_label(databag.relation.id)

    @property
    def uses_secret(self) -> bool:
        return self._model.juju_version.has_secrets

    def put(self, username: str, password: str, uris: str, in_secret: bool = True) -> None:
        """Hand the credentials, or bring them up to date; writes only what changed.

        ``in_secret``: in a secret granted to the relation (where Juju has secrets), else as
        plain fields. Moving from one to the other removes the first.
        """
        content = {"username": username, "password": password, "uris": uris}
        if not (self.uses_secret and in_secret):
            if self._databag.get(USER_SECRET_KEY) is not None:
                self.remove()
                self._databag.update({USER_SECRET_KEY: None})
            self._databag.update(content)
            return
        self._databag.update(dict.fromkeys(CREDENTIAL_FIELDS))
        try:
            secret = self._secret()
            created = secret is None
            if secret is None:
                secret = self._model.app.add_secret(
                    content, label=self._label, description="pgbouncer-k8s client credentials"
                )
                secret.grant(self._databag.relation)
            elif secret.peek_content() != content:
                secret.set_content(content)
            if self._databag.get(USER_SECRET_KEY) is None:
                if not created:
                    # Found again (a hook failed after creating it): make sure of the grant.
                    secret.grant(self._databag.relation)
                # Looked up by label, a secret has no id; its owner can ask for it.
                secret_id = secret.id or secret.get_info().id
                self._databag.update({USER_SECRET_KEY: secret_id})
        except ops.ModelError as err:
            raise ClientSecretUnavailable(
                f"cannot write the client's credentials secret: {first_line(err)}"
            ) from None

    def remove(self) -> None:
        """Remove the secret (if any); the plain fields go with the databag."""
        if not self.uses_secret:
            return
        try:
            secret = self._secret()
            if secret is not None:
                secret.remove_all_revisions()
        except ops.ModelError as err:
            raise ClientSecretUnavailable(
                f"cannot remove the client's credentials secret: {first_line(err)}"
            ) from None

    def _secret(self) -> ops.Secret | None:
        try:
            return self._model.get_secret(label=self._label)
        except ops.SecretNotFoundError:
            return None


# The keys of this charm's answer that the domain compares before writing.
ANSWER_KEYS = ("database", "endpoints", "read-only-endpoints", "version", "tls", "tls-ca")


def read_client_view(model: ops.Model, relation: ops.Relation, gone: bool = False) -> ClientView:
    """One client relation as the domain sees it: the request, and the answer so far."""
    app_name = relation.app.name if relation.app is not None else None
    view = ClientView(relation_id=relation.id, app_name=app_name, gone=gone)
    try:
        databag = ClientDatabag(model, relation)
        answered = tuple(
            (key, value) for key in ANSWER_KEYS if (value := databag.get(key)) is not None
        )
        view = attrs.evolve(
            view,
            answered=answered,
            credentials_handed=databag.credentials_handed,
            credentials_in_secret=databag.get(USER_SECRET_KEY) is not None,
        )
        if gone or relation.app is None:
            return view
        fields = structure_request(relation.data[relation.app])
        return attrs.evolve(
            view,
            request=request_of(relation.id, fields),
            asked_for_secrets=fields.requested_secrets is not None,
        )
    except InvalidClientRequest as err:
        return attrs.evolve(view, refusal=str(err))
    except ops.ModelError as err:
        return attrs.evolve(view, unreadable=first_line(err))


class ClientRelations:
    """The client relations of this hook, by id (a broken one included), for the applier."""

    def __init__(self, model: ops.Model, relations: list[ops.Relation]):
        self._model = model
        self._relations = {relation.id: relation for relation in relations}

    def _databag(self, relation_id: int) -> ClientDatabag:
        relation = self._relations.get(relation_id)
        if relation is None:
            raise ClientSecretUnavailable(f"database relation {relation_id} is gone")
        return ClientDatabag(self._model, relation)

    def answer(self, relation_id: int, fields: Mapping[str, str | None]) -> None:
        from adapters.juju.client_tls import TLS_FIELDS, put_client_tls

        databag = self._databag(relation_id)
        plain = {key: value for key, value in fields.items() if key not in TLS_FIELDS}
        databag.update(plain)
        tls = {key: value for key, value in fields.items() if key in TLS_FIELDS}
        if tls:
            put_client_tls(self._model, databag, tls)

    def hand(
        self, relation_id: int, username: str, password: str, uris: str, in_secret: bool
    ) -> None:
        credentials = ClientCredentials(self._model, self._databag(relation_id))
        credentials.put(username, password, uris, in_secret)

    def revoke(self, relation_id: int) -> None:
        ClientCredentials(self._model, self._databag(relation_id)).remove()
