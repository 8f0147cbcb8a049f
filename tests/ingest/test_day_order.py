"""Day-first or month-first: `init` never settles it silently (MM-DD-YYYY included), the file's columns agree, a later
row that decides it is seen, and `validate` says when a mapping's order cannot be checked or is the wrong one."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from features.errors import DataError
from ingest.draft import DATE_SAMPLE, draft_mapping
from ingest.io import load_export


def deals(folder: Path, days: list[tuple[date, date]], layout: str = "%m-%d-%Y") -> Path:
    folder.mkdir()
    lines = ["Deal ID,Account,Created Date,Close Date,Stage"]
    for index, (created, closed) in enumerate(days):
        lines.append(
            f"D{index},A{index % 25},{created.strftime(layout)},{closed.strftime(layout)},{('Won', 'Lost')[index % 2]}"
        )
    (folder / "deals.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def early_days(count: int) -> list[tuple[date, date]]:
    """Every day 12 or less: 1 to 12 January 2025 and 1 to 12 March 2025, in turn."""
    return [(date(2025, 1, 1 + index % 12), date(2025, 3, 1 + index % 12)) for index in range(count)]


@pytest.mark.parametrize("layout", ["%m-%d-%Y", "%d-%m-%Y", "%m/%d/%Y", "%d/%m/%Y"])
def test_when_every_day_is_12_or_less_the_draft_says_day_and_month_could_be_swapped(tmp_path, layout):
    draft = draft_mapping(deals(tmp_path / "export", early_days(30), layout))
    assert any("day first" in note and "deals.csv" in note for note in draft.notes), draft.notes
    assert "day and month could be swapped" in draft.render()


def test_a_later_row_past_the_sample_decides_month_first(tmp_path):
    # The first DATE_SAMPLE rows have days of 12 or less; the rows after them hold the 25th: month first.
    later = [(date(2025, 1, 25), date(2025, 3, 25))] * 40
    folder = deals(tmp_path / "export", early_days(DATE_SAMPLE) + later)
    document = yaml.safe_load(draft_mapping(folder).render())
    assert document["opportunities"]["date_format"] == "%m-%d-%Y"
    data = load_export(folder, _written(tmp_path, document)).data
    assert data.opportunities["created_date"].iloc[-1] == pd_day("2025-01-25")
    assert data.opportunities["created_date"].iloc[1] == pd_day("2025-01-02")  # 01-02-2025: 2 January


def test_one_file_writes_its_dates_one_way(tmp_path):
    # Created dates all have days of 12 or less; close dates show the month first (03-25-2025).
    days = [(date(2025, 1, 1 + index % 12), date(2025, 3, 14) + timedelta(days=index)) for index in range(30)]
    document = yaml.safe_load(draft_mapping(deals(tmp_path / "export", days)).render())
    assert document["opportunities"]["date_format"] == "%m-%d-%Y"  # one layout for both columns


def test_validate_says_when_the_mappings_order_is_the_wrong_way(tmp_path):
    days = [(date(2025, 1, 13 + index % 10), date(2025, 3, 14 + index % 10)) for index in range(20)]
    folder = deals(tmp_path / "export", days)  # month first
    mapping = mapping_with(tmp_path, "%d-%m-%Y")
    with pytest.raises(DataError) as raised:
        load_export(folder, mapping)
    problem = next(p for p in raised.value.problems if "not dates" in p.message)
    assert "day and month are swapped" in problem.fix and "'%m-%d-%Y'" in problem.fix


def test_validate_warns_when_every_date_reads_both_ways(tmp_path):
    folder = deals(tmp_path / "export", early_days(20))
    with (folder / "deals.csv").open("a", encoding="utf-8") as out:
        out.write("D99,A1,01-05-2025,,Open\n")  # an open deal: no close date
    mapping = mapping_with(tmp_path, "%m-%d-%Y")
    loaded = load_export(folder, mapping)
    warning = next(w for w in loaded.warnings if "day-first and month-first" in w.message)
    assert "Created Date" in warning.message and "Close Date" in warning.message and "'%d-%m-%Y'" in warning.fix


def mapping_with(tmp_path: Path, layout: str) -> Path:
    path = tmp_path / "mapping.yaml"
    columns = {
        "opportunity_id": "Deal ID",
        "account_id": "Account",
        "created_date": "Created Date",
        "close_date": "Close Date",
        "outcome": "Stage",
    }
    document = {
        "accounts": {"from_opportunities": True, "columns": {"account_id": "Account"}},
        "opportunities": {
            "file": "deals.csv",
            "columns": columns,
            "values": {"outcome": {"Won": "won", "Lost": "lost", "Open": "open"}},
            "date_format": layout,
        },
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def pd_day(text: str):
    import pandas as pd

    return pd.Timestamp(text)


def _written(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "draft.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path
