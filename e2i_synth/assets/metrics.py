"""Metric assets: business_metrics (unpartitioned for now, replaced whole).

The generator already takes a [start, end) window of months, so the asset can later become
monthly partitioned on metric_date without changing the data of any month.
"""

import dagster as dg
import polars as pl

from e2i_synth.assets.scenario_resource import ScenarioResource
from e2i_synth.generators.business_metrics import generate_business_metrics, scenario_window
from e2i_synth.schemas import TABLES

METRICS_GROUP = "metrics"


@dg.asset(
    group_name=METRICS_GROUP,
    kinds={"polars", "postgres"},
    description=TABLES["business_metrics"].description,
)
def business_metrics(scenario: ScenarioResource) -> pl.DataFrame:
    loaded = scenario.load()
    start, end = scenario_window(loaded)
    return generate_business_metrics(loaded, start, end)
