"""domain.tls and its place in PeerSyncService: literal inputs, exact results, table-driven."""

import attrs
import pytest

from domain.effects import (
    Reload,
    RememberApplied,
    RememberTlsServed,
    RemoveBackendCa,
    RemoveClientTls,
    Report,
    WriteBackendCa,
    WriteCfg,
    WriteClientTls,
)
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    no_acknowledgement_wanted,
)
from domain.peer_sync import PeerSyncService, PeerView, WorkloadFiles, parse_or_none
from domain.pgb_config import parse_pgb_ini
from domain.status import Severity, StatusReason
from domain.tls import (
    NO_BACKEND_CA,
    NO_CERTIFICATE,
    TLS_NOT_PUBLISHED,
    BackendCaState,
    ClientTlsFiles,
    ClientTlsState,
    InvalidTlsMaterial,
    TlsFilesPlan,
    TlsInPlace,
    TlsIntent,
    TlsView,
    apply_tls_intent,
    effective_config,
    plan_tls_files,
)
from tests.unit.peer_fixtures import AUTH_A, CFG_A, HOST0, HOST1

KEY = "-----BEGIN PRIVATE KEY-----\nS0VZLW9uZQ==\n-----END PRIVATE KEY-----\n"
KEY2 = "-----BEGIN PRIVATE KEY-----\nS0VZLXR3bw==\n-----END PRIVATE KEY-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nQ0VSVC1vbmU=\n-----END CERTIFICATE-----\n"
CERT2 = "-----BEGIN CERTIFICATE-----\nQ0VSVC10d28=\n-----END CERTIFICATE-----\n"
CA = "-----BEGIN CERTIFICATE-----\nQ0EtY2VydA==\n-----END CERTIFICATE-----\n"
FILES = ClientTlsFiles(key=KEY, cert=CERT, ca=CA)
ROTATED = ClientTlsFiles(key=KEY2, cert=CERT2, ca=CA)
IN = TlsInPlace(client=True)
NONE = TlsInPlace()

CLIENT_TLS = (
    "client_tls_ca_file = /var/lib/postgresql/pgbouncer/client-tls-ca.crt\n"
    "client_tls_cert_file = /var/lib/postgresql/pgbouncer/client-tls.crt\n"
    "client_tls_key_file = /var/lib/postgresql/pgbouncer/client-tls.key\n"
    "client_tls_sslmode = {mode}\n"
)
BACKEND_TLS = (
    "server_tls_ca_file = /var/lib/postgresql/pgbouncer/backend-ca.crt\n"
    "server_tls_sslmode = verify-ca\n"
)
CFG_TLS = CFG_A.replace(
    "listen_addr = *\n", CLIENT_TLS.format(mode="prefer") + "listen_addr = *\n"
)
CFG_REQUIRE = CFG_A.replace(
    "listen_addr = *\n", CLIENT_TLS.format(mode="require") + "listen_addr = *\n"
)
CFG_VERIFY = CFG_A.replace("pool_mode = session\n", "pool_mode = session\n" + BACKEND_TLS)
CFG_PREFER = CFG_A.replace(
    "pool_mode = session\n", "pool_mode = session\nserver_tls_sslmode = prefer\n"
)
CFG_BOTH = CFG_TLS.replace("pool_mode = session\n", "pool_mode = session\n" + BACKEND_TLS)


def cfg(text: str):
    return parse_pgb_ini(text)


# --- material ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "cert", "reason"),
    [
        ("not pem", CERT, "key: not PEM at character 0"),
        (CERT, CERT, "key: a CERTIFICATE block where key belongs"),
        (KEY + KEY, CERT, "key: expected exactly one private key"),
        (KEY, KEY, "cert: a PRIVATE KEY block where cert belongs"),
        (KEY, "", "cert: not PEM at character 0"),
    ],
)
def test_tls_files_refuse_what_is_not_pem_without_quoting_it(key, cert, reason):
    with pytest.raises(InvalidTlsMaterial) as err:
        ClientTlsFiles(key=key, cert=cert, ca=CA)
    assert str(err.value) == reason


def test_tls_files_hide_the_key_and_end_with_one_newline():
    files = ClientTlsFiles(key=KEY.strip(), cert="\n" + CERT + "\n\n", ca=CA)
    assert files.key == KEY
    assert files.cert == CERT
    assert "S0VZ" not in repr(files)


# --- what the leader publishes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "intent", "after"),
    [
        (CFG_A, TlsIntent(client=True), CFG_TLS),
        (CFG_A, TlsIntent(client=True, require=True), CFG_REQUIRE),
        (CFG_TLS, TlsIntent(client=True, require=True), CFG_REQUIRE),
        (CFG_TLS, TlsIntent(client=False), CFG_A),
        (CFG_A, TlsIntent(backend_ca=True), CFG_VERIFY),
        (CFG_VERIFY, TlsIntent(backend_ca=False), CFG_PREFER),
        # A config that never verified keeps its backend mode; an unknown CA changes nothing.
        (CFG_A, TlsIntent(backend_ca=False), CFG_A),
        (CFG_VERIFY, TlsIntent(backend_ca=None), CFG_VERIFY),
        (CFG_TLS, TlsIntent(client=True, backend_ca=True), CFG_BOTH),
    ],
)
def test_apply_tls_intent(before, intent, after):
    assert apply_tls_intent(cfg(before), intent) == cfg(after)


# --- what a unit runs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("published", "in_place", "runs"),
    [
        (CFG_TLS, TlsInPlace(client=True), CFG_TLS),
        (CFG_TLS, TlsInPlace(), CFG_A),
        (CFG_VERIFY, TlsInPlace(backend_ca=True), CFG_VERIFY),
        (CFG_VERIFY, TlsInPlace(client=True), CFG_PREFER),
        (CFG_BOTH, TlsInPlace(backend_ca=True), CFG_VERIFY),
        (CFG_A, TlsInPlace(client=True, backend_ca=True), CFG_A),
    ],
)
def test_effective_config_keeps_tls_only_where_the_files_are(published, in_place, runs):
    assert effective_config(cfg(published), in_place) == cfg(runs)


def test_effective_config_names_only_the_charms_own_tls_files():
    foreign = CFG_BOTH.replace("pgbouncer/client-tls.key", "../../../etc/shadow").replace(
        "pgbouncer/backend-ca.crt", "../../../etc/ssl/private/other.pem"
    )
    assert effective_config(cfg(foreign), TlsInPlace(True, True)) == cfg(CFG_BOTH)


def test_effective_config_moves_the_tls_paths_into_a_local_folder():
    local = effective_config(cfg(CFG_BOTH), TlsInPlace(True, True), "/tmp/unit-1")
    assert local.setting("client_tls_key_file") == "/tmp/unit-1/client-tls.key"
    assert local.setting("server_tls_ca_file") == "/tmp/unit-1/backend-ca.crt"


# --- which files a unit writes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "plan"),
    [
        # Nothing read this hook: the files are what the copies serve.
        (TlsView(served=TlsInPlace(client=True)), TlsFilesPlan(in_place=TlsInPlace(client=True))),
        # The certificate came.
        (
            TlsView(relation=True, client=ClientTlsState(wanted=FILES)),
            TlsFilesPlan(write_client=FILES, in_place=TlsInPlace(client=True)),
        ),
        # The same again: nothing to write.
        (
            TlsView(relation=True, client=ClientTlsState(wanted=FILES, current=FILES)),
            TlsFilesPlan(in_place=TlsInPlace(client=True)),
        ),
        # Renewed: written, and marked rotated.
        (
            TlsView(relation=True, client=ClientTlsState(wanted=ROTATED, current=FILES)),
            TlsFilesPlan(
                write_client=ROTATED,
                in_place=TlsInPlace(client=True),
                rotated=TlsInPlace(client=True),
            ),
        ),
        # A renewal under way (the relation gives no certificate yet): keep the one in place.
        (
            TlsView(relation=True, served=IN, client=ClientTlsState(None, FILES)),
            TlsFilesPlan(in_place=TlsInPlace(client=True)),
        ),
        # The relation went.
        (
            TlsView(client=ClientTlsState(current=FILES), served=TlsInPlace(client=True)),
            TlsFilesPlan(remove_client=True),
        ),
        # The backend's CA came, and went.
        (
            TlsView(backend=BackendCaState(wanted=CA)),
            TlsFilesPlan(write_backend_ca=CA, in_place=TlsInPlace(backend_ca=True)),
        ),
        (
            TlsView(backend=BackendCaState(current=CA), served=TlsInPlace(backend_ca=True)),
            TlsFilesPlan(remove_backend_ca=True),
        ),
    ],
)
def test_plan_tls_files(view, plan):
    assert plan_tls_files(view) == plan


# --- in the plan of a hook ---------------------------------------------------------------------


def follower_view(
    cfg_on_disk: str, published: str, tls: TlsView, ack_cfg: str | None = None
) -> PeerView:
    # It remembers running what is on disk; the leader waits for no acknowledgement.
    applied = Acknowledgement.of(ack_cfg or cfg_on_disk, AUTH_A, True)
    return PeerView(
        is_leader=False,
        hostname=HOST0,
        app=AppPeerData(
            cfg_file=published,
            leader_hostname=HOST1,
            ack_wanted=no_acknowledgement_wanted(published),
        ),
        store=StoreContents(auth_file=AUTH_A),
        own=UnitPeerData(hostname=HOST0),
        workload=WorkloadFiles(cfg=cfg_on_disk, auth=AUTH_A),
        peer_hostnames=(HOST1,),
        # It remembers what its copies serve as they are.
        tls=attrs.evolve(tls, served_remembered=tls.served),
        applied=applied,
    )


def waiting(message: str) -> Report:
    return Report(StatusReason(Severity.WAITING, message))


@pytest.mark.parametrize(
    ("view", "effects"),
    [
        # The leader turned TLS on; this unit's certificate is not there: the new config, run
        # without TLS, and the reason.
        (
            follower_view(CFG_A, CFG_TLS, TlsView(relation=True, client=ClientTlsState())),
            [
                WriteCfg(CFG_TLS, NONE),
                Reload(),
                RememberApplied(Acknowledgement.of(CFG_TLS, AUTH_A, True)),
                waiting(NO_CERTIFICATE),
            ],
        ),
        # The certificate arrives later: files first, then the copies, then one reload.
        (
            follower_view(CFG_TLS, CFG_TLS, TlsView(relation=True, client=ClientTlsState(FILES))),
            [WriteClientTls(FILES), WriteCfg(CFG_TLS, IN), Reload(), RememberTlsServed(IN)],
        ),
        # Both in one hook.
        (
            follower_view(CFG_A, CFG_TLS, TlsView(relation=True, client=ClientTlsState(FILES))),
            [
                WriteClientTls(FILES),
                WriteCfg(CFG_TLS, IN),
                Reload(),
                RememberTlsServed(IN),
                RememberApplied(Acknowledgement.of(CFG_TLS, AUTH_A, True)),
            ],
        ),
        # Renewal: new files, a reload, the copies as they are.
        (
            follower_view(
                CFG_TLS,
                CFG_TLS,
                TlsView(relation=True, served=IN, client=ClientTlsState(ROTATED, FILES)),
            ),
            [WriteClientTls(ROTATED), Reload()],
        ),
        # Serving already, nothing new: nothing at all.
        (
            follower_view(
                CFG_TLS,
                CFG_TLS,
                TlsView(relation=True, served=IN, client=ClientTlsState(FILES, FILES)),
            ),
            [],
        ),
        # Its certificate is in place, the leader has not published TLS yet.
        (
            follower_view(
                CFG_A, CFG_A, TlsView(relation=True, client=ClientTlsState(FILES, FILES))
            ),
            [waiting(TLS_NOT_PUBLISHED)],
        ),
        # The relation went: copies without TLS before the files go, then the reload.
        (
            follower_view(
                CFG_TLS, CFG_TLS, TlsView(served=IN, client=ClientTlsState(None, FILES))
            ),
            [WriteCfg(CFG_TLS, NONE), RemoveClientTls(), Reload(), RememberTlsServed(NONE)],
        ),
        # The backend publishes a CA: written, and the verify-ca config run with it.
        (
            follower_view(CFG_A, CFG_VERIFY, TlsView(backend=BackendCaState(wanted=CA))),
            [
                WriteBackendCa(CA),
                WriteCfg(CFG_VERIFY, TlsInPlace(backend_ca=True)),
                Reload(),
                RememberTlsServed(TlsInPlace(backend_ca=True)),
                RememberApplied(Acknowledgement.of(CFG_VERIFY, AUTH_A, True)),
            ],
        ),
        # The published config verifies, but this unit could not read the CA.
        (
            follower_view(CFG_A, CFG_VERIFY, TlsView()),
            [
                WriteCfg(CFG_VERIFY, NONE),
                Reload(),
                RememberApplied(Acknowledgement.of(CFG_VERIFY, AUTH_A, True)),
                waiting(NO_BACKEND_CA),
            ],
        ),
        # The backend's CA went (the leader published prefer): copies first, then removal.
        (
            follower_view(
                CFG_VERIFY,
                CFG_PREFER,
                TlsView(served=TlsInPlace(backend_ca=True), backend=BackendCaState(None, CA)),
            ),
            [
                WriteCfg(CFG_PREFER, NONE),
                RemoveBackendCa(),
                Reload(),
                RememberTlsServed(NONE),
                RememberApplied(Acknowledgement.of(CFG_PREFER, AUTH_A, True)),
            ],
        ),
    ],
)
def test_follower_tls_effects(view, effects):
    assert PeerSyncService().on_tls_changed(view) == effects


def test_leader_publishes_tls_settings_and_runs_them_only_with_its_files():
    view = PeerView(
        is_leader=True,
        hostname=HOST0,
        app=AppPeerData(
            cfg_file=CFG_A, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_A)
        ),
        store=StoreContents(auth_file=AUTH_A),
        own=UnitPeerData(hostname=HOST0),
        workload=WorkloadFiles(cfg=CFG_A, auth=AUTH_A),
        backend_credentials=True,
        tls=TlsView(relation=True, client=ClientTlsState()),
        charm=None,
        applied=Acknowledgement.of(CFG_A, AUTH_A, True),
    )
    effects = PeerSyncService().on_tls_changed(view)
    rendered = next(e.content for e in effects if isinstance(e, WriteCfg))
    assert cfg(rendered) == cfg(CFG_TLS)
    assert [type(e).__name__ for e in effects] == [
        "WriteCfg",
        "Reload",
        "PublishCfg",
        "RequestAcknowledgements",
        "RememberApplied",
        "Report",
    ]
    assert effects[0] == WriteCfg(rendered, NONE)
    assert effects[-1] == waiting(NO_CERTIFICATE)


@pytest.mark.parametrize(
    ("remembered", "whole_parses", "expected"),
    [
        # Its own file, unchanged: the TLS decision reads the [pgbouncer] settings alone.
        (CFG_TLS, 0, []),
        # A file it does not remember writing is parsed whole and signalled (control).
        (CFG_A, 1, [Reload(), RememberApplied(Acknowledgement.of(CFG_TLS, AUTH_A, True))]),
    ],
)
def test_an_unchanged_file_of_its_own_is_not_parsed_whole_for_tls(
    monkeypatch, remembered, whole_parses, expected
):
    import domain.peer_sync as peer_sync

    parsed: list[str] = []

    def counting_parse(text: str | None):
        parsed.append(text or "")
        return parse_or_none(text)

    monkeypatch.setattr(peer_sync, "parse_or_none", counting_parse)
    view = follower_view(
        CFG_TLS,
        CFG_TLS,
        TlsView(relation=True, served=IN, client=ClientTlsState(FILES, FILES)),
        ack_cfg=remembered,
    )
    effects = PeerSyncService().on_tls_changed(view)
    assert parsed.count(CFG_TLS) == whole_parses
    assert effects == expected
