"""Pilots in the workspace store: a design published frozen with its assignment, the accounts of the active
pilots (which the campaign reads to keep control accounts out), and the readout stored beside the design.

A pilot is active from its publication until its period ends (start date plus horizon days); an account may be in
one active pilot only, so a second design on the same accounts is refused while the first runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, insert, select, update

from workspace.errors import InvalidInput
from workspace.store import WorkspaceStore, now
from workspace.tables import Pilot, PilotAssignment

RUNNING = "running"
READ_OUT = "read out"
GROUPS = ("treatment", "control")


@dataclass(frozen=True)
class PilotInfo:
    id: int
    pilot_key: str
    seed: int
    start_date: date
    horizon_days: int
    metric: str
    design: dict[str, Any]
    status: str
    created_by: str
    created_at: datetime
    readout: dict[str, Any] | None
    treatment: int
    control: int

    @property
    def end_date(self) -> date:
        return self.start_date + timedelta(days=self.horizon_days)

    def active_on(self, day: date) -> bool:
        return self.status == RUNNING and day < self.end_date


def active_assignments(store: WorkspaceStore, day: date | None = None) -> pd.DataFrame:
    """account_id, group, pilot_key of every account in a pilot active on `day` (default today)."""
    day = day or now().date()
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(
                PilotAssignment.account_id,
                PilotAssignment.group,
                Pilot.pilot_key,
                Pilot.start_date,
                Pilot.horizon_days,
            )
            .join(Pilot, Pilot.id == PilotAssignment.pilot_id)
            .where(Pilot.status == RUNNING)
        ).all()
    frame = pd.DataFrame(rows, columns=["account_id", "group", "pilot_key", "start_date", "horizon_days"])
    if frame.empty:
        return frame[["account_id", "group", "pilot_key"]]
    # The end (start + horizon days) is compared here rather than in SQL: date arithmetic differs by database.
    ends = pd.to_datetime(frame["start_date"]) + pd.to_timedelta(frame["horizon_days"], unit="D")
    active = ends > pd.Timestamp(day)
    return frame.loc[active, ["account_id", "group", "pilot_key"]].reset_index(drop=True)


def account_pilot(store: WorkspaceStore, account_id: str, day: date | None = None) -> dict[str, Any] | None:
    """The running pilot that holds this account today (pilot_key, group, end date), or None."""
    day = day or now().date()
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(PilotAssignment.group, Pilot.pilot_key, Pilot.start_date, Pilot.horizon_days)
            .join(Pilot, Pilot.id == PilotAssignment.pilot_id)
            .where(Pilot.status == RUNNING, PilotAssignment.account_id == account_id)
        ).all()
    for group, key, start, horizon in rows:
        end = start + timedelta(days=horizon)
        if day < end:
            return {"pilot_key": key, "group": group, "last_day": end - timedelta(days=1)}
    return None


def publish_pilot(store: WorkspaceStore, pilot: dict[str, Any], assignment: pd.DataFrame, created_by: str) -> PilotInfo:
    """Record a design and its assignment, frozen. InvalidInput when its key exists or when any of its accounts is
    in an active pilot (nothing is written)."""
    check_new_pilot(store, pilot, assignment)
    start = date.fromisoformat(str(pilot["start_date"]))
    with store._writing() as connection:
        pilot_id = connection.execute(
            insert(Pilot).returning(Pilot.id),
            {
                "pilot_key": str(pilot["pilot_id"]),
                "seed": int(pilot["seed"]),
                "start_date": start,
                "horizon_days": int(pilot["horizon_days"]),
                "metric": str(pilot["metric"]),
                "design": pilot,
                "status": RUNNING,
                "created_by": created_by,
                "created_at": now(),
            },
        ).scalar_one()
        connection.execute(
            insert(PilotAssignment),
            [
                {"pilot_id": pilot_id, "account_id": str(a), "group": str(g), "stratum": str(s)}
                for a, g, s in zip(assignment["account_id"], assignment["group"], assignment["stratum"], strict=True)
            ],
        )
    info = pilot_info(store, str(pilot["pilot_id"]))
    assert info is not None
    return info


def check_new_pilot(store: WorkspaceStore, pilot: dict[str, Any], assignment: pd.DataFrame) -> None:
    """InvalidInput when the pilot's key is taken, or when its accounts are in a running pilot (not read out yet)
    whose period meets this one's, or that is still active today."""
    key = str(pilot["pilot_id"])
    if pilot_info(store, key) is not None:
        raise InvalidInput(f"pilot {key} is already in the workspace: a design is frozen once published")
    start = date.fromisoformat(str(pilot["start_date"]))
    end = start + timedelta(days=int(pilot["horizon_days"]))
    today = now().date()
    meeting = [
        info.id
        for info in pilots(store)
        if info.status == RUNNING and (info.active_on(today) or (info.start_date < end and start < info.end_date))
    ]
    if not meeting:
        return
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(PilotAssignment.account_id, Pilot.pilot_key)
            .join(Pilot, Pilot.id == PilotAssignment.pilot_id)
            .where(PilotAssignment.pilot_id.in_(meeting))
        ).all()
    taken = pd.DataFrame(rows, columns=["account_id", "pilot_key"])
    overlap = taken[taken["account_id"].isin(set(assignment["account_id"].astype(str)))]
    if len(overlap):
        keys = ", ".join(sorted(overlap["pilot_key"].unique()))
        raise InvalidInput(
            f"{len(overlap):,} of the pilot's accounts are already in the running pilot {keys}: an account can be in "
            "one running pilot only. Leave those tiers out (--tiers), wait for that pilot to end, or read it out"
        )


def pilots(store: WorkspaceStore) -> list[PilotInfo]:
    """Every pilot, newest first, with its group counts."""
    with store.engine.connect() as connection:
        counts = connection.execute(
            select(PilotAssignment.pilot_id, PilotAssignment.group, func.count()).group_by(
                PilotAssignment.pilot_id, PilotAssignment.group
            )
        ).all()
        table = Pilot.__table__
        rows = connection.execute(select(table).order_by(Pilot.created_at.desc(), Pilot.id.desc())).all()
        by_pilot: dict[int, dict[str, int]] = {}
        for pilot_id, group, count in counts:
            by_pilot.setdefault(pilot_id, {})[group] = int(count)
        return [_info(row, by_pilot.get(row.id, {})) for row in rows]


def pilot_info(store: WorkspaceStore, key: str) -> PilotInfo | None:
    return next((info for info in pilots(store) if info.pilot_key == key), None)


def _info(row: Any, counts: dict[str, int]) -> PilotInfo:
    return PilotInfo(
        id=row.id,
        pilot_key=row.pilot_key,
        seed=row.seed,
        start_date=row.start_date,
        horizon_days=row.horizon_days,
        metric=row.metric,
        design=dict(row.design or {}),
        status=row.status,
        created_by=row.created_by,
        created_at=row.created_at,
        readout=row.readout,
        treatment=counts.get("treatment", 0),
        control=counts.get("control", 0),
    )


def withdraw_pilot(store: WorkspaceStore, key: str) -> None:
    """Remove a pilot just published whose files could not be written (its assignments go with it)."""
    with store._writing() as connection:
        connection.execute(delete(Pilot).where(Pilot.pilot_key == key))


def store_readout(store: WorkspaceStore, key: str, readout: dict[str, Any]) -> bool:
    """Keep a readout's figures with its pilot (the pilot ends: its control accounts rejoin the campaign). False
    when the workspace does not hold that pilot."""
    with store._writing() as connection:
        done = connection.execute(
            update(Pilot).where(Pilot.pilot_key == key).values(readout=readout, status=READ_OUT)
        ).rowcount
    return bool(done)
