"""The statistical coherence rules, from the loaded tables of the default scenario at full scale
(its own scale, bundled seed): each patient model's score ranks its outcome no better than the
true probability behind the data, and churn_risk predicts stopping.

Everything is read from PostgreSQL after a load through Dagster; only the true probabilities
come from the world's formulas applied to the loaded journeys (the causal model and the start
shocks, the wait to a first prescription, the stop hazard). The figures recomputed here must
equal those the answer key records (answer_key.models), so the key describes the loaded table.

Statistical, so each assertion has a margin of MARGIN_SE standard errors (DeLong's, clustered
by patient): an honest model's AUC is at most the oracle's in expectation, so a false failure
needs a 3-SE deviation (about 0.13% for a normal statistic) and, the seed being fixed, it
either happens on every run or never. At the bundled seed (README, "Scores are honest"):
propensity 0.864 vs oracle 0.869 (difference -2.6 SE), churn 0.645 vs 0.695 (-2.7 SE), churn
above 0.5 by 5.4 SE. A test, not a blocking check. `-s` prints the figures.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from e2i_synth.core.scenario import load_scenario
from e2i_synth.db.copy import read_table
from e2i_synth.tables import TABLES
from e2i_synth.tables.activity import assets as activity
from e2i_synth.tables.activity.ml_predictions import (
    RESOLVED_AFTER_SUPPLY_DAYS,
    initiation_probability,
)
from e2i_synth.tables.answer_key import models
from e2i_synth.tables.entities import assets as entities
from e2i_synth.world.initiation import start_factor
from e2i_synth.world.timelines import stop_hazard
from e2i_synth_tests.pipeline import run

pytestmark = pytest.mark.soak

MARGIN_SE = 3.0
SCALE = "full"


@pytest.fixture(scope="module")
def loaded(server_url: str):
    import dagster as dg
    import psycopg

    from e2i_synth.db.connection import with_database
    from e2i_synth.db.migrate import migrate
    from e2i_synth.db.resource import Database

    name = "t_soak_model_honesty"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    migrate(url)
    database = Database(url=url)
    assert run(database, dg.load_assets_from_modules([entities, activity]), scale=SCALE).success
    with database.connect() as conn:
        tables = {
            t: read_table(conn, TABLES[t])
            for t in ("hcp_profiles", "patient_journeys", "treatment_events", "ml_predictions")
        }
    yield tables
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _propensity(tables: dict[str, pl.DataFrame]) -> models.Judged:
    scenario = load_scenario(scale=SCALE)
    rows = (
        tables["ml_predictions"]
        .filter(pl.col("prediction_type") == "treatment_propensity")
        .with_columns(day=pl.col("prediction_timestamp").dt.date())
        .join(tables["patient_journeys"], on="patient_id")
    )
    # The causal model, times the chance a start goes ahead under the default's start shock.
    p = scenario.causal.treatment_probability(
        rows["engagement_score"].to_numpy(),
        rows["disease_severity"].to_numpy(),
        rows["academic_hcp"].to_numpy(),
    ) * start_factor(scenario, rows["brand"], rows["region"], rows["journey_start_date"])
    days = (rows["day"] - rows["journey_start_date"]).dt.total_days().to_numpy()
    return models.Judged(
        score=rows["score"].to_numpy(),
        outcome=rows["treatment_initiated"].to_numpy(),
        oracle=initiation_probability(p, days),
        patient=rows["patient_id"].to_numpy(),
    )


def _churn(tables: dict[str, pl.DataFrame]) -> models.Judged:
    fills = (
        tables["treatment_events"]
        .filter(pl.col("event_type").is_in(["prescription", "refill"]))
        .sort("patient_id", "event_date")
        .with_columns(last=pl.col("event_date").shift(-1).over("patient_id").is_null())
        .select("patient_id", "event_date", "days_supply", "last")
    )
    journeys = tables["patient_journeys"]
    rows = (
        tables["ml_predictions"]
        .filter(pl.col("prediction_type") == "churn_risk")
        .with_columns(event_date=pl.col("prediction_timestamp").dt.date())
        .join(fills, on=["patient_id", "event_date"], how="left")
        .join(journeys.with_columns(hazard=pl.Series(stop_hazard(journeys))), on="patient_id")
    )
    assert rows["days_supply"].null_count() == 0  # every churn score is dated on a fill
    known = rows.filter(
        pl.col("event_date") + pl.duration(days=pl.col("days_supply") + RESOLVED_AFTER_SUPPLY_DAYS)
        <= pl.col("journey_end_date")
    )
    return models.Judged(
        score=known["score"].to_numpy(),
        outcome=known["last"].to_numpy(),
        oracle=known["hazard"].to_numpy(),
        patient=known["patient_id"].to_numpy(),
    )


def test_scores_rank_no_better_than_the_truth_and_churn_predicts_stopping(loaded):
    scenario = load_scenario(scale=SCALE)
    recorded = models.model_answers(scenario, loaded["hcp_profiles"], loaded["patient_journeys"])
    for kind, rows in (
        ("treatment_propensity", _propensity(loaded)),
        ("churn_risk", _churn(loaded)),
    ):
        figures = models.judge(rows)
        print(
            f"{kind}: n {figures['n']} (positives {figures['positives']}), AUC {figures['auc']} "
            f"(SE {figures['auc_se']}) vs oracle {figures['oracle_auc']} (difference SE "
            f"{figures['auc_difference_se']}); calibration slope "
            f"{figures['calibration']['calibration_slope']}, intercept "
            f"{figures['calibration']['calibration_intercept']}, ECE "
            f"{figures['calibration']['ece']}"
        )
        # The answer key describes the loaded table.
        for key in ("n", "positives", "auc", "oracle_auc", "auc_se", "auc_difference_se"):
            assert figures[key] == pytest.approx(recorded[kind][key], abs=1e-6), (kind, key)
        assert figures["auc"] <= figures["oracle_auc"] + MARGIN_SE * figures["auc_difference_se"]
        if kind == "churn_risk":
            assert figures["auc"] >= 0.5 + MARGIN_SE * figures["auc_se"]
    assert np.isfinite(recorded["churn_risk"]["calibration"]["brier"])
