"""What a mapping can derive from an export that lacks it: opportunity ids, an accounts table, outcomes.

- **Generated ids.** An opportunity without an `opportunity_id` (no such column, or an empty cell) gets
  `gen-` and the first 16 hexadecimal digits of the SHA-256 of its row: every other column of the row, by
  name, in name order, each value as read (trimmed; an empty cell is empty text). The same row gets the same
  id on every run and machine, wherever it sits in the file and whatever the column order; two rows alike in
  every value get the same id and are reported as duplicates.
- **Accounts from the opportunities rows** (`accounts: from_opportunities: true`): one account per distinct
  `account_id`, each column from its latest row (by `created_date`, then file order) that has a value;
  accounts whose rows disagree on a column are counted and reported.
- **Outcome rule** (`opportunities: outcome_rule:`): `won` when the won-date column holds a date, `lost` when
  it does not and `lost_after_days` have passed since `created_date` by the export's latest date, `open`
  otherwise; `close_date` is the won date, or the day the opportunity was judged lost.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.dates import parse_dates
from features.errors import Problem, plural

GENERATED_PREFIX = "gen-"
GENERATED_DIGITS = 16
ID_COLUMN = "opportunity_id"


def row_ids(table: pa.Table, rows: np.ndarray, own: set[str] | None = None) -> list[str]:
    """Stable ids of the given rows, from every column but `opportunity_id` (see the module's description) that is
    the row's own (`own`, default all): columns joined from another file are left out."""
    names = sorted(name for name in table.column_names if name != ID_COLUMN and (own is None or name in own))
    texts = []
    for name in names:
        column = table.column(name)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            column = pc.cast(column, pa.large_string())
        texts.append(column.take(pa.array(rows, type=pa.int64())).to_pylist())
    ids = []
    for values in zip(*texts) if texts else ([] for _ in rows):
        text = "\x1e".join(f"{name}\x1f{'' if value is None else value}" for name, value in zip(names, values))
        ids.append(GENERATED_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:GENERATED_DIGITS])
    return ids


def fill_opportunity_ids(table: pa.Table, own: set[str] | None = None) -> tuple[pa.Table, np.ndarray]:
    """The table with every missing opportunity_id generated, and which rows got one."""
    if ID_COLUMN in table.column_names:
        column = table.column(ID_COLUMN)
        if pc.any(pc.is_null(column)).as_py() is not True:
            return table, np.zeros(table.num_rows, dtype=bool)
        missing = pc.is_null(column).to_numpy(zero_copy_only=False)
        values = column.cast(pa.large_string()).to_pylist()
    else:
        missing = np.ones(table.num_rows, dtype=bool)
        values = [None] * table.num_rows
    rows = np.flatnonzero(missing)
    for row, generated in zip(rows, row_ids(table, rows, own)):
        values[row] = generated
    filled = pa.array(values, type=pa.large_string())
    if ID_COLUMN in table.column_names:
        return table.set_column(table.column_names.index(ID_COLUMN), ID_COLUMN, filled), missing
    return table.append_column(ID_COLUMN, filled), missing


def generated_ids_warning(table, generated: np.ndarray) -> list[Problem]:
    """Said in `validate`: which opportunities got a generated id, and how it is made."""
    if not generated.any():
        return []
    count = int(generated.sum())
    return table.problems_at(
        pd.Series(generated),
        f"{count:,} {'opportunity' if count == 1 else 'opportunities'} without an opportunity_id "
        f"{'was' if count == 1 else 'were'} given a stable id made from the row ({GENERATED_PREFIX} and "
        f"{GENERATED_DIGITS} hexadecimal digits)",
        fix="none needed: the same row gets the same id on every run; map your id column (opportunities: columns: "
        "opportunity_id: ...) to keep the CRM's ids",
        column=ID_COLUMN,
        severity="warning",
    )


def accounts_rows(table: pa.Table, section) -> tuple[pa.Table, np.ndarray]:
    """The opportunities rows as account rows: the accounts mapping's columns only, rows without an account left
    out; and each kept row's position in the files, so problems name the opportunities file's rows."""
    keep = [name for name in table.column_names if name in section.columns or name == "account_id"]
    table = table.select(keep)
    if "account_id" not in table.column_names:  # reported as the accounts table's missing column
        return table, np.arange(table.num_rows)
    present = pc.is_valid(table.column("account_id"))
    return table.filter(present), np.flatnonzero(present.to_numpy(zero_copy_only=False))


def collapse_accounts(accounts, opportunities) -> list[Problem]:
    """One account per account_id, each column from the latest row that has a value (by the opportunity's
    created_date, then file order); accounts whose rows disagree on a column are reported. In place."""
    frame = accounts.frame
    if frame.empty or "account_id" not in frame:
        return []
    created = pd.Series(opportunities.frame["created_date"].to_numpy(), index=opportunities.all_origins)
    origin = accounts.all_origins
    order = pd.DataFrame(
        {
            "created": created.reindex(origin).to_numpy(),  # rows dropped from opportunities: no date
            "position": origin,
        }
    )
    ranked = np.lexsort((order["position"].to_numpy(), order["created"].fillna(pd.Timestamp.min).to_numpy()))
    ordered = frame.iloc[ranked].reset_index(drop=True)
    ordered["_origin"] = origin[ranked]
    groups = ordered.groupby("account_id", sort=False)
    latest = groups.last()  # per column, the last non-empty value
    latest["_origin"] = groups["_origin"].last()
    first_seen = frame["account_id"].drop_duplicates()
    latest = latest.reindex(first_seen.to_numpy())
    values = [column for column in frame.columns if column != "account_id"]
    disagreeing = {column: groups[column].nunique() for column in values}
    counts = {column: int((distinct > 1).sum()) for column, distinct in disagreeing.items()}
    accounts.frame = latest.drop(columns="_origin").rename_axis("account_id").reset_index()[list(frame.columns)]
    accounts.origin = latest["_origin"].to_numpy(dtype=np.int64)
    accounts.derived = False  # one row per account now: the usual checks apply
    conflicting = pd.Series(False, index=accounts.frame.index)
    for distinct in disagreeing.values():
        conflicting |= accounts.frame["account_id"].map(distinct > 1).fillna(False).astype(bool).to_numpy()
    if not conflicting.any():
        return []
    listed = ", ".join(f"{accounts.header(column)} ({count:,})" for column, count in counts.items() if count)
    return accounts.problems_at(
        conflicting,
        f"{plural(int(conflicting.sum()), 'account')} taken from the opportunities rows have differing "
        f"values across their rows, by column: {listed}; each takes the value of its latest row (by created_date)",
        fix="none needed if the latest value is right; otherwise correct the older rows, or keep an accounts file",
        column="",
        severity="warning",
    )


def apply_outcome_rule(table, section) -> list[Problem]:
    """`outcome` and `close_date` of the opportunities table from the mapping's `outcome_rule`, in place.

    won: the won-date column holds a date (read with close_date's date_format); lost: it does not and
    `lost_after_days` have passed since created_date by the reference day (`observed_until`, else the latest
    created or won date in the table); open otherwise, and wherever created_date is missing or not a date.
    close_date: the won date, or created_date plus `lost_after_days` for lost."""
    rule = section.outcome_rule
    frame = table.frame
    if rule.won_date not in frame.columns:
        return [
            Problem(
                f"outcome_rule: won_date names the column '{rule.won_date}', "
                "which neither this file nor its joins have",
                fix=f"correct `outcome_rule: won_date:` in the mapping; the columns read: "
                f"{', '.join(map(str, frame.columns))}",
                file=", ".join(table.files),
                column=rule.won_date,
                table=table.name,
            )
        ]
    created = (
        parse_dates(frame["created_date"], section.date_format_for("created_date"))
        if "created_date" in frame
        else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    )
    raw_won = frame[rule.won_date]
    won = parse_dates(raw_won, section.date_format_for("close_date"))
    unreadable = raw_won.notna() & won.isna()
    problems = table.problems_at(
        unreadable,
        "outcome_rule: won dates that are not dates",
        column=rule.won_date,
        fix="write dates as YYYY-MM-DD, or set close_date's `date_format` (the won date is read with it)",
        reason=f"{rule.won_date} "
        + raw_won[unreadable].astype(str).map(lambda text: f"'{text[:40]}'")
        + " is not a date",
    )
    reference = pd.Timestamp(rule.observed_until) if rule.observed_until else pd.concat([created, won]).max()
    judged = created + pd.Timedelta(days=rule.lost_after_days)
    lost = won.isna() & ~unreadable & created.notna() & (judged <= reference)
    outcome = pd.Series("open", index=frame.index, dtype=object)
    outcome[won.notna()] = "won"
    outcome[lost] = "lost"
    frame["outcome"] = outcome.astype("str")
    frame["close_date"] = won.where(won.notna(), judged.where(lost)).astype("datetime64[ns]")
    table.headers["close_date"] = rule.won_date
    table.headers["outcome"] = "outcome_rule"
    table.rule_reference = None if pd.isna(reference) else reference
    return problems
