"""ASGI middleware in front of every route: the API key, the request-size limit, JSON bodies only.

`TIERING_API_KEY`, when set, is required as `Authorization: Bearer <key>` on every path but the
health probes (so orchestrators can probe without the secret) and the workspace pages under `/app`
(which have their own sign-in and take forms); `/metrics` stays protected because it reveals traffic.
The key is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio

API_KEY_ENV = "TIERING_API_KEY"
# Form encodings BentoML would try to parse as multipart (and fail on); `curl -d` sends the second by default.
# BentoML refuses pickle itself, but with a list for a body instead of the documented error object.
NOT_JSON_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded", b"application/vnd.bentoml+pickle")
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
WORKSPACE_PATH = "/app"  # the workspace pages: their own sign-in, form posts; the API key neither needed nor enough
MAX_BODY_BYTES = 64 * 1024 * 1024  # 10,000 accounts with months of activity fit well within this

logger = logging.getLogger("bentoml.abm_tiering")
Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def api_key() -> str | None:
    """The configured key, without surrounding whitespace (a key read from a file keeps its newline); empty is unset.
    A blank key or one holding a line break is refused (ingest.settings.SettingsError)."""
    from ingest.settings import load_settings

    key = load_settings().api_key
    return key.get_secret_value() if key is not None else None


def body_timeout_seconds() -> float:
    """How long a client may take to send a whole request body (TIERING_BODY_TIMEOUT_SECONDS, default 60)."""
    from ingest.settings import load_settings

    return load_settings().body_timeout_seconds


async def _send_json(send: Send, status: int, body: dict, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _problem(kind: str, location: list[str], message: str) -> dict:
    # The same shape as BentoML's validation errors, so clients handle every refusal alike.
    return {"error": message, "detail": [{"type": kind, "loc": location, "msg": message}]}


async def _send_problem(send: Send, status: int, kind: str, location: list[str], message: str) -> None:
    await _send_json(send, status, _problem(kind, location, message))


def is_workspace(path: str) -> bool:
    return path == WORKSPACE_PATH or path.startswith(WORKSPACE_PATH + "/")


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope.get("headers", []) if key.lower() == name), None)


class BearerAuth:
    """401, with no hint about the key, unless the request carries `Authorization: Bearer <key>`."""

    def __init__(self, app: App):
        self.app = app
        key = api_key()  # read when the server builds its app, so tests and `tiering serve` can set it
        self._expected = key.encode("utf-8") if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self._expected
        if (
            expected is None
            or scope["type"] not in ("http", "websocket")
            or scope["path"] in OPEN_PATHS
            or is_workspace(scope["path"])
        ):
            return await self.app(scope, receive, send)
        if _authorised(_header(scope, b"authorization") or b"", expected):
            return await self.app(scope, receive, send)
        await _send_json(
            send,
            401,
            {"error": "unauthorized: send Authorization: Bearer <API key>"},
            [(b"www-authenticate", b"Bearer")],
        )


def _authorised(header: bytes, expected: bytes) -> bool:
    scheme, _, token = header.partition(b" ")
    # compare_digest on bytes takes the same time wherever the first difference is.
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), expected)


class BodySizeLimit:
    """400 for a request body over `max_bytes`, declared (Content-Length) or streamed (chunked); 408 for a body
    not received whole within `timeout_seconds` (a client that sends half a body and waits holds no connection)."""

    def __init__(self, app: App, max_bytes: int = MAX_BODY_BYTES, timeout_seconds: float | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = body_timeout_seconds() if timeout_seconds is None else timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await self._refuse(send, "invalid_content_length", "Content-Length is not a number of bytes")
            if int(declared) > self.max_bytes:
                return await self._refuse(send, "body_too_large", self._too_large)
        # Read the body here, up to the limit and the deadline, then hand it on whole (BentoML reads it whole anyway).
        chunks, size = [], 0
        with anyio.move_on_after(self.timeout_seconds) as deadline:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_bytes:
                    return await self._refuse(send, "body_too_large", self._too_large)
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            logger.warning(
                "408 %s %s: the request body was not received within %g s (%d bytes arrived)",
                scope.get("method", ""),
                scope.get("path", ""),
                self.timeout_seconds,
                size,
            )
            return await _send_json(
                send,
                408,
                _problem(
                    "body_timeout",
                    ["body"],
                    f"the request body did not arrive within {self.timeout_seconds:g} s: send the whole body at once",
                ),
                [(b"connection", b"close")],
            )
        return await self.app(scope, _replay(b"".join(chunks), receive), send)

    @property
    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes // (1024 * 1024)} MB: send fewer accounts per request"

    @staticmethod
    async def _refuse(send: Send, kind: str, message: str) -> None:
        await _send_problem(send, 400, kind, ["body"], message)


class JsonBodiesOnly:
    """415 for form-encoded or pickled bodies: the API reads JSON (any other content type is read as JSON).
    The workspace pages take forms."""

    def __init__(self, app: App):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if scope["type"] == "http" and declared in NOT_JSON_TYPES and not is_workspace(scope["path"]):
            return await _send_problem(
                send,
                415,
                "unsupported_media_type",
                ["header", "content-type"],
                "send the request as JSON with Content-Type: application/json",
            )
        return await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read body once, then defers to the client's (for disconnects)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict:
        return pending.pop() if pending else await receive()

    return replayed
