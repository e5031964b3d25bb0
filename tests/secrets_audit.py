"""The secrets audit: no credential in a plain databag, a status or a log line, suite-wide.

Every ``ops.testing`` run of the whole session passes through ``record_run``, which keeps
(1) the credentials the run could know: the values of every Juju secret in its input and
output states, the secrets of every auth file line found in them, the client passwords
(``relation_id_<N>``), the exporters' stats password and backend passwords wherever they
appear, and (2) what the charm produced in the clear: its own databags (application and
unit, every relation), its unit and application statuses, every log line it emitted, and
the command line and environment of every service in its containers' Pebble plans (what
``pebble plan`` and a process list show). ``leaks()`` matches the two.

On a Juju without secrets the store *is* the application databag (the contract), so the
store's keys there are credentials by design and excluded; everything else in that databag
is still checked. Likewise a client that sent no ``requested-secrets`` is answered with plain
``username``/``password``/``uris`` (as the interface's provider answers it): those three keys
of its relation are excluded, and nothing else. A databag value a run carried over unchanged
from its input state is not counted as produced by that run: it was checked when the charm
wrote it, and a test may start from data a charm did not write (the seed's plain-text layout,
which the refresh tests load to watch the charm move it out). Values shorter than
``MIN_SECRET_LEN`` are not searched for: a short test password such as ``pw`` would match
ordinary words.

Private keys (TLS): every PEM private key found in a run's secrets (the TLS library keeps a
unit's key in a secret that unit owns) is learnt line by line, since a log or a databag could
hold it re-wrapped or in part. Beyond the databags, statuses and logs, a private key must not
be in any secret the application owns either (the peer secret every unit reads, the secrets
handed to clients): only in the one its own unit owns.
"""

import re
from collections.abc import Iterable

import attrs
from ops import testing

MIN_SECRET_LEN = 8
_STORE_KEY = re.compile(r"auth_file|stats_password|relation_id_\d+")
_PLAIN_BY_INTERFACE = {"pgb-peers": _STORE_KEY, "database": re.compile(r"username|password|uris")}
_PASSWORD_KEYS = ("password", "auth-file", "auth_file", "stats-password", "stats_password")
_AUTH_LINE = re.compile(r'^"(?:[^"]|"")*"\s+"((?:[^"]|"")*)"', re.MULTILINE)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z ]*PRIVATE KEY)-----\n(.+?)\n-----END \1-----", re.DOTALL
)
_KEY_LINE_LEN = 32


def _asked_for_plain(relation: object) -> bool:
    """A client relation whose client sent no ``requested-secrets``: its library predates
    secrets, and the interface answers it with plain fields. Every other client relation is
    audited as usual."""
    remote = getattr(relation, "remote_app_data", None)
    return (
        getattr(relation, "endpoint", None) == "database"
        and remote is not None
        and "database" in remote
        and "requested-secrets" not in remote
    )


@attrs.define
class Audit:
    credentials: set[str] = attrs.Factory(set)
    # Lines of PEM private keys: searched for in everything produced and in app secrets.
    key_lines: set[str] = attrs.Factory(set)
    private_keys_seen: int = 0
    produced: list[tuple[str, str]] = attrs.Factory(list)
    # What secrets the application owns hold: shared with every unit, or with clients.
    shared: list[tuple[str, str]] = attrs.Factory(list)
    runs: int = 0

    def _learn(self, value: str) -> None:
        """Learn a password, or each secret of an auth file."""
        in_auth_file = [match.replace('""', '"') for match in _AUTH_LINE.findall(value)]
        for secret in in_auth_file or [value]:
            if len(secret) >= MIN_SECRET_LEN and "\n" not in secret:
                self.credentials.add(secret)

    def learn_keys(self, value: str) -> None:
        for match in _PRIVATE_KEY.finditer(value):
            self.private_keys_seen += 1
            for line in match.group(2).split("\n"):
                if len(line) >= _KEY_LINE_LEN:
                    self.key_lines.add(line)

    def learn_state(self, state: testing.State, juju_has_secrets: bool) -> None:
        for secret in state.secrets:
            for content in (secret.tracked_content, secret.latest_content or {}):
                for key, value in content.items():
                    self.learn_keys(value)
                    if key in _PASSWORD_KEYS or key.startswith("relation-id-"):
                        self._learn(value)
        for relation in state.relations:
            bags = [relation.local_app_data, relation.local_unit_data]
            bags += [getattr(relation, "remote_app_data", {})]
            bags += list(getattr(relation, "peers_data", {}).values())
            for bag in bags:
                for key, value in bag.items():
                    if key in ("password", "auth_file") or _STORE_KEY.fullmatch(key):
                        self._learn(value)

    def record_run(
        self, before: testing.State, after: testing.State, logs: Iterable[str], has_secrets: bool
    ) -> None:
        self.runs += 1
        self.learn_state(before, has_secrets)
        self.learn_state(after, has_secrets)
        given = {
            (relation.id, owner): bag
            for relation in before.relations
            for owner, bag in (
                ("app", relation.local_app_data),
                ("unit", relation.local_unit_data),
            )
        }
        for relation in after.relations:
            for owner, bag in (
                ("app", relation.local_app_data),
                ("unit", relation.local_unit_data),
            ):
                for key, value in bag.items():
                    if given.get((relation.id, owner), {}).get(key) == value:
                        continue  # carried over from the input, not written by this run
                    exempt = _PLAIN_BY_INTERFACE.get(relation.endpoint)
                    plain = not has_secrets or _asked_for_plain(relation)
                    if owner == "app" and exempt and exempt.fullmatch(key) and plain:
                        continue  # credentials in plain fields by design
                    self.produced.append((f"{relation.endpoint} {owner} databag[{key}]", value))
        for secret in after.secrets:
            if secret.owner == "app":
                content = {**secret.tracked_content, **(secret.latest_content or {})}
                for key, value in content.items():
                    self.shared.append((f"application secret {secret.label}[{key}]", value))
        for container in after.containers:
            for name, service in container.plan.services.items():
                where = f"pebble plan {container.name} {name}"
                self.produced.append((f"{where} command", service.command))
                for key, value in service.environment.items():
                    self.produced.append((f"{where} environment[{key}]", value))
        for kind, status in (("unit status", after.unit_status), ("app status", after.app_status)):
            self.produced.append((kind, status.message))
        for line in logs:
            self.produced.append(("log", line))

    def leaks(self) -> list[str]:
        found = []
        for where, text in self.produced:
            for secret in self.credentials:
                if secret in text:
                    found.append(f"{where} contains a credential ({len(secret)} chars)")
        for where, text in [*self.produced, *self.shared]:
            if any(line in text for line in self.key_lines):
                found.append(f"{where} contains part of a private key")
        return sorted(set(found))


AUDIT = Audit()


def install() -> None:
    """Wrap ``ops.testing.Context.run`` so every run of the session is audited."""
    original = testing.Context.run
    if getattr(original, "_audited", False):
        return

    def run(self, event, state):  # type: ignore[no-untyped-def]
        out = original(self, event, state)
        version = str(getattr(self, "juju_version", "3.6.0"))
        has_secrets = int(version.split(".")[0]) >= 3
        AUDIT.record_run(state, out, (line.message for line in self.juju_log), has_secrets)
        return out

    run._audited = True  # type: ignore[attr-defined]
    testing.Context.run = run  # type: ignore[method-assign]
