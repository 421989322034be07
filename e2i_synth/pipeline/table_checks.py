"""Checks every table gets: its model, its constraints (from the catalog) and its row count.

They are blocking: a failure stops downstream assets (the rows are already loaded by then;
keeping bad rows out of the database is the IO manager's validation, before COPY).
"""

from collections.abc import Callable
from datetime import date, datetime

import dagster as dg
import polars as pl

from e2i_synth.core.scenario import Scenario
from e2i_synth.db.copy import count_rows, iter_table
from e2i_synth.db.metadata import markdown_table
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.constraints import constraint_report, declared_constraints
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.tables import FrameValidationError, TableSpec

ExpectedRows = Callable[[Scenario], int]
# Rows the scenario puts in a partition window [start, end) of a partitioned table: exact, or
# None where it only says "some" (rows drawn at random). It is the generator's own function, so
# a window the scenario leaves empty (a month after end_date) expects 0 rows, not "more than 0".
WindowRows = Callable[[Scenario, date, date], int | None]


def schema_check(spec: TableSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=spec.name,
        name="schema",
        blocking=True,
        description=f"{spec.name} as loaded validates against its pandera model",
    )
    def _check(database: Database) -> dg.AssetCheckResult:
        # Page by page, so the check's memory does not grow with the table.
        rows, failures = 0, []
        with database.connect() as conn:
            for page in iter_table(conn, spec):
                rows += page.height
                try:
                    spec.validate(page)
                except FrameValidationError as exc:
                    failures.append(exc.failure_cases)
        if failures:
            cases = pl.concat(failures, how="diagonal_relaxed")
            return dg.AssetCheckResult(
                passed=False,
                description=f"{spec.name}: {cases.height} failure case(s) against its schema",
                metadata={
                    "rows_validated": rows,
                    "failure_case_count": cases.height,
                    "failure_cases": dg.MetadataValue.md(markdown_table(cases)),
                },
            )
        return dg.AssetCheckResult(passed=rows > 0, metadata={"rows_validated": rows})

    return _check


def constraints_check(spec: TableSpec) -> dg.AssetChecksDefinition:
    """The rules the database enforces on every row (primary key, unique keys, foreign keys,
    CHECKs, NOT NULL) hold as long as their constraints do: this reads the catalog, not the
    table, and compares it to what the migrations declare (pipeline/constraints.py)."""
    not_null = {c for c, nullable in spec.nullable.items() if not nullable}

    @dg.asset_check(
        asset=spec.name,
        name="constraints_present",
        blocking=True,
        description=f"every constraint the migrations declare on {spec.name} (primary key, "
        "unique, foreign keys, CHECKs, NOT NULL) is in the catalog, validated, its triggers "
        "enabled (read from the catalog: no row is scanned)",
    )
    def _check(database: Database) -> dg.AssetCheckResult:
        with database.connect() as conn:
            report = constraint_report(conn, spec.name, not_null)
        problems = {kind: names for kind, names in report.items() if names}
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={
                "violations": sum(map(len, problems.values())),
                "violations_by_rule": dg.MetadataValue.json(
                    {kind: len(names) for kind, names in report.items()}
                ),
                "constraints_declared": len(declared_constraints().get(spec.name, {})),
                "examples": dg.MetadataValue.json(problems),
                "rule": "the catalog holds every declared constraint, validated, and no other",
            },
        )

    return _check


def row_count_check(
    spec: TableSpec, expected: ExpectedRows | None, in_window: WindowRows | None = None
) -> dg.AssetChecksDefinition:
    """The rows of the last load are all in the table, no more and no fewer (nothing lost or
    doubled); for tables replaced whole, also as many as the scenario's scale implies; for a
    partition window, as many as the scenario puts there (none after its end_date, for some)."""

    @dg.asset_check(
        asset=spec.name,
        name="row_count",
        blocking=True,
        description=f"{spec.name} holds every row of its last load"
        + (", as many as the scale implies" if expected else ""),
    )
    def _check(
        context: dg.AssetCheckExecutionContext, database: Database, scenario: ScenarioResource
    ) -> dg.AssetCheckResult:
        metadata = _last_load_metadata(context, spec)
        window = None
        if "e2i/window_start" in metadata:
            window = tuple(
                datetime.fromisoformat(metadata[k].value)
                for k in ("e2i/window_start", "e2i/window_end")
            )
        with database.connect() as conn:
            actual = count_rows(conn, spec.name, window, spec.partition_column)
        result: dict[str, object] = {"rows_in_database": actual}
        passed = True
        if window is not None:
            result["window"] = f"{window[0].isoformat()} .. {window[1].isoformat()}"
        if "dagster/row_count" in metadata:
            result["rows_loaded"] = metadata["dagster/row_count"].value
            passed = actual == result["rows_loaded"]
        if expected is not None and window is None:
            result["rows_expected_for_scale"] = expected(scenario.load())
            passed = passed and actual == result["rows_expected_for_scale"]
        wanted = None
        if window is not None and in_window is not None:
            wanted = in_window(scenario.load(), window[0].date(), window[1].date())
        if wanted is None:
            passed = passed and actual > 0
        else:
            result["rows_expected_in_window"] = wanted
            passed = passed and actual == wanted
        return dg.AssetCheckResult(passed=passed, metadata=result)

    return _check


def _last_load_metadata(context: dg.AssetCheckExecutionContext, spec: TableSpec) -> dict:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(spec.name))
    if event is None or event.asset_materialization is None:
        return {}
    return dict(event.asset_materialization.metadata)


def table_checks(
    spec: TableSpec, expected: ExpectedRows | None = None, in_window: WindowRows | None = None
) -> list:
    return [
        schema_check(spec),
        constraints_check(spec),
        row_count_check(spec, expected, in_window),
    ]
