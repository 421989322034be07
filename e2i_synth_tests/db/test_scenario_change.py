"""A scenario change is atomic: the database holds the previous scenario, whole, until the new
one has loaded and passed every check, then all of it at once (db/active_scenario.py).

Each test starts from a database holding scenario A (SHORT_SCENARIO, seed 1) and changes it to
B (seed 3): killed at several moments, failing a blocking check or a validation, or watched
by a reader polling every table's row count. Runs outside the CLI that would change the
scenario are refused. `-s` prints the counts (kills survived, polls).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest

from e2i_synth.core.scenario import Scenario, parse_scenario
from e2i_synth.db.active_scenario import STAGING_SCHEMA, get_active_hash, staging_exists
from e2i_synth.db.resource import Database
from e2i_synth.definitions import ASSETS, build_resources
from e2i_synth.pipeline import runner
from e2i_synth.tables import TABLES
from e2i_synth.tables.metrics import assets as metrics_assets
from e2i_synth_tests.pipeline import (
    RUN_ENVIRONMENT,
    SHORT_A,
    SHORT_A_KEY,
    SHORT_SCENARIO,
    cli_env,
    fingerprints,
    load_short_a,
)

A = parse_scenario(SHORT_A)
B = parse_scenario(SHORT_SCENARIO + "seed: 3\n")  # seed 2 fails its blocking drift check
LIMIT = 300.0  # seconds: no run here may take longer
SEEDED = ("hcp_profiles", "feature_values", "ground_truth")  # tables A and B differ in
ENVIRONMENT = RUN_ENVIRONMENT  # would override the runs' scenario


def _materialize(database: Database, scenario: Scenario, **kwargs) -> runner.RunSummary:
    return runner.materialize(scenario, database, **kwargs)


@pytest.fixture
def at_a(copy_of, monkeypatch) -> Database:
    """A new database holding scenario A (a copy of a database loaded once per session)."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return Database(url=copy_of(SHORT_A_KEY, load_short_a))


def _active(database: Database) -> str | None:
    with database.connect() as conn:
        return get_active_hash(conn)


def _staging_left(database: Database) -> bool:
    with database.connect() as conn:
        return staging_exists(conn)


# --- a kill at several moments ------------------------------------------------------------------

# Kill points: after the progress line starting with the text (and a pause, so a load is under
# way), or "swap": inside the swap transaction, after every data table has been renamed (public's
# into the old schema, staging's into public), blocked before commit on the lock of the recorded
# scenario's table, the last one it locks, which the test holds (a row lock: ROW SHARE).
KILL_POINTS = ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "swap")
QUICK_KILL_POINTS = ("[2/4]", "swap")
SWAP_BLOCKED = """SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                  AND query LIKE 'LOCK TABLE public."e2i_active_scenario"%'"""


def _kill_cli_at(url: str, scenario_file: Path, point: str) -> str:
    """Start `e2i-synth materialize --scenario FILE`, SIGKILL it at `point`; its output."""
    argv = [sys.executable, "-m", "e2i_synth.cli", "materialize", "--force"]
    argv += ["--scenario", str(scenario_file)]
    holder = psycopg.connect(url)  # holds the recorded scenario's row for the "swap" point
    if point == "swap":
        holder.execute("SELECT * FROM e2i_active_scenario FOR UPDATE")
    proc = subprocess.Popen(
        argv,
        env=cli_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + LIMIT
        for line in proc.stdout:
            lines.append(line)
            if point != "swap" and line.startswith(point):
                time.sleep(0.3)
                break
            if point == "swap" and "swapping" in line:
                with psycopg.connect(url, autocommit=True) as mon:
                    while not mon.execute(SWAP_BLOCKED).fetchone()[0]:
                        assert time.monotonic() < deadline, "the swap never reached the lock"
                        time.sleep(0.02)
                break
        else:
            pytest.fail(f"the run ended before {point}:\n{''.join(lines)}")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        holder.close()  # rolls back: the killed swap, if any, is left with nothing to commit
    return "".join(lines)


def _wait_sessions_gone(url: str) -> None:
    """Until the killed run's sessions have ended (the server checks every second)."""
    with psycopg.connect(url, autocommit=True) as mon:
        deadline = time.monotonic() + 60
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        while mon.execute(query).fetchone()[0] > 1:
            assert time.monotonic() < deadline, "a killed run's session outlived it"
            time.sleep(0.1)


def _kill_at_each(at_a: Database, tmp_path: Path, points: tuple[str, ...]) -> None:
    url = at_a.url
    before = fingerprints(url)
    assert all(rows for rows, _ in before.values())
    scenario_file = tmp_path / "b.yaml"
    scenario_file.write_text(B.to_yaml())
    for point in points:
        out = _kill_cli_at(url, scenario_file, point)
        _wait_sessions_gone(url)
        assert fingerprints(url) == before, f"killed at {point}: tables changed\n{out}"
        assert _active(at_a) == A.content_hash(), f"killed at {point}"
        print(f"killed at {point}: every table equals its previous version")
    # The next run discards the killed runs' staging and completes the change.
    done = subprocess.run(
        [
            *(sys.executable, "-m", "e2i_synth.cli", "materialize", "--force"),
            *("--scenario", str(scenario_file)),
        ],
        env=cli_env(url),
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    after = fingerprints(url)
    assert all(rows for rows, _ in after.values())
    assert all(after[t] != before[t] for t in SEEDED)
    assert _active(at_a) == B.content_hash() and not _staging_left(at_a)
    print(f"{len(points)} kills survived; the next run completed the change")


@pytest.mark.soak  # CLI runs killed and rerun: `make soak` (soak/ kills at every stage)
def test_a_scenario_change_killed_leaves_the_previous_scenario_whole(at_a, tmp_path):
    _kill_at_each(at_a, tmp_path, QUICK_KILL_POINTS)


# --- a reader during the change -----------------------------------------------------------------

COUNTS = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)


def test_a_reader_never_sees_an_empty_or_partial_table_during_a_change(at_a):
    """Each poll reads every table's count and the recorded scenario in one snapshot: it sees
    all of A or all of B, never an empty table, a partial one or a mix."""
    url = at_a.url
    polls: list[tuple] = []
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    counts = tuple(sorted(conn.execute(COUNTS).fetchall()))
                    active = conn.execute("SELECT scenario_hash FROM e2i_active_scenario")
                    polls.append((active.fetchone()[0], counts))
                time.sleep(0.005)

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    try:
        assert _materialize(at_a, B).success
        time.sleep(0.2)  # a few polls of B
    finally:
        stop.set()
        reader.join(timeout=30)
    states = {}
    for active, counts in polls:
        states.setdefault(active, set()).add(counts)
    assert set(states) == {A.content_hash(), B.content_hash()}, "the polls missed A or B"
    assert all(len(seen) == 1 for seen in states.values()), f"a scenario seen partly: {states}"
    empty = sum(1 for _, counts in polls if any(n == 0 for _, n in counts))
    assert empty == 0
    print(f"{len(polls)} polls, {empty} with an empty table, {len(states)} states seen")


# --- a failed check or a bad frame during the change --------------------------------------------


def _failing_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="test_always_fails", blocking=True)
    def _check() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False)

    return _check


FAILURES = {
    "blocking check of the first table": "hcp_profiles",
    "blocking check of the last table": "ground_truth",
    "invalid frame in the monthly stage": "business_metrics",
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_scenario_change_leaves_the_previous_scenario_whole(at_a, failure, monkeypatch):
    before = fingerprints(at_a.url)
    table = FAILURES[failure]
    if failure.startswith("invalid frame"):
        original = metrics_assets.generate_business_metrics

        def invalid(*args, **kwargs) -> pl.DataFrame:  # a negative value: refused by the model
            return original(*args, **kwargs).with_columns(value=pl.lit(-1.0))

        monkeypatch.setattr(metrics_assets, "generate_business_metrics", invalid)
    else:
        monkeypatch.setattr(runner, "CHECKS", [*runner.CHECKS, _failing_check(table)])
    summary = _materialize(at_a, B)
    assert not summary.success
    assert any("scenario change not applied" in e for e in summary.errors), summary.errors
    assert fingerprints(at_a.url) == before
    assert _active(at_a) == A.content_hash()
    assert _staging_left(at_a)  # the failed load stays inspectable until the next change


def test_a_same_scenario_rerun_replaces_in_place_without_staging(at_a):
    before = fingerprints(at_a.url)
    lines: list[str] = []
    assert _materialize(at_a, A, progress=lines.append).success
    assert not any("scenario change" in line for line in lines)
    assert not _staging_left(at_a)
    assert fingerprints(at_a.url) == before


# --- runs outside the CLI -----------------------------------------------------------------------


def test_a_dagster_run_of_another_scenario_is_refused_and_writes_nothing(at_a, tmp_path):
    before = fingerprints(at_a.url)
    other = tmp_path / "b.yaml"
    other.write_text(B.to_yaml())
    same = tmp_path / "a.yaml"
    same.write_text(A.to_yaml())
    hcps = [a for a in ASSETS if a.key.path[-1] == "hcp_profiles"]

    def run(resources: dict) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            hcps, resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )

    refused = run(build_resources(at_a, scenario_path=str(other)))
    assert not refused.success
    (failure,) = refused.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "refused" in message and "e2i-synth materialize" in message
    assert fingerprints(at_a.url) == before
    scaled = run(build_resources(at_a, scale="0.2"))  # the database's scenario at another scale
    assert not scaled.success
    assert run(build_resources(at_a, scenario_path=str(same))).success  # the same one: allowed
    assert run(build_resources(at_a)).success  # no override: the database's scenario
    assert fingerprints(at_a.url) == before
    assert not _staging_left(at_a) and STAGING_SCHEMA == "e2i_next"


# --- a change run in other processes ------------------------------------------------------------


@pytest.mark.soak  # a fresh process per run or per step: minutes of start-up, `make soak`
@pytest.mark.parametrize("mode", ["isolate", "parallel"])
def test_a_change_run_in_child_processes_loads_staging_and_swaps(at_a, mode, tmp_path, monkeypatch):
    """Isolated runs (a fresh process per run) and --parallel runs (a process per step,
    resources rebuilt from e2i_synth.definitions) load the change into staging too: the swap
    brings every table of B, equal to a rerun of B in this process."""
    before = fingerprints(at_a.url)
    if mode == "isolate":
        summary = _materialize(at_a, B, isolate=True)
    else:
        monkeypatch.setenv("E2I_DATABASE_URL", at_a.url)
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
        with dg.DagsterInstance.get() as persistent:
            summary = _materialize(at_a, B, parallel=True, run_instance=persistent)
    assert summary.success, summary.errors
    changed = fingerprints(at_a.url)
    assert all(rows for rows, _ in changed.values())
    assert all(changed[t] != before[t] for t in SEEDED)
    assert _active(at_a) == B.content_hash() and not _staging_left(at_a)
    assert _materialize(at_a, B).success  # same scenario: in place, in this process
    assert fingerprints(at_a.url) == changed
