"""Save and load a `Scorer` as plain files: LightGBM text models and one JSON of everything else.

No pickles: the files are readable, diffable, and load with any later LightGBM.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np

from features.config import parse_model_config
from features.matrix import FeatureSpec
from scoring.learners import BlendLearner, Calibrator, DealSizeModel, LogisticLearner, Recipe, WinModel
from scoring.pipeline import PipelineModel
from scoring.scorer import Scorer

BUNDLE_FILE = "bundle.json"
# The packages the logged model ships (its MLflow `code_paths`) and runs; the import-linter contract "the logged
# model" names the same two. The model records a digest of every file they hold, and a process that runs
# different code for any of them refuses the model instead of scoring it silently.
MODEL_PACKAGES = ("features", "scoring")


class ModelCodeMismatch(RuntimeError):
    """The model was logged with other scoring code than this process runs."""


def model_code_paths() -> list[Path]:
    """The folders of the model's packages as this process imports them: what `code_paths` ships."""
    folders = []
    for name in MODEL_PACKAGES:
        file = importlib.import_module(name).__file__
        if file is None:  # a namespace package has no folder of its own to ship or to check
            raise ModelCodeMismatch(f"{name} has no source folder, so its code cannot be checked against the model's")
        folders.append(Path(file).parent)
    return folders


def model_code_files() -> dict[str, Path]:
    """Every file the model ships, keyed by its path from the code root (`features/rules.py`).

    What MLflow copies for `code_paths`: the whole folder but `__pycache__`, so package data counts as code too.
    """
    files = {}
    for folder in model_code_paths():
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder.parent)
            if path.is_file() and "__pycache__" not in relative.parts:
                files[relative.as_posix()] = path
    return files


def scoring_code_digests() -> dict[str, str]:
    """SHA-256 of each file the model ships, as this process has it."""
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in model_code_files().items()}


def check_scoring_code(logged: dict[str, str] | None) -> None:
    """Refuse a model whose recorded scoring code differs from the code this process runs."""
    if logged is None:  # logged before fingerprints existed: nothing to compare with
        return
    running = scoring_code_digests()
    changed = sorted(name for name in set(logged) | set(running) if logged.get(name) != running.get(name))
    if changed:
        where = model_code_paths()[0].parent
        files = ", ".join(changed)
        raise ModelCodeMismatch(
            f"this model was logged with other scoring code than this process runs ({files} differ; code from "
            f"{where}), so its scores would not be the ones it was validated with. Score it with the abm-tiering "
            "version that logged it, or train a new version with this one (tiering train)"
        )


def save_scorer(scorer: Scorer, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": scorer.config.model_part(),  # never the alerts, review or validation settings it does not run
        "cutoffs": scorer.cutoffs,
        "learned": scorer.is_learned,
        "scoring_code": scoring_code_digests(),
    }
    learners = scorer.learners()
    if learners is not None:
        win, deal = learners.win_model, learners.deal_model
        if scorer.value_quantiles is None:
            raise ValueError("a learned scorer is saved after a full scoring (freeze), which sets its value quantiles")
        blend = win.learner if isinstance(win.learner, BlendLearner) else None
        booster = blend.booster if blend is not None else win.learner
        logistic = blend.logistic if blend is not None else win.learner
        if isinstance(booster, lgb.Booster):
            (folder / "win_model.txt").write_text(booster.model_to_string(), encoding="utf-8")
        if deal.booster is not None:
            (folder / "deal_size_model.txt").write_text(deal.booster.model_to_string(), encoding="utf-8")
        meta.update(
            {
                "spec": learners.spec.to_dict(),
                "recipe": win.recipe.to_dict(),
                "logistic": logistic.to_dict() if isinstance(logistic, LogisticLearner) else None,
                "blend": blend.to_dict() if blend is not None else None,
                "calibrator": win.calibrator.to_dict(),
                "deal_size": {
                    "smearing": deal.smearing,
                    "objective": deal.objective,
                    "base": deal.base,
                    "shrink": deal.shrink,
                    "rounds": deal.rounds,
                    "validation": deal.validation,
                },
                "value_quantiles": scorer.value_quantiles.tolist(),
            }
        )
        if scorer.pipeline is not None:
            pipeline = scorer.pipeline
            if pipeline.model is not None and isinstance(pipeline.model.learner, lgb.Booster):
                (folder / PIPELINE_BOOSTER).write_text(pipeline.model.learner.model_to_string(), encoding="utf-8")
            if pipeline.count_model is not None:
                (folder / PIPELINE_COUNT_BOOSTER).write_text(pipeline.count_model.model_to_string(), encoding="utf-8")
            meta["pipeline"] = pipeline.to_dict()
    (folder / BUNDLE_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder


PIPELINE_BOOSTER = "pipeline_model.txt"
PIPELINE_COUNT_BOOSTER = "pipeline_count_model.txt"
COMMAND_ONLY_SECTIONS = ("validation", "alerts", "review")
LEGACY_MODEL_KEYS = ("learning_rate", "num_leaves", "min_child_samples")  # moved into model.search.candidates


def _upgrade(meta: dict) -> dict:
    """A bundle logged before learner selection (one LightGBM, isotonic knots) in today's terms."""
    for section in COMMAND_ONLY_SECTIONS:  # bundles that recorded the whole tiering.yaml
        meta["config"].pop(section, None)
    model = meta["config"].get("model", {})
    legacy = {key: model.pop(key) for key in LEGACY_MODEL_KEYS if key in model}
    if not meta["learned"] or "recipe" in meta:
        return meta
    params = {
        "num_leaves": legacy.get("num_leaves", 15),
        "learning_rate": legacy.get("learning_rate", 0.05),
        "min_child_samples": legacy.get("min_child_samples", 40),
        "lambda_l2": 1.0,
        "num_boost_round": model.get("num_boost_round", 200),
    }
    return {
        **meta,
        "recipe": {"learner": "lightgbm", "params": params, "calibration": "knots"},
        "logistic": None,
        "calibrator": {
            "method": "knots",
            "coef": [],
            "knots_x": meta["calibration_x"],
            "knots_y": meta["calibration_y"],
        },
        "deal_size": {
            "smearing": meta["smearing"],
            "objective": meta["deal_size_objective"],
            "base": 0.0,
            "shrink": 1.0,
            "rounds": params["num_boost_round"],
            "validation": {},
        },
    }


def load_scorer(folder: Path) -> Scorer:
    folder = Path(folder)
    meta = _upgrade(json.loads((folder / BUNDLE_FILE).read_text(encoding="utf-8")))
    check_scoring_code(meta.get("scoring_code"))
    config = parse_model_config(meta["config"], str(folder / BUNDLE_FILE))
    if not meta["learned"]:
        return Scorer(config=config, cutoffs=meta["cutoffs"])
    recipe = Recipe.from_dict(meta["recipe"])
    learner: lgb.Booster | LogisticLearner | BlendLearner
    if meta.get("blend") is not None:
        learner = BlendLearner(
            LogisticLearner.from_dict(meta["logistic"]),
            lgb.Booster(model_file=str(folder / "win_model.txt")),
            [float(w) for w in meta["blend"]["weights"]],
            float(meta["blend"]["offset"]),
        )
    elif meta["logistic"] is None:
        learner = lgb.Booster(model_file=str(folder / "win_model.txt"))
    else:
        learner = LogisticLearner.from_dict(meta["logistic"])
    win = WinModel(learner, Calibrator.from_dict(meta["calibrator"]), recipe)
    size = meta["deal_size"]
    booster = (
        lgb.Booster(model_file=str(folder / "deal_size_model.txt"))
        if (folder / "deal_size_model.txt").is_file()
        else None
    )
    deal = DealSizeModel(
        booster,
        float(size["smearing"]),
        size["objective"],
        float(size["base"]),
        float(size["shrink"]),
        int(size["rounds"]),
        dict(size["validation"]),
    )
    return Scorer(
        config=config,
        spec=FeatureSpec.from_dict(meta["spec"]),
        win_model=win,
        deal_model=deal,
        value_quantiles=np.asarray(meta["value_quantiles"]),
        cutoffs=meta["cutoffs"],
        pipeline=_load_pipeline(meta, folder),
    )


def _load_pipeline(meta: dict, folder: Path) -> PipelineModel | None:
    """The pipeline-propensity part; None for models logged before it existed."""
    if meta.get("pipeline") is None:
        return None
    booster_file = folder / PIPELINE_BOOSTER
    booster = lgb.Booster(model_file=str(booster_file)) if booster_file.is_file() else None
    count_file = folder / PIPELINE_COUNT_BOOSTER
    counts = lgb.Booster(model_file=str(count_file)) if count_file.is_file() else None
    return PipelineModel.from_dict(meta["pipeline"], booster, counts)
