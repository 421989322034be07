"""Materialize the whole pipeline in one Dagster run and summarise it per table.

Used by the CLI (`e2i-synth materialize`); the UI and `dagster asset materialize` run the same
assets from e2i_synth.definitions.
"""

import os
from dataclasses import dataclass, field

import dagster as dg

from e2i_synth.assets.scenario_resource import ScenarioResource
from e2i_synth.db.active_scenario import activate
from e2i_synth.db.io_manager import DryRunIOManager
from e2i_synth.db.resource import Database
from e2i_synth.definitions import ASSETS, CHECKS, build_resources
from e2i_synth.scenario import Scenario
from e2i_synth.schemas import TABLES

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class TableSummary:
    table: str
    rows: int | None = None
    seconds: float | None = None
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    status: str = "not run"


@dataclass
class RunSummary:
    success: bool
    run_id: str
    tables: list[TableSummary]
    error: str | None = None

    def render(self) -> str:
        lines = [f"{'table':<20} {'status':<10} {'rows':>10} {'seconds':>8}  checks"]
        for t in self.tables:
            rows = "-" if t.rows is None else f"{t.rows:,}"
            secs = "-" if t.seconds is None else f"{t.seconds:.2f}"
            checks = f"{t.checks_passed} passed"
            if t.checks_failed:
                checks += f", FAILED: {', '.join(t.checks_failed)}"
            lines.append(f"{t.table:<20} {t.status:<10} {rows:>10} {secs:>8}  {checks}")
        total = sum(t.rows or 0 for t in self.tables)
        lines.append(f"{'total':<20} {'':<10} {total:>10,}")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


def instance() -> dg.DagsterInstance:
    """The persistent instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral."""
    return (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )


def materialize(
    scenario: Scenario, database: Database, dry_run: bool = False, verbose: bool = False
) -> RunSummary:
    """Generate, validate and (unless dry_run) load every table with all checks, in one run."""
    scenario_yaml = scenario.to_yaml()
    if dry_run:
        database = Database(url=database.url, home=database.home, migrate_on_setup=False)
        resources = {
            "database": database,
            "io_manager": DryRunIOManager(),
            "scenario": ScenarioResource(database=database, yaml_text=scenario_yaml),
        }
        targets = ASSETS  # the checks query PostgreSQL, which a dry run does not touch
    else:
        database.migrate()
        with database.connect() as conn:
            activate(conn, scenario.content_hash(), scenario_yaml, list(TABLES))
        resources = build_resources(database)
        resources["scenario"] = ScenarioResource(database=database, yaml_text=scenario_yaml)
        targets = [*ASSETS, *CHECKS]
    result = dg.materialize(
        targets,
        resources=resources,
        instance=instance(),
        raise_on_error=False,
        run_config=None if verbose else QUIET,
        tags={"e2i/scenario": scenario.name, "e2i/dry_run": str(dry_run).lower()},
    )
    return summarise(result)


def summarise(result: dg.ExecuteInProcessResult) -> RunSummary:
    tables = {name: TableSummary(name) for name in TABLES}
    done = "validated" if result.dagster_run.tags.get("e2i/dry_run") == "true" else "loaded"
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        rows = mat.metadata.get("dagster/row_count")
        table = tables[mat.asset_key.path[-1]]
        table.rows = (table.rows or 0) + (rows.value if rows is not None else 0)
        table.status = done
    for event in result.get_step_success_events():
        if event.step_key in tables:
            tables[event.step_key].seconds = event.event_specific_data.duration_ms / 1000
    for key in result.get_failed_step_keys():
        if key in tables:
            tables[key].status = "FAILED"
    for event in result.get_step_skipped_events():
        if event.step_key in tables:
            tables[event.step_key].status = "skipped"
    for evaluation in result.get_asset_check_evaluations():
        table = tables[evaluation.asset_key.path[-1]]
        if evaluation.passed:
            table.checks_passed += 1
        else:
            table.checks_failed.append(evaluation.check_name)
    error = None
    failures = result.get_step_failure_events()
    if failures:
        error = "; ".join(
            f"{e.step_key}: {e.event_specific_data.error.message.strip().splitlines()[0]}"
            for e in failures
        )
    ran = [
        t for t in tables.values() if t.status != "not run" or t.checks_passed or t.checks_failed
    ]
    success = result.success and not any(t.checks_failed for t in ran)
    return RunSummary(success=success, run_id=result.run_id, tables=ran, error=error)
