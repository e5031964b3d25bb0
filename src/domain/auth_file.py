"""pgbouncer's ``auth_file``: which users may log in, and the secret each one proves.

The model
---------
An ``AuthFile`` is a set of ``AuthEntry`` values, one per user name, kept sorted by user name
(code-point order) so that equal files compare equal and render to the same bytes. An entry
pairs a user name with a secret, and the secret's shape decides its ``SecretKind``, exactly as
pgbouncer 1.18 (and PostgreSQL) decide it:

- ``MD5``: ``"md5"`` followed by 32 lowercase hex digits, the hex md5 of password + user name
  (``md5_secret`` computes it);
- ``SCRAM``: a SCRAM-SHA-256 verifier ``SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>``
  with base64 salt and 32-byte base64 keys;
- ``PLAIN``: any other non-empty text, the password itself.

The text format, as pgbouncer 1.18 reads it, is one entry per line, ``"user" "secret"``, each
field in double quotes with a literal ``"`` written ``""``. pgbouncer is lenient: it skips
leading whitespace and lines starting with ``;``, stops reading the whole file at the first line
that starts with anything else but ``"`` (``#`` included: it is not a comment), lets a field or
the gap between the two fields run across line breaks, ignores whatever follows the second
field, stops at a NUL, and stops at a user name of 128 or a secret of 2048 bytes or more (counted
as written, with the doubled quotes). A secret that merely resembles an md5 hash or a SCRAM
verifier silently becomes a plain-text password. Each of those is how a file loses users
without an error anywhere, so ``parse_auth_file`` accepts only the unambiguous subset and
names the first line outside it:

- blank lines and lines whose first non-blank character is ``;`` are skipped;
- every other line is exactly ``"user"``, blanks, ``"secret"``, then optionally blanks and a
  ``;`` comment; blanks are space, tab, CR, VT and FF (so CRLF files read fine);
- fields hold no NUL, CR or LF, the user name is non-empty and at most 127 bytes as written,
  the secret non-empty (with an empty one pgbouncer lets no one in as that user) and at most
  2047 bytes as written;
- a secret that starts like a SCRAM verifier must be a valid one, and ``md5`` followed by 32
  hex digits must use lowercase digits, so no hash is ever taken for a password;
- a user name appears once: pgbouncer would silently keep the later line.

``AuthEntry`` enforces the same field rules in its constructor, and ``AuthFile`` rejects
duplicate users, so every value can be rendered to a file pgbouncer reads back identically.
Error messages name the line (or the user) and the reason, never a secret or the raw line.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import re
from collections.abc import Iterable

import attrs

from domain.errors import InvalidAuthFile
from domain.values import value_class

# pgbouncer 1.18's MAX_USERNAME and MAX_PASSWORD: a field whose written form (doubled quotes
# included) reaches these many bytes makes pgbouncer stop reading the file.
_MAX_USER_BYTES = 127
_MAX_SECRET_BYTES = 2047

# C isspace() without LF: what pgbouncer skips before a line, and the only separators we allow.
_BLANKS = " \t\r\v\f"

_MD5 = re.compile(r"md5[0-9a-f]{32}")
_MD5_ANY_CASE = re.compile(r"md5[0-9a-f]{32}", re.IGNORECASE)
_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_KEY32 = r"[A-Za-z0-9+/]{43}="
# Compiled by re's cache on first use, not at import: only a secret that starts like a SCRAM
# verifier, and the ``kind`` of an entry whose secret is not md5, are matched against it.
_SCRAM = (
    rf"SCRAM-SHA-256\$(?P<iterations>[1-9][0-9]{{0,9}}):(?!\$)(?:{_B64})"
    rf"\$(?:{_KEY32}):(?:{_KEY32})"
)
_SCRAM_PREFIX = "SCRAM-SHA-256$"
# pgbouncer stores the iteration count in a C int.
_MAX_ITERATIONS = 2**31 - 1


class SecretKind(enum.Enum):
    """How pgbouncer uses a secret: compare an md5 hash, run SCRAM, or know the password."""

    MD5 = "md5"
    SCRAM = "scram-sha-256"
    PLAIN = "plain"


def _is_scram(secret: str) -> bool:
    match = re.fullmatch(_SCRAM, secret)
    return match is not None and int(match["iterations"]) <= _MAX_ITERATIONS


def _kind(secret: str) -> SecretKind:
    if _MD5.fullmatch(secret):
        return SecretKind.MD5
    if _is_scram(secret):
        return SecretKind.SCRAM
    return SecretKind.PLAIN


def _quote(field: str) -> str:
    return field.replace('"', '""')


def _field_problem(name: str, value: str, max_bytes: int) -> str | None:
    """Why ``value`` cannot be a field of an auth file line, or None if it can."""
    if not value:
        return f"{name} is empty"
    for char, what in (
        ("\0", "a NUL character"),
        ("\r", "a carriage return"),
        ("\n", "a line feed"),
    ):
        if char in value:
            return f"{name} contains {what}"
    try:
        size = len(_quote(value).encode("utf-8"))
    except UnicodeEncodeError:
        return f"{name} is not valid Unicode text (it has a lone surrogate)"
    if size > max_bytes:
        return f"{name} is longer than pgbouncer's limit of {max_bytes} bytes (as written)"
    return None


def _user_problem(user: str) -> str | None:
    return _field_problem("user name", user, _MAX_USER_BYTES)


def _secret_problem(secret: str) -> str | None:
    problem = _field_problem("secret", secret, _MAX_SECRET_BYTES)
    if problem is not None:
        return problem
    # pgbouncer's own verifier parser skips leading "$" characters, hence the lstrip.
    if secret.lstrip("$").startswith(_SCRAM_PREFIX) and not _is_scram(secret):
        return (
            "secret starts like a SCRAM-SHA-256 verifier but is not a valid one"
            " (pgbouncer would take it as a plain-text password)"
        )
    if _MD5_ANY_CASE.fullmatch(secret) and not _MD5.fullmatch(secret):
        return (
            "secret looks like an md5 hash but is not 'md5' and 32 lowercase hex digits"
            " (pgbouncer would take it as a plain-text password)"
        )
    return None


def _check_user(_instance: AuthEntry, _attribute: attrs.Attribute[str], user: str) -> None:
    if not isinstance(user, str):
        raise InvalidAuthFile(f"auth entry user must be a str, not {type(user).__name__}")
    problem = _user_problem(user)
    if problem is not None:
        raise InvalidAuthFile(f"auth entry: {problem}")


def _check_secret(instance: AuthEntry, _attribute: attrs.Attribute[str], secret: str) -> None:
    if not isinstance(secret, str):
        raise InvalidAuthFile(f"auth entry secret must be a str, not {type(secret).__name__}")
    problem = _secret_problem(secret)
    if problem is not None:
        raise InvalidAuthFile(f"auth entry for user {instance.user!r}: {problem}")


@value_class
class AuthEntry:
    """One user and the secret pgbouncer checks its password against (and logs in with)."""

    user: str = attrs.field(validator=_check_user)
    secret: str = attrs.field(repr=False, validator=_check_secret)

    @property
    def kind(self) -> SecretKind:
        return _kind(self.secret)


def _sorted_entries(entries: Iterable[AuthEntry]) -> tuple[AuthEntry, ...]:
    items = tuple(entries)
    for item in items:
        if not isinstance(item, AuthEntry):
            raise InvalidAuthFile(
                f"auth file entries must be AuthEntry, not {type(item).__name__}"
            )
    return tuple(sorted(items, key=lambda entry: entry.user))


def _check_unique(
    _instance: AuthFile,
    _attribute: attrs.Attribute[tuple[AuthEntry, ...]],
    entries: tuple[AuthEntry, ...],
) -> None:
    # Sorted by the converter, so a repeated user name sits next to its twin.
    for before, after in itertools.pairwise(entries):
        if before.user == after.user:
            raise InvalidAuthFile(f"auth file: user {after.user!r} appears more than once")


@value_class
class AuthFile:
    """The whole auth file: at most one entry per user, sorted by user name."""

    entries: tuple[AuthEntry, ...] = attrs.field(
        default=(), converter=_sorted_entries, validator=_check_unique
    )

    def get(self, user: str) -> AuthEntry | None:
        for entry in self.entries:
            if entry.user == user:
                return entry
        return None

    def with_entry(self, entry: AuthEntry) -> AuthFile:
        """This file with ``entry`` added, replacing any entry for the same user."""
        return AuthFile((*self.without_user(entry.user).entries, entry))

    def without_user(self, user: str) -> AuthFile:
        """This file without ``user``'s entry; an equal file when there is none."""
        return AuthFile(entry for entry in self.entries if entry.user != user)

    def users(self) -> tuple[str, ...]:
        return tuple(entry.user for entry in self.entries)


def md5_secret(user: str, password: str) -> str:
    """PostgreSQL's md5 secret: ``"md5"`` + hex md5 of the password followed by the user name."""
    return (
        "md5" + hashlib.md5((password + user).encode("utf-8"), usedforsecurity=False).hexdigest()
    )


def render_auth_file(auth: AuthFile) -> str:
    """The auth file text: one ``"user" "secret"`` line per entry, sorted by user name."""
    return "".join(f'"{_quote(entry.user)}" "{_quote(entry.secret)}"\n' for entry in auth.entries)


class _LineError(Exception):
    """A parse problem on the current line; ``parse_auth_file`` adds the line number."""


def _read_field(line: str, start: int, name: str) -> tuple[str, int]:
    """The quoted field whose opening quote is at ``start``, and the index after it."""
    chars: list[str] = []
    index = start + 1
    while index < len(line):
        char = line[index]
        if char == '"':
            # Like pgbouncer, take "" greedily as an escaped quote, so the same text cannot
            # split into fields differently here and there.
            if line.startswith('""', index):
                chars.append('"')
                index += 2
                continue
            return "".join(chars), index + 1
        chars.append(char)
        index += 1
    raise _LineError(f"missing closing quote on the {name}")


def _skip_blanks(line: str, index: int) -> int:
    while index < len(line) and line[index] in _BLANKS:
        index += 1
    return index


def _parse_line(line: str) -> AuthEntry | None:
    """The entry on ``line``, None for a blank or comment line; raises ``_LineError``."""
    if "\0" in line:
        raise _LineError("NUL character (pgbouncer stops reading the file there)")
    index = _skip_blanks(line, 0)
    if index == len(line) or line[index] == ";":
        return None
    if line[index] == "#":
        raise _LineError(
            "'#' does not start a comment in an auth file (pgbouncer stops reading the file"
            " there); use ';'"
        )
    if line[index] != '"':
        raise _LineError("expected a double-quoted user name at the start of the line")
    user, index = _read_field(line, index, "user name")
    after_user = index
    index = _skip_blanks(line, index)
    if index == len(line):
        raise _LineError("missing the secret (a second double-quoted field)")
    if index == after_user:
        raise _LineError("expected blanks between the user name and the secret")
    if line[index] != '"':
        raise _LineError("expected a double-quoted secret after the user name")
    secret, index = _read_field(line, index, "secret")
    index = _skip_blanks(line, index)
    if index < len(line) and line[index] != ";":
        raise _LineError("unexpected text after the secret (only a ';' comment may follow)")
    problem = _user_problem(user) or _secret_problem(secret)
    if problem is not None:
        raise _LineError(problem)
    return AuthEntry(user, secret)


def parse_auth_file(text: str) -> AuthFile:
    """The auth file in ``text``; raises ``InvalidAuthFile`` naming the first bad line."""
    entries: list[AuthEntry] = []
    first_line: dict[str, int] = {}
    # Split on LF only: pgbouncer knows no other line break, and CR counts as a blank.
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            entry = _parse_line(line)
        except _LineError as err:
            raise InvalidAuthFile(f"auth file line {number}: {err}") from None
        if entry is None:
            continue
        if entry.user in first_line:
            raise InvalidAuthFile(
                f"auth file line {number}: user {entry.user!r} is already on line"
                f" {first_line[entry.user]}"
            )
        first_line[entry.user] = number
        entries.append(entry)
    return AuthFile(entries)
