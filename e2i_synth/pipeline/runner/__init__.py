"""Materialize the whole pipeline in dependency order and summarise it per table.

plan.py says which Dagster runs, in which order (stages, partition chunks, the checks);
execute.py runs them (in this process, in fresh child processes, or on the multiprocess
executor) around a scenario change; summary.py folds their events into a report per table.
Used by the CLI (`e2i-synth materialize`), the benchmark and the tests; the UI and `dg launch`
run the same assets from e2i_synth.definitions.
"""

import os
from collections.abc import Callable

import dagster as dg

from e2i_synth.core.scenario import Scenario
from e2i_synth.db.locks import advisory_lock
from e2i_synth.db.resource import Database
from e2i_synth.definitions import CHECKS
from e2i_synth.pipeline.runner.execute import (
    CLI_JOB_NAME,
    Options,
    daily_refresh_job,
    default_isolate,
    instance,
    monthly_close_job,
    run_all,
)
from e2i_synth.pipeline.runner.plan import PlannedRun, Stage, default_chunk_days, stages
from e2i_synth.pipeline.runner.summary import RunSummary, TableSummary

MATERIALIZE_LOCK_KEY = 0x6532_694D_6174  # "e2iMat"


def materialize(
    scenario: Scenario,
    database: Database,
    dry_run: bool = False,
    verbose: bool = False,
    chunk_days: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
    run_instance: dg.DagsterInstance | None = None,
    parallel: bool = False,
    isolate: bool | None = None,
    live_days: int | None = None,
) -> RunSummary:
    """Generate, validate and (unless dry_run) load every table with all checks.

    With `parallel` (needs a persistent instance, DAGSTER_HOME, and the database from the
    environment), the tables of each partition chunk run in parallel processes on Dagster's
    multiprocess executor. With `isolate` (default: above scale 100; never for dry runs, whose
    stages hand frames to each other in memory) each run executes in a fresh child process,
    on the instance from DAGSTER_HOME or an ephemeral one; otherwise every run executes in
    this process, on `run_instance`. Daily partitions (feature_values) are loaded past the
    scenario's end_date up to yesterday (its live days), or `live_days` days past it at most."""
    if parallel and (dry_run or run_instance is None and not os.environ.get("DAGSTER_HOME")):
        raise ValueError("parallel runs need DAGSTER_HOME (a persistent instance) and no dry run")
    if isolate is None:
        isolate = default_isolate(scenario)
    options = Options(
        dry_run=dry_run,
        verbose=verbose,
        chunk_days=chunk_days,
        progress=progress,
        run_instance=run_instance,
        parallel=parallel,
        isolate=isolate and not dry_run,
        live_days=live_days,
    )
    if dry_run:
        return run_all(scenario, database, options, CHECKS)
    # One full materialization at a time per database: two scenario changes would share the
    # staging schema, and a second run would rewrite tables under the first one's later
    # stages. The lock is a session lock on a connection of its own, released when it closes
    # (also if this process dies).
    with database.connect(autocommit=True) as lock:
        advisory_lock(lock, MATERIALIZE_LOCK_KEY, "materialize")
        # CHECKS read here, at call time: a test may replace it (monkeypatch runner.CHECKS).
        return run_all(scenario, database, options, CHECKS)


__all__ = [
    "CHECKS",
    "CLI_JOB_NAME",
    "MATERIALIZE_LOCK_KEY",
    "Options",
    "PlannedRun",
    "RunSummary",
    "Stage",
    "TableSummary",
    "daily_refresh_job",
    "default_chunk_days",
    "default_isolate",
    "instance",
    "materialize",
    "monthly_close_job",
    "stages",
]
