"""Activity assets: treatment_events, ml_predictions and triggers (unpartitioned for now).

ml_predictions and triggers are generated day by day for a [start, end) window, so they can
later become daily partitioned on their timestamp without changing the rows of any day; for
now each asset asks for the whole scenario range.
"""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from e2i_synth.assets.scenario_resource import ScenarioResource
from e2i_synth.generators.ml_predictions import generate_ml_predictions
from e2i_synth.generators.treatment_events import generate_treatment_events
from e2i_synth.generators.triggers import generate_triggers
from e2i_synth.scenario import Scenario
from e2i_synth.schemas import TABLES

ACTIVITY_GROUP = "activity"


def scenario_range(scenario: Scenario) -> tuple[date, date]:
    """Every day of the scenario, as a [start, end) window."""
    return scenario.start_date, scenario.end_date + timedelta(days=1)


@dg.asset(
    group_name=ACTIVITY_GROUP,
    kinds={"polars", "postgres"},
    description=TABLES["treatment_events"].description,
    deps=["hcp_profiles"],
)
def treatment_events(scenario: ScenarioResource, patient_journeys: pl.DataFrame) -> pl.DataFrame:
    return generate_treatment_events(scenario.load(), patient_journeys)


@dg.asset(
    group_name=ACTIVITY_GROUP,
    kinds={"polars", "postgres"},
    description=TABLES["ml_predictions"].description,
)
def ml_predictions(
    scenario: ScenarioResource, hcp_profiles: pl.DataFrame, patient_journeys: pl.DataFrame
) -> pl.DataFrame:
    loaded = scenario.load()
    return generate_ml_predictions(loaded, hcp_profiles, patient_journeys, *scenario_range(loaded))


@dg.asset(
    group_name=ACTIVITY_GROUP,
    kinds={"polars", "postgres"},
    description=TABLES["triggers"].description,
)
def triggers(
    scenario: ScenarioResource, hcp_profiles: pl.DataFrame, patient_journeys: pl.DataFrame
) -> pl.DataFrame:
    loaded = scenario.load()
    return generate_triggers(loaded, hcp_profiles, patient_journeys, *scenario_range(loaded))
