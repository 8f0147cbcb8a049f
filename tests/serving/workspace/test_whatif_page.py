"""The what-if page: a preview on the latest published scoring (worked out by hand), saving a scenario (editors),
publishing and restoring (admins only), and bad fields refused naming the key with nothing written."""

from __future__ import annotations

import re

import pytest

from configuration.tiering import TieringConfig
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)

# The latest scoring (conftest SECOND): learned scores A1 92, A2 45, A3 61, A4 41, A5 22, X1 11, all inside the ICP.
# Under the defaults (Tier 1: 20 seats from 60, Tier 2: 500 from 40, Tier 3 from 20): A1 and A3 in Tier 1, A2 and A4
# in Tier 2, A5 in Tier 3, X1 untiered. One Tier 1 seat: A3 (61, the lower) drops to Tier 2, and nobody else moves.
ONE_SEAT = {"preview": "1", "tiers.tier_1.max_accounts": "1"}


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def moved_accounts(html: str) -> list[str]:
    table = html.split('id="whatif-moves"', 1)[1].split("</table>", 1)[0] if 'id="whatif-moves"' in html else ""
    return re.findall(r'/accounts/([^"]+)"', table)


def test_a_viewer_previews_but_cannot_save_or_publish(pages):
    pages.sign_in("vera")
    page = pages.client.get("/app/whatif", params=ONE_SEAT)
    assert page.status_code == 200
    assert moved_accounts(page.text) == ["A3"]
    assert "Save scenario" not in page.text and "Publish as the active configuration" not in page.text
    token = pages.token("/app/whatif")
    for action in ("save", "publish"):
        refused = pages.client.post(
            f"/app/whatif/{action}", data={"csrf_token": token, "tiers.tier_1.max_accounts": "1", "name": "x"}
        )
        assert refused.status_code == 403
    assert pages.store.scenarios() == [] and pages.store.config_versions() == []


def test_an_editor_previews_a_weight_change_and_saves_it_but_cannot_publish(pages):
    pages.sign_in("ed")
    page = pages.client.get(
        "/app/whatif",
        params={
            "preview": "1",
            "rule_weights.revenue_potential": "0.2",
            "rule_weights.business_fit": "0.3",
            "rule_weights.engagement": "0.5",
        },
    )
    assert page.status_code == 200, page.text
    # Every account has components 50, 0.8 L and 100 - L and a rule score of L - 5 (L its learned score), so the new
    # rule score is 0.2*50 + 0.3*0.8L + 0.5*(100 - L) = 60 - 0.26L, and the learned score, which keeps 0.3 of the
    # rule part, L + 0.3*(60 - 0.26L - (L - 5)) = 0.622L + 19.5: A1 76.7 (Tier 1), A3 57.4 (below Tier 1's 60:
    # Tier 2), A2 47.5 and A4 45.0 (Tier 2), A5 33.2 (Tier 3) and X1 26.3 (up from untiered to Tier 3).
    assert moved_accounts(page.text) == ["X1", "A3"]  # moves up first
    assert "rule score 56 → 44" in text_of(page.text)
    token = pages.token("/app/whatif")
    fields = {
        "csrf_token": token,
        "name": "engagement first",
        "rule_weights.revenue_potential": "0.2",
        "rule_weights.business_fit": "0.3",
        "rule_weights.engagement": "0.5",
    }
    saved = pages.client.post("/app/whatif/save", data=fields, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"].endswith("/whatif?scenario=1")
    [scenario] = pages.store.scenarios()
    assert scenario.name == "engagement first" and scenario.created_by == "ed"
    assert scenario.configuration == {
        "rule_weights": {"revenue_potential": 0.2, "business_fit": 0.3, "engagement": 0.5}
    }
    opened = pages.client.get("/app/whatif?scenario=1")
    assert moved_accounts(opened.text) == ["X1", "A3"] and "engagement first" in opened.text
    assert pages.client.post("/app/whatif/publish", data=fields).status_code == 403
    assert pages.store.config_versions() == []


def test_an_admin_publishes_and_restores(pages, mlflow_store):
    pages.sign_in("ada")
    token = pages.token("/app/whatif")
    published = pages.client.post(
        "/app/whatif/publish",
        data={"csrf_token": token, "tiers.tier_1.max_accounts": "1", "note": "one seat"},
        follow_redirects=False,
    )
    assert published.status_code == 303
    [version] = pages.store.config_versions()
    assert version.configuration["tiers"]["tier_1"]["max_accounts"] == 1 and version.published_by == "ada"
    assert version.note == "one seat"
    # The page now previews against version 1: the same one-seat draft changes nothing.
    page = pages.client.get("/app/whatif", params=ONE_SEAT)
    assert "The active business configuration is version 1" in text_of(page.text)
    assert moved_accounts(page.text) == []
    default_seats = TieringConfig().tiers.tier_1.max_accounts
    pages.client.post("/app/whatif/publish", data={"csrf_token": token, "tiers.tier_1.max_accounts": "2"})
    restored = pages.client.post("/app/whatif/restore", data={"csrf_token": token, "version": "1"})
    assert restored.status_code == 200
    versions = pages.store.config_versions()
    assert [v.id for v in versions] == [3, 2, 1] and versions[0].restored_from == 1
    assert versions[0].changes == {"tiers.tier_1.max_accounts": {"before": 2, "after": 1}}
    assert versions[2].configuration["tiers"]["tier_1"]["max_accounts"] != default_seats
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("abm-tiering-configurations").experiment_id])
    assert sorted(run.data.tags["published_by"] + run.data.tags["config_version"] for run in runs) == [
        "ada1",
        "ada2",
        "ada3",
    ]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("rule_weights.engagement", "0.9", "'rule_weights': Value error, rule weights must sum to 1"),
        ("tiers.tier_1.max_accounts", "-1", "'tiers.tier_1.max_accounts': Input should be greater than or equal to 0"),
        ("tiers.tier_2.min_score", "101", "'tiers.tier_2.min_score': Input should be less than or equal to 100"),
        ("budget.total", "-5", "'budget.total': Input should be greater than or equal to 0"),
        ("model.blend", "lots", "model.blend: 'lots' is not a number"),
    ],
)
def test_a_bad_field_is_refused_naming_the_key_and_nothing_is_written(pages, mlflow_store, field, value, message):
    pages.sign_in("ada")
    token = pages.token("/app/whatif")
    for response in (
        pages.client.get("/app/whatif", params={"preview": "1", field: value}),
        pages.client.post("/app/whatif/publish", data={"csrf_token": token, field: value}),
        pages.client.post("/app/whatif/save", data={"csrf_token": token, field: value, "name": "bad"}),
    ):
        assert response.status_code == 400
        assert message in text_of(response.text).replace("&#39;", "'")
    assert pages.store.config_versions() == [] and pages.store.scenarios() == []


def test_the_page_shows_the_backtest_that_tiering_whatif_publish_stored(pages):
    backtest = [
        {"configuration": "active", "tiering": "final", "tier": "tier_1+2", "revenue_share": 0.786},
        {"configuration": "scenario", "tiering": "final", "tier": "tier_1+2", "revenue_share": 0.845},
        {"configuration": "scenario", "tiering": "rule", "tier": "tier_1+2", "revenue_share": 0.5},
    ]
    pages.store.save_scenario(
        "suggested",
        {"rule_weights": {"revenue_potential": 0.45, "business_fit": 0.15, "engagement": 0.4}},
        {"backtest": backtest, "period": "02 Apr 2026 to 30 Jun 2026"},
        "cli:ops",
        check_role=False,
    )
    pages.sign_in("vera")
    listed = text_of(pages.client.get("/app/whatif").text.split('id="whatif-scenarios"', 1)[1])
    assert "active 79% · scenario 84% (02 Apr 2026 to 30 Jun 2026)" in listed  # the final tiers' rows only


def test_a_scoring_rolled_up_by_family_is_not_previewed_and_the_page_says_to_run_tiering_whatif(pages):
    """A family's scores pool its accounts' signals, which its records do not keep: the page cannot re-weight them
    and must say so (not fail), pointing to `tiering whatif`, which scores the book with the draft."""
    from tests.serving.workspace.conftest import SECOND, account_rows

    families = ["A1", "A1", "A3", "A3", "A5", "X1"]  # hand-made families of two, and one of its own
    book = SECOND.assign(family_id=families, family_tier=SECOND["tier"], family_learned_score=SECOND["learned_score"])
    rolled_up = {"hierarchy": {"roll_up": "family", "tier_by": "family"}}
    pages.store.publish(
        book, account_rows(), as_of="2026-07-01", model_version="7", configuration=rolled_up, published_by="ops"
    )
    pages.sign_in("vera")
    page = pages.client.get("/app/whatif", params=ONE_SEAT)
    assert page.status_code == 400
    said = text_of(page.text)
    assert "it is rolled up by family (hierarchy.roll_up: family)" in said
    assert "Run `tiering whatif EXPORT --config DRAFT.yaml`, which scores the book with the draft" in said
    assert moved_accounts(page.text) == []
