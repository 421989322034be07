"""Jobs and schedules: the nightly feature-store refresh, and the monthly close."""

from collections.abc import Sequence

import dagster as dg

from e2i_synth.pipeline.partitions import DAILY, MONTHLY

# A database outage during a scheduled refresh is retried: loads are atomic, so a retry
# replaces the partition again and never doubles it.
RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL)

# Every run (UI, `dagster asset materialize`, schedules) executes in one process unless its
# run config asks for `multiprocess`: Dagster's default executor is the same pair of modes with
# multiprocess as the default, which starts a process per asset and per check, each importing
# scipy and statsmodels again (seconds each, for checks that take milliseconds). The
# multiprocess mode stays selectable, as `e2i-synth materialize --parallel` does
# (`execution: {config: {multiprocess: {max_concurrent: N}}}`).
IN_PROCESS_BY_DEFAULT = dg.ExecutorDefinition(
    name="in_process_unless_multiprocess",
    config_schema=dg.Field(
        dg.multi_or_in_process_executor.config_schema.as_field().config_type,
        default_value={"in_process": {}},
    ),
    requirements=dg.multi_or_in_process_executor.get_requirements,
    executor_creation_fn=dg.multi_or_in_process_executor.executor_creation_fn,
    description="In-process by default; `multiprocess` in the run config for a process per step.",
)


def _keys(assets: Sequence[dg.AssetsDefinition], partitions: dg.PartitionsDefinition) -> list:
    return [key for a in assets if a.partitions_def == partitions for key in a.keys]


def refresh_jobs(
    assets: Sequence[dg.AssetsDefinition],
) -> tuple[list, list[dg.ScheduleDefinition]]:
    """The refresh jobs and their schedules, selecting the assets by their partitions: a new
    daily or monthly table joins its schedule with no edit here. Asset jobs include the checks
    of their assets, so each refresh is validated as it lands."""
    daily, monthly = _keys(assets, DAILY), _keys(assets, MONTHLY)
    names = {
        "daily": ", ".join(k.to_user_string() for k in daily),
        "monthly": ", ".join(k.to_user_string() for k in monthly),
    }
    daily_refresh = dg.define_asset_job(
        "daily_refresh",
        selection=dg.AssetSelection.assets(*daily),
        op_retry_policy=RETRY,
        description=f"The new day's partition of {names['daily']}.",
    )
    monthly_close = dg.define_asset_job(
        "monthly_close",
        selection=dg.AssetSelection.assets(*monthly),
        op_retry_policy=RETRY,
        description=f"The month just closed of {names['monthly']}.",
    )
    # 02:00 UTC every night: materialize yesterday's partition (the newest complete day).
    # On by default: it runs whenever the Dagster daemon does (`make dev` starts one).
    nightly_refresh = dg.build_schedule_from_partitioned_job(
        daily_refresh,
        hour_of_day=2,
        name="nightly_refresh",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    # 03:00 UTC on the 1st: the month that just ended.
    monthly_close_schedule = dg.build_schedule_from_partitioned_job(
        monthly_close,
        hour_of_day=3,
        name="monthly_close_schedule",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return [daily_refresh, monthly_close], [nightly_refresh, monthly_close_schedule]
