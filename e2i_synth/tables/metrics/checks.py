"""Checks of business_metrics, run as SQL in PostgreSQL over the loaded rows.

Besides the checks every table gets, three blocking checks guard what the Gap Analyzer relies
on: the arithmetic reconciles (achievement_rate, and mom_change / yoy_change recomputed with
LAG over each series), the values lie in their ranges, and no series misses a month. Failing
rows go to the check's metadata.
"""

from collections.abc import Sequence

import dagster as dg
import polars as pl
import psycopg
from psycopg import sql

from e2i_synth.db.metadata import markdown_table
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.tables import TABLES
from e2i_synth.tables.metrics.business_metrics import (
    metric_series,
    rows_in_window,
    scenario_months,
)
from e2i_synth.tables.metrics.business_metrics_model import (
    ENGAGEMENT_SCALE_MAX,
    NATIONAL_TRX_RANGE,
    RECONCILE_TOLERANCE,
    UNIT_INTERVAL_METRICS,
)

SPEC = TABLES["business_metrics"]
ASSET = SPEC.name
FAILURE_ROWS_SHOWN = 20


def _result(
    conn: psycopg.Connection, query: sql.Composable, params: dict | None = None, **metadata: object
) -> dg.AssetCheckResult:
    """Passed when `query` returns no rows; otherwise its rows (the failures) go to metadata."""
    cur = conn.execute(query, params or {})
    columns = [d.name for d in cur.description]
    rows = cur.fetchall()
    failures = pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)
    if failures.height:
        table = markdown_table(failures.with_columns(pl.all().cast(pl.String)), FAILURE_ROWS_SHOWN)
        metadata["failure_rows"] = dg.MetadataValue.md(table)
        if "rule" in failures.columns:
            counts = failures.group_by("rule").len().sort("rule").iter_rows()
            metadata["failures_by_rule"] = dg.MetadataValue.json(dict(counts))
    return dg.AssetCheckResult(
        passed=failures.height == 0, metadata={"failure_count": failures.height, **metadata}
    )


# Each change is recomputed from the series' own earlier value, found with LAG and accepted
# only if it is the calendar month expected. After a missing month the LAG-ed row is the wrong
# month: such rows are reported as *_without_* rules (month_continuity names the missing month).
_RECONCILE = """
WITH series AS (
    SELECT metric_id, brand, region, metric_name, metric_date, value, target,
           achievement_rate, mom_change, yoy_change,
           lag(metric_date) OVER w AS previous_date, lag(value) OVER w AS previous_value,
           lag(metric_date, 12) OVER w AS year_date, lag(value, 12) OVER w AS year_value
    FROM business_metrics
    WINDOW w AS (PARTITION BY brand, region, metric_name ORDER BY metric_date)
), expected AS (
    SELECT *,
           value / target AS expected_achievement,
           CASE WHEN previous_date = (metric_date - interval '1 month')::date
                THEN value / nullif(previous_value, 0) - 1 END AS expected_mom,
           CASE WHEN year_date = (metric_date - interval '12 months')::date
                THEN value / nullif(year_value, 0) - 1 END AS expected_yoy
    FROM series
), compared AS (
    SELECT metric_id, value, target, previous_value, year_value,
           achievement_rate, expected_achievement, mom_change, expected_mom,
           yoy_change, expected_yoy,
           abs(achievement_rate - expected_achievement)
               <= %(tol)s * greatest(abs(expected_achievement), 1) AS achievement_ok,
           coalesce(abs(mom_change - expected_mom) <= %(tol)s * greatest(abs(expected_mom), 1),
                    mom_change IS NULL AND expected_mom IS NULL) AS mom_ok,
           coalesce(abs(yoy_change - expected_yoy) <= %(tol)s * greatest(abs(expected_yoy), 1),
                    yoy_change IS NULL AND expected_yoy IS NULL) AS yoy_ok
    FROM expected
)
SELECT CASE WHEN NOT achievement_ok THEN 'achievement_rate'
            WHEN NOT mom_ok AND expected_mom IS NULL AND mom_change IS NOT NULL
                THEN 'mom_change_without_previous_month'
            WHEN NOT mom_ok THEN 'mom_change'
            WHEN expected_yoy IS NULL AND yoy_change IS NOT NULL
                THEN 'yoy_change_without_year_earlier_month'
            ELSE 'yoy_change' END AS rule,
       metric_id, value, target, achievement_rate, expected_achievement,
       previous_value, mom_change, expected_mom, year_value, yoy_change, expected_yoy
FROM compared
WHERE NOT (achievement_ok AND mom_ok AND yoy_ok)
ORDER BY metric_id
"""


@dg.asset_check(
    asset=ASSET,
    name="arithmetic_reconciles",
    blocking=True,
    description="achievement_rate = value / target; mom_change and yoy_change equal the change "
    "from the series' previous and year-earlier value (LAG), null when that month is absent; "
    f"relative tolerance {RECONCILE_TOLERANCE:g}",
)
def arithmetic_reconciles(database: Database) -> dg.AssetCheckResult:
    with database.connect() as conn:
        return _result(conn, sql.SQL(_RECONCILE), {"tol": RECONCILE_TOLERANCE})


def _national_trx_ranges() -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("({}, {}, {})").format(sql.Literal(b), sql.Literal(lo), sql.Literal(hi))
        for b, (lo, hi) in NATIONAL_TRX_RANGE.items()
    )


_RANGES = """
WITH national AS (
    SELECT brand, metric_date, sum(value) AS national_trx
    FROM business_metrics WHERE metric_name = 'trx' GROUP BY brand, metric_date
)
SELECT 'national_trx_range' AS rule,
       n.brand || ' ' || n.metric_date AS subject,
       n.national_trx AS value, r.lo AS lower, r.hi AS upper
FROM national n JOIN (VALUES {ranges}) AS r(brand, lo, hi) USING (brand)
WHERE n.national_trx NOT BETWEEN r.lo AND r.hi
UNION ALL
SELECT 'national_trx_range', n.brand || ' (no range defined)', n.national_trx, NULL, NULL
FROM national n WHERE n.brand NOT IN (SELECT b FROM (VALUES {ranges}) AS r(b, lo, hi))
UNION ALL
SELECT 'nrx_below_trx', x.metric_id, x.value, NULL, t.value
FROM business_metrics x
LEFT JOIN business_metrics t
    ON t.metric_name = 'trx'
    AND (t.brand, t.region, t.metric_date) = (x.brand, x.region, x.metric_date)
WHERE x.metric_name = 'nrx' AND (t.value IS NULL OR x.value >= t.value)
UNION ALL
SELECT 'unit_interval', metric_id, value, 0, 1
FROM business_metrics
WHERE metric_name IN ({unit}) AND NOT (value BETWEEN 0 AND 1 AND target BETWEEN 0 AND 1
    AND confidence_interval_lower >= 0 AND confidence_interval_upper <= 1)
UNION ALL
SELECT 'engagement_scale', metric_id, value, 0, {score_max}
FROM business_metrics
WHERE metric_type = 'engagement' AND NOT (value BETWEEN 0 AND {score_max}
    AND target BETWEEN 0 AND {score_max} AND confidence_interval_lower >= 0
    AND confidence_interval_upper <= {score_max})
UNION ALL
SELECT 'interval_contains_value', metric_id, value, confidence_interval_lower,
       confidence_interval_upper
FROM business_metrics
WHERE NOT (confidence_interval_lower <= value AND value <= confidence_interval_upper)
UNION ALL
SELECT 'significance_unit_interval', metric_id, statistical_significance, 0, 1
FROM business_metrics WHERE NOT statistical_significance BETWEEN 0 AND 1
ORDER BY rule, subject
"""


@dg.asset_check(
    asset=ASSET,
    name="value_ranges",
    blocking=True,
    description="national TRx per brand-month within the brand's range ("
    + ", ".join(f"{b} {lo:,}-{hi:,}" for b, (lo, hi) in NATIONAL_TRX_RANGE.items())
    + "); nrx < trx; shares and rates in [0, 1]; engagement in [0, 10]; the confidence "
    "interval contains value; statistical_significance in [0, 1]",
)
def value_ranges(database: Database) -> dg.AssetCheckResult:
    query = sql.SQL(_RANGES).format(
        ranges=_national_trx_ranges(),
        unit=sql.SQL(", ").join(map(sql.Literal, UNIT_INTERVAL_METRICS)),
        score_max=sql.Literal(ENGAGEMENT_SCALE_MAX),
    )
    with database.connect() as conn:
        return _result(conn, query)


def _series_values(series: Sequence[tuple[str, str, str]]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("({}, {}, {})").format(*map(sql.Literal, s)) for s in series)


_CONTINUITY = """
WITH expected AS (
    SELECT s.brand, s.region, s.metric_name, m::date AS metric_date
    FROM (VALUES {series}) AS s(brand, region, metric_name)
    -- up to the latest month loaded: backfills run in time order, so every state between
    -- chunks is complete from the first month on, and a hole anywhere is still found
    CROSS JOIN generate_series(
        %(first)s::date,
        least(%(last)s::date, (SELECT max(metric_date) FROM business_metrics)),
        interval '1 month'
    ) AS m
), stepped AS (
    SELECT metric_id, metric_date,
           lag(metric_date) OVER (PARTITION BY brand, region, metric_name ORDER BY metric_date)
               AS previous_date
    FROM business_metrics
)
SELECT 'missing_month' AS rule,
       e.brand || '-' || e.region || '-' || e.metric_name AS series, e.metric_date
FROM expected e
LEFT JOIN business_metrics b USING (brand, region, metric_name, metric_date)
WHERE b.metric_id IS NULL
UNION ALL
SELECT 'unexpected_row', b.metric_id, b.metric_date
FROM business_metrics b
LEFT JOIN expected e USING (brand, region, metric_name, metric_date)
WHERE e.brand IS NULL
UNION ALL
SELECT 'gap_before_month', metric_id, metric_date
FROM stepped
WHERE previous_date IS NOT NULL AND previous_date <> (metric_date - interval '1 month')::date
ORDER BY rule, series, metric_date
"""


@dg.asset_check(
    asset=ASSET,
    name="month_continuity",
    blocking=True,
    description="every series of the scenario has exactly one row per month from start_date's "
    "month to the latest month loaded (end_date's month once complete), with no gaps and no "
    "rows outside the scenario's months",
)
def month_continuity(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    loaded = scenario.load()
    series = metric_series(loaded)
    months = scenario_months(loaded)
    first, last = months[0], months[-1]
    query = sql.SQL(_CONTINUITY).format(series=_series_values(series))
    with database.connect() as conn:
        return _result(
            conn,
            query,
            {"first": first, "last": last},
            series_expected=len(series),
            first_month=first.isoformat(),
            last_month=last.isoformat(),
        )


METRICS_CHECKS = [
    *table_checks(SPEC, in_window=rows_in_window),  # partitioned: the last load's window
    arithmetic_reconciles,
    value_ranges,
    month_continuity,
]
