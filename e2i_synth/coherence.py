"""What holds across tables: each rule a statement and a SQL query that returns the rows
breaking it, so a coherent load returns zero rows for every rule.

The rules follow from one world (e2i_synth.world): every patient has one timeline (journey,
first fill, fills, stop), every table reads it as of its own dates, and every time-stamped row
carries the split of its own date (core.split). The queries take the split cutoffs as
parameters (params); they read the loaded tables only, so they hold for any loader. SQL is
composed with psycopg.sql, never by formatting strings.
"""

from dataclasses import dataclass

import psycopg
from psycopg import sql

from e2i_synth.core.scenario import Scenario
from e2i_synth.pipeline.split_sql import split_params, split_sql, utc_day_sql
from e2i_synth.tables.activity.triggers import REFILL_GAP_LATE_DAYS
from e2i_synth.tables.feature_store.catalog import COUNT_WINDOW_DAYS, INSURANCE_TIERS


@dataclass(frozen=True)
class Rule:
    name: str
    statement: str  # one line, for the README and failure messages
    query: sql.Composable  # the violating rows


def _utc_day(table: str, column: str) -> sql.Composable:
    return utc_day_sql(sql.Identifier(table, column))


# Each patient's first fill and stop, as treatment_events records them.
_THERAPY = sql.SQL("""
    SELECT j.patient_id, j.journey_start_date, j.journey_end_date,
           min(e.event_date) FILTER (WHERE e.event_type = 'prescription') AS first_fill,
           min(e.event_date) FILTER (WHERE e.event_type IN ('switch', 'discontinuation')) AS stop
    FROM patient_journeys j LEFT JOIN treatment_events e USING (patient_id)
    GROUP BY j.patient_id, j.journey_start_date, j.journey_end_date
""")
# The fragments every rule's template may name.
_FRAGMENTS = {
    "therapy": _THERAPY,
    "prediction_day": _utc_day("p", "prediction_timestamp"),
    "trigger_day": _utc_day("t", "created_at"),
    "value_day": _utc_day("v", "event_timestamp"),
}


def _rule(name: str, statement: str, template: str) -> Rule:
    return Rule(name, statement, sql.SQL(template).format(**_FRAGMENTS))


# (table, key, date column, whether it is a timestamp read as its UTC date) of every
# time-stamped table.
DATED_TABLES = (
    ("patient_journeys", "patient_id", "journey_start_date", False),
    ("treatment_events", "event_id", "event_date", False),
    ("ml_predictions", "prediction_id", "prediction_timestamp", True),
    ("triggers", "trigger_id", "created_at", True),
    ("business_metrics", "metric_id", "metric_date", False),
    ("feature_values", "feature_value_id", "event_timestamp", True),
)


def _split_rule(table: str, key: str, column: str, utc: bool) -> Rule:
    day = _utc_day("x", column) if utc else sql.Identifier("x", column)
    return Rule(
        f"{table}_split_follows_its_date",
        f"data_split of every {table} row is the split of its {column}"
        + (" (UTC date)" if utc else ""),
        sql.SQL(
            "SELECT {key}, x.data_split, {day} AS day FROM {table} x "
            "WHERE x.data_split IS DISTINCT FROM {split}"
        ).format(
            key=sql.Identifier("x", key),
            day=day,
            table=sql.Identifier(table),
            split=split_sql(day),
        ),
    )


RULES: tuple[Rule, ...] = (
    _rule(
        "fills_only_on_therapy",
        "a prescription or refill is dated from the patient's initiation (journey start + "
        "days_to_treatment) and before the patient's switch or discontinuation",
        """
        SELECT e.event_id, e.patient_id, e.event_type, e.event_date, th.stop
        FROM treatment_events e JOIN patient_journeys j USING (patient_id)
        JOIN ({therapy}) th USING (patient_id)
        WHERE e.event_type IN ('prescription', 'refill')
          AND (NOT j.treatment_initiated
               OR e.event_date < j.journey_start_date + j.days_to_treatment
               OR e.event_date >= th.stop)
        """,
    ),
    _rule(
        "one_stop_after_a_fill",
        "a patient stops (switch or discontinuation) at most once, after a first fill",
        """
        SELECT e.patient_id, count(*) AS stops, min(e.event_date) AS first_stop,
               min(f.event_date) AS first_fill
        FROM treatment_events e
        LEFT JOIN treatment_events f
          ON f.patient_id = e.patient_id AND f.event_type = 'prescription'
        WHERE e.event_type IN ('switch', 'discontinuation')
        GROUP BY e.patient_id
        HAVING count(*) > 1 OR min(f.event_date) IS NULL OR min(f.event_date) >= min(e.event_date)
        """,
    ),
    _rule(
        "churn_scores_only_on_therapy",
        "a churn_risk score is dated from the patient's first fill and before the stop",
        """
        SELECT p.prediction_id, p.patient_id, {prediction_day} AS day, th.first_fill, th.stop
        FROM ml_predictions p JOIN ({therapy}) th USING (patient_id)
        WHERE p.prediction_type = 'churn_risk'
          AND (th.first_fill IS NULL OR {prediction_day} < th.first_fill
               OR {prediction_day} >= th.stop)
        """,
    ),
    _rule(
        "propensity_scores_only_until_initiation",
        "a treatment_propensity score is dated no later than the patient's first fill",
        """
        SELECT p.prediction_id, p.patient_id, {prediction_day} AS day, th.first_fill
        FROM ml_predictions p JOIN ({therapy}) th USING (patient_id)
        WHERE p.prediction_type = 'treatment_propensity' AND {prediction_day} > th.first_fill
        """,
    ),
    _rule(
        "therapy_triggers_only_on_therapy",
        "a refill_gap or competitive_switch_risk trigger is dated after the patient's first "
        "fill and before the stop",
        """
        SELECT t.trigger_id, t.trigger_type, t.patient_id, {trigger_day} AS day,
               th.first_fill, th.stop
        FROM triggers t JOIN ({therapy}) th USING (patient_id)
        WHERE t.trigger_type IN ('refill_gap', 'competitive_switch_risk')
          AND (th.first_fill IS NULL OR {trigger_day} <= th.first_fill
               OR {trigger_day} >= th.stop)
        """,
    ),
    _rule(
        "high_propensity_triggers_only_before_initiation",
        "a high_propensity trigger is about a patient not yet treated on its date",
        """
        SELECT t.trigger_id, t.patient_id, {trigger_day} AS day, th.first_fill
        FROM triggers t JOIN ({therapy}) th USING (patient_id)
        WHERE t.trigger_type = 'high_propensity' AND {trigger_day} >= th.first_fill
        """,
    ),
    _rule(
        "events_inside_the_journey",
        "a treatment event is dated inside its patient's journey",
        """
        SELECT e.event_id, e.patient_id, e.event_date
        FROM treatment_events e JOIN patient_journeys j USING (patient_id)
        WHERE e.event_date NOT BETWEEN j.journey_start_date AND j.journey_end_date
        """,
    ),
    _rule(
        "predictions_inside_the_journey",
        "a patient's prediction is dated inside the patient's journey",
        """
        SELECT p.prediction_id, p.patient_id, {prediction_day} AS day
        FROM ml_predictions p JOIN patient_journeys j USING (patient_id)
        WHERE {prediction_day} NOT BETWEEN j.journey_start_date AND j.journey_end_date
        """,
    ),
    _rule(
        "triggers_inside_the_journey",
        "a patient's trigger is dated inside the patient's journey",
        """
        SELECT t.trigger_id, t.patient_id, {trigger_day} AS day
        FROM triggers t JOIN patient_journeys j USING (patient_id)
        WHERE {trigger_day} NOT BETWEEN j.journey_start_date AND j.journey_end_date
        """,
    ),
    _rule(
        "patient_feature_values_inside_the_journey",
        "a feature value about a patient is dated inside the patient's journey (and names a "
        "patient that exists)",
        """
        SELECT v.feature_value_id, v.entity_values ->> 'patient_id' AS patient_id,
               {value_day} AS day
        FROM feature_values v
        LEFT JOIN patient_journeys j ON j.patient_id = v.entity_values ->> 'patient_id'
        WHERE v.entity_values ? 'patient_id'
          AND (j.patient_id IS NULL
               OR {value_day} NOT BETWEEN j.journey_start_date AND j.journey_end_date)
        """,
    ),
    _rule(
        "metric_counts_are_the_fills",
        "simulated_count of a trx (nrx) row of business_metrics is the number of prescriptions "
        "and refills (prescriptions) in treatment_events of the brand's patients of the region "
        "in the month, for every month business_metrics holds",
        """
        WITH fills AS (
            SELECT e.brand, j.region, date_trunc('month', e.event_date)::date AS metric_date,
                   count(*) AS trx, count(*) FILTER (WHERE e.event_type = 'prescription') AS nrx
            FROM treatment_events e JOIN patient_journeys j USING (patient_id)
            WHERE e.event_type IN ('prescription', 'refill')
            GROUP BY 1, 2, 3
        ), counted AS (
            SELECT b.metric_id, b.brand, b.region, b.metric_date, b.metric_name,
                   b.simulated_count,
                   coalesce(CASE b.metric_name WHEN 'trx' THEN f.trx ELSE f.nrx END, 0) AS fills
            FROM business_metrics b
            LEFT JOIN fills f USING (brand, region, metric_date)
            WHERE b.metric_name IN ('trx', 'nrx')
        )
        SELECT metric_id, simulated_count, fills FROM counted WHERE simulated_count <> fills
        UNION ALL
        SELECT f.brand || '-' || f.region || '-' || f.metric_date, NULL, f.trx
        FROM fills f
        WHERE f.metric_date IN (SELECT metric_date FROM business_metrics)
          AND NOT EXISTS (SELECT FROM business_metrics b
                          WHERE b.brand = f.brand AND b.region = f.region
                            AND b.metric_date = f.metric_date AND b.metric_name = 'trx')
        """,
    ),
    _rule(
        "share_counts_its_brand_trx",
        "a market_share row counts the same fills as the brand's trx row of its region-month, "
        "and its denominator market_trx is at least that row's target (the class includes the "
        "brand)",
        """
        SELECT s.metric_id, s.simulated_count, t.simulated_count AS trx_count, s.market_trx,
               t.target AS trx_target
        FROM business_metrics s
        LEFT JOIN business_metrics t
          ON t.brand = s.brand AND t.region = s.region AND t.metric_date = s.metric_date
         AND t.metric_name = 'trx'
        WHERE s.metric_name = 'market_share'
          AND (t.metric_id IS NULL OR s.simulated_count IS DISTINCT FROM t.simulated_count
               OR s.market_trx < t.target)
        """,
    ),
    *(_split_rule(*dated) for dated in DATED_TABLES),
    Rule(
        "refill_gaps_follow_a_lapse",
        "a refill_gap trigger is dated more than "
        f"{REFILL_GAP_LATE_DAYS} days after the supply of the patient's latest fill on or "
        "before its date ran out (treatment_events: event_date + days_supply)",
        sql.SQL("""
        SELECT t.trigger_id, t.patient_id, {day} AS day, f.event_date AS last_fill,
               f.days_supply
        FROM triggers t
        LEFT JOIN LATERAL (
            SELECT e.event_date, e.days_supply FROM treatment_events e
            WHERE e.patient_id = t.patient_id AND e.event_type IN ('prescription', 'refill')
              AND e.event_date <= {day}
            ORDER BY e.event_date DESC LIMIT 1) f ON true
        WHERE t.trigger_type = 'refill_gap'
          AND (f.event_date IS NULL OR {day} <= f.event_date + f.days_supply + {late})
        """).format(day=_utc_day("t", "created_at"), late=sql.Literal(REFILL_GAP_LATE_DAYS)),
    ),
)

# Feature-store rules: the features mean what their names say. A feature's values depart from
# the world on purpose from a planted drift's start (every value, if it is seasonal): the rules
# judge the values before (parameter <feature>_exact_until, see exact_until).
EXACT_FEATURES = ("insurance_tier", "trx_30d", "nrx_30d")
_TIER_OF_PAYER = sql.SQL("CASE j.insurance_type {} END").format(
    sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(payer), sql.Literal(tier))
        for payer, tier in INSURANCE_TIERS.items()
    )
)


def _counts_rule(feature: str, event_types: tuple[str, ...], what: str) -> Rule:
    return Rule(
        f"{feature}_counts_the_fills",
        f"every {feature} value (before a planted drift) is the number of {what} in "
        f"treatment_events of its HCP and brand dated in the {COUNT_WINDOW_DAYS} days before "
        "its UTC date",
        sql.SQL("""
        SELECT v.feature_value_id, v.entity_values::text, {day} AS day,
               v.value #>> '{{}}' AS value, count(e.event_id) AS fills
        FROM feature_values v JOIN features f USING (feature_id)
        LEFT JOIN treatment_events e
          ON e.hcp_id = v.entity_values ->> 'hcp_id' AND e.brand = v.entity_values ->> 'brand'
         AND e.event_type = ANY({types})
         AND e.event_date >= {day} - {window} AND e.event_date < {day}
        WHERE f.name = {feature} AND v.event_timestamp < {until}::timestamptz
        GROUP BY v.feature_value_id, v.entity_values, v.event_timestamp, v.value
        HAVING (v.value #>> '{{}}')::numeric IS DISTINCT FROM count(e.event_id)
        """).format(
            day=_FRAGMENTS["value_day"],
            types=sql.Literal(list(event_types)),
            window=sql.Literal(COUNT_WINDOW_DAYS),
            feature=sql.Literal(feature),
            until=sql.Placeholder(f"{feature}_exact_until"),
        ),
    )


FEATURE_RULES: tuple[Rule, ...] = (
    Rule(
        "insurance_tier_is_the_payers_tier",
        "every insurance_tier value (before a planted drift) is the tier of the patient's "
        "payer: commercial high, medicare medium, medicaid and uninsured low",
        sql.SQL("""
        SELECT v.feature_value_id, j.patient_id, j.insurance_type, v.value #>> '{{}}' AS tier
        FROM feature_values v JOIN features f USING (feature_id)
        JOIN patient_journeys j ON j.patient_id = v.entity_values ->> 'patient_id'
        WHERE f.name = 'insurance_tier'
          AND v.event_timestamp < %(insurance_tier_exact_until)s::timestamptz
          AND v.value #>> '{{}}' IS DISTINCT FROM {tier}
        """).format(tier=_TIER_OF_PAYER),
    ),
    _counts_rule("trx_30d", ("prescription", "refill"), "fills (first fills and refills)"),
    _counts_rule("nrx_30d", ("prescription",), "first fills"),
    _rule(
        "feature_value_keys_agree",
        "a feature value's join keys agree: a patient's brand and hcp_id are the journey's, a "
        "brand feature's brand is its HCP's brand_focus",
        """
        SELECT v.feature_value_id, v.entity_values::text
        FROM feature_values v JOIN features f USING (feature_id)
        LEFT JOIN patient_journeys j ON j.patient_id = v.entity_values ->> 'patient_id'
        LEFT JOIN hcp_profiles h ON h.hcp_id = v.entity_values ->> 'hcp_id'
        WHERE (f.entity_keys = 'patient_id'
               AND (j.patient_id IS NULL OR j.hcp_id IS DISTINCT FROM v.entity_values ->> 'hcp_id'
                    OR j.brand IS DISTINCT FROM v.entity_values ->> 'brand'))
           OR (f.entity_keys = 'brand'
               AND (h.hcp_id IS NULL
                    OR h.brand_focus IS DISTINCT FROM v.entity_values ->> 'brand'))
        """,
    ),
)
RULES = (*RULES, *FEATURE_RULES)
RULE_NAMES = tuple(r.name for r in RULES)


def exact_until(scenario: Scenario) -> dict[str, str]:
    """<feature>_exact_until of each EXACT_FEATURES feature: the start of its planted drift,
    '-infinity' when it is seasonal (every value moves with the season), else 'infinity'."""
    seasonal = {s.feature for s in scenario.seasonal}
    starts = {d.feature: d.start for d in scenario.drifts}
    params = {}
    for feature in EXACT_FEATURES:
        if feature in seasonal:
            until = "-infinity"
        elif feature in starts:
            until = f"{starts[feature].isoformat()} 00:00:00+00"
        else:
            until = "infinity"
        params[f"{feature}_exact_until"] = until
    return params


def violations(
    conn: psycopg.Connection, scenario: Scenario, limit: int = 5
) -> dict[str, list[tuple]]:
    """Up to `limit` violating rows of each rule, by rule name (empty lists when coherent)."""
    values = {**split_params(scenario), **exact_until(scenario), "limit": limit}
    return {
        rule.name: conn.execute(
            sql.SQL("SELECT * FROM ({}) v LIMIT %(limit)s").format(rule.query), values
        ).fetchall()
        for rule in RULES
    }
