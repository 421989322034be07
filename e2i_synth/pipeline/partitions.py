"""Time partitions of the time-series tables, and the partition keys of a scenario's window.

Daily: feature_values, the feature store's stream (the Drift Monitor compares windows of days,
and the nightly refresh adds each new day). Monthly: business_metrics (one row per series and
month), and ml_predictions and triggers (a few hundred rows a month at full scale: a partition
per day would cost more in Dagster bookkeeping than the rows themselves). Everything else is an
entity or catalogue table with no time axis, replaced whole.

The partitions start at the start_date of the scenario Dagster loads by default ($E2I_SCENARIO
or the packaged default) and run up to yesterday, so the nightly schedule always has a new day.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from e2i_synth.core.scenario import Scenario, check_window, partitions_start

DAY_FORMAT = "%Y-%m-%d"

PARTITIONS_START = partitions_start()
DAILY = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START.strftime(DAY_FORMAT))
MONTHLY = dg.MonthlyPartitionsDefinition(
    start_date=PARTITIONS_START.replace(day=1).strftime(DAY_FORMAT)
)


def partition_range(partitions: dg.PartitionsDefinition, scenario: Scenario) -> tuple[str, str]:
    """First and last partition keys covering the scenario's days [start_date, end_date]."""
    check_window(scenario, PARTITIONS_START)  # the same check the CLI made before any write
    if partitions == MONTHLY:
        return (
            scenario.start_date.replace(day=1).strftime(DAY_FORMAT),
            scenario.end_date.replace(day=1).strftime(DAY_FORMAT),
        )
    return scenario.start_date.strftime(DAY_FORMAT), scenario.end_date.strftime(DAY_FORMAT)


def cadence(partitions: dg.PartitionsDefinition) -> str:
    """What the definition states of its cadence ("daily", "monthly"...): the runner groups
    and names families by it, so a new cadence needs no runner change."""
    schedule = getattr(partitions, "schedule_type", None)
    if schedule is not None:
        return schedule.value.lower()
    return type(partitions).__name__.removesuffix("PartitionsDefinition").lower()


def days_per_partition(partitions: dg.PartitionsDefinition) -> int:
    """A partition's nominal length in days (a month counts 30, at least 1): how many keys
    make a chunk of N days."""
    if not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return 1
    # The mean over about a year of windows: months differ in length.
    keys = partitions.get_partition_keys(current_time=partitions.start + timedelta(days=366))
    if not keys:
        return 1
    end = partitions.time_window_for_partition_key(keys[-1]).end
    return max(1, round((end - partitions.start).days / len(keys)))


def live_until(scenario: Scenario, live_days: int | None = None, today: date | None = None) -> date:
    """Last day of feature_values that `e2i-synth materialize` loads: yesterday (UTC), the
    newest daily partition, so a monitor asking for "the last 7 days" finds them; or
    end_date + live_days when that comes first; end_date when yesterday is not after it.
    Days after end_date are live days (the feature store keeps observing every entity)."""
    yesterday = (today or datetime.now(UTC).date()) - timedelta(days=1)
    last = yesterday
    if live_days is not None:
        last = min(last, scenario.end_date + timedelta(days=live_days))
    return max(last, scenario.end_date)


def window_dates(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The run's partition window as [start, end) dates (one partition or a backfill range)."""
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def range_tags(start_key: str, end_key: str) -> dict[str, str]:
    """Run tags that make one run materialize every partition from start_key to end_key."""
    return {
        "dagster/asset_partition_range_start": start_key,
        "dagster/asset_partition_range_end": end_key,
    }


def month_windows(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end) cut at the first of each month: a backfill range generated a month at a
    time, so its memory does not grow with the range."""
    windows, first = [], start
    while first < end:
        next_month = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        windows.append((first, min(next_month, end)))
        first = next_month
    return windows
