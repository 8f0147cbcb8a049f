"""Alerts, CRM export and webhook delivery at book size.

    python -m bench.alerts_bench [--accounts 100000] [--webhook-events 1000]   (also part of `make bench`)

Two synthetic scorings of one book (seeded; a tenth of the accounts change tier, surge or jump), then:
`build_events` + writing the events file, `export_frame` + writing for each CRM, and delivery of
`--webhook-events` events to a receiver on 127.0.0.1 (kept-alive connection, one event per request).
Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from activation.alerts import build_events, write_events
from activation.crm_export import export_frame, write_export
from activation.delivery import deliver
from configuration.tiering import Alerts
from scoring.scorer import SCORE_COLUMNS

TIERS = np.array(["tier_1", "tier_2", "tier_3", "untiered"], dtype=object)


def books(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"{9_000_000_000 + i}" for i in range(n)], dtype=object)  # HubSpot-shaped ids

    def book(as_of: str, tiers, score, probability, surge) -> pd.DataFrame:
        frame = pd.DataFrame({column: "" for column in SCORE_COLUMNS}, index=range(n))
        frame["account_id"] = ids
        frame[["revenue_potential_score", "business_fit_score", "engagement_score", "rule_score"]] = 50.0
        frame["rule_tier"] = frame["learned_tier"] = frame["tier"] = tiers
        frame["learned_score"], frame["win_probability"] = score, probability
        frame["expected_deal_size"], frame["expected_value"] = 10_000.0, probability * 10_000.0
        frame["intent_surge"], frame["surge_channels"] = surge, np.where(surge, "demo_request;external_intent", "")
        frame["reason_1"], frame["model_version"] = "Requested a demo twice", "3"
        frame["scored_at"], frame["as_of"] = f"{as_of}T06:00:00+00:00", as_of
        return frame

    tiers = TIERS[rng.choice(4, n, p=[0.001, 0.02, 0.5, 0.479])]
    score, probability = rng.uniform(0, 100, n), rng.uniform(0, 0.6, n)
    before = book("2026-04-01", tiers, score, probability, rng.random(n) < 0.02)
    moved = rng.random(n) < 0.1
    after = book(
        "2026-07-01",
        np.where(moved, TIERS[rng.choice(4, n)], tiers),
        np.clip(score + moved * rng.normal(0, 15, n), 0, 100),
        np.clip(probability + moved * rng.normal(0, 0.1, n), 0, 1),
        rng.random(n) < 0.03,
    )
    return before, after


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def measure(n_accounts: int, webhook_events: int) -> dict:
    before, after = books(n_accounts)
    figures: dict = {"accounts": n_accounts}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        events = build_events(before, after, Alerts())
        write_events(events, folder / "alerts.jsonl")
        figures["alerts_s"] = round(time.perf_counter() - started, 3)
        figures["events"] = len(events)
        for fmt in ("salesforce", "hubspot"):
            started = time.perf_counter()
            frame, _ = export_frame(
                after,
                fmt,
                {a: f"001Dn{int(a) % 10**13:013d}" for a in after["account_id"]} if fmt == "salesforce" else None,
            )
            write_export(frame, folder / f"{fmt}.csv")
            figures[f"export_{fmt}_s"] = round(time.perf_counter() - started, 3)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            sample = events[:webhook_events]
            started = time.perf_counter()
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            report = deliver(sample, folder / "sent.jsonl", url, Alerts())
            seconds = time.perf_counter() - started
        finally:
            server.shutdown()
            server.server_close()
        figures["webhook_events"] = len(report.delivered)
        figures["webhook_events_per_s"] = round(len(report.delivered) / seconds, 1) if seconds else None
    return figures


def run(quick: bool = False) -> dict:
    """`make bench`'s entry: 100,000 accounts and 1,000 webhook events (quick: 10,000 and 200), with table rows."""
    n_accounts, webhook_events = (10_000, 200) if quick else (100_000, 1_000)
    figures = measure(n_accounts, webhook_events)
    figures["markdown_rows"] = [
        f"| `tiering alerts`, two scorings of {n_accounts:,} accounts ({figures['events']:,} events) | "
        f"{figures['alerts_s']:.2f} s | - | - | a few seconds | |",
        f"| `tiering export`, {n_accounts:,} accounts | Salesforce {figures['export_salesforce_s']:.2f} s, HubSpot "
        f"{figures['export_hubspot_s']:.2f} s | - | - | a few seconds | |",
        f"| webhook delivery to a local receiver ({figures['webhook_events']:,} events, one request each) | "
        f"{figures['webhook_events_per_s']:,.0f} events/s | - | - | - | |",
    ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--webhook-events", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(measure(args.accounts, args.webhook_events)))


if __name__ == "__main__":
    main()
