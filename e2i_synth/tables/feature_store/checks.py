"""Checks of the feature store tables, in PostgreSQL, all blocking.

Keys, foreign keys, the unique (feature, entity, instant) key and a feature keyed by its
group's entity key are constraints (reported by constraints_present). The rule checks here read
feature_values against the rest of the database, in two passes: each row beside its feature and
entity (the entity exists, the value fits its feature, freshness_status and data_split
recompute from the stored row), and each HCP's and patient's first observation against its
source row. The queries are functions of the scenario, so tests can run them on a database they
have tampered with (pipeline.rule_checks.count_violations).
"""

from datetime import UTC, datetime

from psycopg import sql

from e2i_synth.core.scenario import Scenario
from e2i_synth.core.vocabulary import FEATURE_GROUPS, FEATURES
from e2i_synth.pipeline.rule_checks import row_rules, rule_check
from e2i_synth.pipeline.split_sql import split_params, split_sql, utc_day_sql
from e2i_synth.pipeline.sql_arithmetic import SqlExpr
from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.tables import TABLES
from e2i_synth.tables.feature_store import feature_values as feature_values_generator
from e2i_synth.tables.feature_store.catalog import INSURANCE_TIERS
from e2i_synth.tables.feature_store.feature_values import as_of, tolerance
from e2i_synth.tables.feature_store.feature_values_model import STALE_WINDOWS
from e2i_synth.world.initiation import month_after, start_shocks

VALUE_RULES = {
    "wrong_entity_key": "entity_values names the feature's entity key",
    "unknown_hcp_id": "an HCP feature's entity is an existing HCP",
    "unknown_patient_id": "a patient feature's entity is an existing patient",
    "unknown_brand": "a brand feature's entity is a scenario brand",
    "wrong_type": "values have their feature's JSON type",
    "not_integral": "values of int features are whole",
    "out_of_range": "values lie in [min_value, max_value]",
    "unknown_category": "categories are in allowed_values",
    "freshness_status": "freshness_status recomputes from event_timestamp and the feature's "
    "window at the end of the scenario's reference date (fresh <= 1, stale <= "
    f"{STALE_WINDOWS} windows)",
    "data_split_of_date": "every row carries the data_split of its UTC date",
}

_NUMBER = sql.SQL(
    "CASE WHEN jsonb_typeof(fv.value) = 'number' THEN (fv.value #>> '{}')::numeric END"
)
_AGE = sql.SQL("%(as_of)s::timestamptz - fv.event_timestamp")


def value_rules_query() -> sql.Composable:
    """Rows of feature_values breaking a VALUE_RULES rule, in one scan beside their feature,
    HCP and patient."""
    source = sql.SQL(
        """feature_values fv
        JOIN features f USING (feature_id)
        LEFT JOIN hcp_profiles h
            ON f.entity_keys = 'hcp_id' AND h.hcp_id = fv.entity_values ->> 'hcp_id'
        LEFT JOIN patient_journeys p
            ON f.entity_keys = 'patient_id' AND p.patient_id = fv.entity_values ->> 'patient_id'
        """
    )
    expected_freshness = sql.SQL(
        "CASE WHEN {age} <= make_interval(hours => f.freshness_window_hours) THEN 'fresh' "
        "WHEN {age} <= make_interval(hours => %(stale)s * f.freshness_window_hours) "
        "THEN 'stale' ELSE 'expired' END"
    ).format(age=_AGE)
    day = utc_day_sql(sql.SQL("fv.event_timestamp"))
    return row_rules(
        source,
        ["fv.feature_value_id", "f.name AS feature", "fv.entity_values::text", "fv.value::text"],
        {
            "wrong_entity_key": sql.SQL("NOT fv.entity_values ? f.entity_keys"),
            "unknown_hcp_id": sql.SQL("f.entity_keys = 'hcp_id' AND h.hcp_id IS NULL"),
            "unknown_patient_id": sql.SQL("f.entity_keys = 'patient_id' AND p.patient_id IS NULL"),
            "unknown_brand": sql.SQL(
                "f.entity_keys = 'brand' "
                "AND NOT coalesce(fv.entity_values ->> 'brand' = ANY(%(brands)s), false)"
            ),
            "wrong_type": sql.SQL(
                "jsonb_typeof(fv.value) <> CASE f.value_type WHEN 'bool' THEN 'boolean' "
                "WHEN 'category' THEN 'string' ELSE 'number' END"
            ),
            "not_integral": sql.SQL("f.value_type = 'int' AND {n} %% 1 <> 0").format(n=_NUMBER),
            "out_of_range": sql.SQL("{n} < f.min_value OR {n} > f.max_value").format(n=_NUMBER),
            "unknown_category": sql.SQL(
                "f.value_type = 'category' AND NOT f.allowed_values @> jsonb_build_array(fv.value)"
            ),
            "freshness_status": sql.SQL("fv.freshness_status <> {}").format(expected_freshness),
            "data_split_of_date": sql.SQL("fv.data_split <> {}").format(split_sql(day)),
        },
    )


def value_rules_params(scenario: Scenario) -> dict[str, object]:
    return {
        "brands": list(scenario.brands),
        "as_of": as_of(scenario),
        "stale": STALE_WINDOWS,
        **split_params(scenario),
    }


def _expected_sources(
    scenario: Scenario,
) -> tuple[dict[str, sql.Composable], dict[str, sql.Composable], dict[str, sql.Composable]]:
    """Source value of each HCP and patient feature as SQL over hcp_profiles h and
    patient_journeys p: numbers, texts (categories, booleans), and upper bounds (a feature
    whose source is not in one row). The causal features are CausalModel's own formulas,
    rendered as SQL (pipeline.sql_arithmetic)."""
    c = scenario.causal
    lit = sql.Literal
    numbers = {
        name: sql.SQL(expr)
        for name, expr in {
            "years_experience": "h.years_experience",
            "patient_volume_monthly": "h.patient_volume_monthly",
            "disease_severity": "p.disease_severity",
            "age_at_diagnosis": "p.age_at_diagnosis",
            "comorbidity_count": "p.comorbidity_count",
            "prior_treatment_count": "p.prior_treatment_count",
            "engagement_score": "p.engagement_score",
        }.items()
    }
    severity, academic = SqlExpr("p.disease_severity"), SqlExpr("p.academic_hcp::int")
    expected = c.expected_engagement(severity, academic)
    propensity = c.treatment_probability(expected, severity, academic)
    initiation = c.treatment_probability(SqlExpr("p.engagement_score"), severity, academic)
    factor = _start_factor_sql(scenario)

    def probability(expr: SqlExpr) -> sql.Composable:
        return sql.SQL("least(1.0, greatest(0.0, {})) * {}").format(expr.sql, factor)

    numbers["treatment_propensity"] = probability(propensity)
    # Success needs initiation first (the persistence factor is the world's stop hazard).
    bounds = {"outcome_probability": probability(initiation)}
    tiers = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(lit(payer), lit(tier))
        for payer, tier in INSURANCE_TIERS.items()
    )
    texts = {
        "specialty_encoded": sql.SQL("h.specialty"),
        "academic_flag": sql.SQL("h.academic_hcp::text"),
        "insurance_tier": sql.SQL("CASE p.insurance_type {} END").format(tiers),
    }
    return numbers, texts, bounds


def _start_factor_sql(scenario: Scenario) -> sql.Composable:
    """world.initiation.start_factor over patient_journeys p, as SQL: the chance a start goes
    ahead under the start shock the patient's brand, region and diagnosis date fall in."""
    cases = []
    for gap in start_shocks(scenario):
        until = sql.SQL("")
        if gap.end_month is not None:
            until = sql.SQL(" AND p.journey_start_date < {}").format(
                sql.Literal(month_after(gap.end_month))
            )
        cases.append(
            sql.SQL(
                "WHEN p.brand = {} AND p.region = {} AND p.journey_start_date >= {}{} THEN {}"
            ).format(
                sql.Literal(gap.brand),
                sql.Literal(gap.region),
                sql.Literal(gap.start_month),
                until,
                sql.Literal(gap.achievement_rate),
            )
        )
    if not cases:
        return sql.SQL("1.0")
    return sql.SQL("(CASE {} ELSE 1.0 END)").format(sql.SQL(" ").join(cases))


# Features keyed by an HCP or a patient: each has a source row to agree with.
SOURCED_FEATURES = tuple(
    n for n, (group, _) in FEATURES.items() if FEATURE_GROUPS[group][0] != "brand"
)
SOURCE_RULES = {
    **{
        name: f"each entity's first observation of {name} (before any planted drift) is "
        "within the feature's noise tolerance of its source row"
        + (" (at most it: success needs initiation)" if name == "outcome_probability" else "")
        for name in SOURCED_FEATURES
    },
    "feature_not_observed": "every HCP and patient feature is observed",
}


def source_agreement_query(scenario: Scenario) -> sql.Composable:
    """First observations of each (feature, entity) before the feature's planted drift starts
    (from then on values move away from their source on purpose) that are not within the
    feature's noise tolerance of the entity's source row (feature_values.tolerance), the rule
    named by the feature; and sourced features never observed."""
    numbers, texts, bounds = _expected_sources(scenario)
    cases = []
    for name, bound in bounds.items():
        absolute, _ = tolerance(name)
        cases.append(
            sql.SQL(
                "WHEN {name} THEN CASE WHEN jsonb_typeof(o.value) = 'number' THEN "
                "(o.value #>> '{{}}')::double precision <= ({b}) + {a} ELSE false END"
            ).format(name=sql.Literal(name), b=bound, a=sql.Literal(absolute))
        )
    for name, expected in numbers.items():
        absolute, relative = tolerance(name)
        cases.append(
            sql.SQL(
                "WHEN {name} THEN CASE WHEN jsonb_typeof(o.value) = 'number' THEN "
                "abs((o.value #>> '{{}}')::double precision - ({e})) <= {a} + {r} * abs({e}) "
                "ELSE false END"
            ).format(
                name=sql.Literal(name), e=expected, a=sql.Literal(absolute), r=sql.Literal(relative)
            )
        )
    for name, expected in texts.items():
        cases.append(
            sql.SQL("WHEN {name} THEN o.value #>> '{{}}' = ({e})").format(
                name=sql.Literal(name), e=expected
            )
        )
    return sql.SQL(
        """WITH drift(name, start) AS (
            SELECT * FROM unnest(%(names)s::text[], %(starts)s::timestamptz[])
        ), first_obs AS MATERIALIZED (
            SELECT DISTINCT ON (fv.feature_id, fv.entity_values)
                   f.name, f.entity_keys, fv.entity_values ->> f.entity_keys AS entity_id, fv.value
            FROM feature_values fv
            JOIN features f USING (feature_id)
            LEFT JOIN drift d ON d.name = f.name
            WHERE f.entity_keys IN ('hcp_id', 'patient_id')
              AND (d.start IS NULL OR fv.event_timestamp < d.start)
            ORDER BY fv.feature_id, fv.entity_values, fv.event_timestamp
        )
        SELECT o.name AS rule, o.entity_id, o.value::text
        FROM first_obs o
        LEFT JOIN hcp_profiles h ON o.entity_keys = 'hcp_id' AND h.hcp_id = o.entity_id
        LEFT JOIN patient_journeys p
            ON o.entity_keys = 'patient_id' AND p.patient_id = o.entity_id
        WHERE NOT coalesce(CASE o.name {cases} END, false)
        UNION ALL
        SELECT 'feature_not_observed', s.name, NULL
        FROM unnest(%(sourced)s::text[]) AS s(name)
        WHERE NOT EXISTS (SELECT 1 FROM first_obs o WHERE o.name = s.name)"""
    ).format(cases=sql.SQL(" ").join(cases))


def source_agreement_params(scenario: Scenario) -> dict[str, object]:
    return {
        "names": [d.feature for d in scenario.drifts],
        "starts": [
            datetime(d.start.year, d.start.month, d.start.day, tzinfo=UTC) for d in scenario.drifts
        ],
        "sourced": list(SOURCED_FEATURES),
    }


value_rules = rule_check(
    "feature_values", "value_rules", VALUE_RULES, value_rules_query(), params=value_rules_params
)
source_agreement = rule_check(
    "feature_values",
    "source_agreement",
    SOURCE_RULES,
    source_agreement_query,
    params=source_agreement_params,
)

FEATURE_STORE_CHECKS = [
    *table_checks(TABLES["feature_groups"], expected=lambda s: len(FEATURE_GROUPS)),
    *table_checks(TABLES["features"], expected=lambda s: len(FEATURES)),
    # partitioned: the last load's window is counted, every day of it (live after end_date)
    *table_checks(TABLES["feature_values"], in_window=feature_values_generator.rows_in_window),
    value_rules,
    source_agreement,
]
