"""The scenario's window agrees with Dagster's partitions: nothing after the last complete month."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from e2i_synth.core.scenario import (
    ScenarioError,
    build_scenario,
    check_window,
    last_loadable_day,
    partitions_start,
)
from e2i_synth.pipeline.partitions import MONTHLY


@pytest.mark.parametrize(
    ("today", "end_date", "refused"),
    [
        (date(2026, 11, 30), date(2026, 10, 31), False),
        (date(2026, 11, 30), date(2026, 11, 1), True),  # November's monthly partition: not yet
        (date(2026, 11, 1), date(2026, 10, 31), False),  # October complete on the 1st
        (date(2026, 11, 1), date(2026, 11, 1), True),
        (date(2027, 1, 15), date(2026, 12, 31), False),
        (date(2027, 1, 15), date(2027, 1, 14), True),
    ],
)
def test_window_check_follows_dagster_partitions(today, end_date, refused):
    scenario = build_scenario({"end_date": end_date, "reference_date": end_date})
    if refused:
        with pytest.raises(ScenarioError, match="last complete month"):
            check_window(scenario, today=today)
    else:
        check_window(scenario, today=today)


def test_window_check_agrees_with_dagster_today():
    from e2i_synth.pipeline.partitions import DAILY, PARTITIONS_START

    last_month = date.fromisoformat(MONTHLY.get_last_partition_key())
    assert last_loadable_day() == (last_month + timedelta(days=31)).replace(day=1) - timedelta(1)
    assert last_loadable_day() <= date.fromisoformat(DAILY.get_last_partition_key())
    assert partitions_start() == PARTITIONS_START
