"""Materialize the whole pipeline in dependency order and summarise it per table.

Dagster runs one PartitionsDefinition per run, so the pipeline runs in stages: the tables with
no time axis, then each partitioned family as one backfill run over the scenario's window (or
several, `chunk_days` at a time, to bound memory), then what depends on them (the answer key).
Used by the CLI (`e2i-synth materialize`) and the tests; the UI and `dagster asset materialize`
run the same assets from e2i_synth.definitions.
"""

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from graphlib import TopologicalSorter
from multiprocessing import get_context

import dagster as dg
import psycopg
from dagster._core.execution.execution_result import ExecutionResult

from e2i_synth.core.scenario import Scenario
from e2i_synth.db.active_scenario import (
    STAGING_SCHEMA,
    get_active_hash,
    prepare_staging,
    swap_in,
    touch,
)
from e2i_synth.db.copy import LoadError
from e2i_synth.db.io_manager import DryRunIOManager, clear_dry_run
from e2i_synth.db.locks import advisory_lock
from e2i_synth.db.resource import STAGING_ENV, Database
from e2i_synth.definitions import ASSETS, CHECKS, build_resources
from e2i_synth.pipeline.partitions import DAY_FORMAT, live_until, partition_range, range_tags
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.tables import TABLES

MATERIALIZE_LOCK_KEY = 0x6532_694D_6174  # "e2iMat"
CLI_JOB_NAME = "e2i_synth_materialize"  # the job of every in-process run of materialize()
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class TableSummary:
    table: str
    rows: int | None = None
    seconds: float | None = None
    partitions: int = 0
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    # Non-blocking checks that did not pass: shown, never a failed run.
    checks_warned: list[str] = field(default_factory=list)
    status: str = "not run"


@dataclass
class Stage:
    name: str
    assets: list[dg.AssetsDefinition]
    partitions: dg.PartitionsDefinition | None = None

    @property
    def keys(self) -> list[dg.AssetKey]:
        return [key for a in self.assets for key in a.keys]


@dataclass
class RunSummary:
    success: bool
    run_ids: list[str]
    tables: list[TableSummary]
    errors: list[str] = field(default_factory=list)
    processes: set[int] = field(default_factory=set)  # pids that executed the runs

    @property
    def run_id(self) -> str:
        return self.run_ids[-1] if self.run_ids else ""

    def render(self) -> str:
        lines = [f"{'table':<18} {'status':<10} {'rows':>10} {'parts':>6} {'seconds':>8}  checks"]
        for t in self.tables:
            lines.append(_table_line(t))
        total = sum(t.rows or 0 for t in self.tables)
        lines.append(f"{'total':<18} {'':<10} {total:>10,}")
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def _table_line(t: TableSummary) -> str:
    rows = "-" if t.rows is None else f"{t.rows:,}"
    secs = "-" if t.seconds is None else f"{t.seconds:.2f}"
    parts = str(t.partitions) if t.partitions else "-"
    checks = f"{t.checks_passed} passed"
    if t.checks_warned:
        checks += f", warning: {', '.join(t.checks_warned)}"
    if t.checks_failed:
        checks += f", FAILED: {', '.join(t.checks_failed)}"
    return f"{t.table:<18} {t.status:<10} {rows:>10} {parts:>6} {secs:>8}  {checks}"


def instance() -> dg.DagsterInstance:
    """The persistent instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def stages(assets: Sequence[dg.AssetsDefinition] = ASSETS) -> list[Stage]:
    """Unpartitioned assets first, then one stage per partitions definition, then the
    unpartitioned assets that read partitioned ones."""
    by_key = {key: a for a in assets for key in a.keys}
    partitioned = {k for k, a in by_key.items() if a.partitions_def is not None}
    upstream = {k: set(a.asset_deps.get(k, ())) for k, a in by_key.items()}

    def reads_partitioned(key: dg.AssetKey, seen: frozenset = frozenset()) -> bool:
        return any(
            dep in partitioned or (dep in by_key and reads_partitioned(dep, seen | {key}))
            for dep in upstream[key] - seen
        )

    first = [a for a in assets if a.partitions_def is None and not reads_partitioned(a.key)]
    last = [a for a in assets if a.partitions_def is None and reads_partitioned(a.key)]
    # One run per table: each after the tables it reads (families are discovered by folder
    # name, so activity's treatment_events would otherwise come before entities' tables).
    first, last = _dependency_order(first, upstream), _dependency_order(last, upstream)
    result = [Stage("tables without a time axis", first)]
    families: dict[str, Stage] = {}
    for a in assets:
        if a.partitions_def is not None:
            name = f"{type(a.partitions_def).__name__.removesuffix('PartitionsDefinition')}"
            families.setdefault(name, Stage(f"{name.lower()} partitions", [], a.partitions_def))
            families[name].assets.append(a)
    result += list(families.values())
    if last:
        result.append(Stage("tables reading partitioned ones", last))
    return [s for s in result if s.assets]


def _dependency_order(
    assets: list[dg.AssetsDefinition], upstream: dict[dg.AssetKey, set[dg.AssetKey]]
) -> list[dg.AssetsDefinition]:
    by_key = {a.key: a for a in assets}
    graph = {key: upstream[key] & by_key.keys() for key in by_key}
    return [by_key[key] for key in TopologicalSorter(graph).static_order()]


def _chunks(
    partitions: dg.PartitionsDefinition, first: str, last: str, chunk_days: int | None
) -> list[tuple[str, str]]:
    """[first, last] as runs of about chunk_days days each (a month counts 30), or one run."""
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    if not chunk_days:
        return [(first, last)]
    days_per_key = 30 if isinstance(partitions, dg.MonthlyPartitionsDefinition) else 1
    size = max(1, chunk_days // days_per_key)
    return [(keys[i], keys[min(i + size, len(keys)) - 1]) for i in range(0, len(keys), size)]


def default_chunk_days(scenario: Scenario) -> int | None:
    """Above scale 20, backfill 90 days per run: the rows of a run stay in the low millions."""
    return 90 if scenario.scale > 20 else None


# Jobs of e2i_synth.definitions that the executor's processes rebuild (reconstructable needs
# module-level functions without arguments).
def daily_refresh_job() -> dg.JobDefinition:
    from e2i_synth.definitions import defs

    return defs.resolve_job_def("daily_refresh")


def monthly_close_job() -> dg.JobDefinition:
    from e2i_synth.definitions import defs

    return defs.resolve_job_def("monthly_close")


_PARTITIONED_JOBS = {"Daily": daily_refresh_job, "Monthly": monthly_close_job}


def _run_parallel(
    stage: Stage,
    tags: dict[str, str],
    run_instance: dg.DagsterInstance,
    verbose: bool,
    staging: str | None,
) -> ExecutionResult:
    """One run on Dagster's multiprocess executor: each asset and check in its own process.

    The processes build their resources from e2i_synth.definitions, so they use the database
    from the environment and the scenario recorded in it (materialize() recorded it, in the
    staging schema during a scenario change: `staging` is handed to them in the environment)."""
    run_config = {"execution": {"config": {"multiprocess": {"max_concurrent": os.cpu_count()}}}}
    if not verbose:
        run_config.update(QUIET)
    family = type(stage.partitions).__name__.removesuffix("PartitionsDefinition")
    with _environment(STAGING_ENV, staging):
        return dg.execute_job(
            dg.reconstructable(_PARTITIONED_JOBS[family]),
            instance=run_instance,
            run_config=run_config,
            tags=tags,
            asset_selection=stage.keys,
        )


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """$name set to value (when not None) for the duration; the processes started meanwhile
    inherit it."""
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@dataclass
class RunOutcome:
    """What the runner keeps of one Dagster run (picklable: isolated runs send it back)."""

    run_id: str
    success: bool
    tables: dict[str, TableSummary]
    errors: list[str]
    pid: int = field(default_factory=os.getpid)  # the process that executed the run


def default_isolate(scenario: Scenario) -> bool:
    """Above scale 100, every run executes in a fresh process: the memory a run's frames
    leave fragmented in a long-lived process would otherwise add up from run to run. Below,
    it does not matter (scale 100 peaks under 1 GB in one process) and a fresh process per run
    would cost more (about 3 s each) than it saves."""
    return scenario.scale > 100


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
    isolate = isolate and not dry_run
    run = partial(
        _materialize,
        scenario,
        database,
        dry_run,
        verbose,
        chunk_days,
        progress,
        run_instance,
        parallel,
        isolate,
        live_days,
    )
    if dry_run:
        return run()
    # One full materialization at a time per database: two scenario changes would share the
    # staging schema, and a second run would rewrite tables under the first one's later
    # stages. The lock is a session lock on a connection of its own, released when it closes
    # (also if this process dies).
    with database.connect(autocommit=True) as lock:
        advisory_lock(lock, MATERIALIZE_LOCK_KEY, "materialize")
        return run()


def _materialize(
    scenario: Scenario,
    database: Database,
    dry_run: bool,
    verbose: bool,
    chunk_days: int | None,
    progress: Callable[[str], None],
    run_instance: dg.DagsterInstance | None,
    parallel: bool,
    isolate: bool,
    live_days: int | None,
) -> RunSummary:
    scenario_yaml = scenario.to_yaml()
    # The Dagster instance (its storage may be this PostgreSQL) is opened before anything is
    # written, so a bad storage URL fails here with the database untouched.
    run_instance = run_instance or instance()
    staging: str | None = None  # where a scenario change is loaded (see db/active_scenario.py)
    if dry_run:
        database = Database(url=database.url, home=database.home, migrate_on_setup=False)
        resources = {"database": database, "io_manager": DryRunIOManager()}
        checks: list = []  # the checks query PostgreSQL, which a dry run does not touch
        clear_dry_run()
    else:
        database.migrate()
        with database.connect() as conn:
            active = get_active_hash(conn)
            if active == scenario.content_hash():
                # Same scenario: each table (or window) is replaced in its own transaction,
                # which is crash-safe by itself (db/copy.py), and the tables stay consistent.
                touch(conn, scenario.content_hash(), scenario_yaml)
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
            migrate_on_setup=database.migrate_on_setup,
            staging_schema=staging,
        )
        resources = build_resources(database)
        checks = CHECKS
    resources["scenario"] = ScenarioResource(database=database, yaml_text=scenario_yaml)
    chunk_days = chunk_days or default_chunk_days(scenario)
    summary = RunSummary(success=True, run_ids=[], tables=[])
    tables: dict[str, TableSummary] = {}
    plan = stages()
    # A new process per task (max_tasks_per_child=1), started fresh (spawn).
    children = (
        ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1)
        if isolate
        else None
    )
    try:
        for number, stage in enumerate(plan, 1):
            # One run per table when there is no time axis (progress table by table), one run
            # per chunk of partitions otherwise (its tables are independent of each other).
            runs: list[tuple[list[dg.AssetKey], tuple[str, str] | None]]
            if stage.partitions is None:
                runs = [([key], None) for key in stage.keys]
            else:
                first, last = partition_range(stage.partitions, scenario)
                if isinstance(stage.partitions, dg.DailyPartitionsDefinition):
                    last = live_until(scenario, live_days).strftime(DAY_FORMAT)  # live days
                spans = _chunks(stage.partitions, first, last, chunk_days)
                runs = [(stage.keys, span) for span in spans]
            for index, (keys, span) in enumerate(runs):
                # A chunked backfill checks its tables once, with its last chunk and over whole
                # tables: checking after every chunk would re-read what is already checked, and
                # cost would grow with the square of the chunk count. (Each chunk's load has
                # validated its frames and counted its window inside its transaction.)
                with_checks = span is None or index == len(runs) - 1
                label = f"[{number}/{len(plan)}] {stage.name}"
                label += f" {span[0]}..{span[1]}" if span else ""
                progress(f"{label}: {', '.join(k.path[-1] for k in keys)}")
                tags = {
                    "e2i/scenario": scenario.name,
                    "e2i/dry_run": str(dry_run).lower(),
                    **(range_tags(*span) if span else {}),
                }
                if parallel and stage.partitions is not None:
                    result = _run_parallel(stage, tags, run_instance, verbose, staging)
                    outcome = _outcome(result, dry_run)
                elif children is not None:
                    outcome = _run_isolated(
                        children, keys, tags, with_checks, database, scenario_yaml, verbose
                    )
                else:
                    outcome = _outcome(
                        _run_in_process(
                            keys, tags, with_checks, resources, checks, run_instance, verbose
                        ),
                        dry_run,
                    )
                summary.run_ids.append(outcome.run_id)
                summary.processes.add(outcome.pid)
                for run_table in outcome.tables.values():
                    progress("    " + _table_line(run_table))
                    _fold(tables, run_table)
                if not outcome.success or any(t.checks_failed for t in tables.values()):
                    summary.success = False
                    summary.errors += outcome.errors
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
        progress(f"scenario change: every stage and check passed; swapping {staging} in")
        started = time.perf_counter()
        try:
            with swap_database.connect() as conn:
                swap_in(conn, staging)
            progress(f"scenario change: swapped in, in {time.perf_counter() - started:.2f}s")
        except (LoadError, psycopg.Error) as exc:
            summary.success = False
            summary.errors.append(f"scenario change not applied (rolled back): {exc}")
    return summary


def _run_in_process(
    keys: list[dg.AssetKey],
    tags: dict[str, str],
    with_checks: bool,
    resources: dict[str, object],
    checks: list,
    run_instance: dg.DagsterInstance,
    verbose: bool,
) -> ExecutionResult:
    selection = dg.AssetSelection.assets(*keys)
    # dg.materialize, but with a job name the UI's run list can tell apart from ad-hoc runs
    # (dg.materialize names every run __ephemeral_asset_job__).
    job = dg.define_asset_job(
        CLI_JOB_NAME, selection=selection if with_checks else selection.without_checks()
    )
    defs = dg.Definitions(assets=[*ASSETS, *checks], jobs=[job], resources=resources)
    return defs.resolve_job_def(CLI_JOB_NAME).execute_in_process(
        instance=run_instance,
        raise_on_error=False,
        run_config=None if verbose else QUIET,
        tags=tags,
    )


def _run_isolated(
    children: ProcessPoolExecutor,
    keys: list[dg.AssetKey],
    tags: dict[str, str],
    with_checks: bool,
    database: Database,
    scenario_yaml: str,
    verbose: bool,
) -> RunOutcome:
    future = children.submit(
        _child_run,
        keys,
        tags,
        with_checks,
        database.url,
        database.home,
        scenario_yaml,
        verbose,
        database.staging_schema,
    )
    try:
        return future.result()
    except BrokenProcessPool as exc:  # killed (out of memory, a signal) before it could answer
        names = ", ".join(k.path[-1] for k in keys)
        return RunOutcome("", False, {}, [f"the process running {names} died: {exc}"], 0)


def _child_run(
    keys: list[dg.AssetKey],
    tags: dict[str, str],
    with_checks: bool,
    url: str | None,
    home: str | None,
    scenario_yaml: str,
    verbose: bool,
    staging: str | None = None,
) -> RunOutcome:
    """One run in a child process: the same resources, rebuilt from picklable settings."""
    # The parent migrated; `staging`: the schema a scenario change loads into.
    database = Database(url=url, home=home, migrate_on_setup=False, staging_schema=staging)
    resources = build_resources(database)
    resources["scenario"] = ScenarioResource(database=database, yaml_text=scenario_yaml)
    result = _run_in_process(keys, tags, with_checks, resources, CHECKS, instance(), verbose)
    return _outcome(result, dry_run=False)


def _outcome(result: ExecutionResult, dry_run: bool) -> RunOutcome:
    return RunOutcome(
        run_id=result.run_id,
        success=result.success,
        tables=_collect(result, dry_run),
        errors=_errors(result),
    )


def _collect(result: ExecutionResult, dry_run: bool) -> dict[str, TableSummary]:
    """One run's events, per table."""
    tables: dict[str, TableSummary] = {}

    def table(name: str) -> TableSummary:
        return tables.setdefault(name, TableSummary(name))

    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        t = table(mat.asset_key.path[-1])
        t.status = "validated" if dry_run else "loaded"
        t.partitions += 1 if mat.partition else 0
        rows = mat.metadata.get("dagster/row_count")
        # A backfill run reports its one load once per partition: count it once.
        t.rows = rows.value if rows is not None else 0
    for event in result.get_step_success_events():
        if event.step_key in TABLES:
            table(event.step_key).seconds = event.event_specific_data.duration_ms / 1000
    for key in result.get_failed_step_keys():
        if key in TABLES:
            table(key).status = "FAILED"
    for event in result.get_step_skipped_events():
        if event.step_key in TABLES:
            table(event.step_key).status = "skipped"
    for evaluation in result.get_asset_check_evaluations():
        t = table(evaluation.asset_key.path[-1])
        if evaluation.passed:
            t.checks_passed += 1
        elif evaluation.severity == dg.AssetCheckSeverity.WARN:
            t.checks_warned.append(evaluation.check_name)
        else:
            t.checks_failed.append(evaluation.check_name)
    return tables


def _fold(total: dict[str, TableSummary], run: TableSummary) -> None:
    """Add one run's figures for a table to the table's totals over all runs."""
    t = total.setdefault(run.table, TableSummary(run.table))
    t.status = run.status if t.status in ("not run", "loaded", "validated") else t.status
    t.rows = (t.rows or 0) + (run.rows or 0) if run.rows is not None else t.rows
    t.seconds = (t.seconds or 0) + (run.seconds or 0) if run.seconds is not None else t.seconds
    t.partitions += run.partitions
    t.checks_passed += run.checks_passed
    t.checks_failed += run.checks_failed
    t.checks_warned += run.checks_warned


def _errors(result: ExecutionResult) -> list[str]:
    return [
        f"{e.step_key}: {e.event_specific_data.error.message.strip().splitlines()[0]}"
        for e in result.get_step_failure_events()
    ]
