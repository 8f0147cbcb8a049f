import lightgbm as lgb
import numpy as np
import pytest

from training.attribution import PathAttribution, contributions


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
