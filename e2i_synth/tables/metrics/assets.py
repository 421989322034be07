"""Metric assets: business_metrics, monthly partitioned on metric_date.

Each month of a series is a pure function of (scenario, patient_journeys, series, month), so
one month, a range or the whole window give the same rows for each month (mom and yoy
included). The world's counts are summed once per run over every patient block (a range is one
run: BackfillPolicy.single_run), streaming the timelines a block at a time.
"""

import dagster as dg
import polars as pl

from e2i_synth.pipeline.inputs import reading
from e2i_synth.pipeline.partitions import MONTHLY, window_dates
from e2i_synth.pipeline.plots import achievement_by_month, add_partition_metadata
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_asset import table_asset
from e2i_synth.tables.metrics.business_metrics import generate_business_metrics
from e2i_synth.world.timelines import TIMELINE_COLUMNS

METRICS_GROUP = "metrics"


@dg.asset(
    **table_asset("business_metrics", METRICS_GROUP, "monthly"),
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins=reading(patient_journeys=TIMELINE_COLUMNS),
)
def business_metrics(
    context: dg.AssetExecutionContext, scenario: ScenarioResource, patient_journeys: pl.DataFrame
) -> pl.DataFrame:
    loaded = scenario.load()
    metrics = generate_business_metrics(loaded, patient_journeys, *window_dates(context))
    add_partition_metadata(context, achievement_by_month(metrics, loaded.gaps))  # the Plots tab
    return metrics
