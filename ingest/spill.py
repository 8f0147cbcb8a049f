"""An export's event tables spilled to disk by group of accounts, so a command holds one group's events at a time.

Training, scoring, the review and the forecast build their feature rows group by group (`features.groups`); the
engagement and intent tables are most of an export, and they are written here, one Parquet file per table and
group, into a temporary folder the command creates and removes (`spill_folder`), and read back a group at a time:
by the import itself, a batch at a time as it reads and checks them (`ingest.io.load_export` with `spill`), or
from tables held whole (`events_by_group`). The rows, their order within a group and their dtypes are those of the
tables held whole, so the feature rows are the same.
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
def spill_folder() -> Iterator[Path]:
    """A private temporary folder for a command's spilled events, removed on the way out, error or not."""
    with tempfile.TemporaryDirectory(prefix="tiering-events-") as folder:
        yield Path(folder)


@contextmanager
def events_by_group(data: CrmData) -> Iterator[CrmData]:
    """The book with its events spilled by group (`spill_events`) into a private temporary folder, which is removed
    on the way out, error or not: the book is not to be built from after that. A book the import already spilled
    (`load_export` with `spill`) is left as it is."""
    with spill_folder() as folder:
        spill_events(data, folder)
        yield data


def spill_events(data: CrmData, folder: Path, groups: int | None = None) -> None:
    """Move the book's event tables to `folder`, by group: afterwards `data.engagement` and `data.intent` are empty
    and `data.grouped` reads them a group at a time. A book of one group keeps them as they are.

    Rows are grouped by family (a family's rows are then never split, whatever the model's `roll_up`), which
    every build can read: an account's own rows are always in its family's group. (`ingest.io.load_export` with
    `spill=` writes the event tables so batch by batch as it reads them, and never holds them whole.)"""
    groups = groups or group_count(len(data.accounts))
    if groups <= 1 or data.grouped is not None or not any(len(data.table(name)) for name in EVENT_TABLES):
        return  # nothing to spill (a Spark engine's driver holds no events)
    writers = {name: GroupWriter(folder, name, data.accounts, groups) for name in EVENT_TABLES}
    for name, writer in writers.items():
        writer.write(data.table(name))
        setattr(data, name, empty_table(name))
        writer.close()
    grouped_events(data, folder, writers)


def grouped_events(data: CrmData, folder: Path, writers: dict[str, GroupWriter]) -> None:
    """Point `data.grouped` at the event tables the writers wrote (every one closed)."""
    groups = next(iter(writers.values())).groups
    rows = {name: writer.rows for name, writer in writers.items()}
    latest = {name: writer.latest for name, writer in writers.items()}
    data.grouped = GroupedEvents(groups, True, lambda group: _read(folder, group), rows, latest)
    gc.collect()
    pa.default_memory_pool().release_unused()  # give the freed tables back, not only to Arrow's pool


class GroupWriter:
    """One event table's rows appended, a table or a batch at a time, to one Parquet file per group of accounts
    (by family), in the order they come: what `GroupedEvents` reads back a group at a time."""

    def __init__(self, folder: Path, name: str, accounts: pd.DataFrame, groups: int) -> None:
        self.folder, self.name, self.accounts, self.groups = folder, name, accounts, groups
        self.key = grouping_keys(accounts, by_family=True)
        self.schema: pa.Schema | None = None
        self.writers: dict[int, pq.ParquetWriter] = {}
        self.rows = 0
        self.latest: pd.Timestamp | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append canonical rows (`conform`ed) to their groups' files."""
        if not len(frame):
            return
        self.rows += len(frame)
        moment = frame[DATE_COLUMN[self.name]].max()
        if not pd.isna(moment) and (self.latest is None or moment > self.latest):
            self.latest = pd.Timestamp(moment)
        if self.schema is None:  # the first rows' types are every batch's (their dtypes are canonical)
            self.schema = pa.Schema.from_pandas(frame, preserve_index=False)
        at = group_positions(row_groups(frame["account_id"], self.accounts, self.key, self.groups), self.groups)
        for group in range(self.groups):
            if len(at[group]):  # the group's rows in the table's order
                part = pa.Table.from_pandas(frame.iloc[at[group]], preserve_index=False)
                self._writer(group).write_table(part.cast(self.schema))

    def close(self) -> None:
        """Finish every group's file; a group without rows gets an empty one."""
        if self.schema is None:
            self.schema = pa.Schema.from_pandas(empty_table(self.name), preserve_index=False)
        for group in range(self.groups):
            self._writer(group).close()

    def discard(self) -> None:
        """Close and remove what was written, to write the table again from its start."""
        for group, writer in self.writers.items():
            writer.close()
            _path(self.folder, self.name, group).unlink(missing_ok=True)
        self.writers, self.schema, self.rows, self.latest = {}, None, 0, None

    def _writer(self, group: int) -> pq.ParquetWriter:
        if group not in self.writers:
            self.writers[group] = pq.ParquetWriter(_path(self.folder, self.name, group), self.schema)
        return self.writers[group]


def _path(folder: Path, table: str, group: int) -> Path:
    return folder / f"{table}-{group}.parquet"


def _read(folder: Path, group: int) -> dict[str, pd.DataFrame]:
    return {name: conform(pq.read_table(_path(folder, name, group)).to_pandas(), name) for name in EVENT_TABLES}
