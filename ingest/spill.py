"""An export's event tables spilled to disk by group of accounts, so a command holds one group's events at a time.

Training, scoring, the review and the forecast build their feature rows group by group (`features.groups`); the
engagement and intent tables are most of an export, and once the import has validated them they are written here,
one Parquet file per table and group, into a temporary folder the command creates and removes (`events_by_group`),
and read back a group at a time. The rows, their order within a group and their dtypes are those of the tables
held whole, so the feature rows are the same.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.groups import EVENT_TABLES, group_count, group_positions, grouping_keys, row_groups
from features.schema import CrmData, GroupedEvents, conform, empty_table

DATE_COLUMN = {"engagement": "timestamp", "intent": "date"}


@contextmanager
def events_by_group(data: CrmData) -> Iterator[CrmData]:
    """The book with its events spilled by group (`spill_events`) into a private temporary folder, which is removed
    on the way out, error or not: the book is not to be built from after that."""
    with tempfile.TemporaryDirectory(prefix="tiering-events-") as folder:
        spill_events(data, Path(folder))
        yield data


def spill_events(data: CrmData, folder: Path, groups: int | None = None) -> None:
    """Move the book's event tables to `folder`, by group: afterwards `data.engagement` and `data.intent` are empty
    and `data.grouped` reads them a group at a time. A book of one group keeps them as they are.

    Rows are grouped by family (a family's rows are then never split, whatever the model's `roll_up`), which
    every build can read: an account's own rows are always in its family's group."""
    groups = groups or group_count(len(data.accounts))
    if groups <= 1 or data.grouped is not None or not any(len(data.table(name)) for name in EVENT_TABLES):
        return  # nothing to spill (a Spark engine's driver holds no events)
    key = grouping_keys(data.accounts, by_family=True)
    rows: dict[str, int] = {}
    latest: dict[str, pd.Timestamp | None] = {}
    for name in EVENT_TABLES:
        frame = data.table(name)
        rows[name] = len(frame)
        moment = frame[DATE_COLUMN[name]].max()
        latest[name] = None if pd.isna(moment) else pd.Timestamp(moment)
        at = group_positions(row_groups(frame["account_id"], data.accounts, key, groups), groups)
        for group in range(groups):
            part = frame.iloc[at[group]]  # the group's rows in the table's order
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), _path(folder, name, group))
            del part
        setattr(data, name, empty_table(name))
        del frame, at
    data.grouped = GroupedEvents(groups, True, lambda group: _read(folder, group), rows, latest)
    gc.collect()
    pa.default_memory_pool().release_unused()  # give the freed tables back, not only to Arrow's pool


def _path(folder: Path, table: str, group: int) -> Path:
    return folder / f"{table}-{group}.parquet"


def _read(folder: Path, group: int) -> dict[str, pd.DataFrame]:
    return {name: conform(pq.read_table(_path(folder, name, group)).to_pandas(), name) for name in EVENT_TABLES}
