"""A published scoring with families: the account page's family tree and the book grouped by family.

The family is the hand-made one of tests/features/test_families.py: P heads C1 and C2, and G is C1's child."""

from __future__ import annotations

import re

from features.config import parse_model_config
from scoring.pyfunc import TieringModel
from tests.features.test_families import AS_OF, family_export
from tests.serving.workspace.test_pages import ids_on


def publish_families(store) -> None:
    data = family_export()
    model = TieringModel.rules_only(parse_model_config({"hierarchy": {"roll_up": "family", "tier_by": "family"}}))
    scores = model.score_book(data, AS_OF, budget=1000.0).scores
    store.publish(
        scores, data.accounts, as_of="2026-07-01", model_version="rules-only", configuration={}, published_by="ops"
    )


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
