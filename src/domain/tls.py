"""TLS: client connections served with each unit's own certificate, and a verified backend.

The model
---------
Two kinds of facts decide what pgbouncer does with TLS, and they live in different places.

- What the application wants is one decision, the leader's, published in ``cfg_file`` like
  every other setting (``TlsIntent``, applied by ``apply_tls_intent``). With a ``certificates``
  relation: ``client_tls_sslmode = prefer`` (``require`` when the operator asks for it) and the
  three client TLS paths. With a CA published by the backend: ``server_tls_sslmode =
  verify-ca`` and ``server_tls_ca_file``; otherwise ``prefer`` and no CA file. Every path is
  one of the charm's own constants (``pgb_config.CLIENT_TLS_*_PATH``, ``BACKEND_TLS_CA_PATH``),
  the same on every unit, so a follower can refuse a config naming any other (the contract).
- What a unit *has* is its own: its private key and certificate (the key is made on the unit
  by the TLS library and never leaves it) and the backend's CA, written into its container.
  They arrive at different times on different units, and the key never travels with the
  published config.

So a unit cannot run the published config as it is while its own files are missing: pgbouncer
refuses to start on a key file it cannot read. Each unit runs an *effective* configuration
derived from the published one, just as the per-process copies are derived:
``effective_config(published, in_place)`` keeps the client TLS settings only when this unit's
key, certificate and CA are all in its container, and keeps ``verify-ca`` only when the
backend's CA file is there (else ``prefer``). The main ``pgbouncer.ini`` stays byte for byte
what the leader published (what the unit acknowledges); the per-process copies, which the
processes read, are the effective ones. The order of writes keeps one invariant, "a copy never
names a file that is not there": new files before the copies that name them, copies that stop
naming files before those files are removed (``domain.effects`` orders them so).

``TlsView`` is what the application layer gathers, and only as far as the hook needs it:
``served`` (what the copies serve now) always; the wanted and current client files only where
they may have changed (the ``certificates`` events, a restarted container, a unit not yet serving
what the relation promises), because knowing the wanted ones loads the TLS library and
``cryptography``, which cost about as much to import as ops itself. A part not read (``None``)
means "as the copies already use it": the safe reading, since a copy names only files that were
there when it was written.

``plan_tls_files`` decides the files (write, remove, what is in place afterwards, what was
rotated); while the relation exists, files are only ever replaced, never removed (between a
renewal's request and its certificate the library gives none: the unit keeps serving the one
it has); ``copies_need_rewrite`` and ``rotation_needs_reload`` decide the processes. A rotated
certificate needs only a reload: pgbouncer 1.18 rebuilds its TLS contexts from the files on
SIGHUP, so sessions already open keep theirs and new ones get the new certificate.
``tls_reasons`` says in the status what a unit does not serve yet. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

from domain.errors import InvalidInput
from domain.pgb_config import (
    BACKEND_TLS_CA_PATH,
    CLIENT_TLS_CA_PATH,
    CLIENT_TLS_CERT_PATH,
    CLIENT_TLS_KEY_PATH,
    PGB_DIR,
    PgbConfig,
    parse_pgb_ini,
)
from domain.pgb_validation import CA, CERT, KEY
from domain.status import Severity, StatusReason

CLIENT_TLS_SETTINGS = (
    "client_tls_sslmode",
    "client_tls_key_file",
    "client_tls_cert_file",
    "client_tls_ca_file",
)
# The only values of each TLS path setting a published config may hold.
CHARM_TLS_PATHS = {
    "client_tls_key_file": CLIENT_TLS_KEY_PATH,
    "client_tls_cert_file": CLIENT_TLS_CERT_PATH,
    "client_tls_ca_file": CLIENT_TLS_CA_PATH,
    "server_tls_ca_file": BACKEND_TLS_CA_PATH,
}
BACKEND_UNVERIFIED_MODE = "prefer"
BACKEND_VERIFIED_MODE = "verify-ca"

NO_CERTIFICATE = "no TLS certificate for this unit yet: clients connect without TLS"
TLS_NOT_PUBLISHED = "TLS certificate in place; waiting for the leader to turn TLS on"
NO_BACKEND_CA = "the backend's CA is not readable here: backend connections are not verified"


class InvalidTlsMaterial(InvalidInput):
    """A key, certificate or CA text that is not the PEM pgbouncer (OpenSSL) reads."""


# Compiled by re's own cache on first use: every hook imports this module, few read PEM.
_PEM_BLOCK = r"-----BEGIN ([A-Z0-9 ]+)-----\n([A-Za-z0-9+/=\n]+)-----END \1-----\n"
_KEY_LABELS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})
_CERT_LABELS = frozenset({"CERTIFICATE"})


def pem_text(value: str) -> str:
    """PEM as written to a file: one trailing newline, no blank lines around blocks."""
    return value.strip() + "\n" if isinstance(value, str) else value


def _pem_blocks(name: str, value: object, labels: frozenset[str]) -> int:
    if not isinstance(value, str):
        raise InvalidTlsMaterial(f"{name}: expected PEM text, got {type(value).__name__}")
    position, blocks = 0, 0
    while position < len(value):
        match = re.compile(_PEM_BLOCK).match(value, position)
        if match is None:
            # Never quote the text: it may be a private key.
            raise InvalidTlsMaterial(f"{name}: not PEM at character {position}")
        if match.group(1) not in labels:
            raise InvalidTlsMaterial(f"{name}: a {match.group(1)} block where {name} belongs")
        position, blocks = match.end(), blocks + 1
    if blocks == 0:
        raise InvalidTlsMaterial(f"{name} is empty")
    return blocks


class _Value:
    """One repr for every class here instead of one generated per class (as
    ``domain.effects`` does): every hook imports this module, few print its values."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = [
            f"{field.name}={getattr(self, field.name)!r}"
            for field in attrs.fields(type(self))
            if field.repr
        ]
        return f"{type(self).__qualname__}({', '.join(shown)})"


def _one_key(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if _pem_blocks(attribute.name, value, _KEY_LABELS) != 1:
        raise InvalidTlsMaterial(f"{attribute.name}: expected exactly one private key")


def _certificates(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    _pem_blocks(attribute.name, value, _CERT_LABELS)


@attrs.frozen(repr=False)
class ClientTlsFiles(_Value):
    """One unit's client TLS files: its private key, its certificate chain (its certificate
    first) and the CA that signed it. The key never appears in a repr."""

    key: str = attrs.field(converter=pem_text, validator=_one_key, repr=False)
    cert: str = attrs.field(converter=pem_text, validator=_certificates)
    ca: str = attrs.field(converter=pem_text, validator=_certificates)


def backend_ca_text(value: str) -> str:
    """The backend's CA bundle as it is written to its file; ``InvalidTlsMaterial`` if not
    PEM certificates."""
    text = pem_text(value)
    _pem_blocks("backend CA", text, _CERT_LABELS)
    return text


@attrs.frozen(repr=False)
class TlsInPlace(_Value):
    """Which TLS files this unit has complete in its container (or, for ``served``, which
    TLS settings its process copies use)."""

    client: bool = False
    backend_ca: bool = False

    def __and__(self, other: TlsInPlace) -> TlsInPlace:
        return TlsInPlace(self.client and other.client, self.backend_ca and other.backend_ca)


NOTHING_IN_PLACE = TlsInPlace()


@attrs.frozen(repr=False)
class TlsIntent(_Value):
    """What the leader publishes: client TLS on (a ``certificates`` relation exists), whether
    clients must use it, and whether the backend is verified (None: not known this hook, keep
    what the config says)."""

    client: bool = False
    require: bool = False
    backend_ca: bool | None = None


def apply_tls_intent(cfg: PgbConfig, intent: TlsIntent) -> PgbConfig:
    """``cfg`` with its TLS settings as ``intent`` says, every other setting untouched."""
    changes: dict[str, str | None] = {}
    if intent.client:
        changes.update(
            client_tls_sslmode="require" if intent.require else "prefer",
            client_tls_key_file=CLIENT_TLS_KEY_PATH,
            client_tls_cert_file=CLIENT_TLS_CERT_PATH,
            client_tls_ca_file=CLIENT_TLS_CA_PATH,
        )
    else:
        changes.update(dict.fromkeys(CLIENT_TLS_SETTINGS))
    if intent.backend_ca is True:
        changes.update(
            server_tls_sslmode=BACKEND_VERIFIED_MODE, server_tls_ca_file=BACKEND_TLS_CA_PATH
        )
    elif intent.backend_ca is False and cfg.setting("server_tls_ca_file") is not None:
        # Back from verify-ca to what the initial config has; a config that never verified
        # keeps its mode as it is.
        changes.update(server_tls_sslmode=BACKEND_UNVERIFIED_MODE, server_tls_ca_file=None)
    changed = {k: v for k, v in changes.items() if cfg.setting(k) != v}
    return cfg.with_settings(changed) if changed else cfg


def asked_by(cfg: PgbConfig) -> TlsInPlace:
    """The TLS files ``cfg`` names: what a unit needs in place to run it as it is."""
    return asked_by_settings(cfg.setting)


def asked_by_settings(setting: Callable[[str], str | None]) -> TlsInPlace:
    """``asked_by`` from a lookup of ``[pgbouncer]`` settings alone: a unit's own unchanged file
    is read without its ``[databases]`` section (``rendered_settings``), most of a large
    file's parse."""
    mode = setting("client_tls_sslmode")
    return TlsInPlace(
        client=mode is not None and mode != "disable",
        backend_ca=setting("server_tls_ca_file") is not None,
    )


def _missing_tls_changes(cfg: PgbConfig, in_place: TlsInPlace) -> dict[str, str | None]:
    asked = asked_by(cfg)
    changes: dict[str, str | None] = {}
    if asked.client and not in_place.client:
        changes.update(dict.fromkeys(CLIENT_TLS_SETTINGS))
    if asked.backend_ca and not in_place.backend_ca:
        changes.update(server_tls_sslmode=BACKEND_UNVERIFIED_MODE, server_tls_ca_file=None)
    return changes


def runnable_part(cfg: PgbConfig, in_place: TlsInPlace) -> PgbConfig:
    """``cfg`` without the TLS settings whose files this unit does not have: what a follower
    validates (``pgb_validation.check_published``), since it serves without them until its own
    files are in place. The paths it keeps are validated as published, not replaced."""
    changes = _missing_tls_changes(cfg, in_place)
    return cfg.with_settings(changes) if changes else cfg


def files_in_place(in_place: TlsInPlace, base_dir: str = PGB_DIR) -> dict[str, str]:
    """The TLS files this unit has (or this hook writes), path -> kind, as
    ``pgb_validation.WorkloadFacts.files`` names them."""
    files: dict[str, str] = {}
    if in_place.client:
        for path, kind in (
            (CLIENT_TLS_KEY_PATH, KEY),
            (CLIENT_TLS_CERT_PATH, CERT),
            (CLIENT_TLS_CA_PATH, CA),
        ):
            files[base_dir + path.removeprefix(PGB_DIR)] = kind
    if in_place.backend_ca:
        files[base_dir + BACKEND_TLS_CA_PATH.removeprefix(PGB_DIR)] = CA
    return files


def effective_config(cfg: PgbConfig, in_place: TlsInPlace, base_dir: str = PGB_DIR) -> PgbConfig:
    """What this unit runs of ``cfg``: TLS settings only where its own files are in place.

    The TLS paths the copies keep are always the charm's own, in ``base_dir`` (the container's
    folder; another one only for local runs), as ``per_process_config`` does for the rest.
    """
    changes = _missing_tls_changes(cfg, in_place)
    # The copies name the charm's own files, whatever path the published text holds: a
    # follower never lets the leader's config point pgbouncer elsewhere (the contract; the
    # validation refuses such a config too).
    for key, path in CHARM_TLS_PATHS.items():
        own = base_dir + path.removeprefix(PGB_DIR)
        if key not in changes and cfg.setting(key) not in (None, own):
            changes[key] = own
    return cfg.with_settings(changes) if changes else cfg


def served_by(copy_text: str | None) -> TlsInPlace:
    """What a per-process copy serves, from its text (nothing when it is missing or bad)."""
    if copy_text is None:
        return TlsInPlace()
    try:
        return asked_by(parse_pgb_ini(copy_text))
    except InvalidInput:
        return TlsInPlace()


def serving(asked: TlsInPlace | None, in_place: TlsInPlace) -> TlsInPlace:
    """What the copies serve of a config asking for ``asked`` (``asked_by``; None: no config)
    with ``in_place``."""
    return asked & in_place if asked is not None else TlsInPlace()


_Material = TypeVar("_Material")


@attrs.frozen(repr=False)
class FilesState(_Value, Generic[_Material]):
    """Some TLS files of this unit: as its relation gives them (None: nothing given, or no
    relation) and as its container holds them (None: not all there)."""

    wanted: _Material | None = attrs.field(default=None, repr=False)
    current: _Material | None = attrs.field(default=None, repr=False)


# The client files (key, certificate, CA), and the backend's CA.
ClientTlsState = FilesState[ClientTlsFiles]
BackendCaState = FilesState[str]


@attrs.frozen(repr=False)
class TlsView(_Value):
    """What one unit sees of TLS in one hook (see the module docstring)."""

    relation: bool = False
    require: bool = False
    served: TlsInPlace = TlsInPlace()
    # What the unit's memory says its copies serve (what the last hook that wrote or read
    # them left); ``served`` is this when the hook did not read a copy back.
    served_remembered: TlsInPlace = TlsInPlace()
    client: ClientTlsState | None = None
    backend: BackendCaState | None = None
    # Leader: the CA its own certificate chains to (from its container), told to clients.
    ca: str | None = attrs.field(default=None, repr=False)

    def intent(self) -> TlsIntent:
        backend = self.backend
        return TlsIntent(
            client=self.relation,
            require=self.require,
            backend_ca=None if backend is None else backend.wanted is not None,
        )


@attrs.frozen(repr=False)
class TlsFilesPlan(_Value):
    """The file changes of one hook and what is in place after them."""

    write_client: ClientTlsFiles | None = None
    remove_client: bool = False
    write_backend_ca: str | None = attrs.field(default=None, repr=False)
    remove_backend_ca: bool = False
    in_place: TlsInPlace = TlsInPlace()
    # Files whose content changed while they stay in place (a rotation).
    rotated: TlsInPlace = TlsInPlace()


def plan_tls_files(view: TlsView) -> TlsFilesPlan:
    """Write what differs, remove what is withdrawn; parts not read stay as served."""
    write_client, remove_client, client, client_rotated = None, False, view.served.client, False
    if view.client is not None:
        wanted, current = view.client.wanted, view.client.current
        if wanted is None and view.relation:
            # No certificate given now, with the relation there: a renewal under way (the
            # library sent a new request). Serve the previous certificate until it comes.
            wanted = current
        client = wanted is not None
        if wanted is not None and wanted != current:
            write_client, client_rotated = wanted, current is not None
        remove_client = wanted is None and current is not None
    write_ca, remove_ca, backend, backend_rotated = None, False, view.served.backend_ca, False
    if view.backend is not None:
        wanted_ca, current_ca = view.backend.wanted, view.backend.current
        backend = wanted_ca is not None
        if wanted_ca is not None and wanted_ca != current_ca:
            write_ca, backend_rotated = wanted_ca, current_ca is not None
        remove_ca = wanted_ca is None and current_ca is not None
    return TlsFilesPlan(
        write_client=write_client,
        remove_client=remove_client,
        write_backend_ca=write_ca,
        remove_backend_ca=remove_ca,
        in_place=TlsInPlace(client, backend),
        rotated=TlsInPlace(client_rotated, backend_rotated),
    )


def copies_need_rewrite(
    asked: TlsInPlace | None, in_place: TlsInPlace, served: TlsInPlace
) -> bool:
    """Whether the copies of an unchanged config asking for ``asked`` must be derived again
    (TLS files came or went). Without a config there are no copies."""
    return asked is not None and serving(asked, in_place) != served


def rotation_needs_reload(asked: TlsInPlace | None, files: TlsFilesPlan) -> bool:
    """A file the running copies use got new content: pgbouncer must re-read it."""
    used = serving(asked, files.in_place) & files.rotated
    return used.client or used.backend_ca


def tls_reasons(
    view: TlsView, asked: TlsInPlace | None, in_place: TlsInPlace
) -> list[StatusReason]:
    """Why this unit serves less TLS than its relations promise (status, never a secret)."""
    reasons = []
    asked = asked if asked is not None else TlsInPlace()
    if view.relation and view.client is not None and not in_place.client:
        reasons.append(StatusReason(Severity.WAITING, NO_CERTIFICATE))
    elif view.relation and in_place.client and not asked.client:
        reasons.append(StatusReason(Severity.WAITING, TLS_NOT_PUBLISHED))
    if asked.backend_ca and not in_place.backend_ca:
        reasons.append(StatusReason(Severity.WAITING, NO_BACKEND_CA))
    return reasons


def client_tls_fields(cfg: PgbConfig | None, ca: str | None, told: bool) -> dict[str, str | None]:
    """The ``tls`` and ``tls-ca`` a client is told (``postgresql_client``): on when the
    published config serves TLS and the leader has the CA; nothing until TLS was first on
    (``told``: the answer already has ``tls``), since an absent ``tls`` means none."""
    if cfg is not None and asked_by(cfg).client and ca is not None:
        return {"tls": "True", "tls-ca": ca}
    return {"tls": "False", "tls-ca": None} if told else {}
