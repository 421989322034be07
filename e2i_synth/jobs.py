"""Jobs and schedules: the nightly refresh of the daily tables, the monthly metrics close."""

import dagster as dg

DAILY_ASSETS = dg.AssetSelection.assets("ml_predictions", "triggers", "feature_values")
MONTHLY_ASSETS = dg.AssetSelection.assets("business_metrics")

# Asset jobs include the checks of their assets, so each refresh is validated as it lands.
daily_refresh = dg.define_asset_job(
    "daily_refresh",
    selection=DAILY_ASSETS,
    description="The new day's partitions of ml_predictions, triggers and feature_values.",
)
monthly_metrics = dg.define_asset_job(
    "monthly_metrics",
    selection=MONTHLY_ASSETS,
    description="The month just closed of business_metrics.",
)

# 02:00 UTC every night: materialize yesterday's partition (the newest complete day).
nightly_refresh = dg.build_schedule_from_partitioned_job(
    daily_refresh, hour_of_day=2, name="nightly_refresh"
)
# 03:00 UTC on the 1st: the month that just ended.
monthly_metrics_close = dg.build_schedule_from_partitioned_job(
    monthly_metrics, hour_of_day=3, name="monthly_metrics_close"
)

JOBS = [daily_refresh, monthly_metrics]
SCHEDULES = [nightly_refresh, monthly_metrics_close]
