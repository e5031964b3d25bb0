"""Leaving the seed's layout: plain credentials in the application databag move into the secret.

The seed's revision kept the auth file and every client password (``auth_file``,
``relation_id_<N>``) in plain text in the peer application databag. Where Juju has secrets the
store is a Juju secret (``adapters.juju.secret_store``), and the contract says no databag may
hold a credential. A model refreshed from the seed's layout still holds them, and a revision
that ignored them (9b624b0) may have written a secret beside them.

Two pure functions, planned from what a unit sees (the store's keys found in the application
databag, the secret's content, whether Juju has secrets):

- ``peer_data.merge_store``: what the store holds, for every unit at any point of the
  migration. The secret's value wins where both hold a key (a revision that wrote the secret
  wrote it after the plain one, so the plain one is stale); a plain value fills in what the
  secret lacks. So a follower takes each value from wherever it is, and never loses the auth
  file. It lives in ``peer_data`` because every hook reads the store through it, and this
  module (the rare path) is imported only when there is something to move.
- ``plan_store_migration``: the leader's steps, in order. First ``MoveToSecret`` writes every
  plain value the secret lacks into it, unchanged (a client's password is kept: its
  application keeps working); then ``DropPlainCredentials`` deletes the plain keys. Each step
  is planned from the state it finds, so a hook that stops after any step (or between the two)
  is finished by the next one, and a finished migration plans nothing. A ``Report`` says what
  runs (maintenance) while the steps are carried out.

On a Juju without secrets the application databag *is* the store: nothing moves.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from domain.errors import InvalidEffect
from domain.peer_data import is_store_key, plain_credentials
from domain.status import Severity, StatusReason


def _check_keys(name: str, keys: list[str]) -> None:
    if not keys:
        raise InvalidEffect(f"{name} must not be empty")
    for key in keys:
        if not is_store_key(key):
            raise InvalidEffect(f"{name}: {key!r} is not a store key")


def _store_values(
    _instance: object,
    attribute: attrs.Attribute[tuple[tuple[str, str], ...]],
    value: tuple[tuple[str, str], ...],
) -> None:
    _check_keys(attribute.name, [key for key, _ in value])


def _store_keys(
    _instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    _check_keys(attribute.name, list(value))


@attrs.frozen(repr=False)
class MoveToSecret:
    """Leader: write these store values into the peer secret (the keys it lacks, unchanged)."""

    values: tuple[tuple[str, str], ...] = attrs.field(validator=_store_values)

    def __repr__(self) -> str:
        return f"MoveToSecret(keys={[key for key, _ in self.values]})"


@attrs.frozen
class DropPlainCredentials:
    """Leader: delete these store keys from the application databag (the secret has them)."""

    keys: tuple[str, ...] = attrs.field(validator=_store_keys)


@attrs.frozen
class ReportMigration:
    """Show this while the migration's steps run (the hook that carries them out)."""

    reason: StatusReason


MigrationStep = MoveToSecret | DropPlainCredentials | ReportMigration


def plan_store_migration(
    plain: Mapping[str, str],
    secret: Mapping[str, str] | None,
    has_secrets: bool,
    is_leader: bool,
) -> list[MigrationStep]:
    """The leader's next steps out of the seed's layout; empty once none is left (or on a
    follower, or on a Juju without secrets, where the databag is the store)."""
    found = plain_credentials(plain)
    if not (has_secrets and is_leader and found):
        return []
    have = secret or {}
    missing = tuple(sorted((key, value) for key, value in found.items() if key not in have))
    steps: list[MigrationStep] = [
        ReportMigration(
            StatusReason(
                Severity.MAINTENANCE,
                f"moving {len(found)} plain-text credential(s) from the peer databag into "
                "the peer secret",
            )
        )
    ]
    if missing:
        steps.append(MoveToSecret(missing))
    steps.append(DropPlainCredentials(tuple(sorted(found))))
    return steps
