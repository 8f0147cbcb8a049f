"""The event tables read, checked and spilled a batch at a time (`load_export` with `spill`): never whole, with the
very problems, rejected rows, summary and rows of the tables read whole.

Two oracles: problems written out by hand (row numbers as a spreadsheet shows them: the header is row 1), and,
for many kinds of bad input at once, the same export read whole without a spill (the import as it was, which the
rest of tests/ingest pins)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ingest.io as io
from features import groups
from features.activity import default_as_of
from features.errors import DataError
from features.schema import columns
from ingest.io import load_export
from ingest.validation import DATE_FIX, EventChecks

ACCOUNTS = 300  # three groups of 100
ROW = "A{account},2024-{month:02d}-{day:02d},{channel},{count}\n"
CHANNELS = ("web_visit", "email_open", "email_click", "content_download")


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Three groups of accounts, and batches of some sixty rows (CSV) or 100 rows (Parquet)."""
    monkeypatch.setattr(groups, "ACCOUNTS_PER_GROUP", 100)
    monkeypatch.setattr(io, "BATCH_ROWS", 100)
    monkeypatch.setattr(io, "CSV_BATCH_BYTES", 2_000)


@pytest.fixture()
def batches(monkeypatch):
    """(table, first row in the table, rows) of every batch checked, and the tables read whole."""
    seen: dict[str, list] = {"checked": [], "whole": []}
    check, read_table = EventChecks.check, io._read_table

    def checking(self, table):
        first = -1 if table.origin is None or not len(table.origin) else int(table.origin[0])
        seen["checked"].append((self.name, first, len(table.frame)))
        return check(self, table)

    def reading(data_dir, name, *args, **kwargs):
        seen["whole"].append(name)
        return read_table(data_dir, name, *args, **kwargs)

    monkeypatch.setattr(EventChecks, "check", checking)
    monkeypatch.setattr(io, "_read_table", reading)
    return seen


def engagement_rows(count: int) -> list[str]:
    return [
        ROW.format(account=i % ACCOUNTS, month=1 + i % 12, day=1 + i % 28, channel=CHANNELS[i % 4], count=1 + i % 3)
        for i in range(count)
    ]


def write(folder, engagement: list[str] | None = None, intent: str | None = None, **files: str):
    folder.mkdir(exist_ok=True)
    (folder / "accounts.csv").write_text("account_id\n" + "".join(f"A{i}\n" for i in range(ACCOUNTS)))
    (folder / "opportunities.csv").write_text(
        "opportunity_id,account_id,created_date,close_date,outcome,amount\n"
        + "".join(
            f"O{i},A{i},2024-01-0{1 + i % 9},2024-03-01,{('won', 'lost', 'open')[i % 3]},10\n" for i in range(ACCOUNTS)
        )
    )
    rows = engagement if engagement is not None else engagement_rows(400)
    (folder / "engagement.csv").write_text("account_id,timestamp,channel,count\n" + "".join(rows))
    if intent is not None:
        (folder / "intent.csv").write_text(intent)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def streamed(folder, tmp_path, mapping=None, invalid_rows="stop"):
    spill = tmp_path / f"spill-{len(list(tmp_path.glob('spill-*')))}"
    spill.mkdir()
    return load_export(folder, mapping, invalid_rows, spill=spill)


def problems_of(folder, tmp_path=None, mapping=None, invalid_rows="stop") -> list[str]:
    """Every problem said, the run stopped or not."""
    try:
        if tmp_path is None:
            loaded = load_export(folder, mapping, invalid_rows)
        else:
            loaded = streamed(folder, tmp_path, mapping, invalid_rows)
    except DataError as error:
        return [problem.render() for problem in error.problems]
    return [problem.render() for problem in loaded.warnings]


def test_bad_rows_in_a_later_batch_are_named_by_their_row_in_the_file(tmp_path, batches):
    rows = engagement_rows(400)
    rows[129] = "A5,soon,web_visit,1\n"  # row 131 of the file (the header is row 1)
    rows[300] = ",2024-02-03,web_visit,1\n"  # row 302
    rows[301] = "A7,2024-02-03,web_visit,-4\n"  # row 303
    folder = write(tmp_path / "export", rows)

    with pytest.raises(DataError) as raised:
        streamed(folder, tmp_path)
    assert [problem.render() for problem in raised.value.problems if problem.severity == "error"] == [
        "engagement table, engagement.csv:account_id: account_id is empty (row 302). Fix: fill in account_id on "
        "every row, or remove those rows",
        f"engagement table, engagement.csv:timestamp: values are not dates (e.g. 'soon') (row 131). Fix: {DATE_FIX}",
        "engagement table, engagement.csv:count: values outside 0 to 1,000,000 (e.g. '-4') (row 303). Fix: count "
        "must be between 0 and 1,000,000: check its unit, or set `scale` in the mapping",
    ]
    checked = [batch for batch in batches["checked"] if batch[0] == "engagement"]
    assert len(checked) > 5 and max(rows for _, _, rows in checked) < 100  # never the whole table
    assert any(first <= 129 < first + rows and first > 0 for _, first, rows in checked)  # not in the first batch
    assert batches["whole"] == ["accounts", "opportunities"]

    loaded = streamed(folder, tmp_path, invalid_rows="drop")
    assert [tuple(row) for row in loaded.rejected.itertuples(index=False)] == [
        ("engagement.csv", 131, "engagement", "timestamp 'soon' is not a date"),
        ("engagement.csv", 302, "engagement", "account_id is empty"),
        ("engagement.csv", 303, "engagement", "count '-4' is outside 0 to 1,000,000"),
    ]
    assert loaded.data.event_rows("engagement") == 397 and loaded.summary["rejected_rows"]["engagement"] == 3


def test_the_import_in_batches_gives_the_whole_tables_rows_summary_and_warnings(tmp_path, batches, monkeypatch):
    from sources.synthetic import generate_export

    monkeypatch.setattr(io, "BATCH_ROWS", 3_000)  # some twenty batches of the 65,665 engagement rows
    monkeypatch.setattr(io, "CSV_BATCH_BYTES", 150_000)
    for file_format in ("parquet",):  # CSV batches: the tests above
        folder = tmp_path / file_format
        generate_export(folder, n_accounts=300, seed=4, file_format=file_format)
        whole = load_export(folder)
        before, wholes = len(batches["checked"]), len(batches["whole"])
        got = streamed(folder, tmp_path)
        assert batches["whole"][wholes:] == ["accounts", "opportunities"]

        assert got.data.grouped is not None and got.data.grouped.groups == 3
        assert len(got.data.engagement) == 0 and len(batches["checked"]) - before > 20
        assert got.summary == whole.summary
        assert [problem.render() for problem in got.warnings] == [problem.render() for problem in whole.warnings]
        pd.testing.assert_frame_equal(got.data.accounts, whole.data.accounts)
        pd.testing.assert_frame_equal(got.data.opportunities, whole.data.opportunities)
        for table in ("engagement", "intent"):
            spilled = pd.concat([got.data.grouped.read(group)[table] for group in range(3)])
            # Each account's rows in the table's order (groups hold whole accounts).
            by_account = spilled.sort_values("account_id", kind="stable").reset_index(drop=True)
            expected = whole.data.table(table)[list(columns(table))]
            expected = expected.sort_values("account_id", kind="stable").reset_index(drop=True)
            pd.testing.assert_frame_equal(by_account, expected)
        assert default_as_of(got.data) == default_as_of(whole.data)


def bad_engagement() -> list[str]:
    """Bad cells of every kind, spread over several batches; unknown channels whose counts tie."""
    rows = engagement_rows(500)
    for at in (10, 70, 71, 250, 480):
        rows[at] = rows[at].replace(",2024-", ",20xx-")  # not dates, three distinct values among five
    for at, channel in ((90, "fax"), (91, "pigeon"), (400, "pigeon"), (401, "fax"), (402, "telex")):
        rows[at] = rows[at].replace(CHANNELS[at % 4], channel)
    for at in (120, 121, 330):
        rows[at] = "Z9" + rows[at][rows[at].index(",") :]  # accounts not in the accounts table
    rows[200] = "," + rows[200].split(",", 1)[1]  # an empty account_id
    rows[310] = ",,,\n"  # every required cell empty
    rows[450] = rows[450].rsplit(",", 1)[0] + ",2000000\n"  # a count out of range
    return rows


INTENT = "account_id,date,topic,score\n" + "".join(
    f"A{i % ACCOUNTS},2024-02-{1 + i % 28:02d},topic{i % 3},{(i * 7) % 100}\n" for i in range(200)
)


@pytest.mark.parametrize("invalid_rows", ["stop", "drop"])
def test_many_bad_inputs_get_the_problems_of_the_whole_tables(tmp_path, batches, invalid_rows):
    bad_intent = INTENT.replace("A17,2024-02-18", "A17,someday").replace(",topic1,8\n", ",topic1,180\n")
    folder = write(tmp_path / "export", bad_engagement(), bad_intent)

    expected = problems_of(folder, invalid_rows=invalid_rows)
    got = problems_of(folder, tmp_path, invalid_rows=invalid_rows)
    assert got == expected
    assert len(expected) >= 6 and any(
        "unknown channels are kept: 'fax' (2), 'pigeon' (2), 'telex' (1)" in p for p in got
    )
    assert batches["whole"].count("engagement") == 1  # only the read without a spill
    if invalid_rows == "drop":
        whole = load_export(folder, invalid_rows="drop")
        loaded = streamed(folder, tmp_path, invalid_rows="drop")
        pd.testing.assert_frame_equal(loaded.rejected, whole.rejected)
        assert loaded.summary == whole.summary


def test_files_of_one_table_and_parquet_batches_are_numbered_as_each_file(tmp_path, batches):
    rows = bad_engagement()
    folder = write(tmp_path / "export", rows[:10])
    (folder / "engagement.csv").unlink()
    header = "account_id,timestamp,channel,count\n"
    (folder / "engagement-1.csv").write_text(header + "".join(rows[:230]))
    (folder / "engagement-2.csv").write_text(header + "".join(rows[230:]))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text('engagement:\n  file: "engagement-*.csv"\n')
    assert problems_of(folder, tmp_path, mapping) == problems_of(folder, mapping=mapping)

    frame = pd.read_csv(folder / "engagement-2.csv", dtype=str, keep_default_na=False).replace("", None)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "engagement-2.parquet")
    (folder / "engagement-2.csv").unlink()
    mapping.write_text('engagement:\n  file: "engagement-*"\n')
    got = problems_of(folder, tmp_path, mapping)
    assert got == problems_of(folder, mapping=mapping)
    assert any("engagement-2.parquet" in problem for problem in got)
    assert "engagement" not in batches["whole"][-3:-1]  # the streamed read before the whole one


def test_day_first_dates_are_judged_over_every_batch(tmp_path, batches):
    # Every day 12 or less: the warning says the dates read both ways (the mapping's order is used).
    rows = [
        ROW.format(account=i % ACCOUNTS, month=1 + i % 12, day=1 + i % 12, channel="web_visit", count=1)
        for i in range(300)
    ]
    dated = [
        f"{r.split(',')[0]},{int(r.split(',')[1][8:10]):02d}/{r.split(',')[1][5:7]}/2024,{','.join(r.split(',')[2:])}"
        for r in rows
    ]
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text('engagement:\n  date_format: "%d/%m/%Y"\n')
    folder = write(tmp_path / "small", dated)
    loaded = streamed(folder, tmp_path, mapping)
    assert [problem.render() for problem in loaded.warnings] == [
        problem.render() for problem in load_export(folder, mapping).warnings
    ]
    assert any("is 12 or less, so the dates read both day-first and month-first" in p.message for p in loaded.warnings)

    # A day above 12 in a late batch only: no warning, as for the whole table.
    late = dated[:250] + ["A1,25/03/2024,web_visit,1\n"] + dated[251:]
    folder = write(tmp_path / "late", late)
    assert not any("12 or less" in p.message for p in streamed(folder, tmp_path, mapping).warnings)

    # Written month-first: the values a day-first layout cannot read all read swapped, which the fix says;
    # the value that makes it so is in the last batch.
    swapped = [
        f"{r.split(',')[0]},{r.split(',')[1][5:7]}/{r.split(',')[1][8:10]}/2024,{','.join(r.split(',')[2:])}"
        for r in engagement_rows(300)
    ]
    folder = write(tmp_path / "swapped", swapped)
    got = problems_of(folder, tmp_path, mapping)
    assert got == problems_of(folder, mapping=mapping) and "day and month are swapped" in got[0]


def test_what_only_the_whole_table_decides_is_read_whole(tmp_path, batches):
    rows = engagement_rows(400)
    rows[350] = rows[350].rsplit(",", 1)[0] + ",$1K\n"  # a formatted number: the column's convention decides
    folder = write(tmp_path / "export", rows)
    loaded = streamed(folder, tmp_path)
    assert batches["whole"].count("engagement") == 1  # after the batches found it
    assert loaded.data.event_rows("engagement") == 400
    whole = load_export(folder)
    assert loaded.summary == whole.summary
    spilled = pd.concat([loaded.data.grouped.read(group)["engagement"] for group in range(3)])
    assert sorted(spilled["count"]) == sorted(whole.data.engagement["count"]) and 1000.0 in set(spilled["count"])


def test_table_level_problems_are_said_once(tmp_path, batches):
    folder = write(tmp_path / "missing", [row.rsplit(",", 2)[0] + "\n" for row in engagement_rows(300)])
    (folder / "engagement.csv").write_text(
        "account_id,timestamp\n"
        + "".join(row.split(",", 2)[0] + "," + row.split(",")[1] + "\n" for row in engagement_rows(300))
    )
    got = problems_of(folder, tmp_path)
    assert got == problems_of(folder) and sum("required column 'channel' is missing" in p for p in got) == 1

    folder = write(tmp_path / "empty", [], INTENT.splitlines()[0] + "\n")
    loaded = streamed(folder, tmp_path)
    assert [p.render() for p in loaded.warnings] == [p.render() for p in load_export(folder).warnings]
    assert sum("no data rows" in p.message for p in loaded.warnings) == 2


def test_a_far_future_event_date_is_named_from_the_events_held_by_group(tmp_path, batches):
    from cli.common import _event_dates_gathered
    from features.dates import DATE_COLUMNS, far_beyond_bulk

    rows = engagement_rows(400)
    rows[333] = "A3,2099-05-01,web_visit,1\n"  # a typo far beyond every other date, in a late batch
    folder = write(tmp_path / "export", rows)
    data = streamed(folder, tmp_path).data

    sentences = far_beyond_bulk(_event_dates_gathered(data, DATE_COLUMNS))
    assert sentences == far_beyond_bulk(load_export(folder).data)
    assert len(sentences) == 1 and sentences[0].startswith("engagement.timestamp: the latest date, 2099-05-01, lies")
    assert "1 row(s) that far out" in sentences[0]


@pytest.mark.parametrize("preset", ["salesforce", "hubspot"])
def test_an_activity_preset_reads_in_batches_as_whole(tmp_path, batches, monkeypatch, preset):
    from tests.ingest.test_activity_presets import HUBSPOT_ACTIVITIES, SALESFORCE_ACTIVITIES
    from tests.ingest.test_mapping import (
        HUBSPOT_COMPANIES,
        HUBSPOT_DEALS,
        SALESFORCE_ACCOUNTS,
        SALESFORCE_OPPORTUNITIES,
    )

    monkeypatch.setattr(groups, "ACCOUNTS_PER_GROUP", 1)  # a group per account
    monkeypatch.setattr(io, "CSV_BATCH_BYTES", 150)  # two or three rows a batch
    folder = tmp_path / preset
    folder.mkdir()
    files = {
        "salesforce": {
            "opportunities-report.csv": SALESFORCE_OPPORTUNITIES,
            "accounts-report.csv": SALESFORCE_ACCOUNTS,
            "activities-report.csv": SALESFORCE_ACTIVITIES,
        },
        "hubspot": {
            "hubspot-crm-exports-deals.csv": HUBSPOT_DEALS,
            "hubspot-crm-exports-companies.csv": HUBSPOT_COMPANIES,
            "hubspot-crm-exports-all-activities.csv": HUBSPOT_ACTIVITIES,
        },
    }[preset]
    for name, text in files.items():
        (folder / name).write_text(text)
    whole = load_export(folder, preset)
    loaded = streamed(folder, tmp_path, preset)

    assert len([batch for batch in batches["checked"] if batch[0] == "engagement"]) > 2
    assert loaded.summary == whole.summary
    assert [problem.render() for problem in loaded.warnings] == [problem.render() for problem in whole.warnings]
    spilled = pd.concat([loaded.data.grouped.read(group)["engagement"] for group in range(loaded.data.grouped.groups)])
    by_account = spilled.sort_values("account_id", kind="stable").reset_index(drop=True)
    expected = whole.data.engagement[list(columns("engagement"))]
    pd.testing.assert_frame_equal(by_account, expected.sort_values("account_id", kind="stable").reset_index(drop=True))


HEADER = "account_id,timestamp,channel,count\n"
UNUSUAL_FILES = {
    "a byte order mark": b"\xef\xbb\xbf" + (HEADER + "".join(engagement_rows(300))).encode(),
    "cp1252 in a late batch": (HEADER + "".join(engagement_rows(300))).encode() + b"A1,2024-01-02,caf\xe9,1\n",
    "an empty file": b"",
    "a malformed row in a late batch": (
        HEADER + "".join(engagement_rows(300)) + "A1,2024-01-02,web_visit,1,9\n"
    ).encode(),
    "a repeated header": ("account_id,timestamp,channel,channel\n" + "".join(engagement_rows(300))).encode(),
    "semicolons": (HEADER + "".join(engagement_rows(300))).replace(",", ";").encode(),
}


@pytest.mark.parametrize("case", list(UNUSUAL_FILES))
def test_unusual_files_get_the_messages_of_the_whole_read(tmp_path, batches, case):
    folder = write(tmp_path / "export")
    (folder / "engagement.csv").write_bytes(UNUSUAL_FILES[case])
    assert problems_of(folder, tmp_path) == problems_of(folder)
