"""Who sent an HTTP request and whether their role allows it (issue #35 point 6).

Credentials: ``Authorization: Bearer <token>`` (a token user of ``api.users_file``, or the one token of
``api.token_file``, an admin named ``token``) or ``Authorization: Basic`` with ``name:password`` (a
password user). No cookie and no server-side session: a browser's page keeps its credential in
``sessionStorage`` (gone with the tab), so nothing a cross-site page could ride on is ever stored.

What each request needs (:data:`ACTIONS`): reads a viewer, suspend / resume / ack an operator, any
other state change an admin. Reads are open only while the server listens on loopback, with
``api.read_token`` off and no ``api.trusted_proxies`` (a proxy forwards other machines' requests);
otherwise every read but ``/healthz`` (and ``/metrics`` with ``api.public_metrics``) needs a viewer.
With neither users nor a token (loopback only: the settings refuse otherwise) everyone is
``anonymous`` and may do all, as before users existed.
"""
from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from edgeseg.apps.gateway.users import ROLES, User, UserStore

#: the role each POST action needs (the last path part); an action not listed needs an admin
ACTIONS = {"suspend": "operator", "resume": "operator", "ack": "operator"}
ANONYMOUS = User("anonymous", "admin")


@dataclass(frozen=True)
class Verdict:
    """The request's user (None: nobody known), and the refusal ``(status, error)`` when it may not go on."""

    user: User | None
    refusal: tuple[int, str] | None = None
    bearer: bool = False  # a Bearer token: no browser sends it on its own, so it passes the Origin check


class Auth:
    """The users of one gateway and whether its reads are open (loopback without ``read_token``)."""

    def __init__(self, store: UserStore, reads_need_auth: bool) -> None:
        self.store, self.reads_need_auth = store, reads_need_auth

    def identify(self, headers: Any) -> tuple[User | None, bool, bool]:
        """(user, credentials given, by Bearer) of a request's ``Authorization`` header."""
        value = (headers.get("Authorization") or "").strip()
        scheme, _, cred = value.partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if scheme == "bearer" and cred:
            return self.store.by_token(cred), True, True
        if scheme == "basic" and cred:
            try:
                name, sep, password = base64.b64decode(cred, validate=True).decode().partition(":")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return None, True, False
            return (self.store.by_password(name, password, time.monotonic()) if sep else None), True, False
        return None, bool(value), False

    def check(self, headers: Any, need: str | None) -> Verdict:
        """May the request go on with role ``need`` (None: anyone, a read of public data)?"""
        if not self.store:
            return Verdict(ANONYMOUS)
        user, given, bearer = self.identify(headers)
        if need is None or (need == "viewer" and not self.reads_need_auth):
            return Verdict(user, None, bearer and user is not None)
        if user is None:
            what = "wrong or unknown credentials" if given else "no credentials"
            return Verdict(None, (401, f"{what}: this needs the role {need} (fix: send the API token as "
                                       "Authorization: Bearer <token>, or Basic with name:password; edgeseg users add "
                                       "makes a user)"))
        if not user.may(need):
            return Verdict(user, (403, f"user {user.name} is a {user.role}; this needs the role {need} or above (fix: "
                                       f"sign in as a user with that role, or ask an admin: edgeseg users add FILE "
                                       f"{user.name} --role {need} --replace)"),
                           bearer)
        return Verdict(user, None, bearer)


def action_role(parts: list[str]) -> str:
    """The role a POST to ``/api/<parts>`` needs: :data:`ACTIONS` by its last part, else admin."""
    role = ACTIONS.get(parts[-1] if parts else "", "admin")
    assert role in ROLES
    return role


def auth_for(api: Any, host: str) -> Auth:
    """The :class:`Auth` of settings ``api`` for a server bound to ``host``: the users of
    ``api.users_file`` and ``api.token_file`` (one admin named ``token``); reads need a viewer beyond
    loopback, behind a proxy (``api.trusted_proxies``), and on loopback with ``api.read_token``."""
    from edgeseg.apps.gateway.config import read_token  # noqa: PLC0415
    from edgeseg.apps.gateway.users import read_users  # noqa: PLC0415
    from edgeseg.config.settings_ops import is_loopback  # noqa: PLC0415

    store = UserStore(read_users(api.users_file) if api.users_file else [],
                      read_token(api.token_file) if api.token_file else None)
    # behind a reverse proxy (api.trusted_proxies) the requests come from other machines, whatever the bind
    return Auth(store, api.read_token or not is_loopback(host) or bool(api.trusted_proxies))
