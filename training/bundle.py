"""Save and load a `Scorer` as plain files: LightGBM text models and one JSON of everything else.

No pickles: the files are readable, diffable, and load with any later LightGBM.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np

from features.config import parse_config
from features.matrix import FeatureSpec
from training.models import DealSizeModel, WinModel
from training.scoring import Scorer

BUNDLE_FILE = "bundle.json"


def save_scorer(scorer: Scorer, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"config": scorer.config.model_dump(mode="json"), "cutoffs": scorer.cutoffs, "learned": scorer.is_learned}
    if scorer.is_learned:
        (folder / "win_model.txt").write_text(scorer.win_model.booster.model_to_string(), encoding="utf-8")
        (folder / "deal_size_model.txt").write_text(scorer.deal_model.booster.model_to_string(), encoding="utf-8")
        meta.update({
            "spec": scorer.spec.to_dict(),
            "calibration_x": scorer.win_model.calibration_x.tolist(),
            "calibration_y": scorer.win_model.calibration_y.tolist(),
            "smearing": scorer.deal_model.smearing,
            "deal_size_objective": scorer.deal_model.objective,
            "value_quantiles": scorer.value_quantiles.tolist(),
        })
    (folder / BUNDLE_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder


def load_scorer(folder: Path) -> Scorer:
    folder = Path(folder)
    meta = json.loads((folder / BUNDLE_FILE).read_text(encoding="utf-8"))
    config = parse_config(meta["config"], str(folder / BUNDLE_FILE))
    if not meta["learned"]:
        return Scorer(config=config, cutoffs=meta["cutoffs"])
    win = WinModel(lgb.Booster(model_file=str(folder / "win_model.txt")),
                   np.asarray(meta["calibration_x"]), np.asarray(meta["calibration_y"]))
    deal = DealSizeModel(lgb.Booster(model_file=str(folder / "deal_size_model.txt")), meta["smearing"],
                         meta["deal_size_objective"])
    return Scorer(config=config, spec=FeatureSpec.from_dict(meta["spec"]), win_model=win, deal_model=deal,
                  value_quantiles=np.asarray(meta["value_quantiles"]), cutoffs=meta["cutoffs"])
