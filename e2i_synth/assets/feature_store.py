"""Feature store assets: feature_groups, features and feature_values (unpartitioned for now).

feature_values is generated for [start_date, end_date + 1 day); the generator already works per
day, so daily partitions only need to pass their window instead.
"""

from datetime import timedelta

import dagster as dg
import polars as pl

from e2i_synth.assets.scenario_resource import ScenarioResource
from e2i_synth.generators.feature_store import generate_feature_groups, generate_features
from e2i_synth.generators.feature_values import generate_feature_values
from e2i_synth.schemas import TABLES

FEATURE_STORE_GROUP = "feature_store"


@dg.asset(
    group_name=FEATURE_STORE_GROUP,
    kinds={"polars", "postgres"},
    description=TABLES["feature_groups"].description,
)
def feature_groups(scenario: ScenarioResource) -> pl.DataFrame:
    return generate_feature_groups(scenario.load())


@dg.asset(
    group_name=FEATURE_STORE_GROUP,
    kinds={"polars", "postgres"},
    description=TABLES["features"].description,
)
def features(scenario: ScenarioResource, feature_groups: pl.DataFrame) -> pl.DataFrame:
    return generate_features(scenario.load(), feature_groups)


@dg.asset(
    group_name=FEATURE_STORE_GROUP,
    kinds={"polars", "postgres"},
    description=TABLES["feature_values"].description,
)
def feature_values(
    scenario: ScenarioResource,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    features: pl.DataFrame,
) -> pl.DataFrame:
    loaded = scenario.load()
    return generate_feature_values(
        loaded,
        hcp_profiles,
        patient_journeys,
        features,
        loaded.start_date,
        loaded.end_date + timedelta(days=1),
    )
