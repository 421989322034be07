"""The schedules agree with the scenario: every schedule's tick succeeds, also for partitions
after the scenario's end_date, and runs in one process (the Definitions' default executor)."""

import os
from datetime import UTC, date, datetime

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from e2i_synth.core.scenario import load_scenario
from e2i_synth.definitions import defs
from e2i_synth.pipeline import runner
from e2i_synth.tables.activity import ml_predictions
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.feature_store import feature_values
from e2i_synth.tables.metrics import business_metrics

JOBS = {"daily_refresh": runner.daily_refresh_job, "monthly_close": runner.monthly_close_job}


def test_window_row_counts_come_from_the_generators_and_are_zero_after_end_date():
    scenario = load_scenario(scale="small")  # 2024-01-01 .. 2026-06-30
    after = (date(2026, 10, 1), date(2026, 11, 1))
    assert business_metrics.rows_in_window(scenario, *after) == 0
    assert ml_predictions.rows_in_window(scenario, *after) == 0
    # The feature store is live: every day after end_date still gets its observations of the
    # 7 HCP and brand features, 50 HCPs / 7 a day each at scale small (no journey is open
    # then, so none of the 8 patient features).
    assert feature_values.rows_in_window(scenario, *after) == 31 * 7 * 7
    june = (date(2026, 6, 1), date(2026, 7, 1))
    assert business_metrics.rows_in_window(scenario, *june) == len(
        business_metrics.metric_series(scenario)
    )
    assert ml_predictions.rows_in_window(scenario, *june) is None  # some, drawn day by day
    # The generator gives exactly what the check expects.
    patients = generate_patient_journeys(scenario, generate_hcp_profiles(scenario))
    assert business_metrics.generate_business_metrics(scenario, patients, *after).is_empty()
    assert business_metrics.generate_business_metrics(scenario, patients, *june).height == (
        business_metrics.rows_in_window(scenario, *june)
    )


def _ticks(schedule: dg.ScheduleDefinition, inside: datetime) -> list[datetime]:
    """The schedule's latest tick (its partition lies after the scenario's end_date, today
    being after 2026-06-30) and a tick whose partition lies inside the scenario."""
    now = datetime.now(UTC)
    latest = None
    for tick in cron_string_iterator(inside.timestamp(), schedule.cron_schedule, "UTC"):
        if tick > now:
            break
        latest = tick
    return [latest, inside]


@pytest.mark.parametrize(
    "name, inside",
    [
        ("nightly_refresh", datetime(2026, 6, 30, 2, tzinfo=UTC)),
        ("monthly_close_schedule", datetime(2026, 6, 1, 3, tzinfo=UTC)),
    ],
)
def test_every_schedule_tick_succeeds_in_one_process(
    name, inside, small_db, small_run, tmp_path, monkeypatch
):
    assert datetime.now(UTC) > datetime(2026, 8, 1, tzinfo=UTC), "needs a tick after end_date"
    db_url = small_db.url  # the default scenario, loaded as the CLI loads it
    # The CLI's runs carry a job name of their own, not __ephemeral_asset_job__.
    assert small_run.job_names == {runner.CLI_JOB_NAME}

    # The job's resources come from e2i_synth.definitions, as in a daemon's run.
    monkeypatch.setenv("E2I_DATABASE_URL", db_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    schedule = defs.get_repository_def().get_schedule_def(name)
    with dg.DagsterInstance.get() as instance:
        for tick in _ticks(schedule, inside):
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
            (request,) = schedule.evaluate_tick(context).run_requests
            with dg.execute_job(
                dg.reconstructable(JOBS[schedule.job_name]), instance=instance, tags=request.tags
            ) as result:
                checks = {
                    f"{e.asset_key.path[-1]}.{e.check_name}": e.passed
                    for e in result.get_asset_check_evaluations()
                }
                assert result.success, (request.partition_key, checks)
                assert checks and all(checks.values()), (request.partition_key, checks)
                # No executor process per step: the run executes where it was launched.
                pids = {e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
                assert pids == {os.getpid()}, request.partition_key
