"""The runner's plan and report, without a database: which Dagster runs, in which order, and
how their results fold into one line per table."""

import os

import dagster as dg

from e2i_synth.core.scenario import load_scenario
from e2i_synth.definitions import ASSETS
from e2i_synth.pipeline.partitions import DAILY, MONTHLY, cadence, days_per_partition
from e2i_synth.pipeline.runner.execute import environment
from e2i_synth.pipeline.runner.plan import plan_runs, stages
from e2i_synth.pipeline.runner.summary import TableSummary, fold

SCENARIO = load_scenario(scale="small")  # 2024-01-01 .. 2026-06-30: 30 months
MONTHLY_TABLES = {"ml_predictions", "triggers", "business_metrics"}


def _names(keys) -> set[str]:
    return {k.path[-1] for k in keys}


def test_a_new_cadence_is_a_family_of_its_own_without_a_runner_change():
    weekly = dg.WeeklyPartitionsDefinition(start_date="2024-01-01")

    later_days = dg.DailyPartitionsDefinition(start_date="2025-01-01")

    @dg.asset(partitions_def=weekly)
    def weekly_table() -> None: ...

    @dg.asset(partitions_def=later_days)
    def later_daily_table() -> None: ...

    plan = stages([*ASSETS, weekly_table, later_daily_table])
    by_name = {s.name: s for s in plan}
    # Two daily definitions are two families: Dagster runs one partitions definition per run.
    daily = [s for s in plan if s.name == "daily partitions"]
    assert [_names(s.keys) for s in daily] == [{"feature_values"}, {"later_daily_table"}]
    assert by_name["weekly partitions"].partitions == weekly
    assert _names(by_name["weekly partitions"].keys) == {"weekly_table"}
    assert _names(by_name["monthly partitions"].keys) == MONTHLY_TABLES
    assert [cadence(p) for p in (DAILY, MONTHLY, weekly)] == ["daily", "monthly", "weekly"]
    assert [days_per_partition(p) for p in (DAILY, MONTHLY, weekly)] == [1, 30, 7]


def test_default_plan_is_four_runs_and_checks_every_table_once():
    runs = plan_runs(stages(ASSETS), SCENARIO, live_days=0)
    assert len(runs) == 4
    first, monthly, daily, last = runs
    assert (
        _names(first.keys)
        == _names(first.checked)
        == {
            "hcp_profiles",
            "patient_journeys",
            "treatment_events",
            "feature_groups",
            "features",
        }
    )
    # The backfills check nothing: a partitioned run records each check once per partition.
    assert monthly.span == ("2024-01-01", "2026-06-01") and monthly.checked == ()
    assert daily.span == ("2024-01-01", "2026-06-30") and daily.checked == ()
    assert _names(last.keys) == {"ground_truth"}
    assert _names(last.checked) == MONTHLY_TABLES | {"feature_values", "ground_truth"}
    assert last.partitions is None
    checked = [k for run in runs for k in run.checked]
    assert len(checked) == len(set(checked)) == len(ASSETS)


def test_chunked_isolated_plan_runs_table_by_table_and_checks_after_the_last_chunk():
    runs = plan_runs(stages(ASSETS), SCENARIO, chunk_days=180, live_days=0, table_by_table=True)
    monthly = [r for r in runs if r.stage_name == "monthly partitions"]
    assert len(monthly) == 5  # 30 months, 6 a run
    assert monthly[0].span == ("2024-01-01", "2024-06-01")
    assert monthly[-1].span == ("2026-01-01", "2026-06-01")
    assert all(len(r.keys) == 1 for r in runs if r.partitions is None)
    checked = [k for run in runs for k in run.checked]
    assert len(checked) == len(set(checked)) == len(ASSETS)
    assert runs[-1].label.startswith("[4/4] tables reading partitioned ones: ground_truth")
    assert "checks of" in runs[-1].label


def test_table_by_table_loads_what_a_table_reads_first_whatever_the_asset_order():
    for assets in (ASSETS, list(reversed(ASSETS))):
        runs = plan_runs(stages(assets), SCENARIO, table_by_table=True)
        order = [r.keys[0].path[-1] for r in runs if r.stage == 1]
        assert order.index("hcp_profiles") < order.index("patient_journeys")
        assert order.index("patient_journeys") < order.index("treatment_events")
        assert order.index("feature_groups") < order.index("features")


def test_with_checks_in_the_backfill_the_last_chunk_runs_them():
    runs = plan_runs(stages(ASSETS), SCENARIO, chunk_days=180, separate_checks=False)
    monthly = [r for r in runs if r.stage_name == "monthly partitions"]
    assert [bool(r.checked) for r in monthly] == [False] * 4 + [True]
    assert plan_runs(stages(ASSETS), SCENARIO, with_checks=False)[-1].checked == ()


def test_a_checks_only_run_leaves_the_loads_status_and_adds_its_checks():
    total: dict[str, TableSummary] = {}
    fold(total, TableSummary("triggers", rows=452, seconds=1.0, partitions=30, status="loaded"))
    fold(total, TableSummary("triggers", checks_passed=6))
    t = total["triggers"]
    assert (t.status, t.rows, t.partitions, t.checks_passed) == ("loaded", 452, 30, 6)
    fold(total, TableSummary("triggers", checks_failed=["row_count"], status="FAILED"))
    assert t.status == "FAILED" and t.checks_failed == ["row_count"]


def test_environment_sets_what_is_unset_and_restores_it(monkeypatch):
    monkeypatch.setenv("E2I_TEST_SET", "caller")
    monkeypatch.delenv("E2I_TEST_UNSET", raising=False)
    with environment({"E2I_TEST_SET": "runner", "E2I_TEST_UNSET": "runner", "E2I_NONE": None}):
        assert os.environ["E2I_TEST_SET"] == "caller"  # the caller's choice wins
        assert os.environ["E2I_TEST_UNSET"] == "runner"
        assert "E2I_NONE" not in os.environ
    assert os.environ["E2I_TEST_SET"] == "caller"
    assert "E2I_TEST_UNSET" not in os.environ
