"""Feature store assets: feature_groups and features (replaced whole), feature_values (daily).

feature_values is generated day by day from per-day seeds, so any partition window gives the
same rows for each of its days.
"""

import dagster as dg
import polars as pl

from e2i_synth.pipeline.inputs import reading
from e2i_synth.pipeline.partitions import DAILY, window_dates
from e2i_synth.pipeline.plots import add_partition_metadata, feature_daily_means
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_asset import table_asset
from e2i_synth.tables.feature_store import feature_values as values_generator
from e2i_synth.tables.feature_store.catalog import generate_feature_groups, generate_features

FEATURE_STORE_GROUP = "feature_store"


@dg.asset(
    **table_asset("feature_groups", FEATURE_STORE_GROUP),
)
def feature_groups(scenario: ScenarioResource) -> pl.DataFrame:
    return generate_feature_groups(scenario.load())


@dg.asset(
    **table_asset("features", FEATURE_STORE_GROUP),
)
def features(scenario: ScenarioResource, feature_groups: pl.DataFrame) -> pl.DataFrame:
    return generate_features(scenario.load(), feature_groups)


@dg.asset(
    **table_asset("feature_values", FEATURE_STORE_GROUP, "daily"),
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins=reading(
        hcp_profiles=values_generator.HCP_COLUMNS,
        patient_journeys=values_generator.PATIENT_COLUMNS,
    ),
)
def feature_values(
    context: dg.AssetExecutionContext,
    scenario: ScenarioResource,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    features: pl.DataFrame,
) -> pl.DataFrame:
    values = values_generator.generate_feature_values(
        scenario.load(), hcp_profiles, patient_journeys, features, *window_dates(context)
    )
    add_partition_metadata(context, feature_daily_means(values, features))  # the Plots tab
    return values
