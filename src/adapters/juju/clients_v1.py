"""The ``database`` relation's v1 shape, as the data-platform interfaces library writes it.

A client on the v1 protocol (``dpcharmlibs-interfaces``) writes in its application databag
``version: v1`` and ``requests``, a JSON list of requests; each has ``resource`` (the
database), ``salt``, usually ``request-id`` (else the first 16 hex digits of
``sha256("<resource>:<salt>")``) and optionally ``extra-user-roles``. The provider answers in
its own application databag with ``version: v1``, ``requests``, a JSON list with one response
per request (``request-id``, ``resource``, ``endpoints``, ``read-only-endpoints``, ``version``
and ``secret-user``, the URI of a secret holding ``username``, ``password`` and ``uris``), and
``data``, a JSON map from each request id to the request it answers: the library's requirer
matches every response to its request through it and ignores the answer without it.

The charm serves one database per relation (its user is ``relation_id_<N>``), so it serves a
v1 relation that holds exactly one request and refuses one holding more, naming why. The
decisions are the domain's, as for v0; this module only reads the request into the same
fields and writes the same answer keys into the v1 response. It is written here rather than
taken from the library: the library's provider needs pydantic and cryptography in every hook
of the charm (its handler observes events from the charm's constructor), for a few JSON
fields.
"""

import hashlib
import json
from collections.abc import Mapping

import attrs
import ops

from domain.clients import InvalidClientRequest

V1 = "v1"
VERSION_KEY = "version"
REQUESTS_KEY = "requests"
DATA_KEY = "data"
REQUEST_ID_KEY = "request-id"
RESOURCE_KEY = "resource"
# The v0 answer's keys as the v1 response names them.
_RESPONSE_KEYS = {"database": RESOURCE_KEY}


def is_v1(raw: Mapping[str, str]) -> bool:
    return raw.get(VERSION_KEY) == V1


@attrs.frozen
class V1Request:
    request_id: str
    database: str | None
    extra_user_roles: str | None
    # The request as the client sent it: the answer's ``data`` map holds it.
    sent: dict[str, object] = attrs.field(repr=False)


def _request_id(request: Mapping[str, object], resource: str | None) -> str:
    given = request.get(REQUEST_ID_KEY)
    if isinstance(given, str) and given:
        return given
    salt = request.get("salt")
    if not isinstance(salt, str) or resource is None:
        raise InvalidClientRequest("requests: a request has neither request-id nor salt")
    return hashlib.sha256(f"{resource}:{salt}".encode()).hexdigest()[:16]


def _optional_text(request: Mapping[str, object], key: str) -> str | None:
    value = request.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidClientRequest(f"requests: {key}: expected a string")
    return value


def read_v1_request(raw: Mapping[str, str]) -> V1Request | None:
    """The one request of a v1 client; None before it wrote any. ``InvalidClientRequest``
    names what cannot be served."""
    text = raw.get(REQUESTS_KEY)
    if not text:
        return None
    try:
        requests = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidClientRequest("requests: expected a JSON list of requests") from None
    if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
        raise InvalidClientRequest("requests: expected a JSON list of requests")
    if not requests:
        return None
    if len(requests) > 1:
        raise InvalidClientRequest(
            f"requests: {len(requests)} databases asked on one relation; this charm serves"
            " one database per relation (relate once per database)"
        )
    (request,) = requests
    if request.get("entity-type"):
        raise InvalidClientRequest("requests: entity-type: custom entities are not served")
    database = _optional_text(request, RESOURCE_KEY) or _optional_text(request, "database")
    return V1Request(
        request_id=_request_id(request, database),
        database=database,
        extra_user_roles=_optional_text(request, "extra-user-roles"),
        sent=request,
    )


class V1Answer:
    """The response to a v1 client's request in this application's databag (leader only):
    ``get`` and ``update`` take the v0 answer's keys and read or write the response."""

    def __init__(self, databag: ops.RelationDataContent, request: V1Request):
        self._databag = databag
        self._request = request

    def _responses(self) -> list[dict[str, object]]:
        try:
            responses = json.loads(self._databag.get(REQUESTS_KEY) or "[]")
        except json.JSONDecodeError:
            return []  # not the charm's own writing: it is replaced
        return [r for r in responses if isinstance(r, dict)] if isinstance(responses, list) else []

    def _response(self) -> dict[str, object]:
        for response in self._responses():
            if response.get(REQUEST_ID_KEY) == self._request.request_id:
                return response
        return {REQUEST_ID_KEY: self._request.request_id}

    def get(self, key: str) -> str | None:
        value = self._response().get(_RESPONSE_KEYS.get(key, key))
        return value if isinstance(value, str) and value else None

    def update(self, fields: Mapping[str, str | None]) -> list[str]:
        """Set the given keys of the response (None removes one); the keys that changed."""
        response = self._response()
        changed = []
        for key, value in fields.items():
            name = _RESPONSE_KEYS.get(key, key)
            if value is None:
                if name in response:
                    del response[name]
                    changed.append(key)
            elif response.get(name) != value:
                response[name] = value
                changed.append(key)
        if not changed:
            return changed
        others = [
            r for r in self._responses() if r.get(REQUEST_ID_KEY) != self._request.request_id
        ]
        wanted = {
            VERSION_KEY: V1,
            REQUESTS_KEY: json.dumps([*others, response], sort_keys=True),
            DATA_KEY: json.dumps({self._request.request_id: self._request.sent}, sort_keys=True),
        }
        for key, value in wanted.items():
            if self._databag.get(key) != value:
                self._databag[key] = value
        return changed
