"""One way to write a rule check: one SQL query returning the rows that break the rules.

The query's first column is `rule` (the name of the rule the row breaks; a row breaking two
rules appears twice); the other columns show the row. Every check made here reports the same
metadata: `violations` (rows returned), `violations_by_rule`
(the broken rules' counts), `examples` (up to EXAMPLES rows per rule, as markdown) and `rule`
(every rule of the check, in words).

Rules that read the same rows go into one query, so a table is scanned once for all of them:
`row_rules` builds that query from (name, condition) pairs.
"""

import json
from collections.abc import Callable, Mapping, Sequence

import dagster as dg
import polars as pl
import psycopg
from psycopg import sql

from e2i_synth.core.scenario import Scenario
from e2i_synth.db.metadata import markdown_table
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.resources import ScenarioResource

EXAMPLES = 5
Params = Callable[[Scenario], Mapping[str, object]]


def row_rules(
    source: sql.Composable, columns: Sequence[str], rules: Mapping[str, sql.Composable]
) -> sql.Composable:
    """Rows of `source` (a FROM clause) breaking any of `rules` (rule name -> SQL condition
    true when the row breaks it), one row per broken rule, in one scan of `source`."""
    broken = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {} THEN {} END").format(condition, sql.Literal(name))
        for name, condition in rules.items()
    )
    # The OR filters rows before the unnest, so only breaking rows pay for it.
    any_broken = sql.SQL(" OR ").join(sql.SQL("({})").format(c) for c in rules.values())
    return sql.SQL(
        "SELECT r.rule, {columns} FROM {source} "
        "CROSS JOIN LATERAL unnest(ARRAY[{broken}]::text[]) AS r(rule) "
        "WHERE ({any_broken}) AND r.rule IS NOT NULL"
    ).format(
        columns=sql.SQL(", ").join(sql.SQL(c) for c in columns),
        source=source,
        broken=broken,
        any_broken=any_broken,
    )


def count_violations(
    conn: psycopg.Connection, query: sql.Composable, params: Mapping[str, object] | None = None
) -> tuple[dict[str, int], list[dict[str, str | None]]]:
    """Violations per rule, and up to EXAMPLES rows per rule (the query's columns, as text), in
    one statement: however many rows break a rule, only the examples leave the server."""
    wrapped = sql.SQL(
        """WITH v AS ({query})
        SELECT rule, n, example::text FROM (
            SELECT v.rule, count(*) OVER (PARTITION BY v.rule) AS n,
                   row_number() OVER (PARTITION BY v.rule) AS k, row_to_json(v) AS example
            FROM v) x
        WHERE k <= {examples}
        ORDER BY rule, k"""
    ).format(query=query, examples=sql.Literal(EXAMPLES))
    counts: dict[str, int] = {}
    examples: list[dict[str, str | None]] = []
    for rule, n, example in conn.execute(wrapped, dict(params or {})):
        counts[rule] = n
        # row_to_json keeps the query's column order; texts, so rules' columns can differ.
        examples.append({k: None if v is None else str(v) for k, v in json.loads(example).items()})
    return counts, examples


def rule_result(
    rules: Mapping[str, str],
    counts: Mapping[str, int],
    examples: Sequence[Mapping[str, str | None]],
    blocking: bool = True,
    **extra: object,
) -> dg.AssetCheckResult:
    """The uniform result: passed when no rule is broken; the metadata every rule check has."""
    by_rule = {name: n for name, n in sorted(counts.items()) if n}
    metadata: dict[str, object] = {
        "violations": sum(by_rule.values()),
        "violations_by_rule": dg.MetadataValue.json(by_rule),
        "rule": dg.MetadataValue.md("\n".join(f"- `{n}`: {text}" for n, text in rules.items())),
        **extra,
    }
    if examples:
        columns = list(dict.fromkeys(k for row in examples for k in row))
        frame = pl.DataFrame(
            [[row.get(c) for c in columns] for row in examples],
            schema={c: pl.String for c in columns},
            orient="row",
        )
        metadata["examples"] = dg.MetadataValue.md(markdown_table(frame, 10 * EXAMPLES))
    return dg.AssetCheckResult(
        passed=not any(by_rule.values()),
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def rule_check(
    table: str,
    name: str,
    rules: Mapping[str, str],
    query: sql.Composable | Callable[[Scenario], sql.Composable],
    params: Params | Mapping[str, object] | None = None,
    blocking: bool = True,
) -> dg.AssetChecksDefinition:
    """An asset check on `table` running `query` (a psycopg.sql query whose first column names
    the rule each returned row breaks; or a function of the scenario building it) with `params`
    bound (a mapping, or a function of the scenario); `rules` maps each rule's name to its text
    (the description)."""
    description = "; ".join(rules.values())
    needs_scenario = callable(params) or callable(query)

    def evaluate(database: Database, scenario: Scenario | None) -> dg.AssetCheckResult:
        built = query(scenario) if callable(query) else query
        bound = params(scenario) if callable(params) else params
        with database.connect() as conn:
            counts, examples = count_violations(conn, built, bound)
        return rule_result(rules, counts, examples, blocking)

    if needs_scenario:

        @dg.asset_check(asset=table, name=name, blocking=blocking, description=description)
        def _check(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
            return evaluate(database, scenario.load())

    else:

        @dg.asset_check(asset=table, name=name, blocking=blocking, description=description)
        def _check(database: Database) -> dg.AssetCheckResult:
            return evaluate(database, None)

    return _check
