"""Tests for ``domain.auth_file``: literal texts, rejections, md5, properties, real pgbouncer."""

from __future__ import annotations

import base64
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.auth_file import (
    AuthEntry,
    AuthFile,
    SecretKind,
    md5_secret,
    parse_auth_file,
    render_auth_file,
)
from domain.errors import InvalidAuthFile, InvalidInput

SEED_LINE = '"pgbouncer_auth_relation_id_3" "md5aad46d9afbcc8c8248d254d567b577c1"'

# A real verifier for password "pencil", salt bytes 0..15, 4096 iterations (PBKDF2-SHA-256,
# RFC 5802 keys), so its shape is exactly what PostgreSQL stores in pg_authid.
SCRAM = (
    "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw=="
    "$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
)
KEY = "zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y="

# The secret most rejection cases carry: no message may contain it.
PASSWORD = "hunter2"


# --- Literal texts ----------------------------------------------------------------------------


def test_seed_line_parses_and_renders_back_byte_for_byte() -> None:
    auth = parse_auth_file(SEED_LINE + "\n")

    assert auth == AuthFile(
        (AuthEntry("pgbouncer_auth_relation_id_3", "md5aad46d9afbcc8c8248d254d567b577c1"),)
    )
    assert auth.entries[0].kind is SecretKind.MD5
    assert render_auth_file(auth) == SEED_LINE + "\n"


def test_seed_line_without_final_newline() -> None:
    assert parse_auth_file(SEED_LINE).users() == ("pgbouncer_auth_relation_id_3",)


def test_render_sorts_by_user_and_doubles_quotes() -> None:
    auth = AuthFile(
        (
            AuthEntry("zed", "plain pass"),
            AuthEntry('o"brien', 'pa"ss'),
            AuthEntry("quote_only", '"'),
            AuthEntry("alice", "md5aad46d9afbcc8c8248d254d567b577c1"),
            AuthEntry("scram", SCRAM),
        )
    )

    text = render_auth_file(auth)

    assert text == (
        '"alice" "md5aad46d9afbcc8c8248d254d567b577c1"\n'
        '"o""brien" "pa""ss"\n'
        '"quote_only" """"\n'
        f'"scram" "{SCRAM}"\n'
        '"zed" "plain pass"\n'
    )
    assert parse_auth_file(text) == auth


def test_parse_unquotes_doubled_quotes_at_field_edges() -> None:
    auth = parse_auth_file('"""a""" """"""\n')

    assert auth.entries == (AuthEntry('"a"', '""'),)


def test_parse_skips_comments_and_blank_lines_and_allows_crlf() -> None:
    text = (
        "; written by hand\n"
        "\n"
        "   \t\n"
        "  ; an indented comment\n"
        '"bob" "pb" ; a trailing comment\r\n'
        '\t"alice"\t \t"pa";no blank needed before it\n'
        "\r\n"
    )

    assert parse_auth_file(text) == AuthFile((AuthEntry("alice", "pa"), AuthEntry("bob", "pb")))


@pytest.mark.parametrize("text", ["", "\n", "; nothing here\n", " \r\n\t\n"])
def test_no_entries(text: str) -> None:
    assert parse_auth_file(text) == AuthFile(())
    assert render_auth_file(AuthFile(())) == ""


@pytest.mark.parametrize(
    ("secret", "kind"),
    [
        ("md5aad46d9afbcc8c8248d254d567b577c1", SecretKind.MD5),
        (SCRAM, SecretKind.SCRAM),
        (f"SCRAM-SHA-256$1:c2FsdA==${KEY}:{KEY}", SecretKind.SCRAM),
        (f"SCRAM-SHA-256$2147483647:YWJj${KEY}:{KEY}", SecretKind.SCRAM),
        ("secret", SecretKind.PLAIN),
        ("md5", SecretKind.PLAIN),
        ("md5aad46d9afbcc8c8248d254d567b577c", SecretKind.PLAIN),  # 31 digits
        ("md5aad46d9afbcc8c8248d254d567b577c1x", SecretKind.PLAIN),
        ("SCRAM-SHA-256", SecretKind.PLAIN),
        ("pa$$word", SecretKind.PLAIN),
    ],
)
def test_secret_kind(secret: str, kind: SecretKind) -> None:
    assert AuthEntry("u", secret).kind is kind


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('"' + "u" * 127 + '" "p"', id="user-127-bytes"),
        pytest.param('"' + "u" * 125 + '""" "p"', id="user-127-bytes-quoted"),
        pytest.param('"' + "é" * 63 + 'u" "p"', id="user-127-bytes-utf8"),
        pytest.param('"u" "' + "p" * 2047 + '"', id="secret-2047-bytes"),
    ],
)
def test_fields_at_pgbouncers_length_limits_are_accepted(text: str) -> None:
    assert len(parse_auth_file(text).entries) == 1


# --- Rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            f'"a" "{PASSWORD}"\n# a comment?\n',
            "auth file line 2: '#' does not start a comment in an auth file (pgbouncer stops"
            " reading the file there); use ';'",
            id="hash-comment",
        ),
        pytest.param(
            f'alice "{PASSWORD}"',
            "auth file line 1: expected a double-quoted user name at the start of the line",
            id="unquoted-user",
        ),
        pytest.param(
            f'\ufeff"alice" "{PASSWORD}"',
            "auth file line 1: expected a double-quoted user name at the start of the line",
            id="byte-order-mark",
        ),
        pytest.param(
            f'"alice "{PASSWORD}"',
            "auth file line 1: expected blanks between the user name and the secret",
            id="misplaced-quote",
        ),
        pytest.param(
            f'"alice {PASSWORD}',
            "auth file line 1: missing closing quote on the user name",
            id="unclosed-user",
        ),
        pytest.param(
            '"alice"\n"hunter2"',
            "auth file line 1: missing the secret (a second double-quoted field)",
            id="secret-on-next-line",
        ),
        pytest.param(
            f'"alice" {PASSWORD}',
            "auth file line 1: expected a double-quoted secret after the user name",
            id="unquoted-secret",
        ),
        pytest.param(
            f'"a" "x"\n\n"alice" "{PASSWORD}\n',
            "auth file line 3: missing closing quote on the secret",
            id="unclosed-secret",
        ),
        pytest.param(
            '"alice" "hun"ter2"',
            "auth file line 1: unexpected text after the secret (only a ';' comment may follow)",
            id="unescaped-quote-in-secret",
        ),
        pytest.param(
            f'"alice" "{PASSWORD}" ""',
            "auth file line 1: unexpected text after the secret (only a ';' comment may follow)",
            id="third-field",
        ),
        pytest.param(
            f'"alice" "{PASSWORD}" # note',
            "auth file line 1: unexpected text after the secret (only a ';' comment may follow)",
            id="trailing-hash",
        ),
        pytest.param(
            f'"alice" "{PASSWORD}"\n; x\0y\n',
            "auth file line 2: NUL character (pgbouncer stops reading the file there)",
            id="nul-in-comment",
        ),
        pytest.param(
            f'"ali\0ce" "{PASSWORD}"',
            "auth file line 1: NUL character (pgbouncer stops reading the file there)",
            id="nul-in-user",
        ),
        pytest.param(
            f'"ali\rce" "{PASSWORD}"',
            "auth file line 1: user name contains a carriage return",
            id="cr-in-user",
        ),
        pytest.param(
            '"alice" "hun\rter2"',
            "auth file line 1: secret contains a carriage return",
            id="cr-in-secret",
        ),
        pytest.param(
            f'"" "{PASSWORD}"',
            "auth file line 1: user name is empty",
            id="empty-user",
        ),
        pytest.param('"alice" ""', "auth file line 1: secret is empty", id="empty-secret"),
        pytest.param(
            f'"ali\udcffce" "{PASSWORD}"',
            "auth file line 1: user name is not valid Unicode text (it has a lone surrogate)",
            id="surrogate-in-user",
        ),
        pytest.param(
            '"' + "u" * 128 + f'" "{PASSWORD}"',
            "auth file line 1: user name is longer than pgbouncer's limit of 127 bytes"
            " (as written)",
            id="user-128-bytes",
        ),
        pytest.param(
            '"' + "u" * 126 + f'""" "{PASSWORD}"',
            "auth file line 1: user name is longer than pgbouncer's limit of 127 bytes"
            " (as written)",
            id="user-128-bytes-quoted",
        ),
        pytest.param(
            '"alice" "' + PASSWORD * 292 + 'abcd"',
            "auth file line 1: secret is longer than pgbouncer's limit of 2047 bytes (as written)",
            id="secret-2048-bytes",
        ),
        pytest.param(
            '"alice" "' + PASSWORD + "é" * 1021 + '"',
            "auth file line 1: secret is longer than pgbouncer's limit of 2047 bytes (as written)",
            id="secret-2049-bytes-utf8",
        ),
        pytest.param(
            '"alice" "md5AAD46D9AFBCC8C8248D254D567B577C1"',
            "auth file line 1: secret looks like an md5 hash but is not 'md5' and 32 lowercase"
            " hex digits (pgbouncer would take it as a plain-text password)",
            id="uppercase-md5",
        ),
        pytest.param(
            f'"alice" "SCRAM-SHA-256$4096:{PASSWORD}$short:keys"',
            "auth file line 1: secret starts like a SCRAM-SHA-256 verifier but is not a valid"
            " one (pgbouncer would take it as a plain-text password)",
            id="short-scram-keys",
        ),
        pytest.param(
            f'"alice" "SCRAM-SHA-256$0:{PASSWORD}${KEY}:{KEY}"',
            "auth file line 1: secret starts like a SCRAM-SHA-256 verifier but is not a valid"
            " one (pgbouncer would take it as a plain-text password)",
            id="scram-zero-iterations",
        ),
        pytest.param(
            f'"alice" "SCRAM-SHA-256$2147483648:{PASSWORD}${KEY}:{KEY}"',
            "auth file line 1: secret starts like a SCRAM-SHA-256 verifier but is not a valid"
            " one (pgbouncer would take it as a plain-text password)",
            id="scram-iterations-overflow-int",
        ),
        pytest.param(
            f'"alice" "SCRAM-SHA-256$4096:${KEY}:{KEY}{PASSWORD}"',
            "auth file line 1: secret starts like a SCRAM-SHA-256 verifier but is not a valid"
            " one (pgbouncer would take it as a plain-text password)",
            id="scram-empty-salt",
        ),
        pytest.param(
            f'"alice" "$$SCRAM-SHA-256$4096:{PASSWORD}"',
            "auth file line 1: secret starts like a SCRAM-SHA-256 verifier but is not a valid"
            " one (pgbouncer would take it as a plain-text password)",
            id="scram-leading-dollars",
        ),
        pytest.param(
            f'"alice" "x"\n; then\n"alice" "{PASSWORD}"',
            "auth file line 3: user 'alice' is already on line 1",
            id="duplicate-user",
        ),
    ],
)
def test_parse_rejects_with_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidAuthFile) as caught:
        parse_auth_file(text)

    assert str(caught.value) == message
    assert isinstance(caught.value, InvalidInput)
    for fragment in (PASSWORD, "hun", "ter2"):
        assert fragment not in str(caught.value)


@pytest.mark.parametrize(
    ("user", "secret", "message"),
    [
        ("", PASSWORD, "auth entry: user name is empty"),
        ("a\nb", PASSWORD, "auth entry: user name contains a line feed"),
        ("a\0b", PASSWORD, "auth entry: user name contains a NUL character"),
        ("alice", "", "auth entry for user 'alice': secret is empty"),
        ("alice", "hunter2\n", "auth entry for user 'alice': secret contains a line feed"),
        ("alice", "hunter2\0", "auth entry for user 'alice': secret contains a NUL character"),
        (
            "alice",
            "hunter2\ud800",
            "auth entry for user 'alice': secret is not valid Unicode text (it has a lone"
            " surrogate)",
        ),
        (
            "alice",
            '"' * 1024,
            "auth entry for user 'alice': secret is longer than pgbouncer's limit of 2047 bytes"
            " (as written)",
        ),
        (
            "alice",
            "SCRAM-SHA-256$hunter2",
            "auth entry for user 'alice': secret starts like a SCRAM-SHA-256 verifier but is not"
            " a valid one (pgbouncer would take it as a plain-text password)",
        ),
    ],
)
def test_entry_rejects_with_reason(user: str, secret: str, message: str) -> None:
    with pytest.raises(InvalidAuthFile) as caught:
        AuthEntry(user, secret)

    assert str(caught.value) == message
    if secret:
        assert secret not in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_entry_rejects_non_strings() -> None:
    with pytest.raises(InvalidAuthFile, match="secret must be a str, not bytes"):
        AuthEntry("alice", b"hunter2")  # type: ignore[arg-type]


# --- The values -------------------------------------------------------------------------------


def test_repr_never_shows_secrets() -> None:
    entry = AuthEntry("alice", PASSWORD)
    auth = AuthFile((entry, AuthEntry("bob", md5_secret("bob", PASSWORD))))

    for shown in (repr(entry), str(entry), repr(auth), str(auth)):
        assert PASSWORD not in shown
        assert "md5" not in shown
    assert repr(entry) == "AuthEntry(user='alice')"


def test_auth_file_is_sorted_and_order_blind() -> None:
    a, b, c = AuthEntry("a", "1"), AuthEntry("b", "2"), AuthEntry("c", "3")

    assert AuthFile([c, a, b]).entries == (a, b, c)
    assert AuthFile((c, a, b)) == AuthFile((a, b, c))
    assert AuthFile((b, a)).users() == ("a", "b")
    assert AuthFile() == AuthFile(())


def test_auth_file_rejects_duplicate_users() -> None:
    with pytest.raises(InvalidAuthFile) as caught:
        AuthFile((AuthEntry("alice", PASSWORD), AuthEntry("bob", "x"), AuthEntry("alice", "y")))

    assert str(caught.value) == "auth file: user 'alice' appears more than once"


def test_get_with_entry_without_user() -> None:
    alice, bob = AuthEntry("alice", "1"), AuthEntry("bob", "2")
    auth = AuthFile((bob,))

    added = auth.with_entry(alice)
    replaced = added.with_entry(AuthEntry("bob", "3"))

    assert added.entries == (alice, bob)
    assert replaced.entries == (alice, AuthEntry("bob", "3"))
    assert replaced.get("bob") == AuthEntry("bob", "3")
    assert replaced.get("carol") is None
    assert replaced.without_user("bob") == AuthFile((alice,))
    assert replaced.without_user("carol") == replaced
    assert auth.entries == (bob,), "the original is unchanged"


# --- md5 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "password", "secret"),
    [
        # pgbouncer's own documentation: user admin, password 1234.
        ("admin", "1234", "md545f2603610af569b6155c45067268c6b"),
        # hashlib.md5(b"secretpgbouncer").hexdigest(): password first, then the user name.
        ("pgbouncer", "secret", "md509d12ff67352814e4c467c7f55a3a1d7"),
        # hashlib.md5("pässwördjürgen".encode("utf-8")).hexdigest()
        ("jürgen", "pässwörd", "md5e325c8e2288c2780dac1cbba097888d5"),
    ],
)
def test_md5_secret(user: str, password: str, secret: str) -> None:
    assert md5_secret(user, password) == secret
    assert AuthEntry(user, md5_secret(user, password)).kind is SecretKind.MD5


# --- Properties -------------------------------------------------------------------------------


def _written_size(field: str) -> int:
    return len(field.replace('"', '""').encode("utf-8"))


def _is_hash_lookalike(secret: str) -> bool:
    return secret.lstrip("$").startswith("SCRAM-SHA-256$") or bool(
        re.fullmatch(r"(?i)md5[0-9a-f]{32}", secret)
    )


def _scram_verifier(iterations: int, salt: bytes, stored: bytes, server: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


# Biased towards the characters the format gives a meaning to.
_field_chars = st.one_of(
    st.sampled_from('"; #$\t'),
    st.characters(exclude_categories=("Cs",), exclude_characters="\0\r\n"),
)
_users = st.text(_field_chars, min_size=1, max_size=30).filter(lambda u: _written_size(u) <= 127)
_plain = st.text(_field_chars, min_size=1, max_size=60).filter(lambda s: not _is_hash_lookalike(s))
_md5 = st.builds(md5_secret, _users, st.text())
_scram = st.builds(
    _scram_verifier,
    st.integers(1, 2**31 - 1),
    st.binary(min_size=1, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
)
_entries = st.builds(AuthEntry, _users, st.one_of(_plain, _md5, _scram))
_auth_files = st.lists(_entries, max_size=8, unique_by=lambda e: e.user).map(AuthFile)


def _as_pgbouncer_reads(text: str) -> dict[str, str]:
    """The users and secrets pgbouncer 1.18 takes from ``text``, modelled from its behaviour.

    Observed with the real program: it skips C-isspace characters and lines starting with
    ``;``; it stops at a NUL, at a line starting with anything but ``"``, at an unclosed field
    and at a user name of 128 or secret of 2048 bytes as written; ``""`` inside a field is a
    quote; anything between the two fields (line breaks included) and after the second field
    up to the end of the line is ignored; a repeated user name's later secret wins.
    """
    data = text.encode("utf-8", "surrogatepass").split(b"\0", 1)[0]
    read: dict[str, str] = {}

    def field(start: int) -> tuple[bytes, int] | None:
        scan = start + 1
        while (quote := data.find(b'"', scan)) >= 0:
            if data[quote + 1 : quote + 2] == b'"':
                scan = quote + 2
                continue
            return data[start + 1 : quote], quote + 1
        return None

    def unquote(raw: bytes) -> str:
        return raw.replace(b'""', b'"').decode("utf-8")

    pos = 0
    while True:
        while pos < len(data) and data[pos : pos + 1] in b" \t\n\v\f\r":
            pos += 1
        if pos == len(data):
            return read
        if data[pos : pos + 1] == b";":
            end = data.find(b"\n", pos)
            pos = len(data) if end < 0 else end
            continue
        if data[pos : pos + 1] != b'"' or (user := field(pos)) is None or len(user[0]) >= 128:
            return read
        second = data.find(b'"', user[1])
        if second < 0 or (secret := field(second)) is None or len(secret[0]) >= 2048:
            return read
        read[unquote(user[0])] = unquote(secret[0])
        end = data.find(b"\n", secret[1])
        pos = len(data) if end < 0 else end


@given(_auth_files)
def test_round_trip(auth: AuthFile) -> None:
    text = render_auth_file(auth)

    assert parse_auth_file(text) == auth
    assert _as_pgbouncer_reads(text) == {entry.user: entry.secret for entry in auth.entries}


@given(_entries)
def test_generated_hashes_keep_their_kind(entry: AuthEntry) -> None:
    if entry.secret.startswith("SCRAM-SHA-256$"):
        assert entry.kind is SecretKind.SCRAM
    elif re.fullmatch("md5[0-9a-f]{32}", entry.secret):
        assert entry.kind is SecretKind.MD5
    else:
        assert entry.kind is SecretKind.PLAIN


_text_chars = st.one_of(st.sampled_from('"";;# \t\r\n\0\v\f$'), st.characters())


@given(st.text(_text_chars))
def test_arbitrary_text_parses_or_raises_invalid_auth_file(text: str) -> None:
    auth: AuthFile | None = None
    message = ""
    try:
        auth = parse_auth_file(text)
    except InvalidAuthFile as err:
        message = str(err)
    if auth is None:
        assert message.startswith("auth file line ")
    else:
        assert parse_auth_file(render_auth_file(auth)) == auth


# Lines that are valid, commented, blank or broken, so that whole files are often accepted.
_lines = st.one_of(
    _entries.map(lambda e: render_auth_file(AuthFile((e,))).rstrip("\n")),
    _entries.map(lambda e: render_auth_file(AuthFile((e,))).rstrip("\n") + " ;c"),
    st.text(_text_chars, max_size=20).map(lambda t: ";" + t.replace("\n", "")),
    st.sampled_from(["", " ", "\t\r", "#", '"', '""', '"a"', '"a" "b" "c"', '"a" "b"']),
    st.text(_text_chars, max_size=20),
)


@given(st.lists(_lines, max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_accepted_text_reads_the_same_in_pgbouncer(lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    try:
        auth = parse_auth_file(text)
    except InvalidAuthFile:
        auth = None
    # Only accepted texts say anything here; hypothesis fails the test (Unsatisfiable) if
    # the generator stops producing any, instead of passing on refusals alone.
    assume(auth is not None)
    assert auth is not None
    assert _as_pgbouncer_reads(text) == {entry.user: entry.secret for entry in auth.entries}


# --- The real pgbouncer -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _give_to_postgres(path: Path, mode: int) -> None:
    # Run as root, pgbouncer drops to the postgres user, which must still read its files.
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(mode)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"pgbouncer did not listen on port {port}:\n{log.read_text()}")


def _psql_show_version(port: int, user: str, password: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGPASSWORD": password,
        "PGSSLMODE": "disable",
        "PGCONNECT_TIMEOUT": "5",
    }
    command = ["psql", "-X", "-w", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-U", user]
    return subprocess.run(
        [*command, "pgbouncer", "-c", "SHOW VERSION"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def start_pgbouncer() -> Iterator[Callable[[str, list[str]], int]]:
    """Starts pgbouncer with an auth file and admin users; returns its port; stops it after.

    Its directory is a fresh one in the system temp dir rather than ``tmp_path``: pytest
    makes its temp tree private to root, and pgbouncer runs as postgres.
    """
    workdir = Path(tempfile.mkdtemp(prefix="pgb-auth-file-"))
    processes: list[subprocess.Popen[bytes]] = []

    def start(auth_text: str, admin_users: list[str]) -> int:
        port = _free_port()
        auth_path = workdir / "userlist.txt"
        auth_path.write_text(auth_text, encoding="utf-8")
        _give_to_postgres(auth_path, 0o600)
        ini_path = workdir / "pgbouncer.ini"
        run_as = "user = postgres\n" if os.geteuid() == 0 else ""
        ini_path.write_text(
            "[databases]\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = md5\n"
            f"auth_file = {auth_path}\n"
            f"admin_users = {', '.join(admin_users)}\n"
            f"{run_as}",
            encoding="utf-8",
        )
        _give_to_postgres(ini_path, 0o600)
        log = workdir / "pgbouncer.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                ["pgbouncer", str(ini_path)], stdout=log_file, stderr=subprocess.STDOUT
            )
        processes.append(process)
        _wait_for_port(process, port, log)
        return port

    _give_to_postgres(workdir, 0o700)
    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.real
def test_real_pgbouncer_accepts_the_rendered_file(
    start_pgbouncer: Callable[[str, list[str]], int],
) -> None:
    passwords = {"plain_user": 'pa"ss; word', "md5_user": "md5 pass", 'o"brien': '"quoted""'}
    auth = AuthFile(
        (
            AuthEntry("plain_user", passwords["plain_user"]),
            AuthEntry("md5_user", md5_secret("md5_user", passwords["md5_user"])),
            AuthEntry('o"brien', passwords['o"brien']),
        )
    )
    text = render_auth_file(auth)
    # hashlib.md5(b"md5 passmd5_user").hexdigest()
    assert text == (
        '"md5_user" "md59aca6d0583cae2f7276c15f043fcb3a2"\n'
        '"o""brien" """quoted"""""\n'
        '"plain_user" "pa""ss; word"\n'
    )
    assert [entry.kind for entry in auth.entries] == [
        SecretKind.MD5,
        SecretKind.PLAIN,
        SecretKind.PLAIN,
    ]

    port = start_pgbouncer(text, list(passwords))

    for user, password in passwords.items():
        right = _psql_show_version(port, user, password)
        assert right.returncode == 0, f"{user}: {right.stderr}"
        assert right.stdout.startswith("PgBouncer 1.18"), right.stdout
        wrong = _psql_show_version(port, user, password + "x")
        assert wrong.returncode != 0, f"{user} logged in with a wrong password"
        assert "password authentication failed" in wrong.stderr
    stranger = _psql_show_version(port, "stranger", "anything")
    assert stranger.returncode != 0
