"""Activity assets: treatment_events (replaced whole), ml_predictions and triggers (monthly).

ml_predictions and triggers are generated day by day from per-day seeds, so one partition, a
backfill range or the whole window give the same rows for each day; a range is generated and
loaded a month at a time (one transaction still replaces the whole range). They are partitioned by
month, not day: a few hundred rows a month at full scale do not pay for Dagster's bookkeeping
of a partition per day (two events per partition and asset).
"""

from collections.abc import Callable

import dagster as dg
import polars as pl

from e2i_synth.core.frames import FrameStream
from e2i_synth.pipeline.inputs import reading
from e2i_synth.pipeline.partitions import MONTHLY, month_windows, window_dates
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_asset import table_asset
from e2i_synth.tables.activity import ml_predictions as predictions_generator
from e2i_synth.tables.activity import treatment_events as events_generator
from e2i_synth.tables.activity.ml_predictions import predictions_in_window
from e2i_synth.tables.activity.triggers import triggers_in_window

ACTIVITY_GROUP = "activity"


def _by_month(
    context: dg.AssetExecutionContext,
    scenario: ScenarioResource,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    rows_in_window: Callable[..., pl.DataFrame],
) -> FrameStream:
    """The partition window's rows a month at a time (a backfill range holds millions of rows at
    large scales), from one population (each patient's therapy span) built for all the months."""
    loaded = scenario.load()
    pop = predictions_generator.population(loaded, hcp_profiles, patient_journeys)
    return FrameStream(
        rows_in_window(loaded, pop, start, end)
        for start, end in month_windows(*window_dates(context))
    )


@dg.asset(
    **table_asset("treatment_events", ACTIVITY_GROUP),
    deps=["hcp_profiles"],
    ins=reading(patient_journeys=events_generator.PATIENT_COLUMNS),
)
def treatment_events(scenario: ScenarioResource, patient_journeys: pl.DataFrame) -> FrameStream:
    # Streamed block by block: about ten events per patient, too many to hold at large scales.
    return FrameStream(events_generator.iter_treatment_events(scenario.load(), patient_journeys))


@dg.asset(
    **table_asset("ml_predictions", ACTIVITY_GROUP, "monthly"),
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins=reading(
        hcp_profiles=predictions_generator.HCP_COLUMNS,
        patient_journeys=predictions_generator.PATIENT_COLUMNS,
    ),
)
def ml_predictions(
    context: dg.AssetExecutionContext,
    scenario: ScenarioResource,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
) -> FrameStream:
    return _by_month(context, scenario, hcp_profiles, patient_journeys, predictions_in_window)


@dg.asset(
    **table_asset("triggers", ACTIVITY_GROUP, "monthly"),
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins=reading(
        hcp_profiles=predictions_generator.HCP_COLUMNS,
        patient_journeys=predictions_generator.PATIENT_COLUMNS,
    ),
)
def triggers(
    context: dg.AssetExecutionContext,
    scenario: ScenarioResource,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
) -> FrameStream:
    return _by_month(context, scenario, hcp_profiles, patient_journeys, triggers_in_window)
