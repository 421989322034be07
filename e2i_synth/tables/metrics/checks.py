"""Checks of business_metrics, run as SQL in PostgreSQL over the loaded rows.

Row rules are constraints of migration 003 (achievement_rate = value / target, the interval
contains the value, shares, rates and engagement within their scale, significance in [0, 1]),
reported by constraints_present. The rule checks here guard what spans rows, which the Gap
Analyzer relies on: mom_change / yoy_change recomputed with LAG over each series, national TRx
ranges and nrx below trx, and no series missing a month.
"""

from collections.abc import Sequence

from psycopg import sql

from e2i_synth.core.scenario import Scenario
from e2i_synth.pipeline.rule_checks import rule_check
from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.tables import TABLES
from e2i_synth.tables.metrics.business_metrics import (
    metric_series,
    rows_in_window,
    scenario_months,
)
from e2i_synth.tables.metrics.business_metrics_model import (
    NATIONAL_TRX_RANGE,
    RANGE_MIN_SCALE,
    RECONCILE_TOLERANCE,
)

SPEC = TABLES["business_metrics"]
ASSET = SPEC.name


# Each change is recomputed from the series' own earlier value, found with LAG and accepted
# only if it is the calendar month expected. After a missing month the LAG-ed row is the wrong
# month: such rows are reported as *_without_* rules (month_continuity names the missing month).
_RECONCILE = """
WITH series AS (
    SELECT metric_id, brand, region, metric_name, metric_date, value, mom_change, yoy_change,
           lag(metric_date) OVER w AS previous_date, lag(value) OVER w AS previous_value,
           lag(metric_date, 12) OVER w AS year_date, lag(value, 12) OVER w AS year_value
    FROM business_metrics
    WINDOW w AS (PARTITION BY brand, region, metric_name ORDER BY metric_date)
), expected AS (
    SELECT *,
           CASE WHEN previous_date = (metric_date - interval '1 month')::date
                THEN value / nullif(previous_value, 0) - 1 END AS expected_mom,
           CASE WHEN year_date = (metric_date - interval '12 months')::date
                THEN value / nullif(year_value, 0) - 1 END AS expected_yoy
    FROM series
), compared AS (
    SELECT metric_id, value, previous_value, year_value, mom_change, expected_mom,
           yoy_change, expected_yoy,
           coalesce(abs(mom_change - expected_mom) <= %(tol)s * greatest(abs(expected_mom), 1),
                    mom_change IS NULL AND expected_mom IS NULL) AS mom_ok,
           coalesce(abs(yoy_change - expected_yoy) <= %(tol)s * greatest(abs(expected_yoy), 1),
                    yoy_change IS NULL AND expected_yoy IS NULL) AS yoy_ok
    FROM expected
)
SELECT CASE WHEN NOT mom_ok AND expected_mom IS NULL AND mom_change IS NOT NULL
                THEN 'mom_change_without_previous_month'
            WHEN NOT mom_ok THEN 'mom_change'
            WHEN expected_yoy IS NULL AND yoy_change IS NOT NULL
                THEN 'yoy_change_without_year_earlier_month'
            ELSE 'yoy_change' END AS rule,
       metric_id, value, previous_value, mom_change, expected_mom, year_value, yoy_change,
       expected_yoy
FROM compared
WHERE NOT (mom_ok AND yoy_ok)
ORDER BY metric_id
"""


arithmetic_reconciles = rule_check(
    ASSET,
    "arithmetic_reconciles",
    {
        "mom_change": "mom_change is the change from the series' previous month (LAG), "
        f"relative tolerance {RECONCILE_TOLERANCE:g}",
        "yoy_change": "yoy_change is the change from the series' value a year earlier",
        "mom_change_without_previous_month": "mom_change is null when the previous month is absent",
        "yoy_change_without_year_earlier_month": "yoy_change is null when the month a year "
        "earlier is absent",
    },
    sql.SQL(_RECONCILE),
    params={"tol": RECONCILE_TOLERANCE},
)


def _national_trx_ranges() -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("({}, {}, {})").format(sql.Literal(b), sql.Literal(lo), sql.Literal(hi))
        for b, (lo, hi) in NATIONAL_TRX_RANGE.items()
    )


# One read of the trx and nrx rows: each series-month's pair, then national sums of trx.
_RANGES = """
WITH months AS MATERIALIZED (
    SELECT brand, region, metric_date,
           max(value) FILTER (WHERE metric_name = 'trx') AS trx,
           max(value) FILTER (WHERE metric_name = 'nrx') AS nrx,
           max(metric_id) FILTER (WHERE metric_name = 'nrx') AS nrx_id
    FROM business_metrics WHERE metric_name IN ('trx', 'nrx')
    GROUP BY brand, region, metric_date
), national AS (
    SELECT brand, metric_date, sum(trx) AS national_trx FROM months
    WHERE trx IS NOT NULL GROUP BY brand, metric_date
)
SELECT 'national_trx_range' AS rule, n.brand || ' ' || n.metric_date AS subject,
       n.national_trx AS value, r.lo AS lower, r.hi AS upper
FROM national n LEFT JOIN (VALUES {ranges}) AS r(brand, lo, hi) USING (brand)
WHERE %(ranges_apply)s AND (r.brand IS NULL OR n.national_trx NOT BETWEEN r.lo AND r.hi)
UNION ALL
SELECT 'nrx_below_trx', nrx_id, nrx, NULL, trx
FROM months WHERE nrx IS NOT NULL AND (trx IS NULL OR nrx >= trx)
"""

value_ranges = rule_check(
    ASSET,
    "value_ranges",
    {
        "national_trx_range": "national TRx per brand-month within the brand's range ("
        + ", ".join(f"{b} {lo:,}-{hi:,}" for b, (lo, hi) in NATIONAL_TRX_RANGE.items())
        + f") from scale {RANGE_MIN_SCALE:g} up (below it a few simulated fills, each weighted "
        "by thousands of patients, cannot hold a national range)",
        "nrx_below_trx": "nrx < trx in every series-month",
    },
    sql.SQL(_RANGES).format(ranges=_national_trx_ranges()),
    params=lambda scenario: {"ranges_apply": scenario.scale >= RANGE_MIN_SCALE},
)


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


def _continuity_query(scenario: Scenario) -> sql.Composable:
    return sql.SQL(_CONTINUITY).format(series=_series_values(metric_series(scenario)))


def _continuity_params(scenario: Scenario) -> dict[str, object]:
    months = scenario_months(scenario)
    return {"first": months[0], "last": months[-1]}


month_continuity = rule_check(
    ASSET,
    "month_continuity",
    {
        "missing_month": "every series of the scenario has one row per month from start_date's "
        "month to the latest month loaded (end_date's month once complete)",
        "unexpected_row": "no rows outside the scenario's series and months",
        "gap_before_month": "no gap between a series' consecutive months",
    },
    _continuity_query,
    params=_continuity_params,
)


METRICS_CHECKS = [
    *table_checks(SPEC, in_window=rows_in_window),  # partitioned: the last load's window
    arithmetic_reconciles,
    value_ranges,
    month_continuity,
]
