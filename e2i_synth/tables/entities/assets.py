"""Entity assets: hcp_profiles and patient_journeys (unpartitioned, replaced whole)."""

import dagster as dg
import polars as pl

from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_asset import table_asset
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys

ENTITY_GROUP = "entities"


@dg.asset(
    **table_asset("hcp_profiles", ENTITY_GROUP),
)
def hcp_profiles(scenario: ScenarioResource) -> pl.DataFrame:
    return generate_hcp_profiles(scenario.load())


@dg.asset(
    **table_asset("patient_journeys", ENTITY_GROUP),
)
def patient_journeys(scenario: ScenarioResource, hcp_profiles: pl.DataFrame) -> pl.DataFrame:
    return generate_patient_journeys(scenario.load(), hcp_profiles)
