"""Runs after every other test (see conftest.py) and reads what they all produced."""

from tests.secrets_audit import AUDIT, Audit


def test_no_credential_leaked_anywhere_in_the_suite():
    leaks = AUDIT.leaks()
    print(
        f"secrets audit: {AUDIT.runs} ops.testing runs, {len(AUDIT.credentials)} credentials, "
        f"{AUDIT.private_keys_seen} private keys, {len(AUDIT.produced)} texts and "
        f"{len(AUDIT.shared)} application secret values checked, {len(leaks)} leaks"
    )
    assert leaks == []


def test_the_audit_finds_a_leak_when_there_is_one():
    audit = Audit()
    audit.credentials.add("Z4OtFCe6r5HG6mk1XuR6LkwZ")
    audit.produced.append(("unit status", "connected with Z4OtFCe6r5HG6mk1XuR6LkwZ"))
    audit.produced.append(("log", "nothing here"))
    assert audit.leaks() == ["unit status contains a credential (24 chars)"]


def test_the_audit_learns_auth_file_secrets_from_a_store_value():
    audit = Audit()
    audit._learn('"pgbouncer_auth_relation_id_3" "md5aad46d9afbcc8c8248d254d567b577c1"\n')
    assert "md5aad46d9afbcc8c8248d254d567b577c1" in audit.credentials


def test_the_audit_finds_a_private_key_in_an_application_secret_or_a_log():
    from localenv.tls_provider import CertificateAuthority

    key = str(CertificateAuthority().key)
    audit = Audit()
    audit.learn_keys(key)
    assert audit.key_lines
    body_line = key.splitlines()[3]
    audit.shared.append(("application secret pgb-peers[auth-file]", f"x{key}y"))
    audit.produced.append(("log", f"writing {body_line}"))
    audit.produced.append(("unit status", "active"))
    assert audit.leaks() == [
        "application secret pgb-peers[auth-file] contains part of a private key",
        "log contains part of a private key",
    ]


def test_the_audit_reads_pebble_plans_and_learns_the_stats_password():
    from ops import pebble, testing

    password = "0123456789abcdef0123456789abcdef"
    secret = testing.Secret(tracked_content={"stats-password": password}, owner="app")
    layer = pebble.Layer(
        {"services": {"pgbouncer_exporter_0": {"override": "replace", "command": f"x {password}"}}}
    )
    state = testing.State(
        containers={testing.Container("pgbouncer", can_connect=True, layers={"l": layer})},
        secrets={secret},
    )
    audit = Audit()
    audit.record_run(state, state, [], has_secrets=True)
    assert password in audit.credentials
    assert audit.leaks() == [
        "pebble plan pgbouncer pgbouncer_exporter_0 command contains a credential (32 chars)"
    ]


def test_the_audit_counts_a_credential_the_run_wrote_not_one_it_was_given():
    from ops import testing

    password = "Z4OtFCe6r5HG6mk1XuR6LkwZ"
    given = testing.PeerRelation("pgb-peers", id=2, local_app_data={"relation_id_4": password})
    before = testing.State(relations={given})
    kept = Audit()
    kept.record_run(before, before, [], has_secrets=True)
    assert kept.leaks() == []
    written = Audit()
    moved = testing.PeerRelation("pgb-peers", id=2, local_app_data={"note": password})
    written.record_run(before, testing.State(relations={moved}), [], has_secrets=True)
    assert written.leaks() == ["pgb-peers app databag[note] contains a credential (24 chars)"]
