"""The cattrs converters at the Juju boundary: literal string maps in, domain values out."""

import pytest

from adapters.juju.converters import (
    ack_fields,
    read_app_data,
    read_charm_config,
    read_store,
    read_unit_data,
)
from domain.charm_config import CharmConfig
from domain.errors import InvalidCharmConfig, InvalidPeerData
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    UnitPeerData,
    is_store_key,
    password_relation_id,
)

HOST = "pgbouncer-k8s-0.pgbouncer-k8s-endpoints.test.svc.cluster.local"


def test_app_databag_ignores_unknown_keys_and_treats_empty_as_absent():
    raw = {"cfg_file": "", "leader_hostname": HOST, "from_a_newer_revision": "x"}
    assert read_app_data(raw) == AppPeerData(cfg_file=None, leader_hostname=HOST)


def test_app_databag_with_a_bad_hostname_names_the_key():
    with pytest.raises(InvalidPeerData, match=r"^application databag: leader_hostname: 'a b'"):
        read_app_data({"leader_hostname": "a b"})


def test_unit_databag_round_trips_the_acknowledgement():
    ack = Acknowledgement(cfg_digest="0123456789abcdef", auth_digest="none", ok=False)
    fields = ack_fields(ack)
    assert fields == {
        "applied_cfg_digest": "0123456789abcdef",
        "applied_auth_digest": "none",
        "apply_ok": "false",
    }
    assert read_unit_data({"hostname": HOST, **fields}) == UnitPeerData(hostname=HOST, ack=ack)


def test_unit_databag_of_an_older_revision_has_no_acknowledgement():
    assert read_unit_data({"hostname": HOST, "private-address": "10.0.0.1"}) == UnitPeerData(
        hostname=HOST
    )


def test_unit_databag_with_a_bad_flag_is_refused_with_the_unit_name():
    raw = {"applied_cfg_digest": "none", "applied_auth_digest": "none", "apply_ok": "maybe"}
    with pytest.raises(InvalidPeerData, match=r"^databag of pgbouncer-k8s/3: .*'true' or 'false'"):
        read_unit_data(raw, "pgbouncer-k8s/3")


def test_store_reads_auth_file_and_numbered_passwords_only():
    store = read_store(
        {"auth_file": '"u" "p"\n', "relation_id_4": "pw4", "relation_id_x": "no", "other": "1"}
    )
    assert store.auth_file == '"u" "p"\n'
    assert store.passwords == ((4, "pw4"),)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"listen_port": 0},
            "invalid config option listen_port: 0 is not a port from 1024 to 65535",
        ),
        (
            {"listen_port": "6432"},
            "invalid config option listen_port: expected an integer, got '6432'",
        ),
        (
            {"listen_port": True},
            "invalid config option listen_port: expected an integer, got True",
        ),
        (
            {"pool_mode": "sometimes"},
            "invalid config option pool_mode: 'sometimes' is not one of session, transaction, "
            "statement",
        ),
        (
            {"max_db_connections": -1},
            "invalid config option max_db_connections: -1 is not an integer >= 0 "
            "(0 means unlimited)",
        ),
    ],
)
def test_invalid_charm_config_names_the_option(raw, message):
    with pytest.raises(InvalidCharmConfig) as caught:
        read_charm_config(raw)
    assert str(caught.value) == message


def test_charm_config_defaults_and_values():
    assert read_charm_config({}) == CharmConfig()
    assert read_charm_config(
        {"listen_port": 7000, "pool_mode": "transaction", "max_db_connections": 0}
    ) == CharmConfig(listen_port=7000, pool_mode="transaction", max_db_connections=0)


@pytest.mark.parametrize(
    ("key", "relation_id", "in_store"),
    [
        ("auth_file", None, True),
        ("relation_id_4", 4, True),
        ("relation_id_12", 12, True),
        ("relation_id_", None, False),
        ("relation_id_x", None, False),
        ("relation_id_-1", None, False),
        ("relation_id_\u0664", None, False),  # a non-ASCII digit
        ("cfg_file", None, False),
        ("secret_id", None, False),
    ],
)
def test_the_store_keys_are_the_contracts(key, relation_id, in_store):
    assert password_relation_id(key) == relation_id
    assert is_store_key(key) is in_store
