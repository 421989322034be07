"""Jobs and schedules: the nightly feature-store refresh, and the monthly close."""

import dagster as dg

DAILY_ASSETS = dg.AssetSelection.assets("feature_values")
MONTHLY_ASSETS = dg.AssetSelection.assets("ml_predictions", "triggers", "business_metrics")

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

# Asset jobs include the checks of their assets, so each refresh is validated as it lands.
daily_refresh = dg.define_asset_job(
    "daily_refresh",
    selection=DAILY_ASSETS,
    op_retry_policy=RETRY,
    description="The new day's partition of feature_values.",
)
monthly_close = dg.define_asset_job(
    "monthly_close",
    selection=MONTHLY_ASSETS,
    op_retry_policy=RETRY,
    description="The month just closed of ml_predictions, triggers and business_metrics.",
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

JOBS = [daily_refresh, monthly_close]
SCHEDULES = [nightly_refresh, monthly_close_schedule]
