"""Checks of the feature store tables, in PostgreSQL, all blocking.

Besides the table checks (model, keys, row counts), feature_values is checked against the
rest of the database: its key is unique, its entities exist, its values fit their feature,
freshness_status and data_split recompute from the stored rows, and each HCP's and patient's
first observation agrees with its source row. The queries are plain functions of a connection
(and the scenario), so tests can run them on a database they have tampered with.
"""

from datetime import UTC, datetime

import dagster as dg
import psycopg
from psycopg import sql

from e2i_synth.core.scenario import ENGAGEMENT_MAX, Scenario
from e2i_synth.core.split import split_cutoffs
from e2i_synth.core.vocabulary import DATA_SPLITS, FEATURE_GROUPS, FEATURES
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.tables import TABLES
from e2i_synth.tables.feature_store import feature_values as feature_values_generator
from e2i_synth.tables.feature_store.catalog import INSURANCE_TIERS
from e2i_synth.tables.feature_store.feature_values import as_of, tolerance
from e2i_synth.tables.feature_store.feature_values_model import STALE_WINDOWS

_DUPLICATE_KEYS = """
SELECT count(*), coalesce(sum(n - 1), 0)::bigint FROM (
    SELECT count(*) AS n FROM feature_values
    GROUP BY feature_id, entity_values, event_timestamp HAVING count(*) > 1) d
"""


def duplicate_keys(conn: psycopg.Connection) -> dict[str, int]:
    """Keys (feature_id, entity_values, event_timestamp) held by more than one row."""
    keys, extra_rows = conn.execute(_DUPLICATE_KEYS).fetchone()
    return {"duplicated_keys": keys, "extra_rows": extra_rows}


_ENTITY_REFERENCES = """
SELECT
    count(*) FILTER (WHERE NOT fv.entity_values ? f.entity_keys) AS wrong_entity_key,
    count(*) FILTER (WHERE f.entity_keys = 'hcp_id' AND h.hcp_id IS NULL) AS unknown_hcp_id,
    count(*) FILTER (WHERE f.entity_keys = 'patient_id' AND p.patient_id IS NULL)
        AS unknown_patient_id,
    count(*) FILTER (WHERE f.entity_keys = 'brand'
                     AND NOT coalesce(fv.entity_values ->> 'brand' = ANY(%(brands)s), false))
        AS unknown_brand
FROM feature_values fv
JOIN features f USING (feature_id)
LEFT JOIN hcp_profiles h
    ON f.entity_keys = 'hcp_id' AND h.hcp_id = fv.entity_values ->> 'hcp_id'
LEFT JOIN patient_journeys p
    ON f.entity_keys = 'patient_id' AND p.patient_id = fv.entity_values ->> 'patient_id'
"""


def entity_reference_violations(conn: psycopg.Connection, scenario: Scenario) -> dict[str, int]:
    """Rows keyed by another entity than their feature's, or by an HCP, patient or brand that
    does not exist."""
    row = conn.execute(_ENTITY_REFERENCES, {"brands": list(scenario.brands)}).fetchone()
    return dict(
        zip(
            ("wrong_entity_key", "unknown_hcp_id", "unknown_patient_id", "unknown_brand"),
            row,
            strict=True,
        )
    )


_VALUE_VIOLATIONS = """
SELECT name,
    count(*) FILTER (WHERE json_type <> CASE value_type WHEN 'bool' THEN 'boolean'
                     WHEN 'category' THEN 'string' ELSE 'number' END) AS wrong_type,
    count(*) FILTER (WHERE value_type = 'int' AND number % 1 <> 0) AS not_integral,
    count(*) FILTER (WHERE number < min_value OR number > max_value) AS out_of_range,
    count(*) FILTER (WHERE value_type = 'category'
                     AND NOT allowed_values @> jsonb_build_array(value)) AS unknown_category
FROM (
    SELECT f.name, f.value_type, f.min_value, f.max_value, f.allowed_values, fv.value,
           jsonb_typeof(fv.value) AS json_type,
           CASE WHEN jsonb_typeof(fv.value) = 'number' THEN (fv.value #>> '{}')::numeric END
               AS number
    FROM feature_values fv JOIN features f USING (feature_id)) v
GROUP BY name
ORDER BY name
"""


def value_violations(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    """Per feature with any: values of the wrong JSON type, non-integral ints, values outside
    the feature's range, categories outside its allowed_values."""
    found = {}
    for name, *counts in conn.execute(_VALUE_VIOLATIONS):
        kinds = dict(
            zip(
                ("wrong_type", "not_integral", "out_of_range", "unknown_category"),
                counts,
                strict=True,
            )
        )
        if any(kinds.values()):
            found[name] = kinds
    return found


_FRESHNESS = """
SELECT freshness_status, expected, count(*) FROM (
    SELECT fv.freshness_status,
           CASE WHEN %(as_of)s::timestamptz - fv.event_timestamp
                     <= make_interval(hours => f.freshness_window_hours) THEN 'fresh'
                WHEN %(as_of)s::timestamptz - fv.event_timestamp
                     <= make_interval(hours => %(stale)s * f.freshness_window_hours) THEN 'stale'
                ELSE 'expired' END AS expected
    FROM feature_values fv JOIN features f USING (feature_id)) x
WHERE freshness_status <> expected
GROUP BY 1, 2
ORDER BY 1, 2
"""


def freshness_mismatches(conn: psycopg.Connection, scenario: Scenario) -> dict[str, int]:
    """'stored -> recomputed': rows whose freshness_status differs from their age at the end of
    the reference date against their feature's window (fresh <= 1, stale <= 3 windows)."""
    params = {"as_of": as_of(scenario), "stale": STALE_WINDOWS}
    return {f"{s} -> {e}": n for s, e, n in conn.execute(_FRESHNESS, params)}


def data_split_mismatches(conn: psycopg.Connection, scenario: Scenario) -> dict[str, int]:
    """Patient rows, and other rows, whose split is not that of their event date
    (core.split.split_cutoffs)."""
    by_date = sql.SQL(" ").join(
        sql.SQL("WHEN (fv.event_timestamp AT TIME ZONE 'UTC')::date < {} THEN {}").format(
            sql.Literal(cutoff), sql.Literal(split)
        )
        for cutoff, split in zip(split_cutoffs(scenario), DATA_SPLITS, strict=False)
    )
    query = sql.SQL(
        """SELECT
            count(*) FILTER (WHERE f.entity_keys = 'patient_id'
                             AND fv.data_split <> CASE {by_date} ELSE {last} END),
            count(*) FILTER (WHERE f.entity_keys <> 'patient_id'
                             AND fv.data_split <> CASE {by_date} ELSE {last} END)
        FROM feature_values fv
        JOIN features f USING (feature_id)
        LEFT JOIN patient_journeys p
            ON f.entity_keys = 'patient_id' AND p.patient_id = fv.entity_values ->> 'patient_id'
        """
    ).format(by_date=by_date, last=sql.Literal(DATA_SPLITS[-1]))
    patients, others = conn.execute(query).fetchone()
    return {"patient_rows": patients, "other_rows": others}


def _expected_sources(
    scenario: Scenario,
) -> tuple[dict[str, sql.Composable], dict[str, sql.Composable]]:
    """Source value of each HCP and patient feature as SQL over hcp_profiles h and
    patient_journeys p: numbers, and texts (categories, booleans)."""
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
    numbers["treatment_propensity"] = sql.SQL(
        "least(1.0, greatest(0.0, ({} + {} * p.disease_severity + {} * p.academic_hcp::int) / {}))"
    ).format(
        lit(float(c.engagement_intercept)),
        lit(float(c.severity_on_engagement)),
        lit(float(c.academic_on_engagement)),
        lit(float(ENGAGEMENT_MAX)),
    )
    numbers["outcome_probability"] = sql.SQL(
        "least(1.0, greatest(0.0, {} + {} * p.engagement_score + {} * p.disease_severity"
        " + {} * p.academic_hcp::int))"
    ).format(
        lit(float(c.baseline_probability)),
        lit(float(c.true_ate)),
        lit(float(c.severity_on_treatment)),
        lit(float(c.academic_on_treatment)),
    )
    tiers = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(lit(payer), lit(tier))
        for payer, tier in INSURANCE_TIERS.items()
    )
    texts = {
        "specialty_encoded": sql.SQL("h.specialty"),
        "academic_flag": sql.SQL("h.academic_hcp::text"),
        "insurance_tier": sql.SQL("CASE p.insurance_type {} END").format(tiers),
    }
    return numbers, texts


def source_disagreements(conn: psycopg.Connection, scenario: Scenario) -> dict[str, dict[str, int]]:
    """Per HCP and patient feature: first observations compared, and those not within the
    feature's noise tolerance of the entity's source row (generators.feature_values.tolerance).

    The first observation of each (feature, entity) before the feature's planted drift starts
    is compared: from then on values move away from their source on purpose.
    """
    numbers, texts = _expected_sources(scenario)
    cases = []
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
    query = sql.SQL(
        """WITH drift(name, start) AS (
            SELECT * FROM unnest(%(names)s::text[], %(starts)s::timestamptz[])
        ), first_obs AS (
            SELECT DISTINCT ON (fv.feature_id, fv.entity_values)
                   f.name, f.entity_keys, fv.entity_values ->> f.entity_keys AS entity_id, fv.value
            FROM feature_values fv
            JOIN features f USING (feature_id)
            LEFT JOIN drift d ON d.name = f.name
            WHERE f.entity_keys IN ('hcp_id', 'patient_id')
              AND (d.start IS NULL OR fv.event_timestamp < d.start)
            ORDER BY fv.feature_id, fv.entity_values, fv.event_timestamp
        )
        SELECT o.name, count(*),
               count(*) FILTER (WHERE NOT coalesce(CASE o.name {cases} END, false))
        FROM first_obs o
        LEFT JOIN hcp_profiles h ON o.entity_keys = 'hcp_id' AND h.hcp_id = o.entity_id
        LEFT JOIN patient_journeys p
            ON o.entity_keys = 'patient_id' AND p.patient_id = o.entity_id
        GROUP BY o.name
        ORDER BY o.name"""
    ).format(cases=sql.SQL(" ").join(cases))
    params = {
        "names": [d.feature for d in scenario.drifts],
        "starts": [
            datetime(d.start.year, d.start.month, d.start.day, tzinfo=UTC) for d in scenario.drifts
        ],
    }
    return {
        name: {"compared": compared, "disagreeing": disagreeing}
        for name, compared, disagreeing in conn.execute(query, params)
    }


_GROUP_MISMATCHES = """
SELECT f.name FROM features f JOIN feature_groups g USING (feature_group_id)
WHERE f.entity_keys <> g.entity_key ORDER BY f.name
"""


@dg.asset_check(
    asset="features",
    name="entity_key_matches_group",
    blocking=True,
    description="every feature is keyed by its group's entity key",
)
def entity_key_matches_group(database: Database) -> dg.AssetCheckResult:
    with database.connect() as conn:
        names = [r[0] for r in conn.execute(_GROUP_MISMATCHES)]
    return dg.AssetCheckResult(
        passed=not names, metadata={"mismatched_features": dg.MetadataValue.json(names)}
    )


@dg.asset_check(
    asset="feature_values",
    name="feature_key_unique",
    blocking=True,
    description="(feature_id, entity_values, event_timestamp) is unique: no value is lost to "
    "a duplicate key",
)
def feature_key_unique(database: Database) -> dg.AssetCheckResult:
    with database.connect() as conn:
        found = duplicate_keys(conn)
    return dg.AssetCheckResult(passed=found["duplicated_keys"] == 0, metadata=found)


@dg.asset_check(
    asset="feature_values",
    name="entity_references",
    blocking=True,
    description="entity_values names the feature's entity key and an existing HCP, patient or "
    "scenario brand",
)
def entity_references(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    with database.connect() as conn:
        found = entity_reference_violations(conn, scenario.load())
    return dg.AssetCheckResult(passed=not any(found.values()), metadata=found)


@dg.asset_check(
    asset="feature_values",
    name="values_match_features",
    blocking=True,
    description="values have their feature's JSON type, are whole for int features, lie in "
    "[min_value, max_value] and in allowed_values",
)
def values_match_features(database: Database) -> dg.AssetCheckResult:
    with database.connect() as conn:
        found = value_violations(conn)
    return dg.AssetCheckResult(
        passed=not found, metadata={"violations": dg.MetadataValue.json(found)}
    )


@dg.asset_check(
    asset="feature_values",
    name="freshness_status",
    blocking=True,
    description="freshness_status recomputes from event_timestamp and the feature's window at "
    "the end of the scenario's reference date",
)
def freshness_status(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    with database.connect() as conn:
        found = freshness_mismatches(conn, scenario.load())
    return dg.AssetCheckResult(
        passed=not found, metadata={"mismatches": dg.MetadataValue.json(found)}
    )


@dg.asset_check(
    asset="feature_values",
    name="data_split",
    blocking=True,
    description="patient rows carry their patient's split, other rows the split of their date",
)
def data_split(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    with database.connect() as conn:
        found = data_split_mismatches(conn, scenario.load())
    return dg.AssetCheckResult(passed=not any(found.values()), metadata=found)


@dg.asset_check(
    asset="feature_values",
    name="source_agreement",
    blocking=True,
    description="each HCP's and patient's first observation of a feature (before any planted "
    "drift) is within the feature's noise tolerance of its source row",
)
def source_agreement(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    with database.connect() as conn:
        found = source_disagreements(conn, scenario.load())
    expected = {n for n, (group, _) in FEATURES.items() if FEATURE_GROUPS[group][0] != "brand"}
    return dg.AssetCheckResult(
        passed=set(found) == expected and not any(v["disagreeing"] for v in found.values()),
        metadata={"features": dg.MetadataValue.json(found)},
    )


FEATURE_STORE_CHECKS = [
    *table_checks(TABLES["feature_groups"], expected=lambda s: len(FEATURE_GROUPS)),
    *table_checks(TABLES["features"], expected=lambda s: len(FEATURES)),
    # partitioned: the last load's window is counted, every day of it (live after end_date)
    *table_checks(TABLES["feature_values"], in_window=feature_values_generator.rows_in_window),
    entity_key_matches_group,
    feature_key_unique,
    entity_references,
    values_match_features,
    freshness_status,
    data_split,
    source_agreement,
]
