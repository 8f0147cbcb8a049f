"""Webhook delivery against a real HTTP receiver on 127.0.0.1 (a small server in the test, not a mock).

The receiver misbehaves on purpose (500s, stalls, down for a whole run, the sender killed mid-run); every test
is bounded to a few seconds by short timeouts and back-offs.
"""

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from activation.delivery import check_webhook_url, deliver
from configuration.tiering import Alerts
from features.errors import DataError

SECRET = "s3cret-for-tests"
FAST = Alerts(timeout_seconds=0.4, max_attempts=4, backoff_seconds=0.05, max_total_seconds=5)
REPO = Path(__file__).resolve().parents[2]


def make_events(n: int, as_of: str = "2026-07-01") -> list[dict]:
    return [
        {
            "id": f"{i:032x}",
            "kind": "tier_entered",
            "account_id": f"A{i}",
            "as_of": as_of,
            "previous_as_of": "2026-04-01",
            "summary": f"A{i} entered Tier 1 (from Tier 2)",
            "change": {"field": "tier", "from": "tier_2", "to": "tier_1"},
            "tier": "tier_1",
            "previous_tier": "tier_2",
            "learned_score": 80.0,
            "win_probability": 0.4,
            "rule_score": 60.0,
            "expected_value": 100.0,
            "intent_surge": False,
            "surge_channels": [],
            "reasons": [],
            "model_version": "3",
        }
        for i in range(n)
    ]


class Receiver:
    """A webhook receiver: `plan` maps the n-th request (0-based) to 'fail' (HTTP 500), 'stall' (answers after the
    client's timeout), 'kill' (SIGKILLs `victim` after recording, then answers) or 'refuse' (HTTP 400); else 200."""

    def __init__(self, plan: dict[int, str] | None = None):
        self.plan = plan or {}
        self.requests: list[dict] = []
        self.victim: int | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    n = len(receiver.requests)
                    receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                action = receiver.plan.get(n)
                if action == "stall":
                    time.sleep(0.8)
                if action == "kill" and receiver.victim:
                    os.kill(receiver.victim, signal.SIGKILL)
                    time.sleep(0.2)
                status = {"fail": 500, "refuse": 400}.get(action, 200)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def keys(self) -> list[str]:
        return [request["headers"]["Idempotency-Key"] for request in self.requests]

    def accepted(self) -> list[str]:
        """Keys the receiver processed, deduplicated by Idempotency-Key as a receiver should."""
        seen = []
        for n, key in enumerate(self.keys()):
            if self.plan.get(n) not in ("fail", "refuse") and key not in seen:
                seen.append(key)
        return seen


def free_port_url() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # closed again: nothing listens there


def test_delivery_is_signed_keyed_and_slack_shaped(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERING_WEBHOOK_SECRET", SECRET)
    events = make_events(3)
    with Receiver() as receiver:
        report = deliver(events, tmp_path / "alerts.jsonl", receiver.url, FAST)
    assert report.complete and report.delivered == [e["id"] for e in events]
    assert receiver.keys() == [e["id"] for e in events]
    for request, event in zip(receiver.requests, events):
        stamp = request["headers"]["X-Tiering-Timestamp"]
        assert abs(int(stamp) - time.time()) < 60
        signed = stamp.encode() + b"." + request["body"]
        expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert request["headers"]["X-Tiering-Signature"] == expected
        assert request["headers"]["Content-Type"] == "application/json" and request["path"] == "/hook"
        payload = json.loads(request["body"])
        assert payload["text"] == event["summary"] and payload["event"] == event
        assert payload["blocks"][0]["text"]["text"] == event["summary"]
    assert not (tmp_path / "alerts.jsonl.outbox").exists()
    assert (tmp_path / "alerts.jsonl.delivered").read_text().split() == [e["id"] for e in events]


def test_retries_on_500_and_on_a_stall_then_delivers(tmp_path):
    events = make_events(2)
    started = time.monotonic()
    with Receiver({0: "fail", 1: "fail", 3: "stall"}) as receiver:
        report = deliver(events, tmp_path / "alerts.jsonl", receiver.url, FAST)
    assert time.monotonic() - started < 4
    assert report.complete
    # Event 0: 500, 500, then 200. Event 1: stalls past the 0.4 s timeout, then 200 on the retry.
    ids = [e["id"] for e in events]
    assert receiver.keys() == [ids[0], ids[0], ids[0], ids[1], ids[1]]
    assert receiver.requests[0]["body"] == receiver.requests[2]["body"]  # the same bytes every attempt


def test_receiver_down_for_the_whole_run_keeps_the_outbox_and_next_run_sends_it_first(tmp_path):
    out = tmp_path / "alerts.jsonl"
    first = make_events(3, "2026-07-01")
    started = time.monotonic()
    report = deliver(first, out, free_port_url(), FAST)
    assert time.monotonic() - started < 3
    assert not report.complete and report.pending == [e["id"] for e in first] and report.delivered == []
    kept = [json.loads(line)["id"] for line in (tmp_path / "alerts.jsonl.outbox").read_text().splitlines()]
    assert kept == [e["id"] for e in first]

    second = make_events(5, "2026-10-01")  # a later run with new events (other ids)
    second = [dict(e, id="b" + e["id"][1:]) for e in second]
    with Receiver() as receiver:
        report = deliver(second, out, receiver.url, FAST)
    assert report.complete
    assert receiver.keys() == [e["id"] for e in first] + [e["id"] for e in second]  # the outbox first
    assert not (tmp_path / "alerts.jsonl.outbox").exists()

    with Receiver() as receiver:  # the same events again: all delivered already, nothing sent
        report = deliver(second, out, receiver.url, FAST)
    assert receiver.requests == [] and report.already == 5 and report.complete


def test_a_refusal_stays_in_the_outbox_and_the_total_time_is_bounded(tmp_path):
    events = make_events(3)
    with Receiver({1: "refuse"}) as receiver:
        report = deliver(events, tmp_path / "alerts.jsonl", receiver.url, FAST)
    assert report.pending == [events[1]["id"]] and report.refused == {events[1]["id"]: "HTTP 400"}
    assert receiver.keys() == [e["id"] for e in events]  # a 400 is not retried
    bounded = Alerts(timeout_seconds=0.4, max_attempts=50, backoff_seconds=0.05, max_total_seconds=1.0)
    started = time.monotonic()
    with Receiver({n: "fail" for n in range(1000)}) as receiver:
        report = deliver(make_events(2), tmp_path / "other.jsonl", receiver.url, bounded)
    assert time.monotonic() - started < 2.0 and report.timed_out and len(report.pending) == 2


SENDER = """
import json, sys
from configuration.tiering import Alerts
from activation.delivery import deliver
events = json.loads(open(sys.argv[1]).read())
deliver(events, sys.argv[2], sys.argv[3], Alerts(timeout_seconds=2, max_attempts=2, backoff_seconds=0.05))
"""


def test_no_duplicate_after_the_sender_is_killed_between_send_and_bookkeeping(tmp_path):
    events = make_events(6)
    (tmp_path / "events.json").write_text(json.dumps(events))
    out = tmp_path / "alerts.jsonl"
    with Receiver({2: "kill"}) as receiver:
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(tmp_path / "events.json"), str(out), receiver.url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        receiver.victim = sender.pid
        assert sender.wait(timeout=30) == -signal.SIGKILL
        assert len(receiver.requests) == 3  # killed while the third event was in flight
        report = deliver(events, out, receiver.url, FAST)
    ids = [e["id"] for e in events]
    assert report.complete and report.already == 2
    # The in-flight event is sent again with the same key and bytes; a receiver honouring the key takes it once.
    assert receiver.keys() == ids[:3] + ids[2:]
    assert receiver.requests[2]["body"] == receiver.requests[3]["body"]
    assert receiver.accepted() == ids
    assert (tmp_path / "alerts.jsonl.delivered").read_text().split() == ids


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://127.0.0.1/x",
        "https://user:pw@hooks.example.com/x",
        "not a url",
        # A name may resolve anywhere: plain http goes to `localhost` and loopback addresses only, as `tiering serve`
        # decides whether it may listen without a key.
        "http://relay.localhost/x",
        "http://localhost.localdomain/x",
    ],
)
def test_webhook_urls_that_are_refused(url):
    with pytest.raises(DataError):
        check_webhook_url(url)


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:9/x"]
)
def test_webhook_urls_that_are_allowed(url):
    check_webhook_url(url)


@pytest.mark.parametrize(
    ("url", "what", "position"),
    [
        ("http://127.0.0.1:9/hooks/a b", "a space", 27),
        ("https://hooks.example.com/café", "a non-ASCII character", 30),
        ("https://hööks.example.com/x", "a non-ASCII character", 10),
        ("http://127.0.0.1:9/x\n", "a control character", 21),
    ],
)
def test_a_url_no_request_can_carry_is_refused_at_once_by_position(tmp_path, url, what, position):
    """Once a UnicodeEncodeError, or (a space) every attempt failing until the time limit."""
    with pytest.raises(DataError) as refused:
        check_webhook_url(url)
    message = str(refused.value)
    assert f"holds {what} at character {position}" in message and "percent-encode" in message
    assert "hooks" not in message and "127.0.0.1" not in message  # the URL itself may hold a secret
    started = time.monotonic()
    with pytest.raises(DataError):
        deliver(make_events(1), tmp_path / "alerts.jsonl", url, FAST)
    assert time.monotonic() - started < 0.5 and not (tmp_path / "alerts.jsonl.outbox").exists()


class Trickler:
    """A receiver on 127.0.0.1 that reads the request, then answers one byte every `every` seconds: each read of
    the client finishes well inside its socket timeout, so only a bound on the whole attempt stops it. It gives up
    after `give_up` seconds, so a client without that bound fails the test instead of hanging it."""

    def __init__(self, every: float = 0.05, give_up: float = 15.0):
        import socket

        self.every, self.give_up = every, give_up
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self):
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self.trickle, args=(client,), daemon=True).start()

    def trickle(self, client):
        answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 100_000
        with client:
            client.recv(65536)
            started = time.monotonic()
            for byte in answer:
                if self.stop.is_set() or time.monotonic() - started > self.give_up:
                    return
                try:
                    client.sendall(bytes([byte]))
                except OSError:  # the client hung up: what a bounded attempt does
                    return
                self.stop.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=2)
        self.server.close()


def test_a_receiver_trickling_its_answer_cannot_hold_an_attempt_or_the_delivery(tmp_path):
    """A byte a second once kept `tiering alerts` on its first event for 40 s with timeout_seconds 2 and
    max_total_seconds 5: the deadline was only checked between attempts."""
    limits = Alerts(timeout_seconds=0.3, max_attempts=3, backoff_seconds=0.05, max_total_seconds=1.0)
    outcome = {}

    def run():
        outcome["report"] = deliver(make_events(3), tmp_path / "alerts.jsonl", trickler.url, limits)

    with Trickler() as trickler:
        started = time.monotonic()
        sender = threading.Thread(target=run, daemon=True)
        sender.start()
        sender.join(timeout=10)
        took = time.monotonic() - started
        assert not sender.is_alive(), "delivery still running after 10 s"
    report = outcome["report"]
    assert took < limits.max_total_seconds + 1.0  # the existing bound tests allow 1 s of slack too
    assert report.delivered == [] and len(report.pending) == 3 and report.timed_out
    assert "TimeoutError" in report.last_problem
    assert 2 <= trickler.connections <= 3  # each attempt cut off at 0.3 s, a new connection for the next
    kept = (tmp_path / "alerts.jsonl.outbox").read_text().splitlines()
    assert len(kept) == 3


def test_a_connection_that_hangs_before_the_socket_is_cut_off_and_sends_nothing_late(tmp_path, monkeypatch):
    """A name lookup that hangs is bounded by no socket timeout; once the attempt gave up, its late connection
    must not send the event behind the next attempt's back."""
    import socket

    release, real = threading.Event(), socket.create_connection

    def hanging(*args, **kwargs):  # a resolver that answers only when released
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", hanging)
    limits = Alerts(timeout_seconds=0.3, max_attempts=2, backoff_seconds=0.05, max_total_seconds=1.0)
    with Receiver() as receiver:
        started = time.monotonic()
        report = deliver(make_events(1), tmp_path / "alerts.jsonl", receiver.url, limits)
        assert time.monotonic() - started < limits.max_total_seconds + 1.0
        assert report.delivered == [] and len(report.pending) == 1 and "TimeoutError" in report.last_problem
        release.set()
        for thread in threading.enumerate():
            if thread.name == "webhook-attempt":
                thread.join(timeout=5)
        assert receiver.requests == []


def test_an_interrupted_delivery_keeps_every_unsent_event(tmp_path):
    events = make_events(4)
    out = tmp_path / "alerts.jsonl"

    def stop_after_the_first(event_id):
        raise KeyboardInterrupt

    with Receiver() as receiver:
        with pytest.raises(KeyboardInterrupt):
            deliver(events, out, receiver.url, FAST, on_delivered=stop_after_the_first)
    kept = [json.loads(line)["id"] for line in (tmp_path / "alerts.jsonl.outbox").read_text().splitlines()]
    assert receiver.keys() == [events[0]["id"]] and kept == [e["id"] for e in events[1:]]


def test_two_deliveries_of_one_events_file_never_run_at_once(tmp_path):
    import fcntl

    out = tmp_path / "alerts.jsonl"
    with open(tmp_path / "alerts.jsonl.delivered", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with Receiver() as receiver, pytest.raises(DataError, match="another run is writing or delivering"):
            deliver(make_events(2), out, receiver.url, FAST)
    assert receiver.requests == []


@pytest.fixture
def certificate(tmp_path):
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return key, cert


def test_https_delivery_verifies_the_receivers_certificate(tmp_path, monkeypatch, certificate):
    import ssl

    key, cert = certificate
    events = make_events(2)
    with Receiver() as receiver:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
        url = receiver.url.replace("http://", "https://")
        # Not trusted (self-signed): nothing is delivered, everything stays in the outbox.
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
        untrusted = deliver(events, tmp_path / "a.jsonl", url, FAST)
        assert untrusted.delivered == [] and "CERTIFICATE_VERIFY_FAILED" in untrusted.last_problem
        # Trusted: delivered over TLS.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = deliver(events, tmp_path / "a.jsonl", url, FAST)
    assert trusted.complete and trusted.delivered == [e["id"] for e in events]
    assert [r["headers"]["Idempotency-Key"] for r in receiver.requests] == [e["id"] for e in events]
