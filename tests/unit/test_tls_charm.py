"""The certificates relation under ``ops.testing``: one event per test, files read from disk.

Certificates are made by the TLS library's own helpers (``localenv.tls_provider``): the test
plays the provider, signing the request the charm's library put in its unit databag. The
container's folder is a real temporary folder, so the key, certificate and config copies the
charm pushes through Pebble are read back from it.
"""

import dataclasses
import grp
import json
import os
import pathlib
import pwd
import stat

import pytest
from charmlibs.interfaces.tls_certificates import CertificateSigningRequest
from ops import testing

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from adapters.pebble.layer import WORKLOAD_USER
from domain.peer_data import no_acknowledgement_wanted
from domain.pgb_config import parse_pgb_ini
from domain.tls import NO_CERTIFICATE
from localenv.pebble_calls import counting_pebble_calls as pebble_calls
from localenv.tls_provider import CertificateAuthority
from tests.unit.charm_harness import MODEL, PROCESSES, container, context, read_file, write_files
from tests.unit.peer_fixtures import AUTH_A, CFG_A, HOST0, HOST1

CERTS_ID = 901
TLS_SETTINGS = (
    "client_tls_ca_file = /var/lib/postgresql/pgbouncer/client-tls-ca.crt\n"
    "client_tls_cert_file = /var/lib/postgresql/pgbouncer/client-tls.crt\n"
    "client_tls_key_file = /var/lib/postgresql/pgbouncer/client-tls.key\n"
    "client_tls_sslmode = prefer\n"
)
# CFG_A as a leader publishes it with a certificates relation (settings in sorted order).
CFG_TLS = CFG_A.replace("listen_addr = *\n", TLS_SETTINGS + "listen_addr = *\n")


pytestmark = pytest.mark.usefixtures("two_processes")


@pytest.fixture
def signals(mocker):
    import ops

    return mocker.spy(ops.Container, "send_signal")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


def store_secret() -> testing.Secret:
    return testing.Secret(tracked_content={"auth-file": AUTH_A}, owner="app", label=SECRET_LABEL)


def backend() -> testing.Relation:
    return testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data={"endpoints": "postgresql-k8s-primary:5432", "secret-user": "secret:x"},
    )


def follower(
    folder: pathlib.Path, published: str, certificates: testing.Relation | None
) -> testing.State:
    """Unit 0 follows; unit 1 leads and published ``published`` and the auth file."""
    secret = store_secret()
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": published, "leader_hostname": HOST1, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1}},
    )
    relations: list[testing.RelationBase] = [peer, backend()]
    if certificates is not None:
        relations.append(certificates)
    return testing.State(
        leader=False,
        model=MODEL,
        containers={container(folder)},
        relations=relations,
        secrets={secret},
    )


def certificates_relation(**kwargs) -> testing.Relation:
    return testing.Relation(
        "certificates", remote_app_name="self-signed-certificates", id=CERTS_ID, **kwargs
    )


def copy_of(folder: pathlib.Path, index: int = 0) -> str:
    return read_file(folder / f"instance_{index}", "pgbouncer.ini") or ""


def all_plain_texts(state: testing.State) -> str:
    """Every databag value and every application secret of ``state``."""
    texts = []
    for relation in state.relations:
        texts += list(relation.local_app_data.values()) + list(relation.local_unit_data.values())
    for secret in state.secrets:
        if secret.owner == "app":
            texts += list(secret.tracked_content.values())
            texts += list((secret.latest_content or {}).values())
    return "\n".join(texts)


def requested(folder: pathlib.Path) -> tuple[testing.State, str, str]:
    """A follower that has sent its request: the state after certificates-relation-created,
    its CSR and its private key (from the secret its unit owns)."""
    write_files(folder, cfg=CFG_TLS, auth=AUTH_A)
    relation = certificates_relation()
    ctx = context()
    out = ctx.run(ctx.on.relation_created(relation), follower(folder, CFG_TLS, relation))
    csrs = json.loads(out.get_relation(CERTS_ID).local_unit_data["certificate_signing_requests"])
    keys = [
        secret.tracked_content["private-key"]
        for secret in out.secrets
        if secret.owner == "unit" and "private-key" in secret.tracked_content
    ]
    assert len(csrs) == 1
    assert len(keys) == 1
    return out, csrs[0]["certificate_signing_request"], keys[0]


def owner_and_mode(path: pathlib.Path) -> tuple[str, str, int]:
    st = path.stat()
    return (
        pwd.getpwuid(st.st_uid).pw_name,
        grp.getgrgid(st.st_gid).gr_name,
        stat.S_IMODE(st.st_mode),
    )


TLS_FILES = ("client-tls.key", "client-tls.crt", "client-tls-ca.crt")


def answered(state: testing.State, ca: CertificateAuthority, csr: str) -> testing.State:
    """``state`` with the provider's answer to ``csr`` in the certificates relation."""
    relation = dataclasses.replace(
        state.get_relation(CERTS_ID), remote_app_data=ca.provider_data([csr])
    )
    others = [r for r in state.relations if r.id != CERTS_ID]
    return dataclasses.replace(state, relations=frozenset([*others, relation]))


# --- the request -------------------------------------------------------------------------------


def test_created_requests_a_certificate_for_the_unit_names_and_keeps_the_key_to_the_unit(folder):
    out, csr, key = requested(folder)
    names = CertificateSigningRequest.from_string(csr).sans_dns
    assert HOST0 in names
    assert {"localhost", "pgbouncer-k8s", "pgbouncer-k8s.test.svc.cluster.local"} <= names
    assert "PRIVATE KEY" in key
    assert "PRIVATE KEY" not in all_plain_texts(out)
    # No certificate yet: the unit keeps serving without TLS and says so.
    assert out.unit_status == testing.WaitingStatus(NO_CERTIFICATE)
    assert "client_tls" not in copy_of(folder)
    assert read_file(folder, "client-tls.key") is None


# --- the certificate arrives ------------------------------------------------------------------


def test_certificate_available_writes_the_files_and_turns_tls_on_by_a_reload(folder, signals, ca):
    state, csr, key = requested(folder)
    state = answered(state, ca, csr)
    signals.reset_mock()
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(state.get_relation(CERTS_ID)), state)
    assert read_file(folder, "client-tls.key") == key.strip() + "\n"
    assert read_file(folder, "client-tls.crt") == ca.issued[csr].strip() + "\n"
    assert read_file(folder, "client-tls-ca.crt") == ca.pem.strip() + "\n"
    if os.geteuid() == 0:  # the double gives files the owner Pebble would (it needs root)
        for name in TLS_FILES:
            assert owner_and_mode(folder / name) == (WORKLOAD_USER, WORKLOAD_USER, 0o600), name
    for index in range(PROCESSES):
        copy = parse_pgb_ini(copy_of(folder, index))
        assert copy.setting("client_tls_sslmode") == "prefer"
        assert (
            copy.setting("client_tls_key_file") == "/var/lib/postgresql/pgbouncer/client-tls.key"
        )
    # The main file is still exactly the published one.
    assert read_file(folder, "pgbouncer.ini") == CFG_TLS
    assert [call.args[1] for call in signals.call_args_list] == ["SIGHUP"]
    assert out.unit_status.name == "active"
    assert "PRIVATE KEY" not in all_plain_texts(out)


def test_follower_with_its_certificate_validates_and_adopts_a_new_tls_config(folder, signals, ca):
    """Validation's follower rule (a TLS path must name a file this unit has) is given the
    unit's TLS files as facts: a follower whose files are in place takes a new published
    config naming them, and refuses one naming a key file it does not have."""
    state, csr, _key = requested(folder)
    state = answered(state, ca, csr)
    ctx = context()
    state = ctx.run(ctx.on.relation_changed(state.get_relation(CERTS_ID)), state)
    published = CFG_TLS.replace("pool_mode = session", "pool_mode = transaction")
    peer = dataclasses.replace(
        next(r for r in state.relations if r.endpoint == "pgb-peers"),
    )
    app_data = {**peer.local_app_data, "cfg_file": published}
    state = dataclasses.replace(
        state,
        relations=frozenset(
            [
                *(r for r in state.relations if r.id != peer.id),
                dataclasses.replace(peer, local_app_data=app_data),
            ]
        ),
    )
    signals.reset_mock()
    out = context().run(context().on.update_status(), state)
    assert read_file(folder, "pgbouncer.ini") == published
    copy = parse_pgb_ini(copy_of(folder))
    assert copy.setting("pool_mode") == "transaction"
    assert copy.setting("client_tls_sslmode") == "prefer"
    assert [call.args[1] for call in signals.call_args_list] == ["SIGHUP"]
    assert out.unit_status.name == "active"

    elsewhere = published.replace("pgbouncer/client-tls.key", "pgbouncer/other.key")
    peer = next(r for r in out.relations if r.endpoint == "pgb-peers")
    app_data = {**peer.local_app_data, "cfg_file": elsewhere}
    state = dataclasses.replace(
        out,
        relations=frozenset(
            [
                *(r for r in out.relations if r.id != peer.id),
                dataclasses.replace(peer, local_app_data=app_data),
            ]
        ),
    )
    out = context().run(context().on.update_status(), state)
    assert read_file(folder, "pgbouncer.ini") == published
    assert "does not have" in out.unit_status.message


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to the workload user needs root")
def test_a_workload_folder_remade_for_the_workload_user_keeps_the_units_tls_files(folder, ca):
    """The workload folder is found unusable by the workload user (root's, 0700, as an image
    may ship it) when a new config is to be written: Pebble cannot fix an existing folder, so
    the charm makes it again, and puts back the files the unit wrote there: the config, the
    auth file and its TLS files (0600, the workload user's), which the new copies still name."""
    state, csr, key = requested(folder)
    state = answered(state, ca, csr)
    ctx = context()
    state = ctx.run(ctx.on.relation_changed(state.get_relation(CERTS_ID)), state)
    before = {name: read_file(folder, name) for name in TLS_FILES}
    os.chown(folder, 0, 0)
    folder.chmod(0o700)
    published = CFG_TLS.replace("pool_mode = session", "pool_mode = transaction")
    peer = next(r for r in state.relations if r.endpoint == "pgb-peers")
    app_data = {**peer.local_app_data, "cfg_file": published}
    state = dataclasses.replace(
        state,
        relations=frozenset(
            [
                *(r for r in state.relations if r.id != peer.id),
                dataclasses.replace(peer, local_app_data=app_data),
            ]
        ),
    )

    out = context().run(context().on.update_status(), state)

    assert owner_and_mode(folder) == (WORKLOAD_USER, WORKLOAD_USER, 0o700)
    assert read_file(folder, "pgbouncer.ini") == published
    assert read_file(folder, "client-tls.key") == key.strip() + "\n"
    for name in TLS_FILES:
        assert read_file(folder, name) == before[name], name
        assert owner_and_mode(folder / name) == (WORKLOAD_USER, WORKLOAD_USER, 0o600), name
    copy = parse_pgb_ini(copy_of(folder))
    assert copy.setting("pool_mode") == "transaction"
    assert copy.setting("client_tls_key_file") == "/var/lib/postgresql/pgbouncer/client-tls.key"
    assert out.unit_status.name == "active"


# --- a follower whose certificate has not come --------------------------------------------------


def test_follower_without_its_certificate_adopts_the_config_without_naming_missing_files(
    folder, signals
):
    """The leader turned TLS on; this unit's certificate is not there: it runs the new config
    (a new setting applied) without the TLS settings, by a reload, and says why."""
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    published = CFG_TLS.replace("pool_mode = session", "pool_mode = transaction")
    state = follower(folder, published, certificates_relation())
    ctx = context()
    out = ctx.run(ctx.on.update_status(), state)
    assert read_file(folder, "pgbouncer.ini") == published
    for index in range(PROCESSES):
        copy = parse_pgb_ini(copy_of(folder, index))
        assert copy.setting("pool_mode") == "transaction"
        assert copy.setting("client_tls_sslmode") is None
        assert copy.setting("client_tls_key_file") is None
    assert [call.args[1] for call in signals.call_args_list] == ["SIGHUP"]
    assert out.unit_status == testing.WaitingStatus(NO_CERTIFICATE)


# --- the leader ---------------------------------------------------------------------------------


def test_leader_publishes_the_tls_settings_once_the_relation_exists(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = store_secret()
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST0, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0},
    )
    relation = certificates_relation()
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder)},
        relations={peer, relation, backend()},
        secrets={secret},
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_created(relation), state)
    published = out.get_relation(peer.id).local_app_data["cfg_file"]
    assert parse_pgb_ini(published) == parse_pgb_ini(CFG_TLS)
    # Its own certificate is not there yet: its processes run without TLS.
    assert "client_tls" not in copy_of(folder)


# --- removal ------------------------------------------------------------------------------------


def test_broken_removes_the_files_and_returns_to_plain_by_a_reload(folder, signals, ca):
    state, csr, _key = requested(folder)
    state = answered(state, ca, csr)
    ctx = context()
    state = ctx.run(ctx.on.relation_changed(state.get_relation(CERTS_ID)), state)
    assert "client_tls_sslmode" in copy_of(folder)
    signals.reset_mock()
    out = ctx.run(ctx.on.relation_broken(state.get_relation(CERTS_ID)), state)
    for name in ("client-tls.key", "client-tls.crt", "client-tls-ca.crt"):
        assert read_file(folder, name) is None, name
    for index in range(PROCESSES):
        assert "client_tls" not in copy_of(folder, index)
    assert [call.args[1] for call in signals.call_args_list] == ["SIGHUP"]
    assert out.unit_status.name == "active"


# --- what clients are told ---------------------------------------------------------------------


def with_copies(folder: pathlib.Path, text: str) -> None:
    """The per-process copies a unit serving ``text`` with its TLS files in place runs."""
    from domain.pgb_config import per_process_config, render_pgb_ini
    from domain.tls import TlsInPlace, effective_config

    served = effective_config(parse_pgb_ini(text), TlsInPlace(client=True))
    for index in range(PROCESSES):
        write_files(
            folder / f"instance_{index}", cfg=render_pgb_ini(per_process_config(served, index))
        )


def test_clients_asking_for_tls_as_a_secret_get_tls_and_the_ca_in_one(folder, ca):
    """The client asked for ``tls`` and ``tls-ca`` as secrets: they come in the granted
    ``secret-tls`` secret (and as plain fields), the CA being the one this unit's
    certificate chains to."""
    from tests.unit import test_clients_charm as clients

    cfg_tls = clients.CFG_SERVED.replace("listen_addr = *\n", TLS_SETTINGS + "listen_addr = *\n")
    write_files(folder, cfg=cfg_tls, auth=clients.AUTH_LINE)
    with_copies(folder, cfg_tls)
    key, cert = ca.server_pair("unit-0")
    for name, text in (
        ("client-tls.key", key),
        ("client-tls.crt", cert),
        ("client-tls-ca.crt", ca.pem),
    ):
        (folder / name).write_text(text)
    backend_relation, backend_secrets = clients.backend()
    peer, store_secrets = clients.peers(cfg_tls, cfg_tls)
    relation = clients.client(local={"database": "app"})
    state = clients.leader_state(
        folder,
        peer,
        backend_relation,
        relation,
        certificates_relation(),
        secrets=backend_secrets | store_secrets,
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)
    databag = out.get_relation(relation.id).local_app_data
    # Plain too: the CA is public, and a client that did not ask for the secret reads them.
    assert databag["tls"] == "True"
    assert databag["tls-ca"] == ca.pem.strip() + "\n"
    [tls_secret] = [s for s in out.secrets if s.id == databag["secret-tls"]]
    assert tls_secret.latest_content == {"tls": "True", "tls-ca": ca.pem.strip() + "\n"}
    assert tls_secret.remote_grants == {relation.id: {"client-app"}}


# --- the backend's CA ----------------------------------------------------------------------------

BACKEND_TLS = (
    "server_tls_ca_file = /var/lib/postgresql/pgbouncer/backend-ca.crt\n"
    "server_tls_sslmode = verify-ca\n"
)
CFG_VERIFY = CFG_A.replace("pool_mode = session\n", "pool_mode = session\n" + BACKEND_TLS)


def test_a_new_backend_ca_is_written_and_applied_by_a_reload(folder, signals):
    """The backend renewed its CA (a new revision of its TLS secret): every unit writes it
    and reloads; the copies keep verifying."""
    from domain.pgb_config import per_process_config, render_pgb_ini

    old_ca, new_ca = CertificateAuthority("old").pem, CertificateAuthority("new").pem
    write_files(folder, cfg=CFG_VERIFY, auth=AUTH_A)
    (folder / "backend-ca.crt").write_text(old_ca.strip() + "\n")
    for index in range(PROCESSES):
        copy = render_pgb_ini(per_process_config(parse_pgb_ini(CFG_VERIFY), index))
        write_files(folder / f"instance_{index}", cfg=copy)
    tls_secret = testing.Secret(
        tracked_content={"tls": "True", "tls-ca": old_ca},
        latest_content={"tls": "True", "tls-ca": new_ca},
    )
    backend_relation = testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data={
            "endpoints": "postgresql-k8s-primary:5432",
            "secret-user": "secret:x",
            "secret-tls": tls_secret.id,
        },
    )
    state = follower(folder, CFG_VERIFY, None)
    state = dataclasses.replace(
        state,
        relations=frozenset(
            [r for r in state.relations if r.endpoint != "backend-database"] + [backend_relation]
        ),
        secrets=frozenset([*state.secrets, tls_secret]),
    )
    ctx = context()
    out = ctx.run(ctx.on.secret_changed(tls_secret), state)
    assert read_file(folder, "backend-ca.crt") == new_ca.strip() + "\n"
    assert "server_tls_sslmode = verify-ca" in copy_of(folder)
    assert [call.args[1] for call in signals.call_args_list] == ["SIGHUP"]
    assert out.unit_status.name == "active"


def test_a_quiet_follower_serving_tls_asks_pebble_nothing(folder, ca):
    """Once its copies serve its certificate, the unit remembers so: a later peer hook with
    nothing new reads no copy back (the hook-economy rule holds with TLS on)."""
    state, csr, _key = requested(folder)
    state = answered(state, ca, csr)
    ctx = context()
    state = ctx.run(ctx.on.relation_changed(state.get_relation(CERTS_ID)), state)
    assert parse_pgb_ini(copy_of(folder)).setting("client_tls_sslmode") == "prefer"
    peer = next(r for r in state.relations if r.endpoint == "pgb-peers")
    # No client waits; the unit learned its schema and pgbouncer version in earlier hooks.
    peer = dataclasses.replace(
        peer,
        local_app_data={**peer.local_app_data, "ack_wanted": no_acknowledgement_wanted(CFG_TLS)},
        local_unit_data={"hostname": HOST0, "schema_version": "2", "pgbouncer_version": "1.18.0"},
    )
    state = dataclasses.replace(
        state, relations=frozenset([*(r for r in state.relations if r.id != peer.id), peer])
    )

    ctx = context()
    with pebble_calls() as calls:
        out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert calls == {}
    assert out.unit_status.name == "active"
    assert parse_pgb_ini(copy_of(folder)).setting("client_tls_sslmode") == "prefer"
