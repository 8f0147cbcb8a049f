import pandas as pd
import pytest

from features.errors import DataError
from ingest.files import atomic_path, read_overrides, write_table


def test_csv_output_never_carries_a_live_formula(tmp_path):
    frame = pd.DataFrame(
        {
            "account_id": ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "ok", None],
            "budget": [1.0, -5.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    path = write_table(frame, tmp_path / "scores.csv")
    text = pd.read_csv(path, dtype="str", keep_default_na=False)
    assert text["account_id"].tolist() == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)", "ok", ""]
    assert text["budget"].tolist()[1] == "-5.0"  # numbers stay numbers
    parquet = write_table(frame, tmp_path / "scores.parquet")
    assert pd.read_parquet(parquet)["account_id"][0].startswith("=")  # Parquet is not opened by spreadsheets as text


def test_interrupted_write_leaves_the_old_output(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_a_write_that_must_not_overwrite_leaves_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "mapping.yaml"
    with pytest.raises(FileExistsError):
        with atomic_path(target, overwrite=False) as temporary:
            temporary.write_text("drafted\n")
            target.write_text("someone else's\n")  # appears while the draft is written
    assert target.read_text() == "someone else's\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mapping.yaml"]

    fresh = tmp_path / "fresh.yaml"
    with atomic_path(fresh, overwrite=False) as temporary:
        temporary.write_text("drafted\n")
    assert fresh.read_text() == "drafted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.yaml", "mapping.yaml"]


def test_overrides_report_unknown_accounts_and_tiers(tmp_path):
    path = tmp_path / "pins.csv"
    path.write_text("account_id,tier,reason,owner\nA1,tier_1,logo,kim\nZZ,tier_9,x,y\nA2,tier_2,,kim\n")
    with pytest.raises(DataError) as caught:
        read_overrides(path, pd.Series(["A1", "A2"]))
    text = str(caught.value)
    assert "unknown tier ['tier_9']" in text and "row 3" in text
    assert "not in the scored export, e.g. 'ZZ'" in text
    assert "without a reason or owner (row 4)" in text
    path.write_text("account_id,tier,reason,owner\nA1,tier_1,logo,kim\n")
    assert read_overrides(path, pd.Series(["A1"]))["tier"].tolist() == ["tier_1"]
