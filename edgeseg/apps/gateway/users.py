"""The people who may use the gateway's HTTP API (issue #35 point 6): a file of users, each with a role
and a secret stored only as a hash.

``api.users_file`` (YAML or JSON) holds ``users:``, a list of ``{name, role, token_sha256}`` or
``{name, role, password}`` where ``password`` is ``scrypt$n$r$p$salt_b64$hash_b64``. A token is 32
random bytes (``secrets.token_urlsafe(32)``): its plain SHA-256 is enough, nobody can guess it back.
A password is chosen by a person, so it is stretched with a salted scrypt (stdlib ``hashlib.scrypt``)
that makes each guess cost ~16 MiB and tens of milliseconds. A file with a plain secret in it is
refused at load: the file is meant to be safe to back up and read.

``edgeseg users add|list|remove`` (:mod:`edgeseg.commands.users`) writes the file (mode 0600, an
atomic rename) so nobody has to compute a hash by hand.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from edgeseg.config.settings import ConfigError

log = logging.getLogger("edgeseg")

#: roles in order of what they may do: each may do what the ones before it may
ROLES = ("viewer", "operator", "admin")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: scrypt cost: n=2**14, r=8 (16 MiB, tens of ms a check): OWASP's floor; stored with each hash
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
_FIX_ADD = "add users with: edgeseg users add FILE NAME --role operator [--password]"


@dataclass(frozen=True)
class User:
    """One person (or program) and what it may do; only hashes of its secret are held."""

    name: str
    role: str
    token_sha256: str | None = None
    password: str | None = None

    def may(self, role: str) -> bool:
        """Whether this user's role covers ``role`` (an admin may all an operator may, ...)."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def record(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role,
                **({"token_sha256": self.token_sha256} if self.token_sha256 else {}),
                **({"password": self.password} if self.password else {})}


# -- hashing ------------------------------------------------------------------------------------
def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh high-entropy token (43 characters): shown once, only its hash is kept."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``password`` with a fresh 16-byte salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` string); compared in constant time."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=256 * 1024 * 1024, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _is_scrypt(value: str) -> bool:
    parts = value.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return False
    try:
        return len(base64.b64decode(parts[4], validate=True)) >= 8 and len(base64.b64decode(parts[5], validate=True)) >= 16
    except ValueError:
        return False


# -- the file -----------------------------------------------------------------------------------
def parse_users(raw: Any, where: str = "api.users_file") -> list[User]:
    """The users of a parsed file; a one-line :class:`ConfigError` naming the entry and the fix otherwise
    (a plain token or password included: it is refused, never stored or used)."""
    items = raw.get("users") if isinstance(raw, dict) else raw
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ConfigError(f"{where}: 'users' must be a list (fix: {_FIX_ADD})")
    users: list[User] = []
    for i, item in enumerate(items):
        at = f"{where}: users[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{at} is not a mapping (fix: {_FIX_ADD})")
        name, role = item.get("name"), item.get("role")
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{at}.name must be 1-64 of letters, digits, _ . @ - (fix: e.g. name: ann)")
        if role not in ROLES:
            raise ConfigError(f"{at}.role must be one of {', '.join(ROLES)}, got {role!r} (fix: e.g. role: operator)")
        if any(k in item for k in ("token", "secret", "plain_password")):
            raise ConfigError(f"{at} ({name}) holds a plain secret; only hashes may be stored (fix: remove that "
                              f"entry and {_FIX_ADD})")
        unknown = sorted(set(item) - {"name", "role", "token_sha256", "password"})
        if unknown:
            raise ConfigError(f"{at} ({name}) has unknown keys {', '.join(map(str, unknown))} (fix: name, role and "
                              "token_sha256 or password only)")
        tok, pw = item.get("token_sha256"), item.get("password")
        if (tok is None) == (pw is None):
            raise ConfigError(f"{at} ({name}) needs exactly one of token_sha256 or password (fix: {_FIX_ADD})")
        if tok is not None and (not isinstance(tok, str) or not _HEX64.match(tok.lower())):
            raise ConfigError(f"{at} ({name}).token_sha256 is not a SHA-256 hex digest; a plain token is refused "
                              f"(fix: store sha256sum of the token, or {_FIX_ADD})")
        if pw is not None and (not isinstance(pw, str) or not _is_scrypt(pw)):
            raise ConfigError(f"{at} ({name}).password is not a scrypt hash (scrypt$n$r$p$salt$hash); a plain "
                              f"password is refused (fix: {_FIX_ADD} --password)")
        if any(u.name == name for u in users):
            raise ConfigError(f"{at}: user {name} appears twice (fix: keep one entry per name)")
        users.append(User(name, role, tok.lower() if tok else None, pw))
    return users


def read_users(path: str | Path) -> list[User]:
    """The users in file ``path`` (YAML or JSON); a one-line ConfigError when missing or wrong."""
    p = Path(path).expanduser()
    try:
        text = p.read_text()
        mode = p.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"api.users_file: {p} cannot be read: {getattr(exc, 'strerror', None) or exc} "
                          f"(fix: {_FIX_ADD})") from None
    if mode & 0o077:  # hashes only, but an offline guess at a weak password needs just the file
        log.warning("api.users_file: %s can be read by other local users (mode %o); fix: chmod 600 %s",
                    p, mode & 0o777, p)
    try:
        import yaml  # noqa: PLC0415

        raw = yaml.safe_load(text) if text.strip() else {}
    except Exception as exc:  # noqa: BLE001 - yaml's errors span lines: one line here
        raise ConfigError(f"api.users_file: {p} is not YAML / JSON: {str(exc).splitlines()[0]} (fix: {_FIX_ADD})") from None
    return parse_users(raw)


def write_users(path: str | Path, users: Iterable[User]) -> None:
    """Write ``users`` to ``path`` atomically (a temporary file renamed over it), mode 0600: a crash leaves
    the old file whole, and no other local user reads even the hashes."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    body = "# edgeseg users: hashes only (edgeseg users add|list|remove). Keep this file 0600.\n" + \
        json.dumps({"users": [u.record() for u in users]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class UserStore:
    """Who a credential belongs to: a token (by its SHA-256) or a name + password (scrypt).

    A correct password is remembered for :attr:`remember_s` under an HMAC with a key that lives only in
    this process, so the status page polling every 2 s with Basic auth does not cost a scrypt per request;
    a wrong one is never remembered."""

    remember_s = 300.0

    def __init__(self, users: Iterable[User], legacy_token: str | None = None) -> None:
        self.users = list(users)
        if legacy_token is not None:  # api.token_file: one admin named "token", as before users existed
            self.users.append(User("token", "admin", token_sha256(legacy_token)))
        self._key = os.urandom(32)
        self._seen: dict[bytes, tuple[User, float]] = {}
        self._decoy_hash: str | None = None  # made at the first unknown name (a scrypt: not at start)

    def __bool__(self) -> bool:
        return bool(self.users)

    def _decoy(self) -> str:
        """A hash no password matches, made once: what an unknown name is checked against."""
        if self._decoy_hash is None:
            self._decoy_hash = hash_password(os.urandom(16).hex())
        return self._decoy_hash

    def by_token(self, token: str) -> User | None:
        """The user whose token this is; every stored hash is compared (constant time each)."""
        digest, found = token_sha256(token).encode(), None
        for u in self.users:
            if u.token_sha256 is not None and hmac.compare_digest(digest, u.token_sha256.encode()):
                found = u
        return found

    def by_password(self, name: str, password: str, now: float) -> User | None:
        user = next((u for u in self.users if u.name == name and u.password is not None), None)
        if user is None:  # the same scrypt as a wrong password: the answer's time does not tell which names exist
            verify_password(password, self._decoy())
            return None
        key = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        seen = self._seen.get(key)
        if seen is not None and now - seen[1] < self.remember_s:
            return seen[0]
        if not verify_password(password, user.password or ""):
            return None
        if len(self._seen) > 256:
            self._seen.clear()
        self._seen[key] = (user, now)
        return user
