"""Who is asking: signed session cookies, CSRF tokens, slowed failed logins, and the optional trusted SSO header.

A session is a cookie signed with the session secret (itsdangerous), holding the user's name, the session's CSRF
token and the user's session epoch; the user's role, whether they are still enabled and their epoch are read from
the store on every request, so a disabled user is out at their next click, and signing out or a new password ends
every session issued before (the store raises the epoch), wherever its cookie is. The API key plays no part here:
it neither grants nor is needed.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ingest.settings import is_loopback

SESSION_COOKIE = "tiering_session"
LOGIN_COOKIE = "tiering_login"  # carries the login form's CSRF token before anyone is signed in
SESSION_SECONDS = 12 * 3600  # a working day; then sign in again
LOGIN_FORM_SECONDS = 3600
ROLES = ("viewer", "editor", "admin")
WRITERS = frozenset({"editor", "admin"})  # may pin and unpin


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    epoch: int  # the user's session epoch when it was issued: the store's must still be the same


class SessionSigner:
    """Signs and reads the session and login cookies; a cookie altered, expired or signed with another secret is
    no session at all."""

    def __init__(self, secret: str):
        self._sessions = URLSafeTimedSerializer(secret, salt="tiering-workspace-session")
        self._login = URLSafeTimedSerializer(secret, salt="tiering-workspace-login")

    def issue(self, user: str, epoch: int) -> tuple[str, Session]:
        session = Session(user, secrets.token_urlsafe(32), epoch)
        return self._sessions.dumps({"user": session.user, "csrf": session.csrf, "epoch": epoch}), session

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # also the expired case (SignatureExpired is a BadSignature)
            return None
        if not isinstance(data, dict) or not isinstance(data.get("user"), str) or not isinstance(data.get("csrf"), str):
            return None
        epoch = data.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool):  # issued before sessions could end on the server
            return None
        return Session(data["user"], data["csrf"], epoch)

    def login_token(self) -> tuple[str, str]:
        """A fresh CSRF token for the login form and the cookie that vouches for it."""
        token = secrets.token_urlsafe(32)
        return self._login.dumps(token), token

    def login_token_from(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            token = self._login.loads(cookie, max_age=LOGIN_FORM_SECONDS)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None


def tokens_match(sent: object, expected: str | None) -> bool:
    """A CSRF token as sent in a form against the session's, in constant time; a missing one never matches."""
    if not isinstance(sent, str) or not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


class LoginThrottle:
    """Failed sign-ins for one user name wait longer each time (doubling from `first_delay`, up to `max_delay`);
    a success clears the count. Counted per name, so spreading guesses over addresses gains nothing."""

    def __init__(
        self,
        first_delay: float = 0.5,
        max_delay: float = 15.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.first_delay, self.max_delay, self._sleep = first_delay, max_delay, sleep
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(user: str) -> str:
        return user.strip().casefold()[:200]

    def failures(self, user: str) -> int:
        return self._failures.get(self._key(user), 0)

    def delay_for(self, user: str) -> float:
        count = self.failures(user)
        return 0.0 if count == 0 else min(self.first_delay * 2 ** (count - 1), self.max_delay)

    async def wait(self, user: str) -> None:
        """Before checking a password: as long as this name's failures say (no thread is held meanwhile)."""
        delay = self.delay_for(user)
        if delay:
            await self._sleep(delay)

    def failed(self, user: str) -> int:
        with self._lock:
            key = self._key(user)
            self._failures[key] = self._failures.get(key, 0) + 1
            if len(self._failures) > 100_000:  # a flood of made-up names must not grow memory without end
                self._failures.pop(next(iter(self._failures)))
            return self._failures[key]

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(self._key(user), None)


@dataclass(frozen=True)
class TrustedHeader:
    """Single sign-on: the user named in `header`, believed only when the request comes from one of `proxies`."""

    header: str
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, header: str | None, proxies: str | None) -> TrustedHeader | None:
        if not header or not proxies:
            return None
        networks = tuple(
            ipaddress.ip_network(part.strip(), strict=False) for part in proxies.split(",") if part.strip()
        )
        return cls(header.lower(), networks)

    def is_proxy(self, client_host: str | None) -> bool:
        if not client_host:
            return False
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def user(self, client_host: str | None, headers: dict[str, str]) -> str | None:
        value = headers.get(self.header)
        if not value or not self.is_proxy(client_host):
            return None
        return value.strip() or None


def on_this_machine(client_host: str | None, trusted: TrustedHeader | None) -> bool:
    """Whether the client is on the service's machine (a loopback address), as a `local_only` user must be.
    A configured SSO proxy on loopback is not: it relays other machines' requests."""
    if not client_host or not is_loopback(client_host):
        return False
    return trusted is None or not trusted.is_proxy(client_host)


def session_secret(configured: str | None) -> str:
    """The configured secret, else a random one for this process (sessions then end when it restarts)."""
    return configured or secrets.token_urlsafe(48)
