"""Checks of treatment_events, ml_predictions and triggers, run as SQL in PostgreSQL.

What a constraint enforces (keys, foreign keys, one event per patient, date and type, score
ranges, predicted_label from threshold, trigger status and timestamp order) is checked once, by
the constraint, and reported by constraints_present. The rule checks here guard what no
constraint can say, each table in one pass per shape (rows joined to their journey; events per
patient): events lie inside their journey and agree with treatment_initiated /
days_to_treatment, every row carries the data_split of its own date, rows fall in the
scenario's window, a treatment_propensity AUC that is informative but not perfect (a warning).
"""

from datetime import UTC, datetime, time, timedelta

import dagster as dg
from psycopg import sql

from e2i_synth.core.scenario import Scenario
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.rule_checks import row_rules, rule_check
from e2i_synth.pipeline.split_sql import split_params, split_sql, utc_day_sql
from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.tables import TABLES
from e2i_synth.tables.activity import ml_predictions as predictions_generator
from e2i_synth.tables.activity.treatment_events_model import EVENT_TYPES, TREATMENT_EVENT_TYPES

AUC_MIN = 0.55
AUC_MAX = 0.95


def _literals(values: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Literal, values))


def _params(scenario: Scenario) -> dict[str, object]:
    """Scenario window as UTC timestamps [window_start, window_end), and the split cutoffs."""
    return {
        "window_start": datetime.combine(scenario.start_date, time(), UTC),
        "window_end": datetime.combine(scenario.end_date + timedelta(days=1), time(), UTC),
        **split_params(scenario),
    }


def _utc_day(column: str) -> sql.Composable:
    return utc_day_sql(sql.SQL(column))


def _split_matches(day: sql.Composable) -> sql.Composable:
    """data_split differs from the split of the row's date (core/split.py's rule)."""
    return sql.SQL("x.data_split <> {}").format(split_sql(day))


SPLIT_RULE = "data_split is the split of the row's own (UTC) date"

TREATMENT_EVENTS_RULES = {
    "event_inside_journey": "events lie inside their journey (days_from_diagnosis counted from "
    "journey_start_date)",
    "patient_hcp_brand_payer": "an event has its patient's HCP, brand and payer",
    "no_treatment_unless_initiated": "no treatment event unless treatment_initiated",
    "data_split_matches": SPLIT_RULE,
    "event_id_in_event_order": "event_id follows (patient, date, event type)",
    "one_diagnosis_at_journey_start": "one diagnosis per patient, on journey_start_date",
    "first_prescription_at_days_to_treatment": "the first prescription is on journey_start_date "
    "+ days_to_treatment",
    "refill_after_first_prescription": "refills come after the first prescription",
    "discontinuation_is_last_treatment_event": "a discontinuation is the last treatment event",
}

# Each event beside its journey and the event before it in event order: one scan of events.
_EVENTS_IN_ORDER = sql.SQL(
    """(SELECT e.*, lag(e.event_id) OVER (
            ORDER BY e.patient_id COLLATE "C", e.event_date,
                     array_position(ARRAY[{event_types}], e.event_type)) AS previous_id
        FROM treatment_events e) x
    JOIN patient_journeys j USING (patient_id)"""
).format(event_types=_literals(EVENT_TYPES))
# Per patient, the dates the journey rules compare: one aggregation of events.
_PER_PATIENT = sql.SQL(
    """patient_journeys j LEFT JOIN (
        SELECT patient_id,
               count(*) FILTER (WHERE event_type = 'diagnosis') AS diagnoses,
               min(event_date) FILTER (WHERE event_type = 'diagnosis') AS first_diagnosis,
               min(event_date) FILTER (WHERE event_type = 'prescription') AS first_prescription,
               min(event_date) FILTER (WHERE event_type = 'refill') AS first_refill,
               count(*) FILTER (WHERE event_type = 'discontinuation') AS discontinuations,
               min(event_date) FILTER (WHERE event_type = 'discontinuation') AS discontinued,
               max(event_date) FILTER (WHERE event_type IN ({treatment_types})
                                       AND event_type <> 'discontinuation') AS last_treatment
        FROM treatment_events GROUP BY patient_id) a USING (patient_id)"""
).format(treatment_types=_literals(TREATMENT_EVENT_TYPES))


def _treatment_events_query() -> sql.Composable:
    rows = row_rules(
        _EVENTS_IN_ORDER,
        ["x.event_id", "x.patient_id", "x.event_type", "x.event_date::text AS detail"],
        {
            "event_inside_journey": sql.SQL(
                "x.event_date NOT BETWEEN j.journey_start_date AND j.journey_end_date "
                "OR x.days_from_diagnosis <> x.event_date - j.journey_start_date"
            ),
            "patient_hcp_brand_payer": sql.SQL(
                "(x.hcp_id, x.brand, x.insurance_type) <> (j.hcp_id, j.brand, j.insurance_type)"
            ),
            "no_treatment_unless_initiated": sql.SQL(
                "NOT j.treatment_initiated AND x.event_type IN ({})"
            ).format(_literals(TREATMENT_EVENT_TYPES)),
            "data_split_matches": _split_matches(sql.SQL("x.event_date")),
            "event_id_in_event_order": sql.SQL(
                'x.previous_id COLLATE "C" >= x.event_id COLLATE "C"'
            ),
        },
    )
    patients = row_rules(
        _PER_PATIENT,
        [
            "NULL::text AS event_id",
            "j.patient_id",
            "NULL::text AS event_type",
            "concat_ws(' ', 'start', j.journey_start_date, 'diagnoses', a.diagnoses, "
            "'first rx', a.first_prescription, 'first refill', a.first_refill, "
            "'discontinued', a.discontinued) AS detail",
        ],
        {
            "one_diagnosis_at_journey_start": sql.SQL(
                "coalesce(a.diagnoses, 0) <> 1 OR a.first_diagnosis <> j.journey_start_date"
            ),
            "first_prescription_at_days_to_treatment": sql.SQL(
                "j.treatment_initiated AND a.first_prescription IS DISTINCT FROM "
                "j.journey_start_date + j.days_to_treatment"
            ),
            "refill_after_first_prescription": sql.SQL(
                "a.first_refill IS NOT NULL AND (a.first_prescription IS NULL "
                "OR a.first_refill <= a.first_prescription)"
            ),
            "discontinuation_is_last_treatment_event": sql.SQL(
                "a.discontinuations > 1 OR a.last_treatment >= a.discontinued"
            ),
        },
    )
    return sql.SQL("{} UNION ALL {}").format(rows, patients)


treatment_events_journey_rules = rule_check(
    "treatment_events",
    "journey_rules",
    TREATMENT_EVENTS_RULES,
    _treatment_events_query(),
    params=lambda scenario: split_params(scenario),
)

ML_PREDICTIONS_RULES = {
    "inside_scenario_window": "every prediction falls in the scenario's window",
    "patient_prediction_inside_journey": "a patient's prediction lies inside the patient's "
    "journey, with the patient's HCP and brand",
    "churn_only_on_therapy": "churn_risk only for patients already on therapy",
    "data_split_matches": SPLIT_RULE,
}
ml_predictions_score_rules = rule_check(
    "ml_predictions",
    "score_rules",
    ML_PREDICTIONS_RULES,
    row_rules(
        sql.SQL("ml_predictions x LEFT JOIN patient_journeys j USING (patient_id)"),
        ["x.prediction_id", "x.patient_id", "x.prediction_type", "x.prediction_timestamp"],
        {
            "inside_scenario_window": sql.SQL(
                "x.prediction_timestamp < %(window_start)s "
                "OR x.prediction_timestamp >= %(window_end)s"
            ),
            "patient_prediction_inside_journey": sql.SQL(
                "{day} NOT BETWEEN j.journey_start_date AND j.journey_end_date "
                "OR (x.hcp_id, x.brand) <> (j.hcp_id, j.brand)"
            ).format(day=_utc_day("x.prediction_timestamp")),
            "churn_only_on_therapy": sql.SQL(
                "x.prediction_type = 'churn_risk' AND (NOT j.treatment_initiated "
                "OR {day} < j.journey_start_date + j.days_to_treatment)"
            ).format(day=_utc_day("x.prediction_timestamp")),
            "data_split_matches": _split_matches(_utc_day("x.prediction_timestamp")),
        },
    ),
    params=_params,
)

TRIGGERS_RULES = {
    "inside_scenario_window": "triggers are created in the scenario's window and nothing is "
    "observed after its end",
    "patient_of_hcp_in_journey": "a trigger's patient is a patient of its HCP (same brand) with "
    "an open journey on the creation date",
    "data_split_matches": SPLIT_RULE,
}
triggers_lifecycle_rules = rule_check(
    "triggers",
    "lifecycle_rules",
    TRIGGERS_RULES,
    row_rules(
        sql.SQL("triggers x LEFT JOIN patient_journeys j USING (patient_id)"),
        ["x.trigger_id", "x.patient_id", "x.status", "x.created_at"],
        {
            "inside_scenario_window": sql.SQL(
                "x.created_at < %(window_start)s OR x.created_at >= %(window_end)s "
                "OR greatest(x.delivered_at, x.viewed_at, x.resolved_at) > %(window_end)s"
            ),
            "patient_of_hcp_in_journey": sql.SQL(
                "(x.hcp_id, x.brand) <> (j.hcp_id, j.brand) "
                "OR {day} NOT BETWEEN j.journey_start_date AND j.journey_end_date"
            ).format(day=_utc_day("x.created_at")),
            "data_split_matches": _split_matches(_utc_day("x.created_at")),
        },
    ),
    params=_params,
)


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


ACTIVITY_CHECKS = [
    *table_checks(TABLES["treatment_events"], expected=None),
    *table_checks(TABLES["ml_predictions"], in_window=predictions_generator.rows_in_window),
    *table_checks(TABLES["triggers"], in_window=predictions_generator.rows_in_window),
    treatment_events_journey_rules,
    ml_predictions_score_rules,
    ml_predictions_propensity_auc,
    triggers_lifecycle_rules,
]
