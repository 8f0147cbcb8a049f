import lightgbm as lgb
import numpy as np
import pytest

from scoring.attribution import DENSE_ROWS, PathAttribution, contributions


@pytest.fixture(scope="module")
def booster():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": 1}
    return lgb.train(params, lgb.Dataset(x, y), 40), x


@pytest.mark.parametrize("method", ["path", "treeshap"])
def test_contributions_add_up_to_the_raw_margin(booster, method):
    model, x = booster
    parts = contributions(model, x[:500], method)
    assert parts.shape == (500, 7)
    np.testing.assert_allclose(parts.sum(axis=1), model.predict(x[:500], raw_score=True), atol=1e-9)


def test_path_attribution_credits_the_features_the_trees_use(booster):
    model, x = booster
    parts = PathAttribution(model).contributions(x)
    strength = np.abs(parts[:, :-1]).mean(axis=0)
    assert set(np.argsort(-strength)[:3]) == {0, 1, 2}  # the three informative features
    assert strength[3:].max() < 0.2 * strength[:3].min()
    shap = model.predict(x, pred_contrib=True)
    assert (np.argmax(np.abs(parts[:, :-1]), 1) == np.argmax(np.abs(shap[:, :-1]), 1)).mean() > 0.8


def test_a_few_rows_get_the_same_bits_as_in_a_large_batch(booster):
    """Small requests take a dense shortcut; a row's contributions must not depend on the batch size."""
    model, x = booster
    attribution = PathAttribution(model)
    in_batch = attribution.contributions(x[:500])
    assert 500 > DENSE_ROWS
    for start in range(0, 500, DENSE_ROWS):
        end = min(start + DENSE_ROWS, 500)
        np.testing.assert_array_equal(attribution.contributions(x[start:end]), in_batch[start:end])
    np.testing.assert_array_equal(attribution.contributions(x[7:8]), in_batch[7:8])
