"""charmcraft.yaml carries the contract's identity (../shared/design/contract.md)."""

import pytest

from tests.unit.charm_harness import CHARMCRAFT, ROOT


def test_identity():
    assert CHARMCRAFT["name"] == "pgbouncer-k8s"
    assert CHARMCRAFT["type"] == "charm"
    assert CHARMCRAFT["containers"] == {"pgbouncer": {"resource": "pgbouncer-image"}}
    assert CHARMCRAFT["resources"]["pgbouncer-image"]["type"] == "oci-image"
    assert "charmed-pgbouncer" in CHARMCRAFT["resources"]["pgbouncer-image"]["upstream-source"]
    assert CHARMCRAFT["peers"] == {"pgb-peers": {"interface": "pgb_peers"}}
    backend = CHARMCRAFT["requires"]["backend-database"]
    assert (backend["interface"], backend["limit"]) == ("postgresql_client", 1)
    assert CHARMCRAFT["provides"]["database"]["interface"] == "postgresql_client"
    assert "k8s-api" in CHARMCRAFT["assumes"]


def test_bases_and_platforms():
    assert CHARMCRAFT["base"] in ("ubuntu@22.04", "ubuntu@24.04")
    assert set(CHARMCRAFT["platforms"]) == {"amd64", "arm64"}


@pytest.mark.parametrize(
    ("option", "kind", "default"),
    [
        ("listen_port", "int", 6432),
        ("pool_mode", "string", "session"),
        ("max_db_connections", "int", 100),
    ],
)
def test_config_options(option, kind, default):
    declared = CHARMCRAFT["config"]["options"][option]
    assert (declared["type"], declared["default"]) == (kind, default)
    assert len(declared["description"]) > 80


def test_the_pack_has_what_it_needs():
    part = CHARMCRAFT["parts"]["charm"]
    assert part["plugin"] == "charm"
    for requirement in part["charm-requirements"]:
        assert (ROOT / requirement).is_file()
    assert (ROOT / "src" / "charm.py").is_file()
    # Pinned, and no lock file recording download addresses.
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert "==" in line
            assert "://" not in line
