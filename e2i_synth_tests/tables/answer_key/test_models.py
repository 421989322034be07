"""The models' answer (answer_key.models) and the calibrated scores it judges: the figures are
those of the table's own rows, the score is calibrated by construction, and the statistics
are right."""

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import mannwhitneyu

from e2i_synth.core.scenario import load_scenario
from e2i_synth.tables.activity.calibration import Posterior, logit
from e2i_synth.tables.activity.ml_predictions import generate_ml_predictions
from e2i_synth.tables.activity.ml_predictions_model import PREDICTION_TYPES
from e2i_synth.tables.answer_key import models
from e2i_synth.tables.answer_key.sample import generate_answer_key_tables
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys


def test_a_model_with_no_judged_rows_states_no_figures(recwarn):
    """A window too short for a model leaves it no rows: its calibration says none (null in
    ground_truth), not NaN from the mean of nothing, and warns of nothing."""
    fit = models.calibration(np.array([]), np.array([], dtype=bool))
    assert fit == {"brier": None, "mean_score": None, "outcome_rate": None}
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_the_posterior_mean_is_calibrated_and_no_sharper_than_the_truth():
    rng = np.random.default_rng(1)
    q = rng.beta(2, 8, 200_000)
    z = logit(q) + rng.normal(0, 0.6, q.size)
    y = rng.random(q.size) < q
    score = Posterior.fit(q, 0.6).mean(z)
    fit = models.calibration(score, y)
    # 200,000 independent rows: the recalibration's intervals hold 1 and 0.
    assert fit["calibration_slope_ci95"][0] < 1 < fit["calibration_slope_ci95"][1]
    assert fit["calibration_intercept_ci95"][0] < 0 < fit["calibration_intercept_ci95"][1]
    assert fit["ece"] < 0.005
    assert models.auc(score, y) < models.auc(q, y)
    # The raw noisy signal, by contrast, is overconfident: its slope is well below 1.
    raw = models.calibration(1 / (1 + np.exp(-z)), y)
    assert raw["calibration_slope_ci95"][1] < 0.9
    grid = Posterior.fit(q, 0.6)
    assert np.all(np.diff(grid.mean_q) >= 0) and q.min() <= grid.mean_q.min()


def test_auc_and_its_delong_errors():
    rng = np.random.default_rng(2)
    y = rng.random(4_000) < 0.3
    a = y + rng.normal(0, 1.5, y.size)
    b = a + rng.normal(0, 1.0, y.size)
    u = mannwhitneyu(a[y], a[~y]).statistic
    assert models.auc(a, y) == pytest.approx(u / (y.sum() * (~y).sum()))
    # Hanley and McNeil's approximation of one AUC's standard error.
    auc = models.auc(a, y)
    m, n = y.sum(), (~y).sum()
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    hanley = np.sqrt((auc * (1 - auc) + (m - 1) * (q1 - auc**2) + (n - 1) * (q2 - auc**2)) / m / n)
    assert models.auc_se(a, y) == pytest.approx(hanley, rel=0.15)
    # Paired rows: the difference is known more precisely than either AUC.
    assert 0 < models.auc_difference_se(a, b, y) < models.auc_se(b, y)
    assert models.auc(a, np.ones(5, dtype=bool)) is None


@pytest.fixture(scope="module")
def small():
    scenario = load_scenario(scale="small")
    hcps = generate_hcp_profiles(scenario)
    patients = generate_patient_journeys(scenario, hcps)
    return scenario, hcps, patients


def test_the_judged_rows_are_the_tables_rows(small):
    scenario, hcps, patients = small
    window = (scenario.start_date, scenario.end_date + timedelta(days=1))
    table = generate_ml_predictions(scenario, hcps, patients, *window)
    judged = models.judged_rows(scenario, hcps, patients)
    propensity = table.filter(pl.col("prediction_type") == "treatment_propensity")["score"]
    assert np.array_equal(np.sort(judged["treatment_propensity"].score), propensity.sort())
    churn = table.filter(pl.col("prediction_type") == "churn_risk")
    # Only fills whose outcome lies inside the journey are judged: a subset of the table's.
    assert 0 < judged["churn_risk"].score.size <= churn.height
    assert set(np.round(judged["churn_risk"].score, 4)) <= set(churn["score"])


def test_the_answer_key_records_every_model(small):
    scenario, hcps, patients = small
    from importlib.metadata import version

    from e2i_synth.tables.answer_key.ground_truth import generate_ground_truth

    answers = models.model_answers(scenario, hcps, patients)
    assert set(answers) == set(PREDICTION_TYPES)
    for kind in ("treatment_propensity", "churn_risk"):
        a = answers[kind]
        assert a["n"] > a["positives"] > 0
        assert 0.5 < a["auc"] <= 1 and 0.5 < a["oracle_auc"] <= 1 and a["auc_se"] > 0
        assert 0 < a["calibration"]["brier"] < 0.25
        assert len(a["calibration"]["deciles"]) == models.CALIBRATION_BINS
    assert answers["next_best_action"]["outcome"] is None

    t = generate_answer_key_tables(scenario)
    truth = generate_ground_truth(
        scenario,
        t.patient_journeys,
        t.features,
        t.feature_values,
        t.business_metrics,
        version("e2i-synth"),
        models=answers,
    )
    details = json.loads(truth.filter(pl.col("kind") == "scenario")["details"].item())
    assert details["models"] == json.loads(json.dumps(answers))
