"""The report of a materialization: per table, folded from the events of every Dagster run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.execution.execution_result import ExecutionResult

from e2i_synth.tables import TABLES


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
class RunSummary:
    success: bool
    run_ids: list[str]
    tables: list[TableSummary]
    errors: list[str] = field(default_factory=list)
    processes: set[int] = field(default_factory=set)  # pids that executed the runs

    def render(self) -> str:
        lines = [f"{'table':<18} {'status':<10} {'rows':>10} {'parts':>6} {'seconds':>8}  checks"]
        lines += [table_line(t) for t in self.tables]
        total = sum(t.rows or 0 for t in self.tables)
        lines.append(f"{'total':<18} {'':<10} {total:>10,}")
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass
class RunOutcome:
    """What the runner keeps of one Dagster run (picklable: isolated runs send it back)."""

    run_id: str
    success: bool
    tables: dict[str, TableSummary]
    errors: list[str]
    pid: int = field(default_factory=os.getpid)  # the process that executed the run


def table_line(t: TableSummary) -> str:
    rows = "-" if t.rows is None else f"{t.rows:,}"
    secs = "-" if t.seconds is None else f"{t.seconds:.2f}"
    parts = str(t.partitions) if t.partitions else "-"
    ran = t.checks_passed or t.checks_warned or t.checks_failed
    checks = f"{t.checks_passed} passed" if ran else "-"  # checked in a later run, or a dry run
    if t.checks_warned:
        checks += f", warning: {', '.join(t.checks_warned)}"
    if t.checks_failed:
        checks += f", FAILED: {', '.join(t.checks_failed)}"
    # A run that only checked a table loaded by earlier runs says so, not "not run".
    status = "checked" if t.status == "not run" and ran else t.status
    return f"{t.table:<18} {status:<10} {rows:>10} {parts:>6} {secs:>8}  {checks}"


def outcome(result: ExecutionResult, dry_run: bool) -> RunOutcome:
    return RunOutcome(
        run_id=result.run_id,
        success=result.success,
        tables=collect(result, dry_run),
        errors=errors(result),
    )


def collect(result: ExecutionResult, dry_run: bool) -> dict[str, TableSummary]:
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


def fold(total: dict[str, TableSummary], run: TableSummary) -> None:
    """Add one run's figures for a table to the table's totals over all runs."""
    t = total.setdefault(run.table, TableSummary(run.table))
    if run.status != "not run" and t.status in ("not run", "loaded", "validated"):
        t.status = run.status  # a checks-only run leaves the load's status
    t.rows = (t.rows or 0) + (run.rows or 0) if run.rows is not None else t.rows
    t.seconds = (t.seconds or 0) + (run.seconds or 0) if run.seconds is not None else t.seconds
    t.partitions += run.partitions
    t.checks_passed += run.checks_passed
    t.checks_failed += run.checks_failed
    t.checks_warned += run.checks_warned


def errors(result: ExecutionResult) -> list[str]:
    return [
        f"{e.step_key}: {e.event_specific_data.error.message.strip().splitlines()[0]}"
        for e in result.get_step_failure_events()
    ]
