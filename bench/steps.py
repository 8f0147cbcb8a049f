"""Benchmark steps, each run in its own process so its peak memory is its own.

`python -m bench.steps STEP DATA_DIR [MODEL_DATA_DIR [MODEL_FILE]]` prints one JSON object: the step's figures beside
its raw reference measured in the same process, and the process's peak RSS. Beside the wall times, `cpu_s` holds
the CPU time of the parts that the growth with size is judged on (`time.process_time`: this process's threads, user
and system), which other jobs on a shared machine change far less than wall time.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Clock:
    """Wall seconds between laps (`lap`), and the CPU seconds of the last lap (`cpu`)."""

    def __init__(self):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.cpu = 0.0

    def lap(self) -> float:
        now, cpu = time.perf_counter(), time.process_time()
        elapsed, self.cpu = now - self.start, cpu - self.cpu_start
        self.start, self.cpu_start = now, cpu
        return elapsed


def timed_reads(data) -> dict[str, float]:
    """Count the CPU seconds spent reading the book's spilled events back (into the returned figures), so that the
    build can be told apart from the spill; a book held whole (one group) reads nothing back."""
    spent = {"read_back": 0.0}
    if data.grouped is None:
        return spent
    read = data.grouped.read

    def timed(group: int):
        started = time.process_time()
        try:
            return read(group)
        finally:
            spent["read_back"] += time.process_time() - started

    data.grouped = replace(data.grouped, read=timed)
    return spent


def read_floor(data_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds to merely read the export's Parquet files into Arrow: no step can beat this."""
    import pyarrow.parquet as pq

    clock = Clock()
    for path in sorted(data_dir.glob("*.parquet")):
        pq.read_table(path)
    return clock.lap(), clock.cpu


def features(data_dir: Path) -> dict:
    """The point-in-time feature rows as the commands build them: the export read and validated with its events
    written by group as they are read (the import's part, timed apart), then every closed deal's row and every
    account's row asked at once (as `tiering train` asks for all its rows) and built one group of accounts at a
    time."""
    from configuration.tiering import TieringConfig
    from features.groups import grouped_build
    from features.pointintime import closed_between, with_outcomes
    from ingest.io import load_export
    from ingest.spill import spill_folder
    from training.pipeline import WindowDates

    floor, floor_cpu = read_floor(data_dir)
    clock = Clock()
    cpu: dict[str, float] = {"read_parquet": floor_cpu}
    config = TieringConfig()
    with spill_folder() as folder:
        data = load_export(data_dir, spill=folder).data
        load_seconds, cpu["load_and_validate"] = clock.lap(), clock.cpu
        reads = timed_reads(data)
        window = WindowDates.for_data(data, config, None)
        closed = closed_between(data.opportunities, pd.Timestamp("1900-01-01"), window.as_of)  # every closed deal
        ids = data.accounts["account_id"].astype("str")
        queries = pd.concat(
            [
                pd.DataFrame({"account_id": closed["account_id"].astype("str"), "cutoff": closed["created_date"]}),
                pd.DataFrame({"account_id": ids, "cutoff": window.as_of}),
            ],
            ignore_index=True,
        )
        queries["cutoff"] = pd.to_datetime(queries["cutoff"]).astype("datetime64[ns]")
        built = grouped_build(data, config)(queries)
        rows = with_outcomes(built.iloc[: len(closed)], closed)
        build_seconds, cpu["rows_and_book"] = clock.lap(), clock.cpu
    # What the features cost (reading the groups back and building), and the build alone: without the reading back,
    # which only a book of more than one group does. The events' spill is the import's (written as they are read).
    cpu["read_back"] = reads["read_back"]
    cpu["features"] = cpu["rows_and_book"]
    cpu["build"] = cpu["rows_and_book"] - cpu["read_back"]
    return {
        "read_parquet_s": floor,
        "load_and_validate_s": load_seconds,
        "rows_and_book_s": build_seconds,
        "features_s": build_seconds,
        "opportunity_rows": len(rows),
        "accounts": len(ids),
        "engagement_events": data.event_rows("engagement"),
        "cpu_s": cpu,
    }


def train(data_dir: Path) -> dict:
    """`tiering train` end to end (with MLflow, learner search on) against raw fits of the learners it chose
    (the win recipe and the deal-size booster with their final rounds, on the same window's rows)."""
    import os
    import tempfile

    from configuration.tiering import TieringConfig
    from features.config import Candidate
    from features.matrix import FeatureSpec
    from ingest.io import load_export
    from ingest.spill import spill_folder
    from scoring.learners import LOGISTIC
    from training.models import fit_learner, train_booster
    from training.workflow import train_and_register

    config = TieringConfig()
    steps: dict[str, float] = {}
    steps_cpu: dict[str, float] = {}
    last: list = [time.perf_counter(), None, time.process_time()]

    def progress(step: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if last[1] is not None:
            steps[last[1]] = steps.get(last[1], 0.0) + now - last[0]
            steps_cpu[last[1]] = steps_cpu.get(last[1], 0.0) + cpu - last[2]
        last[:] = [now, step, cpu]

    clock = Clock()  # as `tiering train` runs: read and validate (the events written by group as read), train, register
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        with spill_folder() as folder:
            data = load_export(data_dir, spill=folder).data
            outcome = train_and_register(data, config, None, progress)
        total, train_cpu = clock.lap(), clock.cpu
    progress("end")
    scorer = outcome.result.scorer
    recipe, deal = scorer.win_model.recipe, scorer.deal_model
    # The reference fits on the same window's rows (all of them: the bench's window fits in max_training_rows).
    rows = pd.concat([outcome.result.development, outcome.result.holdout_rows], ignore_index=True)
    spec = FeatureSpec.fit(rows, config)
    matrix = spec.encode(rows)
    won = rows["won"].to_numpy()
    amount = rows["amount"].to_numpy(dtype=np.float64, na_value=np.nan)
    clock.lap()
    fit_learner(recipe, matrix, won, spec.categorical_indices, spec.columns, config.model)
    keep = (won == 1) & (amount > 0)
    if deal.booster is not None:
        train_booster(
            matrix[keep],
            np.log(amount[keep]),
            spec.categorical_indices,
            spec.columns,
            config.model,
            Candidate(**config.model.search.candidates[0].model_dump()),
            "regression",
            deal.rounds,
        )
    raw_seconds, raw_cpu = clock.lap(), clock.cpu
    search = sum(seconds for name, seconds in steps.items() if name.startswith("learner search"))
    folds = sum(seconds for name, seconds in steps.items() if name.startswith("learner search: the finalists"))
    return {
        "train_s": total,
        "raw_fits_s": raw_seconds,
        "ratio": total / raw_seconds,
        "training_rows": int(len(rows)),
        "steps_s": steps,
        "search_s": search,
        "search_share": search / total,
        "folds_s": folds,
        "folds_share": folds / total,
        "chosen": recipe.describe(),
        "logistic_chosen": recipe.learner == LOGISTIC,
        "cpu_s": {"train": train_cpu, "raw_fits": raw_cpu},
        "steps_cpu_s": steps_cpu,
    }


def _load(data_dir: Path):
    from configuration.tiering import TieringConfig
    from ingest.io import load_export

    return load_export(data_dir).data, TieringConfig()


SCORE_REPEATS = 3  # each scoring timed this many times in the process, its median kept (a second each at 10,000)


def score(data_dir: Path, model_data: Path | None = None, model_file: Path | None = None) -> dict:
    """Scoring every account (features as of a date, both models, tiers, reasons) against raw predict. The model is
    trained on `model_data` (default: this export): one model for every size, so that the growth with the size is
    the book's, not that of a larger model (more trees) or of another learner chosen on more deals. With
    `model_file`, the model is trained once and kept there (pickled by an earlier step of the same bench run, in its
    private temporary folder) for the other sizes and repeats."""
    import pickle

    from features.groups import book_snapshot
    from features.rules import with_rule_scores
    from training.pipeline import WindowDates
    from training.pipeline import train as train_models

    data, config = _load(data_dir)
    if model_file is not None and model_file.is_file():
        scorer = pickle.loads(model_file.read_bytes())
    else:
        scorer = train_models(_load(model_data)[0] if model_data else data, config).scorer
        if model_file is not None:
            model_file.write_bytes(pickle.dumps(scorer))
    book = book_snapshot(data, config, WindowDates.for_data(data, config, None).as_of)
    matrix = scorer.spec.encode(with_rule_scores(book, config))

    def raw() -> None:
        scorer.win_model.margin(matrix)  # the raw learners: booster.predict or the logistic's matrix product
        scorer.deal_model.margin(matrix)

    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, run in (
        ("raw_predict", raw),
        ("score", lambda: scorer.score(book, by_capacity=True, explain=False)),
        ("score_with_reasons", lambda: scorer.score(book, by_capacity=True, explain=True)),
    ):
        laps = []
        for _ in range(SCORE_REPEATS):
            clock = Clock()
            run()
            laps.append((clock.lap(), clock.cpu))
        wall[name] = float(np.median([lap[0] for lap in laps]))
        cpu[name] = float(np.median([lap[1] for lap in laps]))
    n = len(book)
    return {
        "accounts": n,
        "raw_predict_per_s": n / wall["raw_predict"],
        "score_per_s": n / wall["score"],
        "score_with_reasons_per_s": n / wall["score_with_reasons"],
        "ratio": wall["raw_predict"] / wall["score"],
        "ratio_with_reasons": wall["raw_predict"] / wall["score_with_reasons"],
        "cpu_s": cpu,
    }


def forecast(data_dir: Path) -> dict:
    """`tiering forecast`'s work (scoring the book, then 10,000 simulations per tier) against a plain scoring
    of the same book (the goal: at most 2x)."""
    from features.activity import default_as_of
    from scoring.forecast import SIMULATIONS
    from scoring.pyfunc import TieringModel
    from training.pipeline import train as train_models

    data, config = _load(data_dir)
    model = TieringModel.around(train_models(data, config).scorer)
    as_of = default_as_of(data)
    clock = Clock()
    model.score_book(data, as_of)
    scoring_seconds = clock.lap()
    model.forecast_book(data, as_of, simulations=SIMULATIONS)
    forecast_seconds = clock.lap()
    return {
        "accounts": int(len(data.accounts)),
        "score_s": scoring_seconds,
        "forecast_s": forecast_seconds,
        "simulations": SIMULATIONS,
        "ratio": forecast_seconds / scoring_seconds,
    }


STEPS = {"features": features, "train": train, "score": score, "forecast": forecast}

if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    figures = STEPS[step](folder, *(Path(extra) for extra in sys.argv[3:]))
    figures["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(figures))
