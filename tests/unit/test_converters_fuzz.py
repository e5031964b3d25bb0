"""Hostile input at the Juju boundary: databags, secret contents and config values.

Whatever strings Juju hands over, the converters return a domain value or raise the
domain's own error (``InvalidPeerData``, ``InvalidCharmConfig``), never anything else; and a
charm config that converts is one the domain accepts.
"""

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from adapters.juju.converters import (
    read_app_data,
    read_charm_config,
    read_store,
    read_unit_data,
)
from domain.charm_config import CharmConfig
from domain.errors import InvalidCharmConfig, InvalidPeerData
from domain.peer_data import (
    APPLIED_AUTH_KEY,
    APPLIED_CFG_KEY,
    APPLY_OK_KEY,
    AUTH_FILE_KEY,
    CFG_FILE_KEY,
    HOSTNAME_KEY,
    LEADER_HOSTNAME_KEY,
)

KNOWN_KEYS = [
    CFG_FILE_KEY,
    LEADER_HOSTNAME_KEY,
    AUTH_FILE_KEY,
    HOSTNAME_KEY,
    APPLIED_CFG_KEY,
    APPLIED_AUTH_KEY,
    APPLY_OK_KEY,
    "relation_id_4",
    "relation_id_",
    "relation_id_-1",
]
hostile_text = st.one_of(
    st.text(),
    st.sampled_from(["", "\x00", "true", "false", "none", "0123456789abcdef", "a" * 100_000]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
)
databags = st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=20), hostile_text)
config_values = st.one_of(
    st.integers(), st.booleans(), st.text(), st.floats(allow_nan=True), st.none()
)
configs = st.dictionaries(
    st.sampled_from(["listen_port", "pool_mode", "max_db_connections", "other"]), config_values
)


def refusal(call: Callable[[], object], error: type[Exception]) -> str | None:
    """None when ``call`` succeeds, the message when it raises ``error``; anything else
    escapes and fails the test."""
    try:
        call()
    except error as err:
        return str(err)
    return None


@given(databags)
def test_app_databag_reads_or_says_why(raw: dict[str, str]):
    message = refusal(lambda: read_app_data(raw), InvalidPeerData)
    assert message is None or message.startswith("application databag: ")


@given(databags)
def test_unit_databag_reads_or_says_why(raw: dict[str, str]):
    message = refusal(lambda: read_unit_data(raw, "pgbouncer-k8s/1"), InvalidPeerData)
    assert message is None or message.startswith("databag of pgbouncer-k8s/1: ")


@given(databags)
def test_store_keeps_only_its_keys(raw: dict[str, str]):
    store = read_store(raw)
    assert store.auth_file == (raw.get(AUTH_FILE_KEY) or None)
    assert all(raw[f"relation_id_{n}"] == password for n, password in store.passwords)


@given(configs)
def test_charm_config_converts_or_names_the_option(raw: dict[str, object]):
    message = refusal(lambda: read_charm_config(raw), InvalidCharmConfig)
    assert message is None or message.startswith("invalid config option ")
    if message is None:
        assert isinstance(read_charm_config(raw), CharmConfig)
