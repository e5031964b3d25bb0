"""The first steps of every hook: the peer schema, and leaving the seed's layout (refresh).

``RefreshSteps.run`` is called by the charm's ``_reconcile`` before it gathers the hook's view,
so it runs first in whatever hook comes first after ``juju refresh`` (usually
``upgrade-charm``, but a leader may meet the data first in any hook). Once per hook it:

1. writes the schema version its revision speaks into its unit databag, and checks the
   published ``schema_version`` (``domain.peer_schema``). Data of a newer schema (a newer
   revision leads, or led) is not adopted: ``readable`` is False, the peer handlers keep the
   files the unit runs, and the status says why; a leader that no other unit's version
   outranks (a rollback completed) takes over and publishes its own version;
2. on the leader, carries out the store migration's steps (``domain.store_migration``): the
   status shows it while it runs (``status-set`` takes effect at once in Juju, before the
   hook's final status), each step goes through the secret store adapter, and a step that fails
   stops the rest and becomes a waiting reason; the next hook plans again from what it finds;
3. on the leader, once no plain credential is left, publishes this revision's schema version.

It needs no deferral: every leader hook plans the migration again, update-status included.
"""

import logging
from collections.abc import Callable

import ops

from adapters.errors import first_line
from adapters.juju.peer_relation import PEER_RELATION
from adapters.juju.secret_store import JujuSecretStore, StoreUnavailable
from domain.peer_schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, SchemaCheck, check_schema
from domain.ports import SecretStorePort
from domain.status import Severity, StatusReason

logger = logging.getLogger(__name__)

MIGRATION_FAILED = "moving plain-text credentials into the peer secret failed"


class RefreshSteps:
    """One per hook (the charm makes it in ``__init__``); ``run`` does its work once."""

    def __init__(self, model: ops.Model):
        self._model = model
        self.schema: SchemaCheck = SchemaCheck(readable=True)
        self.reasons: list[StatusReason] = []
        self._done = False

    def run(self, store: Callable[[], SecretStorePort]) -> SchemaCheck:
        """The schema check and, on the leader, the migration; returns the schema check
        (deferred events re-run before the hook's own: the work is done once)."""
        if not self._done:
            self._done = True
            self._run(store)
        return self.schema

    def _run(self, store: Callable[[], SecretStorePort]) -> None:
        relation = self._model.get_relation(PEER_RELATION)
        if relation is None:
            return
        is_leader = self._model.unit.is_leader()
        databag = relation.data[self._model.app]
        # What this unit's revision speaks, for a leader deciding whether a rollback is done.
        self._set(relation.data[self._model.unit], str(SCHEMA_VERSION))
        peers = (
            tuple(relation.data[unit].get(SCHEMA_VERSION_KEY) for unit in relation.units)
            if is_leader
            else ()
        )
        self.schema = check_schema(databag.get(SCHEMA_VERSION_KEY), is_leader, peers)
        if self.schema.reason is not None:
            logger.warning("%s", self.schema.reason.message)
        if not self.schema.readable:
            if self.schema.reason is not None:
                self.reasons.append(self.schema.reason)
            return
        if not is_leader:
            return
        if not self._migrate(store()):
            return
        # The version describes published data: a databag with nothing else needs none yet.
        if self.schema.publish is not None and any(k != SCHEMA_VERSION_KEY for k in databag):
            self._set(databag, str(self.schema.publish))

    @staticmethod
    def _set(databag: ops.RelationDataContent, version: str) -> None:
        """Write a schema version; a failure only delays it to the next hook."""
        if databag.get(SCHEMA_VERSION_KEY) == version:
            return
        try:
            databag[SCHEMA_VERSION_KEY] = version
        except ops.ModelError as err:
            logger.warning("cannot write %s yet: %s", SCHEMA_VERSION_KEY, first_line(err))

    def _migrate(self, store: SecretStorePort) -> bool:
        """Carry out the migration's steps; True when none is left."""
        try:
            plain = store.plain()
            if not plain:
                return True  # the usual hook: no secret-get, no import of the rare path
            from domain.store_migration import (
                DropPlainCredentials,
                MoveToSecret,
                ReportMigration,
                plan_store_migration,
            )

            steps = plan_store_migration(
                plain,
                store.secret_content(),
                has_secrets=isinstance(store, JujuSecretStore),
                is_leader=True,
            )
            for step in steps:
                match step:
                    case ReportMigration(reason):
                        logger.info("%s", reason.message)
                        self._model.unit.status = ops.MaintenanceStatus(reason.message)
                    case MoveToSecret(values) if isinstance(store, JujuSecretStore):
                        store.move_to_secret(dict(values))
                    case DropPlainCredentials(keys) if isinstance(store, JujuSecretStore):
                        store.drop_plain(keys)
                    case _:
                        raise StoreUnavailable(
                            f"{type(step).__name__} needs the Juju secret store"
                        )
        except (StoreUnavailable, ops.ModelError) as err:
            message = f"{MIGRATION_FAILED}: {first_line(err)}; retrying on the next hook"
            logger.warning("%s", message)
            self.reasons.append(StatusReason(Severity.WAITING, message))
            return False
        if steps:
            logger.info("plain-text credentials moved into the peer secret")
        return True
