"""cattrs converters between Juju's string maps and the domain's values.

One converter per boundary, because the boundaries want opposite attitudes:

- ``peer_converter`` reads the ``pgb-peers`` databags and the secret store. It is lenient
  about *shape*: unknown keys are ignored (during a rolling upgrade units of two revisions share
  one databag) and an empty string counts as absent. What it keeps is still validated by the
  domain values, and a value that fails raises ``InvalidPeerData`` with the key and the reason.
- ``config_converter`` reads the charm config and is strict: an ``int`` option must be an int
  (not a bool, not a string), and every failure becomes ``InvalidCharmConfig`` naming the
  option, for a blocked status the operator can act on.

Renames (``applied_cfg_digest`` for ``Acknowledgement.cfg_digest``, ``relation_id_<N>`` keys)
live here, never on the domain classes. The hooks registered here report a bad value with the
domain's ``InvalidInput``, and ``problems`` turns what cattrs collected into one message per
key; every Juju converter (``backend``, ``clients``) uses both, and catches nothing broader
than ``cattrs.BaseValidationError`` and ``InvalidInput``.
"""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

from domain.charm_config import CharmConfig
from domain.errors import InvalidCharmConfig, InvalidInput, InvalidPeerData
from domain.peer_data import (
    APPLIED_AUTH_KEY,
    APPLIED_CFG_KEY,
    APPLY_OK_KEY,
    AUTH_FILE_KEY,
    HOSTNAME_KEY,
    PGBOUNCER_VERSION_KEY,
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    password_relation_id,
)
from domain.pgb_version import InvalidPgbVersion, PgbVersion

_TRUE, _FALSE = "true", "false"

peer_converter = cattrs.Converter(forbid_extra_keys=False)


def optional_str(value: object, _type: object) -> str | None:
    """A databag string: an empty one counts as absent (shared by every Juju converter)."""
    if value is None or value == "":
        return None
    return strict_str(value, _type)


def strict_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"expected a string, got {type(value).__name__}")
    return value


def _flag(value: object, _type: object) -> bool:
    if value == _TRUE or value is True:
        return True
    if value == _FALSE or value is False:
        return False
    raise InvalidPeerData(f"expected {_TRUE!r} or {_FALSE!r}")


peer_converter.register_structure_hook(str | None, optional_str)
peer_converter.register_structure_hook(bool, _flag)
peer_converter.register_unstructure_hook(bool, lambda value: _TRUE if value else _FALSE)


# cattrs writes and compiles these functions' source; most hooks read no acknowledgement at
# all (units write one only while the leader waits for it), so they are made on first use.
@functools.cache
def _ack_structure() -> Callable[[Mapping[str, Any], Any], Acknowledgement]:
    return make_dict_structure_fn(
        Acknowledgement,
        peer_converter,
        cfg_digest=override(rename=APPLIED_CFG_KEY),
        auth_digest=override(rename=APPLIED_AUTH_KEY),
        ok=override(rename=APPLY_OK_KEY),
    )


@functools.cache
def _ack_unstructure() -> Callable[[Acknowledgement], dict[str, Any]]:
    return make_dict_unstructure_fn(
        Acknowledgement,
        peer_converter,
        cfg_digest=override(rename=APPLIED_CFG_KEY),
        auth_digest=override(rename=APPLIED_AUTH_KEY),
        ok=override(rename=APPLY_OK_KEY),
    )


peer_converter.register_structure_hook(
    Acknowledgement, lambda raw, type_: _ack_structure()(raw, type_)
)
peer_converter.register_unstructure_hook(Acknowledgement, lambda ack: _ack_unstructure()(ack))


def _structure_unit(raw: Mapping[str, str], _type: object) -> UnitPeerData:
    # The acknowledgement's keys sit flat in the unit databag; a unit that has not applied
    # anything yet (or runs an older revision) has none of them.
    has_ack = any(raw.get(key) for key in (APPLIED_CFG_KEY, APPLIED_AUTH_KEY, APPLY_OK_KEY))
    ack = peer_converter.structure(dict(raw), Acknowledgement) if has_ack else None
    return UnitPeerData(
        hostname=optional_str(raw.get(HOSTNAME_KEY), str),
        ack=ack,
        pgbouncer_version=_version_or_none(raw.get(PGBOUNCER_VERSION_KEY)),
    )


def _version_or_none(text: str | None) -> PgbVersion | None:
    # An additive key: a value this revision cannot read counts as not published, so a unit
    # of a newer revision never makes this one refuse the whole databag.
    if not text:
        return None
    try:
        return PgbVersion.parse(text)
    except InvalidPgbVersion:
        return None


def _structure_store(raw: Mapping[str, str], _type: object) -> StoreContents:
    passwords: list[tuple[int, str]] = []
    for key, value in raw.items():
        relation_id = password_relation_id(key)
        if relation_id is not None and value:
            passwords.append((relation_id, value))
    return StoreContents(
        auth_file=optional_str(raw.get(AUTH_FILE_KEY), str), passwords=tuple(sorted(passwords))
    )


peer_converter.register_structure_hook(UnitPeerData, _structure_unit)
peer_converter.register_structure_hook(StoreContents, _structure_store)


def _format_exception(exc: BaseException, type_: type | None) -> str:
    # The domain's own messages already name the field and the reason; keep them whole.
    if isinstance(exc, InvalidInput) and str(exc):
        return str(exc)
    return format_exception(exc, type_)


def problems(err: Exception, renames: Mapping[str, str] | None = None) -> str:
    """What is wrong, key by key: ``<key>: <reason>; ...`` (``renames``: attribute names to
    the databag keys they come from)."""
    if not isinstance(err, cattrs.BaseValidationError):
        return str(err)
    found = []
    for problem in cattrs.transform_error(err, format_exception=_format_exception):
        what, _, where = problem.rpartition(" @ ")
        key = where.removeprefix("$").removeprefix(".")
        key = (renames or {}).get(key, key)
        found.append(f"{key}: {what}" if key else what)
    return "; ".join(found)


def read_app_data(raw: Mapping[str, str]) -> AppPeerData:
    try:
        return peer_converter.structure(dict(raw), AppPeerData)
    except (cattrs.BaseValidationError, InvalidInput) as err:
        raise InvalidPeerData(f"application databag: {problems(err)}") from None


def read_unit_data(raw: Mapping[str, str], unit_name: str = "unit") -> UnitPeerData:
    try:
        return peer_converter.structure(dict(raw), UnitPeerData)
    except (cattrs.BaseValidationError, InvalidInput) as err:
        raise InvalidPeerData(f"databag of {unit_name}: {problems(err)}") from None


def read_store(raw: Mapping[str, str]) -> StoreContents:
    try:
        return peer_converter.structure(dict(raw), StoreContents)
    except (cattrs.BaseValidationError, InvalidInput) as err:
        raise InvalidPeerData(f"peer secret store: {problems(err)}") from None


def ack_fields(ack: Acknowledgement) -> dict[str, str]:
    return peer_converter.unstructure(ack)


config_converter = cattrs.Converter(forbid_extra_keys=False)


def _strict_int(value: object, _type: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCharmConfig(f"expected an integer, got {value!r}")
    return value


def _strict_option_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise InvalidCharmConfig(f"expected a string, got {value!r}")
    return value


config_converter.register_structure_hook(int, _strict_int)
config_converter.register_structure_hook(str, _strict_option_str)


def read_charm_config(raw: Mapping[str, Any]) -> CharmConfig:
    """The charm config as a domain value; ``InvalidCharmConfig`` names the bad option."""
    try:
        return config_converter.structure(dict(raw), CharmConfig)
    except InvalidCharmConfig as err:
        raise InvalidCharmConfig(f"invalid config option {err}") from None
    except cattrs.BaseValidationError as err:
        raise InvalidCharmConfig(f"invalid config option {problems(err)}") from None
