"""Execute a plan of Dagster runs: in this process, each in a fresh child process, or on
Dagster's multiprocess executor; and the scenario change around them (load aside, swap in)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context

import dagster as dg
import psycopg
from dagster._core.execution.execution_result import ExecutionResult

from e2i_synth.core.scenario import Scenario
from e2i_synth.db.active_scenario import STAGING_SCHEMA, get_active_hash, prepare_staging, swap_in
from e2i_synth.db.active_scenario import touch as touch_active
from e2i_synth.db.copy import LoadError
from e2i_synth.db.io_manager import DryRunIOManager, clear_dry_run
from e2i_synth.db.resource import STAGING_ENV, Database
from e2i_synth.definitions import ASSETS, build_resources
from e2i_synth.pipeline.partitions import range_tags
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.runner.plan import PlannedRun, default_chunk_days, plan_runs, stages
from e2i_synth.pipeline.runner.summary import (
    RunOutcome,
    RunSummary,
    TableSummary,
    fold,
    outcome,
    table_line,
)

CLI_JOB_NAME = "e2i_synth_materialize"  # the job of every in-process run of materialize()
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

# Dagster's own bookkeeping, per event, in its PostgreSQL storage: a backfill over 1,065 daily
# partitions wrote each partition's planned event and materialization on a connection of its
# own (3 of the 4 seconds a run of feature_values took at scale small). Batched, a run writes
# its materializations in one INSERT, and plans the range in one event (Dagster then does not
# mark the range's partitions failed when the run fails: they stay missing, or at their last
# good load). Environment variables are Dagster's only switch for this (see dagster-io/dagster
# #33831); child processes inherit them.
BOOKKEEPING_ENV = {
    "DAGSTER_EVENT_BATCH_SIZE": "10000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}
# The isolated runs' processes: glibc's malloc serves every block above 256 kB with its own
# mmap, so a large array goes back to the OS when freed. By default the threshold rises (up to
# 32 MB) as large blocks are freed, and arrays under it then come from the heap, where memory
# freed below a live block stays with the process: a run's peak would add up the frames of its
# steps. Read by glibc at a process's start: it applies to the processes started while it is
# set (the children), not to this one.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "262144"}


def _silent(line: str) -> None:
    pass


@dataclass
class Options:
    """How materialize() runs (see its docstring); the defaults are the CLI's."""

    dry_run: bool = False
    verbose: bool = False
    chunk_days: int | None = None
    progress: Callable[[str], None] = field(default=_silent)
    run_instance: dg.DagsterInstance | None = None
    parallel: bool = False
    isolate: bool = False
    live_days: int | None = None

    @property
    def run_config(self) -> dict | None:
        return None if self.verbose else QUIET


def default_isolate(scenario: Scenario) -> bool:
    """Above scale 100, every run executes in a fresh process: the memory a run's frames
    leave fragmented in a long-lived process would otherwise add up from run to run. Below,
    it does not matter (scale 100 peaks under 1 GB in one process) and a fresh process per run
    would cost more (about 3 s each) than it saves."""
    return scenario.scale > 100


def instance() -> dg.DagsterInstance:
    """The persistent instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral.

    Its storage keeps a connection open, as the webserver's does, instead of opening one per
    event (Dagster's default for PostgreSQL storage): the few hundred events of a run cost
    about 10 ms each to connect on a busy machine. No statement timeout, as before."""
    if os.environ.get("DAGSTER_HOME"):
        found = dg.DagsterInstance.get()
        found.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=2)
        return found
    return dg.DagsterInstance.ephemeral()


@contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """Each variable set (unless its value is None) for the duration; processes started
    meanwhile inherit them. A variable the caller set already is left as it is."""
    before = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is not None and before[name] is None:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Jobs of e2i_synth.definitions that the executor's processes rebuild (reconstructable needs
# module-level functions without arguments).
def daily_refresh_job() -> dg.JobDefinition:
    from e2i_synth.definitions import defs

    return defs.resolve_job_def("daily_refresh")


def monthly_close_job() -> dg.JobDefinition:
    from e2i_synth.definitions import defs

    return defs.resolve_job_def("monthly_close")


def _definitions_job(partitions: dg.PartitionsDefinition) -> Callable[[], dg.JobDefinition]:
    """The job of e2i_synth.definitions on `partitions`, as a reconstructable function."""
    for make in (daily_refresh_job, monthly_close_job):
        if make().partitions_def == partitions:
            return make
    raise ValueError(f"no job of e2i_synth.definitions runs {partitions}: --parallel needs one")


def run_all(scenario: Scenario, database: Database, options: Options, checks: list) -> RunSummary:
    """Every stage's runs, in order, stopping at the first failure; a scenario change (or a
    first load) is loaded into a staging schema and swapped in only when everything passed."""
    scenario_yaml = scenario.to_yaml()
    progress = options.progress
    # The Dagster instance (its storage may be this PostgreSQL) is opened before anything is
    # written, so a bad storage URL fails here with the database untouched.
    run_instance = options.run_instance or instance()
    staging: str | None = None  # where a scenario change is loaded (see db/active_scenario.py)
    what = "scenario change"  # or "first load": how the progress lines name a staged load
    if options.dry_run:
        database = Database(url=database.url, home=database.home, migrate_on_setup=False)
        resources = {"database": database, "io_manager": DryRunIOManager()}
        checks = []  # the checks query PostgreSQL, which a dry run does not touch
        clear_dry_run()
    else:
        # The only migration of a run (`make run` no longer runs `db migrate` before it).
        for applied in database.migrate():
            progress(f"applied migration {applied.path.name}")
        with database.connect() as conn:
            active = get_active_hash(conn)
            if active == scenario.content_hash():
                # Same scenario: each table (or window) is replaced in its own transaction,
                # which is crash-safe by itself (db/copy.py), and the tables stay consistent.
                touch_active(conn, scenario.content_hash(), scenario_yaml)
            else:
                # A change (or a first load, which a kill must not leave half done either):
                # every table is loaded aside and swapped in at the end, together with the
                # recorded scenario, in one transaction. Public is not touched before.
                staging = STAGING_SCHEMA
                prepare_staging(conn, scenario.content_hash(), scenario_yaml, staging)
                what = "first load" if active is None else "scenario change"
                progress(f"{what}: loading into schema {staging}, swapped in at the end")
        swap_database = database
        database = Database(
            url=database.url,
            home=database.home,
            migrate_on_setup=False,  # migrated above: not again at the start of every run
            staging_schema=staging,
        )
        resources = build_resources(database)
    resources["scenario"] = ScenarioResource(database=database, yaml_text=scenario_yaml)
    runs = plan_runs(
        stages(ASSETS),
        scenario,
        chunk_days=options.chunk_days or default_chunk_days(scenario),
        live_days=options.live_days,
        # The multiprocess executor runs a job of the definitions, checks included.
        separate_checks=not options.parallel,
        with_checks=bool(checks),
        table_by_table=options.isolate,
    )
    summary = RunSummary(success=True, run_ids=[], tables=[])
    tables: dict[str, TableSummary] = {}
    # A new process per task (max_tasks_per_child=1), started fresh (spawn).
    children = (
        ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1)
        if options.isolate
        else None
    )
    try:
        with environment(BOOKKEEPING_ENV | (CHILD_ENV if children is not None else {})):
            for run in runs:
                progress(run.label)
                tags = {
                    "e2i/scenario": scenario.name,
                    "e2i/dry_run": str(options.dry_run).lower(),
                    **(range_tags(*run.span) if run.span else {}),
                }
                if options.parallel and run.partitions is not None:
                    result = _run_parallel(run, tags, run_instance, options.verbose, staging)
                    done = outcome(result, options.dry_run)
                elif children is not None:
                    done = _run_isolated(children, run, tags, database, scenario_yaml, options)
                else:
                    result = run_in_process(
                        run, tags, resources, checks, run_instance, options.run_config
                    )
                    done = outcome(result, options.dry_run)
                summary.run_ids.append(done.run_id)
                summary.processes.add(done.pid)
                for run_table in done.tables.values():
                    progress("    " + table_line(run_table))
                    fold(tables, run_table)
                if not done.success or any(t.checks_failed for t in tables.values()):
                    summary.success = False
                    summary.errors += done.errors
                    summary.tables = list(tables.values())
                    if staging:
                        summary.errors.append(
                            "scenario change not applied: the database still holds its previous "
                            f"scenario, every table intact; this run's tables are left in schema "
                            f"{staging} (dropped by the next scenario change)"
                        )
                    return summary
    finally:
        if children is not None:
            children.shutdown()
    summary.tables = list(tables.values())
    if staging:
        progress(f"{what}: every stage and check passed; swapping {staging} in")
        started = time.perf_counter()
        try:
            with swap_database.connect() as conn:
                swap_in(conn, staging)
            progress(f"{what}: swapped in, in {time.perf_counter() - started:.2f}s")
        except (LoadError, psycopg.Error) as exc:
            summary.success = False
            summary.errors.append(f"scenario change not applied (rolled back): {exc}")
    return summary


def _selection(run: PlannedRun) -> dg.AssetSelection:
    """The run's assets (without their checks) and the checks of `run.checked`."""
    selection = dg.AssetSelection.assets(*run.keys).without_checks()
    if run.checked:
        selection = selection | dg.AssetSelection.checks_for_assets(*run.checked)
    return selection


def run_in_process(
    run: PlannedRun,
    tags: dict[str, str],
    resources: dict[str, object],
    checks: list,
    run_instance: dg.DagsterInstance,
    run_config: dict | None,
) -> ExecutionResult:
    # dg.materialize, but with a job name the UI's run list can tell apart from ad-hoc runs
    # (dg.materialize names every run __ephemeral_asset_job__).
    job = dg.define_asset_job(CLI_JOB_NAME, selection=_selection(run))
    defs = dg.Definitions(assets=[*ASSETS, *checks], jobs=[job], resources=resources)
    return defs.resolve_job_def(CLI_JOB_NAME).execute_in_process(
        instance=run_instance, raise_on_error=False, run_config=run_config, tags=tags
    )


def _run_parallel(
    run: PlannedRun,
    tags: dict[str, str],
    run_instance: dg.DagsterInstance,
    verbose: bool,
    staging: str | None,
) -> ExecutionResult:
    """One run on Dagster's multiprocess executor: each asset and check in its own process.

    The processes build their resources from e2i_synth.definitions, so they use the database
    from the environment and the scenario recorded in it (run_all() recorded it, in the
    staging schema during a scenario change: the environment names it, STAGING_ENV)."""
    run_config: dict = {
        "execution": {"config": {"multiprocess": {"max_concurrent": os.cpu_count()}}}
    }
    if not verbose:
        run_config.update(QUIET)
    assert run.partitions is not None
    with environment({STAGING_ENV: staging}):
        return dg.execute_job(
            dg.reconstructable(_definitions_job(run.partitions)),
            instance=run_instance,
            run_config=run_config,
            tags=tags,
            asset_selection=list(run.keys),
        )


def _run_isolated(
    children: ProcessPoolExecutor,
    run: PlannedRun,
    tags: dict[str, str],
    database: Database,
    scenario_yaml: str,
    options: Options,
) -> RunOutcome:
    settings = (database.url, database.home, database.staging_schema)
    future = children.submit(_child_run, run, tags, settings, scenario_yaml, options.run_config)
    try:
        return future.result()
    except BrokenProcessPool as exc:  # killed (out of memory, a signal) before it could answer
        names = ", ".join(k.path[-1] for k in run.keys)
        return RunOutcome("", False, {}, [f"the process running {names} died: {exc}"], 0)


def _child_run(
    run: PlannedRun,
    tags: dict[str, str],
    settings: tuple[str | None, str | None, str | None],
    scenario_yaml: str,
    run_config: dict | None,
) -> RunOutcome:
    """One run in a child process: the same resources, rebuilt from picklable settings."""
    from e2i_synth.definitions import CHECKS

    url, home, staging = settings
    # The parent migrated; `staging`: the schema a scenario change loads into.
    database = Database(url=url, home=home, migrate_on_setup=False, staging_schema=staging)
    resources = build_resources(database)
    resources["scenario"] = ScenarioResource(database=database, yaml_text=scenario_yaml)
    result = run_in_process(run, tags, resources, CHECKS, instance(), run_config)
    return outcome(result, dry_run=False)
