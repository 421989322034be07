"""The staged runner: chunked backfills in isolated processes load the same rows as one
in-process run, and check each table once."""

import collections
import os
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg
import pytest

from e2i_synth.core.scenario import load_scenario
from e2i_synth.definitions import CHECKS
from e2i_synth.pipeline.partitions import live_until
from e2i_synth.pipeline.runner import materialize
from e2i_synth_tests.pipeline import fingerprints


def test_live_until_is_yesterday_or_end_date_plus_live_days():
    scenario = load_scenario(scale="small")  # end_date 2026-06-30
    today = date(2026, 11, 30)
    assert live_until(scenario, today=today) == date(2026, 11, 29)
    assert live_until(scenario, 7, today=today) == date(2026, 7, 7)
    assert live_until(scenario, 0, today=today) == scenario.end_date
    assert live_until(scenario, today=date(2026, 7, 1)) == scenario.end_date  # nothing live yet


@pytest.mark.soak  # a fresh process per run or per step: minutes of start-up, `make soak`
def test_chunked_isolated_runs_load_the_same_rows_and_check_each_table_once(small_db, small_run):
    scenario = load_scenario(scale="small")
    database = small_db  # loaded by one in-process run (small_run) of the same scenario
    whole = small_run.summary
    expected = fingerprints(database.url)
    # feature_values is caught up to yesterday (its live days after end_date): a monitor asking
    # for the last 7 days finds each of them.
    last = live_until(scenario)
    live_days = (last - scenario.end_date).days
    assert last == datetime.now(UTC).date() - timedelta(days=1) or live_days == 0
    with database.connect() as conn:
        days = conn.execute(
            "SELECT count(DISTINCT event_timestamp::date), max(event_timestamp::date) "
            "FROM feature_values WHERE event_timestamp >= %s",
            (datetime.combine(last - timedelta(days=6), time(), UTC),),
        ).fetchone()
    assert days == (7, last)

    lines: list[str] = []
    chunked = materialize(
        scenario,
        database,
        chunk_days=180,
        live_days=live_days,  # the same days, even if midnight (UTC) passed meanwhile
        isolate=True,  # each run in a fresh process, as above scale 100
        progress=lines.append,
    )
    assert chunked.success, chunked.errors
    assert len(whole.processes) == 1 and os.getpid() in whole.processes
    # Every run in a process of its own, none in this one.
    assert len(chunked.processes) == len(chunked.run_ids) and os.getpid() not in chunked.processes
    assert fingerprints(database.url) == expected
    # 30 months in 180-day chunks: 5 monthly runs; the days (with the live ones) likewise.
    daily_partitions = (last - scenario.start_date).days + 1
    assert sum("monthly partitions" in line for line in lines) == 5
    assert sum("daily partitions" in line for line in lines) == -(-daily_partitions // 180)

    checks_per_table = collections.Counter(
        key.asset_key.path[-1] for c in CHECKS for key in c.check_keys
    )
    for table in chunked.tables:
        # Every check ran once: passed, or (a recovery warning at this small scale) warned.
        ran = table.checks_passed + len(table.checks_warned)
        assert ran == checks_per_table[table.table], table.table
        assert not table.checks_failed
    by_name = {t.table: t for t in chunked.tables}
    # every day of 2024-01-01..2026-06-30 (912), and the live days up to yesterday
    assert by_name["feature_values"].partitions == daily_partitions == 912 + live_days
    assert by_name["feature_values"].rows == expected["feature_values"][0]


@pytest.mark.soak  # a fresh process per run or per step: minutes of start-up, `make soak`
def test_parallel_runs_on_the_multiprocess_executor_load_the_same_rows(
    small_db, tmp_path, monkeypatch
):
    scenario = load_scenario(scale="small")
    database = small_db  # loaded by one in-process run of the same scenario
    db_url = database.url
    expected = fingerprints(database.url)

    # The executor's step processes rebuild resources from e2i_synth.definitions: the
    # database from the environment, runs recorded in a persistent instance.
    monkeypatch.setenv("E2I_DATABASE_URL", db_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as persistent:
        parallel = materialize(scenario, database, parallel=True, run_instance=persistent)
        assert parallel.success, parallel.errors
        assert fingerprints(database.url) == expected
        # The partitioned stages ran as multiprocess runs: every step in its own process.
        runs = [persistent.get_run_by_id(run_id) for run_id in parallel.run_ids]
        multiprocess = [r for r in runs if r.job_name in ("daily_refresh", "monthly_close")]
        assert len(multiprocess) == 2  # one run per partitioned family
        for run in multiprocess:
            starts = [
                e.dagster_event.pid
                for e in persistent.all_logs(run.run_id)
                if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
            ]
            assert len(set(starts)) == len(starts) > 1
