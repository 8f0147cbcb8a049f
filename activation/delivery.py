"""Webhook delivery of alert events, with an outbox: nothing lost, nothing sent twice.

Each event is POSTed as JSON in a Slack-compatible shape (`text`, plus `blocks` with its fields and the whole
`event`), with the headers
- `Idempotency-Key`: the event id (stable across runs, see `activation.alerts.event_id`);
- `X-Tiering-Timestamp` (Unix seconds of the attempt) and `X-Tiering-Signature`: `sha256=<hex HMAC-SHA256 of
  "<timestamp>.<exact body>" with the secret>`, when the secret's environment variable (`alerts.secret_env`,
  default TIERING_WEBHOOK_SECRET) is set. A receiver recomputes it and refuses old timestamps (replays).

Bookkeeping beside the events file FILE:
- `FILE.outbox`: JSON Lines of the events not yet delivered, oldest first. New events are added to it before
  anything is sent, so a crash loses nothing; the next run sends it first.
- `FILE.delivered`: the ids of delivered events, one a line, appended (and flushed to disk) right after each
  receiver's 2xx. An event whose id is listed is never sent again.

A process killed between the receiver's answer and that append sends the event once more on the next run,
with the same Idempotency-Key and the same bytes, so a receiver that honours the key sees it once.

Attempts are retried with exponential back-off (`backoff_seconds`, doubling) on 5xx, 408, 429, timeouts and
connection failures, up to `max_attempts` per event, and the whole delivery stops after `max_total_seconds`
(what is left stays in the outbox). Each attempt is bounded as a whole by `timeout_seconds` (and by what is left
of `max_total_seconds`), however slowly the receiver answers. Other 4xx answers are refusals: the event stays
in the outbox and the rest go on. Redirects are not followed (the body would be re-sent elsewhere).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from activation.alerts import event_line
from configuration.tiering import Alerts
from features.errors import DataError, Problem
from features.redact import redact, redact_url
from ingest.settings import is_loopback, secret

SIGNATURE_HEADER = "X-Tiering-Signature"
TIMESTAMP_HEADER = "X-Tiering-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRIED_STATUSES = frozenset({408, 429})


def outbox_path(out: Path) -> Path:
    return Path(f"{out}.outbox")


def delivered_path(out: Path) -> Path:
    return Path(f"{out}.delivered")


def check_webhook_url(url: str) -> None:
    """https, or http to a loopback address only (a local relay or test receiver); DataError otherwise."""
    _check_url_characters(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise DataError(
            [Problem(f"--webhook {redact_url(url)!r} is not an http(s) URL", "pass e.g. https://hooks.example.com/abm")]
        )
    del port
    if parts.username or parts.password:
        raise DataError(
            [
                Problem(
                    "--webhook carries a user name or password",
                    "sign with the secret in the environment variable instead",
                )
            ]
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise DataError(
            [
                Problem(
                    f"--webhook {redact_url(url)!r} is plain http beyond this machine: events would travel unencrypted",
                    "use an https URL (plain http is allowed to loopback addresses only)",
                )
            ]
        )


def _check_url_characters(url: str) -> None:
    """A request line carries printable ASCII only: a space, a control character or a non-ASCII letter is refused
    here, by position (the URL itself may hold a secret), rather than failing every attempt until the time limit."""
    for position, char in enumerate(url, start=1):
        if "!" <= char <= "~":
            continue
        what = "a space" if char == " " else "a control character" if char.isascii() else "a non-ASCII character"
        raise DataError(
            [
                Problem(
                    f"the webhook URL holds {what} at character {position}, which no HTTP request can carry",
                    "percent-encode it (a space is %20, other characters their UTF-8 bytes as %XX) and write an "
                    "international host name in its xn-- form",
                )
            ]
        )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`: the body, and when it was sent (against replays)."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def slack_text(value: object) -> str:
    """A value as Slack's mrkdwn shows it literally: `&`, `<` and `>` escaped as Slack asks, so that `<!channel>` or
    `<https://example.com|Reset your password>` in an account id or a reason is text, not a mention or a link."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(event: dict) -> bytes:
    """The exact bytes POSTed for an event: the same every attempt and every run. Its `text` and `blocks` are Slack
    mrkdwn with every value escaped; `event` holds the values as they are, for receivers that read it."""
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{slack_text(value)}"}
        for name, value in (
            ("account", event["account_id"]),
            ("tier", event["tier"]),
            ("kind", event["kind"]),
            ("learned score", event["learned_score"]),
            ("win probability", event["win_probability"]),
            ("surge channels", ", ".join(event["surge_channels"]) or "none"),
        )
    ]
    summary = slack_text(event["summary"])
    payload = {
        "text": summary,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
            {"type": "section", "fields": fields},
        ],
        "event": event,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)  # ids delivered this run
    pending: list[str] = field(default_factory=list)  # ids left in the outbox
    already: int = 0  # events of this run delivered by an earlier run
    refused: dict[str, str] = field(default_factory=dict)  # id -> why the receiver refused it
    last_problem: str = ""
    timed_out: bool = False

    @property
    def complete(self) -> bool:
        return not self.pending


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash mid-write: the event is rewritten below from this run
        if isinstance(record, dict) and "id" in record:
            events.append(record)
    return events


def _read_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def _write_outbox(path: Path, events: list[dict]) -> None:
    if not events:
        path.unlink(missing_ok=True)
        return
    from ingest.files import atomic_path

    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("".join(event_line(event) + "\n" for event in events))
            handle.flush()
            os.fsync(handle.fileno())


class _Connection:
    """One kept-alive connection to the receiver, reopened after any failure."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if not parts.hostname:  # check_webhook_url refuses such a URL before any connection is made
            raise ValueError(f"the webhook URL {redact_url(url)!r} names no host")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """One attempt, bounded as a whole by `timeout` seconds. The socket's timeout bounds each read only: a
        receiver trickling its answer a byte at a time would hold an attempt for ever, so the exchange runs in a
        worker thread and is cut off (its socket shut) when the time is up."""
        connection = self._open(timeout)
        outcome: dict = {}
        given_up = threading.Event()

        def exchange() -> None:
            try:
                if connection.sock is None:
                    connection.connect()  # a name lookup no socket timeout bounds may end after the attempt did
                if given_up.is_set():  # then nothing is sent: the next attempt owns the event
                    connection.close()
                    return
                connection.request("POST", self.target, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                outcome["status"], outcome["will_close"] = response.status, response.will_close
            except BaseException as error:  # handed to the caller's thread
                outcome["error"] = error

        worker = threading.Thread(target=exchange, name="webhook-attempt", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            given_up.set()
            self.close()
            raise TimeoutError(f"no complete answer within {timeout:g} s")
        if "error" in outcome:
            self.close()
            raise outcome["error"]
        if outcome["will_close"]:
            self.close()
        return outcome["status"]

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        if self.connection is None:
            if self.https:
                self.connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self.connection.timeout = timeout
        if self.connection.sock is not None:
            self.connection.sock.settimeout(timeout)
        return self.connection

    def close(self) -> None:
        """Shut the socket (a read blocked in an attempt's worker ends at once: closing alone would not wake it) and
        drop the connection; the next attempt opens a new one."""
        connection, self.connection = self.connection, None
        if connection is not None:
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
            connection.close()


@contextlib.contextmanager
def events_file_lock(out: Path, create: bool = True) -> Iterator[TextIO | None]:
    """Held by one run of an events file at a time, from before it writes anything to the end of its delivery: a
    second run is refused with nothing written (it once replaced the events file of a run still delivering).

    The lock is on FILE.delivered; with `create` False and no such file (nothing ever delivered there, no webhook
    now) nothing is locked or created and None is yielded."""
    ledger = delivered_path(Path(out))
    if not create and not ledger.exists():
        yield None
        return
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a", encoding="utf-8") as ledger_file:
        try:
            fcntl.flock(ledger_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                [
                    Problem(
                        "another run is writing or delivering this events file",
                        "nothing was written or sent by this one: run it again when the other has finished",
                        file=str(out),
                    )
                ]
            ) from None
        yield ledger_file


def deliver(
    events: list[dict],
    out: Path,
    url: str,
    config: Alerts,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_delivered: Callable[[str], None] | None = None,
    held: TextIO | None = None,
) -> DeliveryReport:
    """Send the outbox's events first, then this run's new ones; keep what could not be delivered. `held`: the
    ledger of an `events_file_lock(out)` the caller holds (else the lock is taken here)."""
    check_webhook_url(url)
    out = Path(out)
    outbox, ledger = outbox_path(out), delivered_path(out)
    if held is not None:
        return _deliver_locked(events, outbox, ledger, held, url, config, clock, sleep, on_delivered)
    with events_file_lock(out) as ledger_file:
        return _deliver_locked(events, outbox, ledger, ledger_file, url, config, clock, sleep, on_delivered)


def _deliver_locked(
    events, outbox: Path, ledger: Path, ledger_file, url: str, config: Alerts, clock, sleep, on_delivered
) -> DeliveryReport:
    delivered = _read_ids(ledger)
    report = DeliveryReport()
    queue, queued = [], set()
    for event in _read_jsonl(outbox):
        if event["id"] not in delivered and event["id"] not in queued:
            queue.append(event)
            queued.add(event["id"])
    for event in events:
        if event["id"] in delivered:
            report.already += 1
        elif event["id"] not in queued:
            queue.append(event)
            queued.add(event["id"])
    _write_outbox(outbox, queue)  # before any send: a crash from here on loses nothing
    signing_key = secret(config.secret_env)
    deadline = clock() + config.max_total_seconds
    connection = _Connection(url)
    sent: set[str] = set()
    try:
        for event in queue:
            if clock() >= deadline:
                report.timed_out = True
                break
            status = _send(connection, event, signing_key, config, deadline, clock, sleep, report)
            if status is not None and 200 <= status < 300:
                ledger_file.write(event["id"] + "\n")
                ledger_file.flush()
                os.fsync(ledger_file.fileno())
                sent.add(event["id"])
                report.delivered.append(event["id"])
                if on_delivered:
                    on_delivered(event["id"])
            elif status is not None and status not in RETRIED_STATUSES and status < 500:
                report.refused[event["id"]] = f"HTTP {status}"
    finally:
        connection.close()
        # Everything not delivered stays, also the events an interruption (Ctrl-C) left unsent.
        left = [event for event in queue if event["id"] not in sent]
        _write_outbox(outbox, left)
    report.pending = [event["id"] for event in left]
    return report


def _send(
    connection: _Connection,
    event: dict,
    secret: str,
    config: Alerts,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    report: DeliveryReport,
) -> int | None:
    """POST one event with retries; its last status, or None when no answer came."""
    body = webhook_body(event)
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: event["id"], "User-Agent": "abm-tiering"}
    wait, status = config.backoff_seconds, None
    for attempt in range(config.max_attempts):
        remaining = deadline - clock()
        if remaining <= 0:
            report.timed_out = True
            return status
        if secret:  # signed at each attempt: the timestamp says when this attempt was sent
            stamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER] = stamp, sign(secret, stamp, body)
        try:
            status = connection.post(body, headers, min(config.timeout_seconds, remaining))
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            status = None
            report.last_problem = redact(f"{error.__class__.__name__}: {error}".strip(": "))
        else:
            if 200 <= status < 300:
                return status
            report.last_problem = f"HTTP {status}"
            if status < 500 and status not in RETRIED_STATUSES:
                return status  # a refusal: retrying the same bytes would be refused again
        if attempt + 1 < config.max_attempts:
            pause = min(wait, max(deadline - clock(), 0))
            if pause > 0:
                sleep(pause)
            wait *= 2
    return status
