"""Import a CRM export: find and read its files, apply the mapping, validate, return canonical tables.

Reading is columnar (pyarrow) from file to DataFrame, so 20 million engagement rows load in seconds.
CSV cells are read as text and typed by validation, so one odd value never derails type inference.
Every problem in every file is collected and raised together in one `DataError`.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from features.errors import DataError, Problem, plural
from features.groups import EVENT_TABLES, group_count
from features.schema import REQUIRED_TABLES, TABLES, CrmData, columns, conform
from ingest.derive import ID_COLUMN, accounts_rows, fill_opportunity_ids, generated_ids_warning
from ingest.mapping import Mapping, TableMapping, load_mapping
from ingest.numbers import EVIDENCE_ROWS, file_evidence
from ingest.problems import problem_at_rows
from ingest.spill import GroupWriter, grouped_events
from ingest.validation import (
    ChannelCounts,
    EventChecks,
    SourceTable,
    WholeTableNeeded,
    in_order,
    summarize,
    unknown_channel_counts,
    unusable_open_opportunities,
    validate_core,
)

CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
# Tried in order; latin-1 decodes any byte, so reading always ends with one of them.
ENCODINGS: tuple[str, ...] = ("utf8", "cp1252", "latin-1")
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
CSV_BLOCK_SIZE = 16 << 20
# An event table read in batches (`load_export` with `spill`): rows of a Parquet file, bytes of a CSV file at a time.
BATCH_ROWS = 500_000
CSV_BATCH_BYTES = 16 << 20
EMPTY_FILE = "the file is empty"
ABSENT_TABLE_WARNINGS: dict[str, tuple[str, str]] = {
    "engagement": (
        "no engagement table: the engagement score is 0 for every account",
        "add engagement.csv (account_id, timestamp, channel, optional count) to score activity",
    ),
    "intent": (
        "no intent table: intent data is left out",
        "add intent.csv (account_id, date, topic, optional score) to use intent data",
    ),
}


@dataclass
class LoadedExport:
    """A validated export in canonical form, with its warnings and summary."""

    data: CrmData
    warnings: list[Problem]
    summary: dict[str, Any]
    files: dict[str, list[Path]] = field(default_factory=dict)  # table -> files read
    mapping: str = "canonical"
    invalid_rows: str = "stop"
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(REJECTED_COLUMNS)))


def data_folder(data_dir: str | Path) -> Path:
    """The export's folder, or one clear problem when it is not a folder."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(
            [
                Problem(
                    "data folder not found",
                    fix="pass the folder that holds the export's CSV or Parquet files",
                    file=str(folder),
                )
            ]
        )
    return folder


def load_export(
    data_dir: str | Path,
    mapping: str | Path | Mapping | None = None,
    invalid_rows: str = "stop",
    spill: Path | None = None,
) -> LoadedExport:
    """Read the export in `data_dir` through `mapping` (preset name, YAML path or Mapping; default canonical).

    Raises DataError carrying every problem found (errors first, then warnings) if any is an error. With
    `invalid_rows="drop"`, rows with row-level problems are dropped instead and listed in `rejected` (file, row,
    table, reason); table-level problems still raise.

    With `spill` (an empty folder the caller removes) and a book of more than one group of accounts
    (`features.groups`), the event tables are read, checked and written to `spill` by group a batch at a time, and
    `data.grouped` reads them back a group at a time (`ingest.spill`): they are never held whole. The problems,
    summary and rows are those of the tables read whole.
    """
    chosen = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    data_dir = data_folder(data_dir)
    found: dict[str, list[Problem]] = {}
    files: dict[str, list[Path]] = {}
    tables: dict[str, SourceTable] = {}
    reads: dict[Path, pa.Table | None] = {}  # each file is read once, whichever tables read it
    derived = chosen.accounts.from_opportunities
    for name in TABLES:
        found[name] = []
        if name == "accounts" and derived:  # the opportunities files, which that table reports if absent
            files[name] = _find_files(data_dir, "opportunities", chosen.opportunities, [])
        else:
            files[name] = _find_files(data_dir, name, chosen.table(name), found[name])
    later = [
        name for name in EVENT_TABLES if spill is not None and files[name] and _alone(data_dir, name, chosen, files)
    ]
    for name in TABLES:
        if files[name] and name not in later:
            table = _read_table(data_dir, name, files[name], chosen, found[name], reads)
            if table is not None:
                tables[name] = table
    reads.clear()  # the files as read: every table holds its own rows now
    core = {name: table for name, table in tables.items() if name in REQUIRED_TABLES}
    slots, emptied = validate_core(core, chosen, invalid_rows)
    accounts = core.get("accounts")
    groups = group_count(len(accounts.frame)) if spill is not None and accounts is not None else 1
    failed = any(problem.severity == "error" for name in TABLES for problem in found[name]) or any(
        problem.severity == "error" for problem in in_order(slots, invalid_rows) + emptied
    )
    by_group = (
        None
        if groups <= 1 or failed or spill is None or accounts is None
        else (conform(accounts.frame, "accounts"), groups, spill)
    )
    events: dict[str, pd.DataFrame] = {}
    writers: dict[str, GroupWriter] = {}
    channels: pd.Series | None = None
    for name in EVENT_TABLES:
        writer = None if by_group is None else GroupWriter(by_group[2], name, by_group[0], by_group[1])
        if writer is not None:
            writers[name] = writer
        checks = EventChecks(name, chosen.table(name), accounts, invalid_rows)
        streamed = (
            _stream_events(data_dir, name, files[name], chosen, checks, writer)
            if name in later and groups > 1
            else None
        )
        if streamed is not None:
            tables[name], counts = streamed
        else:
            if name in later:  # read whole after all (one group, or a batch that only the whole table decides)
                checks = EventChecks(name, chosen.table(name), accounts, invalid_rows)  # nothing of the batches kept
                table = _read_table(data_dir, name, files[name], chosen, found[name])
                if table is not None:
                    tables[name] = table
            if name not in tables:
                continue
            frame = conform(checks.check(tables[name]), name)
            tables[name].rejected = checks.rejected
            tables[name].frame = tables[name].frame.iloc[:0]
            counts = unknown_channel_counts(frame, sort=False) if name == "engagement" else None
            if writer is None:
                events[name] = frame
            else:
                writer.write(frame[list(columns(name))])  # the features read no other column
            del frame
        slots |= checks.problems(tables[name])
        if counts is not None and writer is not None:
            channels = ChannelCounts().add(counts)
    problems = [problem for name in TABLES for problem in _tagged(found[name], name)]
    problems += in_order(slots, invalid_rows) + emptied
    errors = [problem for problem in problems if problem.severity == "error"]
    warnings = [problem for problem in problems if problem.severity == "warning"]
    if errors:
        for writer in writers.values():
            writer.close()
        raise DataError(errors + warnings)

    without = unusable_open_opportunities(tables["opportunities"].frame)
    unusable = without["account_id"] | without["created_date"]
    tables["opportunities"].frame = tables["opportunities"].frame[~unusable].reset_index(drop=True)
    canonical = dict(events)
    for name in REQUIRED_TABLES:  # one table at a time, each read table let go once it is canonical
        canonical[name] = conform(tables[name].frame, name)
        tables[name].frame = tables[name].frame.iloc[:0]
    present = frozenset(name for name in TABLES if name in tables)
    data = CrmData(**canonical, present=present)
    del canonical, events
    if writers:
        for writer in writers.values():
            writer.close()
        grouped_events(data, writers[EVENT_TABLES[0]].folder, writers)
    pa.default_memory_pool().release_unused()  # what reading and validating used, given back
    tables = {name: tables[name] for name in TABLES if name in tables}
    rejected = rejected_rows(tables.values())
    summary = summarize(data, dropped_rows={"opportunities": int(unusable.sum())}, channels=channels)
    summary["invalid_rows"] = invalid_rows
    summary["generated_ids"] = tables["opportunities"].generated_ids
    summary["accounts_from_opportunities"] = chosen.accounts.from_opportunities
    summary["one_account_per_opportunity"] = chosen.accounts.one_per_opportunity
    rule = chosen.opportunities.outcome_rule
    if rule is not None:
        reference = tables["opportunities"].rule_reference
        summary["outcome_rule"] = {
            "won_date": rule.won_date,
            "lost_after_days": rule.lost_after_days,
            "judged_on": None if reference is None else reference.date().isoformat(),
        }
    summary["numbers"] = number_readings(tables.values())
    summary["rejected_rows"] = {name: int((rejected["table"] == name).sum()) for name in TABLES if name in tables}
    return LoadedExport(
        data=data,
        warnings=warnings,
        summary=summary,
        files={name: paths for name, paths in files.items() if paths},
        mapping=chosen.origin,
        invalid_rows=invalid_rows,
        rejected=rejected,
    )


def export_account_ids(data_dir: str | Path, mapping: str | Path | Mapping | None = None) -> pd.Series | None:
    """The account ids of an export's accounts table, read without its other tables (the events are most of an
    export): enough to tell whether a published scoring is of this export. None where the ids cannot be read so
    (accounts derived from the opportunities, or a file that does not read): the caller loads the export."""
    chosen = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    if chosen.accounts.from_opportunities:
        return None
    folder = data_folder(data_dir)
    problems: list[Problem] = []
    files = _find_files(folder, "accounts", chosen.accounts, problems)
    table = _read_table(folder, "accounts", files, chosen, problems) if files else None
    if table is None or "account_id" not in table.frame:
        return None
    return table.frame["account_id"].astype("str")


def _alone(data_dir: Path, name: str, mapping: Mapping, files: dict[str, list[Path]]) -> bool:
    """Whether an event table can be read in batches: CSV or Parquet files that no other table and no join reads,
    and no join of its own (a join needs the whole file it brings columns from)."""
    if mapping.table(name).join:
        return False
    others = {path for other, paths in files.items() if other != name for path in paths}
    joined = {path for table in TABLES for join in mapping.table(table).join for path in _matching(data_dir, join.file)}
    readable = all(path.suffix.lower() in CSV_SUFFIXES | PARQUET_SUFFIXES for path in files[name])
    return readable and not set(files[name]) & (others | joined)


@dataclass
class _EventFile:
    """One file of an event table opened for reading in batches: its rows as the table names them."""

    path: Path
    display: str
    section: TableMapping  # the table's mapping for this file's headers
    schema: pa.Schema  # renamed and cleaned, as `_read_table` makes each file's rows
    batches: Callable[[], Iterator[pa.Table]]  # the file's rows as read, a batch at a time


def _stream_events(
    data_dir: Path,
    name: str,
    paths: list[Path],
    mapping: Mapping,
    checks: EventChecks,
    writer: GroupWriter | None,
) -> tuple[SourceTable, pd.Series | None] | None:
    """Read, check and write (to `writer`, by group) an event table a batch at a time; returns the table as read
    (its files, readings and rejected rows; no rows) and its unknown channels' rows. None when a file or a batch
    holds what only the whole table decides (an unusual file, formatted numbers...): nothing is left written, and
    the caller reads the table whole, which words every problem as it always has."""
    try:
        return _checked_batches(data_dir, name, paths, mapping, checks, writer)
    except WholeTableNeeded:
        if writer is not None:
            writer.discard()
        return None


def _checked_batches(
    data_dir: Path, name: str, paths: list[Path], mapping: Mapping, checks: EventChecks, writer: GroupWriter | None
) -> tuple[SourceTable, pd.Series | None]:
    opened = [_open_event_file(data_dir, path, name, mapping) for path in paths]
    try:  # the files' columns as one table has them (`_read_table` concatenates them so)
        schema = pa.unify_schemas([file.schema for file in opened], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise WholeTableNeeded("the files disagree on column types") from error
    section = opened[-1].section
    displays = [file.display for file in opened]
    batches = _batches(name, opened, schema)
    head: list[tuple[int, pa.Table]] = []  # the first rows, which vote for the decimal mark as the whole table's
    for item in batches:
        head.append(item)
        if sum(batch.num_rows for _, batch in head) >= EVIDENCE_ROWS:
            break
    evidence = file_evidence(pa.concat_tables([schema.empty_table()] + [batch for _, batch in head]))
    starts = [NOT_YET] * len(opened)  # each file's first row in the table, once reached
    read = 0
    channels = ChannelCounts() if name == "engagement" else None

    def replayed() -> Iterator[tuple[int, pa.Table]]:  # the first batches again, each let go once checked
        while head:
            yield head.pop(0)
        yield from batches

    for index, batch in replayed() if head else iter([(0, schema.empty_table())]):
        for reached in range(index + 1):  # files without rows begin where the next one does, as when read whole
            starts[reached] = min(starts[reached], read)
        frame = batch.to_pandas()
        section.map_values(frame)
        section.add_defaults(frame)
        part = SourceTable(name, frame, displays, starts.copy(), headers=dict(section.columns), batch=checks.tally)
        part.origin = np.arange(read, read + len(frame))
        part.number_evidence = evidence
        read += len(frame)
        del batch, frame
        kept = conform(checks.check(part), name)[list(columns(name))]  # the features read no other column
        if channels is not None:
            channels.add(unknown_channel_counts(kept, sort=False))
        if writer is not None:
            writer.write(kept)
        del part, kept
    starts = [min(start, read) for start in starts]
    table = SourceTable(name, pd.DataFrame(), displays, starts, headers=dict(section.columns))
    table.number_readings = dict(checks.tally.readings)
    table.rejected = checks.rejected
    return table, None if channels is None else channels.counts()


NOT_YET = np.iinfo(np.int64).max  # a file not reached: no row of the batch so far lies in it


def _batches(name: str, opened: list[_EventFile], schema: pa.Schema) -> Iterator[tuple[int, pa.Table]]:
    """Each file's batches (and the index of its file), with the columns and types of the table."""
    for index, file in enumerate(opened):
        for raw in file.batches():
            if raw.num_rows:
                rows = _renamed(_as_read(raw, file.display), set(), name, file.section)[0]
                yield index, pa.concat_tables([schema.empty_table(), rows], promote_options="permissive")


def _open_event_file(data_dir: Path, path: Path, name: str, mapping: Mapping) -> _EventFile:
    """A file of an event table ready to be read in batches; WholeTableNeeded for anything `read_file` would
    report (which it then does) or that batches cannot read as it does (a file not in UTF-8)."""
    display = path.relative_to(data_dir).as_posix()
    batches: Callable[[], Iterator[pa.Table]]
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            parquet = pq.ParquetFile(path)
            raw_schema = parquet.schema_arrow
        except (pa.ArrowException, OSError) as error:
            raise WholeTableNeeded("not readable as Parquet") from error

        def batches() -> Iterator[pa.Table]:
            try:
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                    yield pa.Table.from_batches([batch])
            except (pa.ArrowException, OSError) as error:
                raise WholeTableNeeded("a Parquet batch not readable") from error

    else:
        try:
            header = _first_line_bytes(path).decode("utf-8-sig")
            delimiter = max(DELIMITERS, key=lambda candidate: len(_fields(header, candidate)))
            names = _fields(header, delimiter)
        except (UnicodeDecodeError, csv.Error) as error:
            raise WholeTableNeeded("a header that is not UTF-8 text") from error
        if len(names) <= 1 and any(candidate in "".join(names) for candidate in DELIMITERS):
            raise WholeTableNeeded("a delimiter not recognised")
        raw_schema = next(_csv_batches(path, delimiter, names, schema_only=True))

        def batches() -> Iterator[pa.Table]:
            return _csv_batches(path, delimiter, names)

    table = _as_read(raw_schema.empty_table(), display)
    section = mapping.table(name).for_headers(table.column_names)
    if any(source not in table.column_names for source in section.columns.values()):
        raise WholeTableNeeded("a mapped column the file lacks")
    schema = _renamed(table, set(), name, section)[0].schema
    return _EventFile(path, display, section, schema, batches)


def _csv_batches(path: Path, delimiter: str, names: list[str], schema_only: bool = False) -> Iterator[Any]:
    """A UTF-8 CSV's rows a block at a time, every column text, as `_parse_csv` reads them (`schema_only`: its
    schema once)."""
    parse, convert, malformed = _text_csv_options(delimiter, names)
    read = pcsv.ReadOptions(encoding="utf8", block_size=CSV_BATCH_BYTES)
    try:
        reader = pcsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        if schema_only:
            yield reader.schema
            return
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError) as error:
        raise WholeTableNeeded("a CSV block not readable as UTF-8 text") from error
    if malformed:
        raise WholeTableNeeded("rows with a different number of fields")


def _as_read(table: pa.Table, display: str) -> pa.Table:
    """A file's rows as `read_file` has them: trimmed, unique headers, dictionary columns decoded."""
    names = [name.strip() for name in table.column_names]
    if len(set(names)) < len(names):
        raise WholeTableNeeded(f"{display}: repeated headers")
    decoded = [
        column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column
        for column in table.columns
    ]
    return pa.table(decoded, names=names)


def _tagged(problems: list[Problem], table: str) -> list[Problem]:
    """Problems found in a table's files name the table (two tables may read one file)."""
    return [replace(problem, table=table) if problem.file and not problem.table else problem for problem in problems]


REJECTED_COLUMNS: tuple[str, ...] = ("file", "row", "table", "reason")


def number_readings(tables) -> list[dict[str, Any]]:
    """How each number column was read, for `validate` to say: table, column, header, how, values, decided by."""
    return [
        {
            "table": table.name,
            "column": column,
            "header": table.header(column),
            "read_as": reading.describe(),
            "values": reading.values,
            "decided_by": reading.decided_by,
        }
        for table in tables
        for column, reading in table.number_readings.items()
        if reading.values
    ]


def rejected_rows(tables) -> pd.DataFrame:
    """Every dropped row: its file, its row number as a spreadsheet shows it (the header is row 1), its table and
    why; in the order of the tables, then of the files and rows."""
    frames = [frame for table in tables for frame in table.rejected]
    if not frames:
        return pd.DataFrame(
            {column: pd.Series(dtype="int64" if column == "row" else object) for column in REJECTED_COLUMNS}
        )
    rejected = pd.concat(frames, ignore_index=True)
    order = {name: index for index, name in enumerate(TABLES)}
    rejected["_table"] = rejected["table"].map(order)
    rejected = rejected.sort_values(["_table", "file", "row"], kind="stable").drop(columns="_table")
    # One row may be dropped by two passes (its own problems, then a dropped account): one line, reasons joined.
    rejected = rejected.groupby(["table", "file", "row"], sort=False, as_index=False)["reason"].agg("; ".join)
    return rejected[list(REJECTED_COLUMNS)].reset_index(drop=True)


def _find_files(data_dir: Path, name: str, section: TableMapping, problems: list[Problem]) -> list[Path]:
    """The files holding one table: the mapping's `file` name or glob, else <table>.csv or .parquet."""
    if section.file:  # a name with glob characters ("[b].csv") is first taken as written
        found = _matching(data_dir, section.file)
        wanted = f"'{section.file}'"
    else:
        found = [path for path in (data_dir / f"{name}.csv", data_dir / f"{name}.parquet") if path.is_file()]
        wanted = f"{name}.csv or {name}.parquet"
        if len(found) > 1:
            problems.append(
                Problem(
                    f"both {name}.csv and {name}.parquet exist",
                    file=str(data_dir),
                    fix=f"keep one, or name the one to read with `{name}: file:` in a mapping",
                )
            )
            return []
    if found:
        return found
    if name in REQUIRED_TABLES:
        present = sorted(path.name for path in data_dir.iterdir() if path.is_file())
        problems.append(
            Problem(
                f"required {name} table not found: no file matches {wanted}",
                fix=(
                    f"add it, or point `{name}: file:` in a mapping (or a --mapping preset) at your file; "
                    f"files here: {', '.join(present[:10]) or 'none'}"
                ),
                file=str(data_dir),
            )
        )
    else:
        message, fix = ABSENT_TABLE_WARNINGS[name]
        problems.append(Problem(f"{message} (no file matches {wanted})", fix, severity="warning"))
    return []


def _read_table(
    data_dir: Path,
    name: str,
    paths: list[Path],
    mapping: Mapping,
    problems: list[Problem],
    reads: dict[Path, pa.Table | None] | None = None,
) -> SourceTable | None:
    """Read every file of one table, rename its columns and map its values; None if any file failed.

    `reads` holds the files read so far (a file two tables read is read, and its problems said, once)."""
    section = mapping.table(name)
    reads = {} if reads is None else reads
    parts: list[tuple[str, pa.Table]] = []
    own_columns: dict[str, set[str]] = {}  # per file, the columns that are its own (not joined), renamed
    for path in paths:
        display = path.relative_to(data_dir).as_posix()
        if path not in reads:
            reads[path] = read_file(path, display, problems)
        raw = reads[path]
        if raw is None:
            continue
        joined: set[str] = set()
        derived = name == "accounts" and section.from_opportunities
        joining = mapping.opportunities if derived else section  # accounts from the opportunities rows, as joined
        if joining.join:  # for derived accounts, the opportunities table reports the joins' problems
            raw, joined = _apply_joins(data_dir, raw, display, joining, reads, [] if derived else problems)
            if raw is None:
                continue
        section = mapping.table(name).for_headers(raw.column_names)
        lacking = {canonical: source for canonical, source in section.columns.items() if source not in raw.column_names}
        for canonical, source in lacking.items():
            problems.append(
                Problem(
                    f"mapping '{mapping.origin}' maps {name}.{canonical} to column '{source}', which this file lacks",
                    fix=f"correct `{name}: columns: {canonical}:` in the mapping; the file has: "
                    f"{', '.join(raw.column_names)}",
                    file=display,
                    column=source,
                )
            )
        if not lacking:
            table, own_columns[display] = _renamed(raw, joined, name, section)
            if derived and section.one_per_opportunity:
                table = _account_per_opportunity(table, raw, joined, mapping.opportunities)
            parts.append((display, table))
    generated = np.zeros(0, dtype=bool)
    if name == "opportunities":  # rows without an id get a stable one made from the row (ingest.derive)
        filled = [fill_opportunity_ids(table, own_columns[display]) for display, table in parts]
        parts = [(display, table) for (display, _), (table, _) in zip(parts, filled)]
        generated = np.concatenate([mask for _, mask in filled]) if filled else generated
        if mapping.accounts.one_per_opportunity:
            parts = [(display, _set_column(table, "account_id", table.column(ID_COLUMN))) for display, table in parts]
    if len(parts) < len(paths):
        return None
    try:  # files of one glob may differ in columns (filled with nulls) or numeric widths (promoted)
        combined = pa.concat_tables([table for _, table in parts], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        problems.append(
            Problem(
                f"the files of the {name} table disagree on column types: {error}",
                fix="export them the same way",
                file=", ".join(display for display, _ in parts),
            )
        )
        return None
    origin = None
    evidence = file_evidence(combined)  # before derived accounts keep only their columns
    if name == "accounts" and section.from_opportunities:
        combined, origin = accounts_rows(combined, section)
    frame = combined.to_pandas()
    section.map_values(frame)
    section.add_defaults(frame)
    starts = np.cumsum([0] + [table.num_rows for _, table in parts[:-1]]).tolist()
    read = SourceTable(
        name,
        frame,
        [display for display, _ in parts],
        starts,
        headers=dict(section.columns),
        origin=origin,
        derived=origin is not None,
    )
    read.generated_ids = int(generated.sum())
    read.number_evidence = evidence
    problems += generated_ids_warning(read, generated)
    return read


def _renamed(raw: pa.Table, joined: set[str], name: str, section: TableMapping) -> tuple[pa.Table, set[str]]:
    """A file's rows as one table reads them, and the columns that are the file's own (not joined), renamed."""
    renamed = {canonical for canonical, source in section.columns.items() if source in joined}
    own = {column for column in raw.column_names if column not in joined} | (set(section.columns) - renamed)
    return _clean_text(section.rename(raw), name, section), own


def _account_per_opportunity(table: pa.Table, raw: pa.Table, joined: set[str], opportunities: TableMapping):
    """Accounts taken one per opportunity: each row's account_id is the id its opportunity gets (read or generated
    exactly as the opportunities table does). Left without one when the opportunities mapping does not fit the file:
    that table reports it."""
    if any(source not in raw.column_names for source in opportunities.columns.values()):
        return table
    rows, own = _renamed(raw, joined, "opportunities", opportunities)
    filled, _ = fill_opportunity_ids(rows, own)
    return _set_column(table, "account_id", filled.column(ID_COLUMN))


def _set_column(table: pa.Table, name: str, values: pa.ChunkedArray) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def _matching(data_dir: Path, pattern: str) -> list[Path]:
    """A mapping's file: the name as written when it exists, else the glob's matches in order."""
    literal = data_dir / pattern
    return [literal] if literal.is_file() else sorted(path for path in data_dir.glob(pattern) if path.is_file())


def _trimmed_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    text = pc.utf8_trim_whitespace(column.cast(pa.large_string()))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.large_string()), text)


def _apply_joins(
    data_dir: Path, left: pa.Table, display: str, section: TableMapping, reads: dict, problems: list[Problem]
) -> tuple[pa.Table | None, set[str]]:
    """Bring each join's columns from its file on its key, every row of `left` in its place (a left join).

    A missing file, key or column, a header both files have, or a key the joined file holds twice is a problem
    about the whole table (None). Rows of the joined file that match no row are a warning: they are left out."""
    brought: set[str] = set()
    for join in section.join:
        paths = _matching(data_dir, join.file)
        if not paths:
            present = sorted(path.name for path in data_dir.iterdir() if path.is_file())
            problems.append(
                Problem(
                    f"join: no file matches {join.file!r}",
                    file=str(data_dir),
                    fix=f"correct `join: file:` in the mapping; files here: {', '.join(present[:10])}",
                )
            )
            return None, brought
        rights = []
        for path in paths:
            name = path.relative_to(data_dir).as_posix()
            if path not in reads:
                reads[path] = read_file(path, name, problems)
            if reads[path] is None:
                return None, brought
            rights.append((name, reads[path]))
        names = ", ".join(name for name, _ in rights)
        bring = list(join.columns) or [column for column in rights[0][1].column_names if column != join.key]
        issues = []
        if join.on not in left.column_names:
            issues.append(
                Problem(
                    f"join: the key column '{join.on}' is not in this file",
                    file=display,
                    column=join.on,
                    fix=f"correct `join: on:` in the mapping; the file has: {', '.join(left.column_names)}",
                )
            )
        for name, right in rights:
            for column in [join.key] + bring:
                if column not in right.column_names:
                    issues.append(
                        Problem(
                            f"join: column '{column}' is not in this file",
                            file=name,
                            column=column,
                            fix=f"correct `join:` in the mapping; the file has: {', '.join(right.column_names)}",
                        )
                    )
        for column in bring:
            if column in left.column_names:
                issues.append(
                    Problem(
                        f"join: both {display} and {names} have a column '{column}'",
                        file=display,
                        column=column,
                        fix="list the columns to bring with `join: columns: [...]` without it",
                    )
                )
        if issues:
            problems += issues
            return None, brought
        right = pa.concat_tables(
            [table.select([join.key] + bring) for _, table in rights], promote_options="permissive"
        )
        keys = _trimmed_text(right.column(join.key))
        repeated = pd.Series(keys.to_pandas()).pipe(lambda values: values.notna() & values.duplicated(keep=False))
        if repeated.any():
            starts = np.cumsum([0] + [table.num_rows for _, table in rights[:-1]])
            for index, (name, _) in enumerate(rights):
                end = starts[index] + rights[index][1].num_rows
                positions = np.flatnonzero(repeated.to_numpy()[starts[index] : end])
                if len(positions):
                    problems.append(
                        problem_at_rows(
                            positions,
                            f"join: the key '{join.key}' repeats (e.g. "
                            f"{keys[int(starts[index] + positions[0])].as_py()!r}): a row "
                            f"of {display} could take either",
                            file=name,
                            column=join.key,
                            fix="keep one row per key in the joined file (a left join matches each row once)",
                        )
                    )
            return None, brought
        right_side = pa.table({"__key": keys, **{column: right.column(column) for column in bring}})
        left_side = left.append_column("__key", _trimmed_text(left.column(join.on))).append_column(
            "__row", pa.array(np.arange(left.num_rows))
        )
        joined = left_side.join(right_side, keys="__key", join_type="left outer", use_threads=False)
        joined = joined.sort_by("__row").drop_columns(["__key", "__row"])
        unmatched = pc.invert(pc.is_in(keys, value_set=pc.unique(left_side.column("__key").combine_chunks()))).to_numpy(
            zero_copy_only=False
        ) & pc.is_valid(keys).to_numpy(zero_copy_only=False)
        if unmatched.any():
            problems.append(
                problem_at_rows(
                    np.flatnonzero(unmatched),
                    f"join: {int(unmatched.sum()):,} row(s) of {names} match no row of {display} on {join.key} = "
                    f"{join.on}: left out",
                    fix="none needed if expected; otherwise make the keys agree",
                    file=names,
                    column=join.key,
                    severity="warning",
                )
            )
        left = joined.select(left.column_names + bring)
        brought |= set(bring)
    return left, brought


def _clean_text(table: pa.Table, name: str, section: TableMapping) -> pa.Table:
    """Ids, text and value-mapped columns as trimmed strings, blank cells null, so values match.

    Parquet may hold integer ids; CSV cells may carry stray spaces. Only these columns are trimmed:
    dates and numbers parse with or without spaces, and extra columns pass through as they are.
    """
    kinds = columns(name)
    for index, column_name in enumerate(table.column_names):
        if kinds.get(column_name) in ("id", "text") or column_name in section.values:
            trimmed = pc.utf8_trim_whitespace(table.column(index).cast(pa.large_string()))
            blank = pc.equal(trimmed, "")
            if pc.any(blank).as_py():
                trimmed = pc.if_else(blank, pa.scalar(None, pa.large_string()), trimmed)
            table = table.set_column(index, column_name, trimmed)
    return table


def read_file(path: Path, display: str, problems: list[Problem]) -> pa.Table | None:
    """One file as an arrow table with trimmed, unique headers; None (and a problem) on failure."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        table = _read_parquet(path, display, problems)
    elif suffix in CSV_SUFFIXES:
        table = _read_csv(path, display, problems)
    else:
        problems.append(
            Problem(f"unsupported file type '{suffix}'", fix="save it as CSV (UTF-8) or Parquet", file=display)
        )
        return None
    if table is None:
        return None
    names = [name.strip() for name in table.column_names]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    for name in repeated:
        problems.append(
            Problem(
                f"the header '{name}' appears {names.count(name)} times",
                column=name,
                file=display,
                fix="rename or remove the repeated columns so every header is unique",
            )
        )
    if repeated:
        return None
    # Parquet categoricals arrive dictionary-encoded; plain values keep pandas dtypes simple.
    decoded = [
        column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column
        for column in table.columns
    ]
    return pa.table(decoded, names=names)


def _read_parquet(path: Path, display: str, problems: list[Problem]) -> pa.Table | None:
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        problems.append(
            Problem(
                f"cannot be read as Parquet ({_first_line(error)})",
                file=display,
                fix="the file is truncated or corrupt: export or copy it again",
            )
        )
        return None


def _read_csv(path: Path, display: str, problems: list[Problem]) -> pa.Table | None:
    """Read a CSV with every column as text, detecting its delimiter and encoding."""
    header = _first_line_bytes(path)
    table: pa.Table | None = None
    malformed: list[pcsv.InvalidRow] = []
    data: bytes | None = None  # the file re-encoded, when it is UTF-8 with stray bytes
    stray = 0
    for encoding in ENCODINGS:
        if encoding != "utf8" and data is None and _written_as_utf8(path):
            # A byte order mark or UTF-8 sequences say UTF-8: reading it all as cp1252 would garble every accented
            # character (and put the mark into the first header) for the sake of a few stray bytes.
            data, stray = _utf8_with_stray_bytes(path)
            header = data.split(b"\n", 1)[0].rstrip(b"\r")
            encoding = "utf8"
        try:
            header_text = header.decode("utf-8-sig" if encoding == "utf8" else encoding)
            delimiter = max(DELIMITERS, key=lambda candidate: len(_fields(header_text, candidate)))
            names = _fields(header_text, delimiter)
            table, malformed = _parse_csv(path, encoding, delimiter, names, data=data)
            break
        except UnicodeDecodeError:  # from Python's codecs: decoding the header, or cp1252 under pyarrow
            continue
        except csv.Error as error:  # a header line Python's csv cannot split: binary data, a stray carriage return
            problems.append(
                Problem(
                    f"cannot be read as CSV: its header line is not text ({error})",
                    fix="the file is corrupt or not a CSV: export it again as CSV with a header row",
                    file=display,
                )
            )
            return None
        except pa.ArrowInvalid as error:
            if "UTF8" in str(error):  # pyarrow's own UTF-8 check
                continue
            message = EMPTY_FILE if "Empty CSV file" in str(error) else f"cannot be read as CSV ({_first_line(error)})"
            problems.append(Problem(message, fix="export the file again as CSV with a header row", file=display))
            return None
    if table is None:  # latin-1 reads any bytes, so one of the encodings always parses: never expected
        problems.append(
            Problem(
                f"cannot be read as CSV in any of the encodings tried ({', '.join(ENCODINGS)})",
                fix="export the file again as UTF-8 CSV with a header row",
                file=display,
            )
        )
        return None
    if stray:
        problems.append(
            Problem(
                f"the file is UTF-8 but for {plural(stray, 'byte')} that are not: "
                f"{'it was' if stray == 1 else 'they were'} read as cp1252 characters, the rest as UTF-8",
                file=display,
                severity="warning",
                fix="export it again as UTF-8 so that every accented character is certain to be right",
            )
        )
    elif encoding != "utf8":
        problems.append(
            Problem(
                f"the file is not UTF-8; it was read as {encoding}",
                file=display,
                severity="warning",
                fix="export it as UTF-8 so that accented characters are certain to be right",
            )
        )
    if table.num_columns == 1 and any(candidate in table.column_names[0] for candidate in DELIMITERS):
        problems.append(
            Problem(
                f"the file reads as one column named '{table.column_names[0][:80]}': its delimiter was not recognised",
                fix="save it with commas, semicolons or tabs between columns, and no quotes around the whole header "
                "line",
                file=display,
            )
        )
        return None
    if malformed:
        if any(row.number is None for row in malformed):  # multi-threaded reads do not number rows
            _, malformed = _parse_csv(path, encoding, delimiter, names, threads=False, data=data)
        problems.append(
            Problem(
                f"rows with a different number of fields than the header's {malformed[0].expected_columns}",
                fix="quote values that contain the delimiter, or remove the stray delimiters",
                file=display,
                rows=tuple(row.number for row in malformed[:5]),
                row_count=len(malformed),
            )
        )
        return None
    return table


def _parse_csv(
    path: Path, encoding: str, delimiter: str, names: list[str], *, threads: bool = True, data: bytes | None = None
) -> tuple[pa.Table, list[pcsv.InvalidRow]]:
    """The file (or `data`, its bytes re-encoded) parsed with every column as text, and its malformed rows."""
    source = (lambda: pa.BufferReader(data)) if data is not None else (lambda: path)
    size = len(data) if data is not None else path.stat().st_size
    parse, convert, malformed = _text_csv_options(delimiter, names)
    try:
        read = pcsv.ReadOptions(encoding=encoding, use_threads=threads, block_size=CSV_BLOCK_SIZE)
        return pcsv.read_csv(source(), read_options=read, parse_options=parse, convert_options=convert), malformed
    except pa.ArrowInvalid as error:
        if "straddling" not in str(error):
            raise
    # A value longer than a read block: read the file as a single block.
    malformed.clear()
    read = pcsv.ReadOptions(encoding=encoding, use_threads=threads, block_size=min(size + 1, 2**31 - 1))
    return pcsv.read_csv(source(), read_options=read, parse_options=parse, convert_options=convert), malformed


def _text_csv_options(
    delimiter: str, names: list[str]
) -> tuple[pcsv.ParseOptions, pcsv.ConvertOptions, list[pcsv.InvalidRow]]:
    """How every CSV is parsed: every column as text, an empty cell as missing, and its malformed rows set aside in
    the list returned (filled as the file is read)."""
    malformed: list[pcsv.InvalidRow] = []

    def skip(row: pcsv.InvalidRow) -> str:
        malformed.append(row)
        return "skip"

    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=skip)
    # large_string is what pandas' str dtype holds, so no copy on the way to pandas.
    convert = pcsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.large_string()), strings_can_be_null=True, null_values=[""]
    )
    return parse, convert, malformed


def _fields(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


UTF8_BOM = b"\xef\xbb\xbf"
# A multi-byte UTF-8 character: in a cp1252 file these byte pairs are rare (Ã followed by ©...).
UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
UTF8_PROBE = 16 << 20


def _written_as_utf8(path: Path) -> bool:
    """A byte order mark, or UTF-8 characters in the first bytes: a file meant as UTF-8, whatever stray bytes it
    holds."""
    with path.open("rb") as handle:
        start = handle.read(UTF8_PROBE)
    return start.startswith(UTF8_BOM) or UTF8_SEQUENCE.search(start) is not None


ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # how the surrogateescape handler keeps a byte that is not UTF-8


def _utf8_with_stray_bytes(path: Path) -> tuple[bytes, int]:
    """The file as UTF-8 without its byte order mark, each byte that is not UTF-8 read as the cp1252 (else Latin-1)
    character it is; and how many such bytes there were."""
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    stray = 0

    def as_cp1252(match: re.Match) -> str:
        nonlocal stray
        stray += 1
        byte = bytes([ord(match.group()) - 0xDC00])
        try:
            return byte.decode("cp1252")
        except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
            return byte.decode("latin-1")

    return ESCAPED_BYTE.sub(as_cp1252, text).encode("utf-8"), stray


def _first_line_bytes(path: Path, limit: int = 1 << 20) -> bytes:
    with path.open("rb") as handle:
        return handle.read(limit).split(b"\n", 1)[0].rstrip(b"\r")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def read_side_csv(path: Path) -> pd.DataFrame:
    """A side file the user writes by hand (sales overrides), read exactly as the export's CSVs are: UTF-8 with or
    without BOM, cp1252 or Latin-1; comma, semicolon, tab or pipe; every cell text, blank cells empty strings.
    Raises DataError naming the file when it cannot be read."""
    problems: list[Problem] = []
    table = read_file(Path(path), Path(path).name, problems)
    errors = [problem for problem in problems if problem.severity == "error"]
    if table is None or errors:
        raise DataError(errors or [Problem("cannot be read", fix="save it as a CSV file", file=Path(path).name)])
    return table.to_pandas().astype(object).where(lambda frame: frame.notna(), "").astype("str")
