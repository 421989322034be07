"""Checks of treatment_events, ml_predictions and triggers, run as SQL in PostgreSQL.

Besides the checks every table gets, blocking rule checks guard what downstream agents rely
on: events lie inside their journey and agree with treatment_initiated / days_to_treatment,
every row carries its patient's data_split (HCP rows: the split of their date), trigger
lifecycles are ordered and match their status, and prediction scores are in range with a
treatment_propensity AUC that is informative but not perfect. Each rule is a query returning
the violating rows; their counts per rule, and a few of them, go to the check's metadata.
"""

from datetime import UTC, datetime, time, timedelta

import dagster as dg
import polars as pl
import psycopg
from psycopg import sql

from e2i_synth.core.scenario import Scenario
from e2i_synth.core.split import split_cutoffs
from e2i_synth.core.vocabulary import DATA_SPLITS
from e2i_synth.db.metadata import markdown_table
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.tables import TABLES
from e2i_synth.tables.activity import ml_predictions as predictions_generator
from e2i_synth.tables.activity.treatment_events_model import EVENT_TYPES, TREATMENT_EVENT_TYPES

AUC_MIN = 0.55
AUC_MAX = 0.95
EXAMPLES_PER_RULE = 5


def _literals(values: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Literal, values))


def _split_of(column: str) -> str:
    """SQL for the data_split of a date column, from the %(cutoff_n)s parameters."""
    cases = " ".join(
        f"WHEN {column} < %(cutoff_{i})s THEN '{split}'" for i, split in enumerate(DATA_SPLITS[:-1])
    )
    return f"CASE {cases} ELSE '{DATA_SPLITS[-1]}' END"


def _params(scenario: Scenario) -> dict[str, object]:
    """Scenario window as UTC timestamps [window_start, window_end), and the split cutoffs."""
    params: dict[str, object] = {
        "window_start": datetime.combine(scenario.start_date, time(), UTC),
        "window_end": datetime.combine(scenario.end_date + timedelta(days=1), time(), UTC),
    }
    params.update({f"cutoff_{i}": c for i, c in enumerate(split_cutoffs(scenario))})
    return params


def _rules_result(
    conn: psycopg.Connection, rules: dict[str, sql.Composable], params: dict[str, object]
) -> dg.AssetCheckResult:
    """Passed when no rule query returns a row; counts and examples of violations otherwise."""
    counts: dict[str, int] = {}
    examples: list[tuple[str, str]] = []
    for rule, query in rules.items():
        rows = conn.execute(query, params).fetchall()
        counts[rule] = len(rows)
        examples.extend((rule, " | ".join(map(str, row))) for row in rows[:EXAMPLES_PER_RULE])
    metadata: dict[str, object] = {
        "violation_count": sum(counts.values()),
        "violations_by_rule": dg.MetadataValue.json(counts),
    }
    if examples:
        frame = pl.DataFrame(examples, schema=["rule", "row"], orient="row")
        metadata["examples"] = dg.MetadataValue.md(markdown_table(frame, 50))
    return dg.AssetCheckResult(passed=not any(counts.values()), metadata=metadata)


_IN_JOURNEY = """
SELECT e.event_id, e.patient_id, e.event_type, e.event_date
FROM treatment_events e JOIN patient_journeys j USING (patient_id)
WHERE e.event_date NOT BETWEEN j.journey_start_date AND j.journey_end_date
   OR e.days_from_diagnosis <> e.event_date - j.journey_start_date
"""
_PATIENT_ATTRIBUTES = """
SELECT e.event_id, e.patient_id, e.hcp_id, e.brand, e.insurance_type
FROM treatment_events e JOIN patient_journeys j USING (patient_id)
WHERE (e.hcp_id, e.brand, e.insurance_type) <> (j.hcp_id, j.brand, j.insurance_type)
"""
_ONE_DIAGNOSIS = """
SELECT j.patient_id, count(e.event_id) AS diagnoses, min(e.event_date) AS first_diagnosis
FROM patient_journeys j
LEFT JOIN treatment_events e ON e.patient_id = j.patient_id AND e.event_type = 'diagnosis'
GROUP BY j.patient_id, j.journey_start_date
HAVING count(e.event_id) <> 1 OR min(e.event_date) <> j.journey_start_date
"""
_TREATMENT_WITHOUT_INITIATION = """
SELECT e.event_id, e.patient_id, e.event_type
FROM treatment_events e JOIN patient_journeys j USING (patient_id)
WHERE NOT j.treatment_initiated AND e.event_type IN ({treatment_types})
"""
_FIRST_PRESCRIPTION = """
SELECT j.patient_id, j.journey_start_date + j.days_to_treatment AS expected,
       min(e.event_date) AS first_prescription
FROM patient_journeys j
LEFT JOIN treatment_events e ON e.patient_id = j.patient_id AND e.event_type = 'prescription'
WHERE j.treatment_initiated
GROUP BY j.patient_id, j.journey_start_date, j.days_to_treatment
HAVING min(e.event_date) IS DISTINCT FROM j.journey_start_date + j.days_to_treatment
"""
_REFILL_AFTER_PRESCRIPTION = """
SELECT r.event_id, r.patient_id, r.event_date, f.first_prescription
FROM treatment_events r
LEFT JOIN (SELECT patient_id, min(event_date) AS first_prescription FROM treatment_events
           WHERE event_type = 'prescription' GROUP BY patient_id) f USING (patient_id)
WHERE r.event_type = 'refill'
  AND (f.first_prescription IS NULL OR r.event_date <= f.first_prescription)
"""
_DISCONTINUATION_LAST = """
SELECT d.event_id, d.patient_id, d.event_date
FROM treatment_events d
WHERE d.event_type = 'discontinuation' AND EXISTS (
    SELECT 1 FROM treatment_events t
    WHERE t.patient_id = d.patient_id AND t.event_id <> d.event_id
      AND t.event_type IN ({treatment_types}) AND t.event_date >= d.event_date)
"""
_NO_DUPLICATES = """
SELECT patient_id, event_date, event_type, count(*) AS events
FROM treatment_events GROUP BY patient_id, event_date, event_type HAVING count(*) > 1
"""
_IDS_IN_ORDER = """
SELECT event_id, patient_id, event_date, event_type FROM (
    SELECT event_id, patient_id, event_date, event_type,
           row_number() OVER (ORDER BY event_id COLLATE "C") AS by_id,
           row_number() OVER (ORDER BY patient_id COLLATE "C", event_date,
                              array_position(ARRAY[{event_types}], event_type)) AS by_event
    FROM treatment_events) numbered
WHERE by_id <> by_event
"""


@dg.asset_check(
    asset="treatment_events",
    name="journey_rules",
    blocking=True,
    description="events lie inside their journey with the patient's HCP, brand and payer; one "
    "diagnosis on journey_start_date; no treatment event unless treatment_initiated; the first "
    "prescription on journey_start_date + days_to_treatment, refills after it; a "
    "discontinuation is the last treatment event; no duplicate (patient, date, type); "
    "event_id follows (patient, date, type)",
)
def treatment_events_journey_rules(database: Database) -> dg.AssetCheckResult:
    fragments = {
        "treatment_types": _literals(TREATMENT_EVENT_TYPES),
        "event_types": _literals(EVENT_TYPES),
    }
    rules = {
        name: sql.SQL(query).format(**fragments)
        for name, query in {
            "event_inside_journey": _IN_JOURNEY,
            "patient_hcp_brand_payer": _PATIENT_ATTRIBUTES,
            "one_diagnosis_at_journey_start": _ONE_DIAGNOSIS,
            "no_treatment_unless_initiated": _TREATMENT_WITHOUT_INITIATION,
            "first_prescription_at_days_to_treatment": _FIRST_PRESCRIPTION,
            "refill_after_first_prescription": _REFILL_AFTER_PRESCRIPTION,
            "discontinuation_is_last_treatment_event": _DISCONTINUATION_LAST,
            "no_duplicate_patient_date_type": _NO_DUPLICATES,
            "event_id_in_event_order": _IDS_IN_ORDER,
        }.items()
    }
    with database.connect() as conn:
        return _rules_result(conn, rules, {})


def data_split_check(table: str, key: str, day: str) -> dg.AssetChecksDefinition:
    """Every row carries the split of its own date (`day`: SQL of the row's UTC date)."""
    # Named as test_reliability's reviewed interpolation (key, table, hcp_rule); it now holds
    # for every row, a patient's too.
    hcp_rule = f"x.data_split <> {_split_of(day)}"
    query = sql.SQL(f"""SELECT x.{key}, x.data_split FROM {table} x WHERE {hcp_rule}""")

    @dg.asset_check(
        asset=table,
        name="data_split_matches",
        blocking=True,
        description=f"data_split of each {table} row is the split of its own date",
    )
    def _check(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
        with database.connect() as conn:
            return _rules_result(conn, {"data_split_matches": query}, _params(scenario.load()))

    return _check


_SCORES = """
SELECT prediction_id, prediction_type, score, threshold, predicted_label
FROM ml_predictions
WHERE score NOT BETWEEN 0 AND 1 OR predicted_label <> (score >= threshold)
"""
_PREDICTION_IN_WINDOW = """
SELECT prediction_id, prediction_timestamp FROM ml_predictions
WHERE prediction_timestamp < %(window_start)s OR prediction_timestamp >= %(window_end)s
"""
_PREDICTION_IN_JOURNEY = """
SELECT p.prediction_id, p.patient_id, p.prediction_timestamp, p.hcp_id, p.brand
FROM ml_predictions p JOIN patient_journeys j USING (patient_id)
WHERE (p.prediction_timestamp AT TIME ZONE 'UTC')::date
          NOT BETWEEN j.journey_start_date AND j.journey_end_date
   OR (p.hcp_id, p.brand) <> (j.hcp_id, j.brand)
"""
_CHURN_ONLY_ON_THERAPY = """
SELECT p.prediction_id, p.patient_id, p.prediction_timestamp
FROM ml_predictions p JOIN patient_journeys j USING (patient_id)
WHERE p.prediction_type = 'churn_risk'
  AND (NOT j.treatment_initiated OR (p.prediction_timestamp AT TIME ZONE 'UTC')::date
                                    < j.journey_start_date + j.days_to_treatment)
"""


@dg.asset_check(
    asset="ml_predictions",
    name="score_rules",
    blocking=True,
    description="scores lie in [0, 1] and predicted_label = score >= threshold; every "
    "prediction falls in the scenario's window, a patient's inside the patient's journey with "
    "the patient's HCP and brand; churn_risk only for patients already on therapy",
)
def ml_predictions_score_rules(
    database: Database, scenario: ScenarioResource
) -> dg.AssetCheckResult:
    rules = {
        "score_in_range_and_label_from_threshold": sql.SQL(_SCORES),
        "inside_scenario_window": sql.SQL(_PREDICTION_IN_WINDOW),
        "patient_prediction_inside_journey": sql.SQL(_PREDICTION_IN_JOURNEY),
        "churn_only_on_therapy": sql.SQL(_CHURN_ONLY_ON_THERAPY),
    }
    with database.connect() as conn:
        return _rules_result(conn, rules, _params(scenario.load()))


# AUC = P(score of a treated patient > score of an untreated one), ties counting one half: the
# Mann-Whitney U from average ranks, divided by positives * negatives.
_AUC = """
WITH scored AS (
    SELECT p.score, j.treatment_initiated AS y
    FROM ml_predictions p JOIN patient_journeys j USING (patient_id)
    WHERE p.prediction_type = 'treatment_propensity'
), ranked AS (
    SELECT y, rank() OVER (ORDER BY score) + (count(*) OVER (PARTITION BY score) - 1) / 2.0 AS r
    FROM scored
)
SELECT count(*) FILTER (WHERE y), count(*) FILTER (WHERE NOT y),
       ((sum(r) FILTER (WHERE y)
         - count(*) FILTER (WHERE y) * (count(*) FILTER (WHERE y) + 1) / 2.0)
        / nullif(count(*) FILTER (WHERE y) * count(*) FILTER (WHERE NOT y), 0))::float8
FROM ranked
"""


@dg.asset_check(
    asset="ml_predictions",
    name="propensity_auc",
    blocking=False,
    description="AUC of treatment_propensity scores against the patients' treatment_initiated "
    f"lies in [{AUC_MIN}, {AUC_MAX}]: informative, but not a leak of the outcome (a statistic "
    "of one sample, so a warning, never a failed run)",
)
def ml_predictions_propensity_auc(database: Database) -> dg.AssetCheckResult:
    with database.connect() as conn:
        positives, negatives, auc = conn.execute(_AUC).fetchone()
    metadata: dict[str, object] = {
        "treated_predictions": positives,
        "untreated_predictions": negatives,
        "auc_bounds": f"[{AUC_MIN}, {AUC_MAX}]",
    }
    if auc is not None:  # no AUC without both treated and untreated patients
        metadata["auc"] = dg.MetadataValue.float(round(auc, 4))
    return dg.AssetCheckResult(
        passed=auc is not None and AUC_MIN <= auc <= AUC_MAX,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


_STATUS_MATCHES = """
SELECT trigger_id, status, delivered_at, viewed_at, resolved_at FROM triggers
WHERE NOT CASE status
    WHEN 'created' THEN delivered_at IS NULL AND viewed_at IS NULL AND resolved_at IS NULL
    WHEN 'delivered' THEN delivered_at IS NOT NULL AND viewed_at IS NULL AND resolved_at IS NULL
    WHEN 'viewed' THEN delivered_at IS NOT NULL AND viewed_at IS NOT NULL AND resolved_at IS NULL
    WHEN 'expired' THEN delivered_at IS NOT NULL AND resolved_at IS NOT NULL
    WHEN 'accepted' THEN delivered_at IS NOT NULL AND viewed_at IS NOT NULL
                         AND resolved_at IS NOT NULL
    WHEN 'dismissed' THEN delivered_at IS NOT NULL AND viewed_at IS NOT NULL
                          AND resolved_at IS NOT NULL
    ELSE false END
"""
_ORDERED = """
SELECT trigger_id, created_at, delivered_at, viewed_at, resolved_at FROM triggers
WHERE delivered_at < created_at
   OR viewed_at < coalesce(delivered_at, created_at)
   OR resolved_at < coalesce(viewed_at, delivered_at, created_at)
"""
_NOT_AFTER_REFERENCE = """
SELECT trigger_id, created_at, delivered_at, viewed_at, resolved_at FROM triggers
WHERE created_at < %(window_start)s OR created_at >= %(window_end)s
   OR greatest(delivered_at, viewed_at, resolved_at) > %(window_end)s
"""
_PATIENT_OF_HCP = """
SELECT t.trigger_id, t.patient_id, t.hcp_id, j.hcp_id AS patients_hcp, t.created_at
FROM triggers t JOIN patient_journeys j USING (patient_id)
WHERE (t.hcp_id, t.brand) <> (j.hcp_id, j.brand)
   OR (t.created_at AT TIME ZONE 'UTC')::date
          NOT BETWEEN j.journey_start_date AND j.journey_end_date
"""


@dg.asset_check(
    asset="triggers",
    name="lifecycle_rules",
    blocking=True,
    description="the set lifecycle timestamps are those the status implies and are ordered "
    "created_at <= delivered_at <= viewed_at <= resolved_at; triggers are created in the "
    "scenario's window and nothing is observed after its end; a trigger's patient is a "
    "patient of its HCP (same brand) with an open journey on the creation date",
)
def triggers_lifecycle_rules(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    rules = {
        "status_matches_timestamps": sql.SQL(_STATUS_MATCHES),
        "timestamps_ordered": sql.SQL(_ORDERED),
        "inside_scenario_window": sql.SQL(_NOT_AFTER_REFERENCE),
        "patient_of_hcp_in_journey": sql.SQL(_PATIENT_OF_HCP),
    }
    with database.connect() as conn:
        return _rules_result(conn, rules, _params(scenario.load()))


ACTIVITY_CHECKS = [
    *table_checks(TABLES["treatment_events"], expected=None),
    *table_checks(TABLES["ml_predictions"], in_window=predictions_generator.rows_in_window),
    *table_checks(TABLES["triggers"], in_window=predictions_generator.rows_in_window),
    treatment_events_journey_rules,
    data_split_check("treatment_events", "event_id", "x.event_date"),
    data_split_check(
        "ml_predictions", "prediction_id", "(x.prediction_timestamp AT TIME ZONE 'UTC')::date"
    ),
    data_split_check("triggers", "trigger_id", "(x.created_at AT TIME ZONE 'UTC')::date"),
    ml_predictions_score_rules,
    ml_predictions_propensity_auc,
    triggers_lifecycle_rules,
]
