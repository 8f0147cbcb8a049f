"""With no champion, `score`, `compare` and the service name the registered challenger and how to use it; every
command that reads the configuration takes --config."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import load_config, parse_config
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from tests.trained import FAST_MODEL

runner = CliRunner()
# No export has that many won deals: the version stays challenger. (The fast search: the search is not judged here.)
REFUSING_GATE = {"model": {"gate": {"min_won": 100000}, **FAST_MODEL}}
RULES_BY_REVENUE = "rule_weights: {revenue_potential: 1.0, business_fit: 0.0, engagement: 0.0}\n"


@pytest.fixture(scope="module")
def challenger(tmp_path_factory):
    """A 600-account export and a store where version 1 is registered as challenger (the gate refused it)."""
    from ingest.io import load_export
    from sources.synthetic import generate_export
    from training.workflow import train_and_register

    root = tmp_path_factory.mktemp("challenger")
    generate_export(root / "export", n_accounts=600, seed=4)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)
        outcome = train_and_register(
            load_export(root / "export").data, parse_config(REFUSING_GATE), None, lambda step: None
        )
    assert not outcome.decision.promote and outcome.version == "1"
    return root / "export", uri


@pytest.fixture
def store(challenger, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", challenger[1])
    monkeypatch.chdir(tmp_path)  # no tiering.yaml here: the built-in defaults apply
    return challenger[0]


def gate_reason(version: str) -> str:
    """The reason as the registry holds it, read straight from MLflow."""
    from mlflow import MlflowClient

    return MlflowClient().get_model_version("abm-tiering", version).tags["gate_reason"]


def test_score_without_champion_names_the_challenger_its_gate_reason_and_how_to_use_it(store, tmp_path):
    result = runner.invoke(app, ["score", str(store), "--out", str(tmp_path / "scores.csv")])
    assert result.exit_code == 0, result.output
    reason = gate_reason("1")
    assert reason.startswith("not enough data")
    assert (
        f"No champion: version 1 is registered as challenger (kept back by the gate: {reason}); scoring with the "
        "rules only. Score with it using --model models:/abm-tiering/1, or promote it with `tiering promote 1`."
    ) in result.output
    assert set(pd.read_csv(tmp_path / "scores.csv")["model_version"]) == {"rules-only"}


def test_compare_without_champion_names_the_challenger(store, tmp_path):
    result = runner.invoke(app, ["compare", str(store), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "No champion: version 1 is registered as challenger (kept back by the gate: not enough data" in result.output
    assert (
        "the report compares nothing learned and shows the rule tiers only. Compare with it using --model "
        "models:/abm-tiering/1, or promote it with `tiering promote 1`."
    ) in result.output


def test_the_challenger_scores_with_its_uri_and_says_when_config_differs_from_its_own(store, tmp_path):
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(store), "--out", str(out), "--model", "models:/abm-tiering/1"])
    assert result.exit_code == 0, result.output
    assert "No champion" not in result.output and "note:" not in result.output
    scores = pd.read_csv(out)
    assert set(scores["model_version"].astype(str)) == {"1"} and scores["win_probability"].notna().all()
    other = tmp_path / "other.yaml"
    other.write_text(RULES_BY_REVENUE)
    result = runner.invoke(
        app, ["score", str(store), "--out", str(out), "--model", "models:/abm-tiering/1", "--config", str(other)]
    )
    assert result.exit_code == 0, result.output
    # Rule weights are business configuration: they apply to the learned model, with nothing to note.
    assert "note:" not in result.output
    scores = pd.read_csv(out)
    assert (scores["rule_score"] - scores["revenue_potential_score"]).abs().max() <= 0.01
    # A feature setting is the model's own: the model keeps its own, and says so.
    other.write_text(RULES_BY_REVENUE + "engagement: {half_life_days: 10}\n")
    result = runner.invoke(
        app, ["score", str(store), "--out", str(out), "--model", "models:/abm-tiering/1", "--config", str(other)]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"note: model 1 keeps the feature settings and learners it was trained with (logged with its run as "
        f"config/tiering.yaml), which differ from {other}; its rule weights, blend, tiers and budget apply, the "
        "rest applies when scoring with the rules only."
    ) in " ".join(result.output.split())


def test_with_nothing_registered_the_message_says_to_train(mlflow_store, write_export, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["score", str(write_export()), "--out", str(tmp_path / "scores.csv")])
    assert result.exit_code == 0, result.output
    assert (
        "No champion model is registered: scoring with the rules only. Train one with `tiering train DATA`."
        in result.output
    )


def test_score_and_compare_with_rules_only_use_the_given_config(mlflow_store, write_export, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "revenue-only.yaml"
    config.write_text(RULES_BY_REVENUE)
    export = write_export()
    result = runner.invoke(app, ["score", str(export), "--out", str(tmp_path / "scores.csv"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "scores.csv")
    # rule_score = 1.0 x revenue potential: the weights of the given file, not the defaults (0.40 / 0.35 / 0.25)
    pd.testing.assert_series_equal(scores["rule_score"], scores["revenue_potential_score"], check_names=False)
    assert (scores["business_fit_score"] > 0).any()
    result = runner.invoke(app, ["compare", str(export), "--out", str(tmp_path / "report"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "report" / "scores.csv")
    pd.testing.assert_series_equal(table["rule_score"], table["revenue_potential_score"], check_names=False)


@pytest.mark.parametrize(
    "command",
    [
        ["score", "DATA", "--out", "OUT/scores.csv"],
        ["compare", "DATA", "--out", "OUT/r"],
        ["validate", "DATA"],
        ["train", "DATA"],
        ["demo", "--out", "OUT/demo"],
        ["serve"],
    ],
)
def test_every_command_that_reads_config_refuses_a_missing_config_file(command, write_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = [str(write_export()) if part == "DATA" else part.replace("OUT", str(tmp_path)) for part in command]
    result = runner.invoke(app, [*args, "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2, result.output
    assert (
        f"error: {tmp_path / 'missing.yaml'}: config file not found: pass an existing file with --config"
        in result.output
    )
    assert not (tmp_path / "demo").exists()


def test_demo_trains_with_the_given_config(tmp_path, monkeypatch):
    from training import workflow

    monkeypatch.chdir(tmp_path)
    config = tmp_path / "demo.yaml"
    config.write_text(RULES_BY_REVENUE)
    seen = {}

    def stop(frame, settings, as_of, progress):
        seen["settings"] = settings
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "train_and_register", stop)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--accounts", "500", "--config", str(config)])
    assert result.exit_code == 130, result.output
    assert seen["settings"] == load_config(config)
    assert seen["settings"].rule_weights.revenue_potential == 1.0


def test_serve_hands_its_config_to_the_service_which_scores_rules_only_with_it(store, tmp_path, monkeypatch, caplog):
    import serving.launch
    from serving.champion import load_serving_model

    config = tmp_path / "serve.yaml"
    config.write_text(RULES_BY_REVENUE)
    started = {}
    monkeypatch.setattr(serving.launch, "exec_server", lambda host, port: started.update(host=host, port=port))
    monkeypatch.delenv(serving.launch.CONFIG_ENV, raising=False)
    result = runner.invoke(app, ["serve", "--config", "serve.yaml", "--port", "3999"])
    assert result.exit_code == 0, result.output
    assert started == {"host": "127.0.0.1", "port": 3999}
    assert "No champion: version 1 is registered as challenger" in result.output
    assert (
        "the service scores with the rules only until one is promoted. Promote it with `tiering promote 1`."
        in result.output
    )
    import os

    assert os.environ[serving.launch.CONFIG_ENV] == str(config.resolve())
    monkeypatch.setenv(serving.launch.CONFIG_ENV, str(config.resolve()))  # undone after the test
    with caplog.at_level(logging.WARNING, logger="bentoml.abm_tiering"):
        model = load_serving_model(None)
    assert model.model.config == load_config(config) and model.version == "rules-only"
    assert any("No champion: version 1 is registered as challenger" in record.getMessage() for record in caplog.records)
