"""The leak guard looks inside the levels of the export's few-valued columns: a flag that winning sets, diluted
overall by deals that carry it anyway, is refused by name; the generator's honest strong features are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from configuration.tiering import TieringConfig, parse_config
from features.matrix import FeatureSpec
from features.pointintime import FeatureBuilder, training_rows
from ingest.io import load_export
from scoring.scorer import with_rule_scores
from sources.synthetic import generate_export
from training.guards import FEW_LEVELS, find_leaks
from training.window import WindowDates


def _customer_flag_rows(seed: int = 0) -> pd.DataFrame:
    """New deals: 1,000 won and 35 lost flagged as customers, 7 won and 396 lost not; upgrades are customers
    anyway (600 won, 900 lost, all flagged). An honest score ranks both kinds a little."""
    blocks = [("new", "yes", 1, 1000), ("new", "yes", 0, 35), ("new", "", 1, 7), ("new", "", 0, 396)]
    blocks += [("upgrade", "yes", 1, 600), ("upgrade", "yes", 0, 900)]
    rows = pd.DataFrame(
        [(kind, flag, won) for kind, flag, won, count in blocks for _ in range(count)],
        columns=["extra_deal_type", "extra_customer", "won"],
    )
    rows["extra_customer"] = rows["extra_customer"].replace("", np.nan)
    rows["extra_fit"] = rows["won"] * 0.5 + np.random.default_rng(seed).normal(size=len(rows))
    return rows


def _config(**model) -> TieringConfig:
    return parse_config({"model": {"extra_features": ["deal_type", "customer", "fit"], **model}})


def test_a_flag_that_winning_sets_within_one_level_is_refused_by_name_with_the_usual_opt_out():
    rows = _customer_flag_rows()
    flagged = rows["extra_customer"].notna().astype(int)
    # Overall the flag ranks weakly (upgrades are all flagged), so the single-feature bound misses it ...
    overall = roc_auc_score(rows["won"], flagged)
    assert overall < TieringConfig().model.guards.leak_auc
    # ... and it is present for both outcomes, so the purity check misses it too.
    assert rows.loc[flagged == 1, "won"].mean() < TieringConfig().model.guards.leak_purity
    columns = ["extra_deal_type", "extra_customer", "extra_fit"]
    leaks = find_leaks(rows, columns, _config())
    assert [leak.column for leak in leaks] == ["customer"]
    # Among new deals: (1 + 1000/1007 - 35/431) / 2, by hand.
    within = (1 + 1000 / 1007 - 35 / 431) / 2
    message = leaks[0].render()
    assert message.startswith(
        "feature 'customer' separates won from lost almost perfectly among the deals whose 'deal_type' is 'new' "
        f"(ROC AUC {within:.3f} there, above the bound {TieringConfig().model.guards.leak_auc:g}) "
        f"(single-feature ROC AUC {overall:.3f}; present for "
    )
    assert "list it under model.allow_features in tiering.yaml" in message
    assert find_leaks(rows, columns, _config(allow_features=["customer"])) == []


def test_a_level_too_small_to_judge_is_not_looked_into():
    rows = _customer_flag_rows()
    guards = TieringConfig().model.guards
    # Keep fewer lost new deals than the guard's minimum: no level is left where the flag can be judged.
    lost_new = rows.index[(rows["extra_deal_type"] == "new") & (rows["won"] == 0)]
    thin = rows.drop(lost_new[guards.leak_min_present - 1 :])
    assert find_leaks(thin, ["extra_deal_type", "extra_customer", "extra_fit"], _config()) == []


@pytest.fixture(scope="module")
def generator_rows(tmp_path_factory) -> tuple[pd.DataFrame, list[str]]:
    folder = tmp_path_factory.mktemp("generator")
    generate_export(folder, n_accounts=1500, seed=11)
    data = load_export(folder).data
    config = TieringConfig()
    window = WindowDates.for_data(data, config, None)
    rows = with_rule_scores(training_rows(data, FeatureBuilder(data, config), window.start, window.as_of), config)
    fit = rows[rows["close_date"] < window.calibration_start].reset_index(drop=True)
    return fit, FeatureSpec.fit(fit, config).columns


def test_the_generators_honest_strong_features_are_not_refused(generator_rows):
    rows, columns = generator_rows
    won = rows["won"].to_numpy()
    complete = [c for c in columns if pd.api.types.is_numeric_dtype(rows[c]) and rows[c].notna().all()]
    overall = {c: roc_auc_score(won, rows[c]) if rows[c].nunique() > 1 else 0.5 for c in complete}
    strong = sorted(complete, key=lambda c: -abs(overall[c] - 0.5))[:5]
    # Independently of the guard: the strongest features rank well inside the levels of the few-valued columns ...
    few_valued = [c for c in columns if 1 < rows[c].nunique(dropna=False) <= FEW_LEVELS]
    within = []
    for column in few_valued:
        for level in rows[column].dropna().unique():
            mask = (rows[column] == level).to_numpy()
            if min(won[mask].sum(), (1 - won[mask]).sum()) >= TieringConfig().model.guards.leak_min_present:
                for feature in strong:
                    if feature != column and rows.loc[mask, feature].nunique() > 1:
                        auc = roc_auc_score(won[mask], rows.loc[mask, feature])
                        within.append(max(auc, 1 - auc))
    assert len(within) > 10 and max(within) > 0.65
    # ... and none of them is refused.
    assert find_leaks(rows, columns, TieringConfig()) == []
