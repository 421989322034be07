"""As of its date: a plant dated t (a drift, an access shock) moves no row dated before t, in
any time-stamped table. The world is drawn with and without the plants; the rows before the
earliest start must be the same (surrogate ids aside: they number rows across the table)."""

from datetime import date

import polars as pl
import pytest

from e2i_synth.core.scenario import load_scenario
from e2i_synth.tables.activity.ml_predictions import generate_ml_predictions
from e2i_synth.tables.activity.treatment_events import generate_treatment_events
from e2i_synth.tables.activity.triggers import generate_triggers
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.feature_store.catalog import generate_feature_groups, generate_features
from e2i_synth.tables.feature_store.feature_values import generate_feature_values
from e2i_synth.tables.metrics.business_metrics import generate_business_metrics

# The default scenario's drifts start here; its later access shock (2026-01) too.
PLANTED_FROM = date(2025, 10, 1)
SURROGATE_IDS = ("event_id", "prediction_id", "trigger_id", "feature_value_id", "metric_id")


def _world(scenario) -> dict[str, tuple[pl.DataFrame, str]]:
    hcps = generate_hcp_profiles(scenario)
    journeys = generate_patient_journeys(scenario, hcps)
    features = generate_features(scenario, generate_feature_groups(scenario))
    first, end = scenario.start_date, scenario.end_date
    return {
        "patient_journeys": (journeys, "journey_start_date"),
        "treatment_events": (generate_treatment_events(scenario, journeys), "event_date"),
        "ml_predictions": (
            generate_ml_predictions(scenario, hcps, journeys, first, end),
            "prediction_timestamp",
        ),
        "triggers": (generate_triggers(scenario, hcps, journeys, first, end), "created_at"),
        "feature_values": (
            generate_feature_values(scenario, hcps, journeys, features, date(2025, 7, 1), end),
            "event_timestamp",
        ),
        "business_metrics": (
            generate_business_metrics(scenario, journeys, first, end),
            "metric_date",
        ),
    }


@pytest.fixture(scope="module")
def worlds() -> tuple[dict, dict]:
    planted = load_scenario(scale="full")
    assert planted.drifts and min(d.start for d in planted.drifts) == PLANTED_FROM
    later_gaps = [g for g in planted.gaps if g.start_month >= PLANTED_FROM]
    assert later_gaps, "the scenario plants a shock after the cut too"
    unplanted = planted.model_copy(
        update={"drifts": [], "gaps": [g for g in planted.gaps if g not in later_gaps]}
    )
    return _world(planted), _world(unplanted)


@pytest.mark.parametrize(
    "table",
    [
        "patient_journeys",
        "treatment_events",
        "ml_predictions",
        "triggers",
        "feature_values",
        "business_metrics",
    ],
)
def test_no_row_dated_before_a_plant_moves_with_it(worlds, table):
    (planted, column), (unplanted, _) = worlds[0][table], worlds[1][table]

    def rows(frame: pl.DataFrame, before: bool) -> pl.DataFrame:
        dated_before = pl.col(column).cast(pl.Date) < PLANTED_FROM
        kept = frame.filter(dated_before if before else ~dated_before)
        kept = kept.drop([c for c in SURROGATE_IDS if c in frame.columns])
        return kept.sort(kept.columns)

    a, b = rows(planted, before=True), rows(unplanted, before=True)
    assert a.height > 1_000
    assert a.equals(b), f"{table}: rows dated before {PLANTED_FROM} differ with the plants"
    # The plants do move rows after it, else the comparison would prove nothing.
    assert not rows(planted, before=False).equals(rows(unplanted, before=False))
