"""The reference Drift Monitor judges a 7-day window at full scale and refuses one too thin to
judge, saying how many values it has and needs (pure frames: the report's statistics are
e2i_synth.stats.drift's, its database query is exercised by the answer-key tests)."""

from datetime import date, timedelta

import polars as pl
import pytest

from e2i_synth.consumers.drift import MIN_WINDOW_VALUES, refuse_thin_windows
from e2i_synth.core.scenario import MonitoringWindows, load_scenario
from e2i_synth.stats.drift import drift_statistics
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.feature_store.catalog import generate_feature_groups, generate_features
from e2i_synth.tables.feature_store.feature_values import generate_feature_values

# Two adjacent weeks of the steady state, as the seed's Drift Monitor asks (time_window "7d").
START = date(2025, 9, 1)
WEEKS = MonitoringWindows(
    baseline_start=START,
    baseline_end=START + timedelta(days=7),
    current_start=START + timedelta(days=7),
    current_end=START + timedelta(days=14),
)


def _weekly_report(scale: str) -> pl.DataFrame:
    scenario = load_scenario(None, scale)
    hcps = generate_hcp_profiles(scenario)
    patients = generate_patient_journeys(scenario, hcps)
    features = generate_features(scenario, generate_feature_groups(scenario))
    values = generate_feature_values(
        scenario, hcps, patients, features, WEEKS.baseline_start, WEEKS.current_end
    )
    return refuse_thin_windows(drift_statistics(values, features, WEEKS))


@pytest.fixture(scope="module")
def full() -> pl.DataFrame:
    return _weekly_report("full")


def test_a_week_at_full_scale_is_judged(full: pl.DataFrame):
    assert full["refusal"].null_count() == full.height == 15
    assert full["n_baseline"].min() >= MIN_WINDOW_VALUES
    assert full["drifted"].null_count() == 0
    assert not full["drifted"].any()  # nothing is planted in these weeks


def test_a_week_at_scale_small_is_refused_with_its_counts():
    report = _weekly_report("small")
    assert report["refusal"].null_count() == 0
    assert report["drifted"].null_count() == report["psi"].null_count() == report.height
    row = report.filter(pl.col("feature") == "engagement_score").row(0, named=True)
    assert row["n_baseline"] < MIN_WINDOW_VALUES
    assert f"{row['n_baseline']} values in the baseline window" in row["refusal"]
    assert f"needs at least {MIN_WINDOW_VALUES}" in row["refusal"]


def test_only_the_thin_window_is_named():
    report = pl.DataFrame(
        {
            "feature": ["a", "b"],
            "value_type": ["float", "float"],
            "n_baseline": [300, 300],
            "n_current": [300, 12],
            "psi": [0.01, 0.5],
            "ks_statistic": [0.02, 0.4],
            "ks_pvalue": [0.9, 0.001],
            "drifted": [False, True],
        }
    )
    judged = refuse_thin_windows(report)
    assert judged["refusal"].to_list() == [
        None,
        f"too thin to judge: 12 values in the current window; a drift test needs at least "
        f"{MIN_WINDOW_VALUES}",
    ]
    assert judged["drifted"].to_list() == [False, None]
