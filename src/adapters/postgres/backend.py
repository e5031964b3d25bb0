"""The backend database behind the domain's effects: one object per hook, for the applier.

``PostgresBackend`` turns a ``BackendAccess`` (the primary and the superuser the relation
delivered) into a libpq connection string and calls ``auth_setup`` and ``clients``. Those
modules load psycopg, which costs more to import than the rest of the charm together, so
they are imported here only when an effect reaches the backend: most hooks never do.
Every failure is ``BackendUnavailable`` with a one-line message that holds no secret.
"""

from collections.abc import Iterable

from domain.backend import BackendAccess


class PostgresBackend:
    def __init__(self, model_uuid: str, app_name: str):
        self._model_uuid = model_uuid
        self._app_name = app_name

    @staticmethod
    def _dsn(access: BackendAccess) -> str:
        from adapters.postgres.auth_setup import make_dsn

        user = access.credentials
        return make_dsn(access.primary.address, access.primary.port, user.username, user.password)

    def _mark(self, relation_id: int) -> str:
        from adapters.postgres.clients import role_mark

        return role_mark(self._model_uuid, self._app_name, relation_id)

    def install_auth(
        self, access: BackendAccess, auth_user: str, password: str, databases: Iterable[str]
    ) -> None:
        from adapters.postgres.auth_setup import install_auth

        install_auth(self._dsn(access), auth_user, password, databases)

    def remove_auth(self, access: BackendAccess, auth_user: str, databases: Iterable[str]) -> None:
        from adapters.postgres.auth_setup import remove_auth

        remove_auth(self._dsn(access), auth_user, databases)

    def create_client(
        self,
        access: BackendAccess,
        relation_id: int,
        user: str,
        password: str,
        database: str,
        extra_roles: Iterable[str],
        app_name: str,
    ) -> None:
        """Raises ``ClientRefused`` when the database or a role is another's."""
        from adapters.postgres.clients import create_client
        from domain.clients import ClientApp

        create_client(
            self._dsn(access),
            user,
            password,
            database,
            extra_roles,
            self._mark(relation_id),
            ClientApp(self._model_uuid, app_name),
        )

    def restrict_client(
        self, access: BackendAccess, relation_id: int, user: str, database: str
    ) -> None:
        from adapters.postgres.clients import restrict_client

        restrict_client(self._dsn(access), user, self._mark(relation_id), database)

    def drop_client(self, access: BackendAccess, relation_id: int, user: str) -> None:
        from adapters.postgres.clients import drop_client

        drop_client(self._dsn(access), user, self._mark(relation_id))
