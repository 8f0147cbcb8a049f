"""A published scoring with families: the account page's family tree and the book grouped by family.

The family is the hand-made one of tests/features/test_families.py: P heads C1 and C2, and G is C1's child."""

from __future__ import annotations

import re

import pandas as pd

from features.config import parse_model_config
from features.schema import conform
from ingest.display import MISSING
from scoring.pyfunc import TieringModel
from tests.features.test_families import AS_OF, days_before, family_export
from tests.serving.workspace.test_pages import ids_on


def family_scores(data):
    model = TieringModel.rules_only(parse_model_config({"hierarchy": {"roll_up": "family", "tier_by": "family"}}))
    return model.score_book(data, AS_OF, budget=1000.0).scores


def publish_families(store) -> None:
    data = family_export()
    store.publish(
        family_scores(data),
        data.accounts,
        as_of="2026-07-01",
        model_version="rules-only",
        configuration={},
        published_by="ops",
    )


def family_tree(page: str) -> dict[str, list[str]]:
    """The family table of an account page: its header, then each entity's id and cells, in the page's order."""
    tree = page.split("<h2>Family</h2>", 1)[1].split("</table>", 1)[0]
    table = {"header": re.findall(r"<th[^>]*>(.*?)</th>", tree)}
    for row in re.findall(r"<tr[^>]*>\s*<td.*?</tr>", tree, re.S):
        account = re.search(r'<a href="/app/accounts/([^"]+)">', row).group(1)
        table[account] = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return table


# Each entity's deals at AS_OF, and so its open pipeline by hand (created before AS_OF, not closed before it).
OPEN_DEALS = pd.DataFrame(
    [
        ("O1", "P", days_before(200), days_before(120), "won", 50_000.0),  # closed before: no
        ("O3", "P", days_before(30), None, "open", 40_000.0),  # open: 40,000
        ("O2", "C2", days_before(150), days_before(100), "lost", 20_000.0),  # closed before: no
        ("O4", "C1", days_before(100), days_before(-10), "lost", 15_000.0),  # lost after AS_OF: 15,000
        ("O5", "C1", days_before(-5), None, "open", 99_000.0),  # created after AS_OF: no
        ("O6", "G", days_before(20), None, "open", None),  # open without an amount: nothing
        ("O7", "G", days_before(60), AS_OF, "won", 7_000.0),  # won on the AS_OF day, not before it: 7,000
    ],
    columns=["opportunity_id", "account_id", "created_date", "close_date", "outcome", "amount"],
)
OPEN_PIPELINE = {"P": "$40,000", "C1": "$15,000", "G": "$7,000", "C2": "$0"}


def test_the_account_page_shows_the_family_tree_with_tiers(pages):
    publish_families(pages.store)
    assert [member["account_id"] for member in pages.store.family("G")] == ["P", "C1", "G", "C2"]  # depth first
    assert [member["depth"] for member in pages.store.family("G")] == [0, 1, 2, 1]
    assert pages.store.family("S1") == []  # a family of one shows no tree
    pages.sign_in("ed")
    page = pages.client.get("/app/accounts/G").text
    tree = page.split("<h2>Family</h2>", 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<a href="/app/accounts/([^"]+)">', tree) == ["P", "C1", "G", "C2"]
    assert tree.count("tier-tier_1") == 4  # every entity inherits the family's tier
    assert 'class="current"' in tree and "Family of P" in tree
    table = family_tree(page)
    column = table["header"].index("Open pipeline")
    assert [table[account][column] for account in ("P", "C1", "G", "C2")] == [MISSING] * 4  # published without deals


def test_the_family_tree_shows_each_entitys_open_pipeline_from_the_export(pages):
    from cli.workspace import publish_scores

    data = family_export()
    data.opportunities = conform(OPEN_DEALS, "opportunities")
    scores = family_scores(data)
    publish_scores(pages.store, scores, data.accounts, AS_OF, "rules-only", {}, "test", data.opportunities)
    stored = {member["account_id"]: member["open_pipeline"] for member in pages.store.family("C2")}
    assert stored == {"P": 40_000.0, "C1": 15_000.0, "G": 7_000.0, "C2": 0.0}
    pages.sign_in("ed")
    page = pages.client.get("/app/accounts/G").text
    table = family_tree(page)
    column = table["header"].index("Open pipeline")
    assert {account: table[account][column] for account in ("P", "C1", "G", "C2")} == OPEN_PIPELINE
    assert "<dt>Open pipeline</dt><dd>$7,000</dd>" in page  # the account's own figure beside its scores


def test_the_book_lists_one_family_together(pages):
    publish_families(pages.store)
    pages.sign_in("ed")
    book = pages.client.get("/app/?family=P&sort=family_id&direction=asc")
    assert book.status_code == 200
    assert sorted(ids_on(book.text)) == ["C1", "C2", "G", "P"]
    grouped = ids_on(pages.client.get("/app/?sort=family_id&direction=asc").text)
    positions = [grouped.index(name) for name in ("C1", "C2", "G", "P")]
    assert max(positions) - min(positions) == 3  # the family's four accounts sit together


def test_score_takes_the_family_columns_from_the_latest_published_scoring(empty_store, store, tmp_path):
    from tests.serving.conftest import serving
    from tests.serving.workspace.test_service_pins import accounts

    publish_families(store)
    published = store.published_families().set_index("account_id")
    config = tmp_path / "tiering.yaml"
    config.write_text("hierarchy: {roll_up: family, tier_by: family}\n")
    with serving(empty_store, TIERING_DATABASE_URL=store.url, TIERING_CONFIG=str(config)) as client:
        single = client.post("/score", json={"accounts": accounts("G", "ZZ")})
        assert single.status_code == 200, single.text
        known, unknown = single.json()["scores"]
        assert (known["family_id"], known["family_tier"]) == ("P", published.loc["G", "family_tier"])
        assert known["tier"] == known["learned_tier"] == "tier_1"  # tier_by: family: G inherits P's family tier
        assert known["family_learned_score"] == round(published.loc["G", "family_learned_score"], 2)
        assert (unknown["family_id"], unknown["family_tier"], unknown["family_learned_score"]) == ("", "", None)
        # /tier ranks the book it is sent: the family of the posted accounts, not the published one.
        book = [
            {**account, "parent_account_id": "A1" if account["account_id"] == "A2" else None}
            for account in accounts("A1", "A2")
        ]
        tiered = client.post("/tier", json={"accounts": book}).json()["scores"]
        assert [record["family_id"] for record in tiered] == ["A1", "A1"]
        assert tiered[0]["family_tier"] == tiered[1]["family_tier"] == tiered[1]["tier"]
