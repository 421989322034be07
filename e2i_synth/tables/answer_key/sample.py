"""The tables the answer key reads, straight from the pure generators (no database).

Used to judge a scenario before anything is written (its plants' power at its own size) and
by the many-seed test of the blocking checks. Only the monitoring windows of feature_values are
generated: the answer key reads nothing else of it.
"""

from dataclasses import dataclass

import polars as pl

from e2i_synth.core.scenario import Scenario
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.feature_store.catalog import generate_feature_groups, generate_features
from e2i_synth.tables.feature_store.feature_values import generate_feature_values
from e2i_synth.tables.metrics.business_metrics import generate_business_metrics, scenario_window


@dataclass(frozen=True)
class AnswerKeyTables:
    patient_journeys: pl.DataFrame
    features: pl.DataFrame
    feature_values: pl.DataFrame  # the two monitoring windows only
    business_metrics: pl.DataFrame


def generate_answer_key_tables(scenario: Scenario) -> AnswerKeyTables:
    hcps = generate_hcp_profiles(scenario)
    journeys = generate_patient_journeys(scenario, hcps)
    features = generate_features(scenario, generate_feature_groups(scenario))
    w = scenario.monitoring
    values = pl.concat(
        generate_feature_values(scenario, hcps, journeys, features, start, end)
        for start, end in ((w.baseline_start, w.baseline_end), (w.current_start, w.current_end))
    )
    return AnswerKeyTables(
        patient_journeys=journeys,
        features=features,
        feature_values=values,
        business_metrics=generate_business_metrics(scenario, journeys, *scenario_window(scenario)),
    )


def generate_ground_truth_frame(scenario: Scenario, tables: AnswerKeyTables | None = None):
    """ground_truth as the pipeline loads it, straight from the pure generators (no database):
    what the scorer and the leaderboard read."""
    from importlib.metadata import version

    from e2i_synth.tables.answer_key.ground_truth import generate_ground_truth

    tables = tables or generate_answer_key_tables(scenario)
    return generate_ground_truth(
        scenario,
        tables.patient_journeys,
        tables.features,
        tables.feature_values,
        tables.business_metrics,
        version("e2i-synth"),
    )
