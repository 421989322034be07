"""The planted effect of engagement_score on treatment_initiated is recoverable, and confounded."""

import pytest

from e2i_synth.consumers.causal import estimate_ate, estimate_ate_from_frame
from e2i_synth.core.scenario import load_scenario
from e2i_synth.db.copy import replace_rows
from e2i_synth.tables import TABLES
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys


def _journeys(scenario):
    return generate_patient_journeys(scenario, generate_hcp_profiles(scenario))


def test_full_scale_adjusted_ci_covers_truth_and_naive_is_biased():
    scenario = load_scenario(scale="full")
    truth = scenario.causal.true_ate
    estimate = estimate_ate_from_frame(_journeys(scenario))
    assert estimate.n == 2500
    assert estimate.covers(truth), estimate
    assert abs(estimate.naive - truth) >= 0.3 * abs(truth), estimate
    assert not estimate.naive_ci_lower <= truth <= estimate.naive_ci_upper


@pytest.mark.parametrize("true_ate", [0.0, 0.02, 0.06])
def test_changing_the_scenario_changes_the_recovered_effect(true_ate):
    base = load_scenario(scale="full")
    scenario = base.model_copy(
        update={"causal": base.causal.model_copy(update={"true_ate": true_ate})}
    )
    estimate = estimate_ate_from_frame(_journeys(scenario))
    assert estimate.covers(true_ate), estimate
    assert estimate.naive - true_ate >= 0.015  # confounding inflates the naive slope


def test_estimate_from_the_loaded_table_matches_the_frame(database):
    scenario = load_scenario(scale="full")
    hcps = generate_hcp_profiles(scenario)
    journeys = generate_patient_journeys(scenario, hcps)
    with database.connect() as conn:
        replace_rows(conn, TABLES["hcp_profiles"], [hcps])
        replace_rows(conn, TABLES["patient_journeys"], [journeys])
    from_db = estimate_ate(database)
    from_frame = estimate_ate_from_frame(journeys)
    assert from_db.adjusted == pytest.approx(from_frame.adjusted, rel=1e-9)
    assert from_db.covers(scenario.causal.true_ate)
