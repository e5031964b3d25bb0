"""The peer secret store, twice: a Juju application secret, or the peer application databag.

The store holds the auth file and the client relations' passwords under the contract's keys
(``auth_file``, ``relation_id_<N>``). Which adapter a unit uses follows
``JujuVersion.has_secrets``:

- ``JujuSecretStore``: one secret owned by the application, created by the leader, readable by
  every unit of the application. The plain databag carries only its ID (``secret_id``) and a
  digest of its content (``store_digest``): neither is a credential. Juju sends no
  ``secret-changed`` to units of the application that owns a secret, so a new digest is what
  wakes the followers: it changes the application databag, which fires
  ``pgb-peers-relation-changed`` on every other unit. Followers always read the newest
  revision. Secret content keys must be lower-case with hyphens, so ``auth_file`` is stored as
  ``auth-file`` and ``relation_id_4`` as ``relation-id-4``; the renaming stays here.
- ``DatabagSecretStore``: Juju without secrets. The keys sit in the application databag
  exactly as the seed's interface table shows.

Leaving the seed's layout (``domain.store_migration``): where Juju has secrets, the application
databag may still hold the store's keys in plain text, left by an older revision. The secret
store reads them too (``read`` merges them under the secret's values, so every unit sees every
credential at any point of the migration), and the leader moves them (``move_to_secret``, then
``drop_plain``). ``update`` writes what the store holds, plain leftovers included, into the
secret, and a key it removes goes from both places.

Both raise ``StoreUnavailable`` (never an ops error) when the store cannot be read or written.
"""

from collections.abc import Iterable, Mapping

import ops

from adapters.errors import first_line
from domain.peer_data import content_digest, is_store_key, merge_store, plain_credentials

SECRET_LABEL = "pgb-peers-store"
SECRET_ID_KEY = "secret_id"
STORE_DIGEST_KEY = "store_digest"


class StoreUnavailable(Exception):
    """The store cannot be read or written now (a secret gone, or permission lost)."""


def _to_secret_key(key: str) -> str:
    return key.replace("_", "-")


def _from_secret_key(key: str) -> str:
    return key.replace("-", "_")


class DatabagSecretStore:
    """Juju without secrets: the store is the peer application databag."""

    def __init__(self, relation: ops.Relation, app: ops.Application):
        self._databag = relation.data[app]

    def read(self) -> dict[str, str]:
        return {key: value for key, value in self._databag.items() if is_store_key(key)}

    def plain(self) -> dict[str, str]:
        """The store's keys in the application databag: here, the whole store."""
        return self.read()

    def secret_content(self) -> dict[str, str] | None:
        """No secret on a Juju without secrets."""
        return None

    def update(self, changes: Mapping[str, str | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self._databag.pop(key, None)
            elif self._databag.get(key) != value:
                self._databag[key] = value


class JujuSecretStore:
    """Juju with secrets: one application-owned secret whose ID the app databag names.

    One instance serves one hook: it looks the secret up and reads its content once, and
    keeps what it wrote, so the several readers of a hook cost one ``secret-get``.
    """

    def __init__(self, model: ops.Model, relation: ops.Relation, is_leader: bool):
        self._model = model
        self._databag = relation.data[model.app]
        self._is_leader = is_leader
        self._handle: ops.Secret | None = None
        self._content: dict[str, str] | None = None

    def _secret(self) -> ops.Secret | None:
        if self._handle is not None:
            return self._handle
        secret_id = self._databag.get(SECRET_ID_KEY)
        try:
            if secret_id:
                self._handle = self._model.get_secret(id=secret_id)
            else:
                self._handle = self._model.get_secret(label=SECRET_LABEL)
        except ops.SecretNotFoundError:
            if secret_id:
                raise StoreUnavailable(f"secret {secret_id} not found") from None
            return None
        except ops.ModelError as err:
            raise StoreUnavailable(f"cannot get the peer secret: {first_line(err)}") from None
        return self._handle

    def plain(self) -> dict[str, str]:
        """The store's keys still in plain text in the application databag (seed's layout)."""
        return plain_credentials(self._databag)

    def secret_content(self) -> dict[str, str] | None:
        """The secret's content with the contract's key names; None when there is no secret."""
        if self._content is None:
            secret = self._secret()
            if secret is None:
                return None
            try:
                # The owner sees its newest revision with peek; others refresh to track it.
                content = (
                    secret.peek_content() if self._is_leader else secret.get_content(refresh=True)
                )
            except (ops.SecretNotFoundError, ops.ModelError) as err:
                raise StoreUnavailable(f"cannot read the peer secret: {first_line(err)}") from None
            # Only the store's keys: the placeholder of an emptied secret is not one.
            renamed = {_from_secret_key(key): value for key, value in content.items()}
            self._content = {key: value for key, value in renamed.items() if is_store_key(key)}
        return dict(self._content)

    def read(self) -> dict[str, str]:
        """What the store holds: the secret's values, and plain leftovers it lacks."""
        return merge_store(self.plain(), self.secret_content())

    def update(self, changes: Mapping[str, str | None]) -> None:
        current = self.secret_content()
        wanted = merge_store(self.plain(), current)
        for key, value in changes.items():
            if value is None:
                wanted.pop(key, None)
            else:
                wanted[key] = value
        if current is None or wanted != current:
            self._write(wanted)
        # A removed key goes from the plain databag too, or a merged read would bring it back.
        self.drop_plain([key for key, value in changes.items() if value is None])

    def move_to_secret(self, values: Mapping[str, str]) -> None:
        """Write these values into the secret unchanged, keeping what it holds already."""
        current = self.secret_content() or {}
        wanted = {**values, **current}
        if wanted != current:
            self._write(wanted)

    def drop_plain(self, keys: Iterable[str]) -> None:
        """Delete store keys from the application databag (leader only).

        First the databag must name the secret that holds them (a hook may have stopped
        after creating the secret and before recording its ID): followers find it by the ID,
        and the new digest wakes them.
        """
        keys = [key for key in keys if is_store_key(key) and key in self._databag]
        if not keys:
            return
        secret, content = self._secret(), self.secret_content()
        try:
            if secret is not None and content is not None:
                secret_id = _id_of(secret)
                if secret_id and self._databag.get(SECRET_ID_KEY) != secret_id:
                    self._databag[SECRET_ID_KEY] = secret_id
                digest = _content_digest({_to_secret_key(k): v for k, v in content.items()})
                if self._databag.get(STORE_DIGEST_KEY) != digest:
                    self._databag[STORE_DIGEST_KEY] = digest
            for key in keys:
                del self._databag[key]
        except ops.ModelError as err:
            raise StoreUnavailable(f"cannot write the peer databag: {first_line(err)}") from None

    def _write(self, wanted: Mapping[str, str]) -> None:
        secret = self._secret()
        content = {_to_secret_key(key): value for key, value in wanted.items()}
        try:
            if secret is None:
                if not content:
                    return
                secret = self._model.app.add_secret(content, label=SECRET_LABEL)
            elif content:
                secret.set_content(content)
            else:
                # A secret cannot be empty: keep one placeholder key rather than delete it,
                # so followers keep tracking the same secret.
                secret.set_content({"empty": "true"})
            secret_id = _id_of(secret)
            if secret_id and self._databag.get(SECRET_ID_KEY) != secret_id:
                self._databag[SECRET_ID_KEY] = secret_id
            self._databag[STORE_DIGEST_KEY] = _content_digest(content)
            self._handle, self._content = secret, dict(wanted)
        except ops.ModelError as err:
            raise StoreUnavailable(f"cannot write the peer secret: {first_line(err)}") from None


def open_store(
    model: ops.Model, relation: ops.Relation, is_leader: bool
) -> "JujuSecretStore | DatabagSecretStore":
    """The store this model's Juju supports."""
    if model.juju_version.has_secrets:
        return JujuSecretStore(model, relation, is_leader)
    return DatabagSecretStore(relation, model.app)


def _content_digest(content: Mapping[str, str]) -> str:
    return content_digest("\n".join(f"{key}={content[key]}" for key in sorted(content)))


def _id_of(secret: ops.Secret) -> str | None:
    """The secret's ID; one found by its label alone learns it from secret-info-get."""
    return secret.id or secret.get_info().id
