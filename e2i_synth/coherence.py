"""What holds across tables: each rule a statement and a SQL query that returns the rows
breaking it, so a coherent load returns zero rows for every rule.

The rules follow from one world (e2i_synth.world): every patient has one timeline (journey,
first fill, fills, stop), every table reads it as of its own dates, and every time-stamped row
carries the split of its own date (core.split). The queries take the split cutoffs as
parameters (params); they read the loaded tables only, so they hold for any loader.
"""

from dataclasses import dataclass

import psycopg

from e2i_synth.core.scenario import Scenario
from e2i_synth.core.split import split_cutoffs
from e2i_synth.core.vocabulary import DATA_SPLITS


@dataclass(frozen=True)
class Rule:
    name: str
    statement: str  # one line, for the README and failure messages
    query: str  # the violating rows


def split_of(day: str) -> str:
    """SQL for the data_split of a date expression, from the %(cutoff_n)s parameters."""
    cases = " ".join(
        f"WHEN {day} < %(cutoff_{i})s THEN '{split}'" for i, split in enumerate(DATA_SPLITS[:-1])
    )
    return f"CASE {cases} ELSE '{DATA_SPLITS[-1]}' END"


def params(scenario: Scenario) -> dict[str, object]:
    return {f"cutoff_{i}": cutoff for i, cutoff in enumerate(split_cutoffs(scenario))}


def _utc_day(column: str) -> str:
    return f"({column} AT TIME ZONE 'UTC')::date"


# Each patient's first fill and stop, as treatment_events records them.
_THERAPY = """
    SELECT j.patient_id, j.journey_start_date, j.journey_end_date,
           min(e.event_date) FILTER (WHERE e.event_type = 'prescription') AS first_fill,
           min(e.event_date) FILTER (WHERE e.event_type IN ('switch', 'discontinuation')) AS stop
    FROM patient_journeys j LEFT JOIN treatment_events e USING (patient_id)
    GROUP BY j.patient_id, j.journey_start_date, j.journey_end_date
"""
_PREDICTION_DAY = _utc_day("p.prediction_timestamp")
_TRIGGER_DAY = _utc_day("t.created_at")
_THERAPY_TRIGGERS = "('refill_gap', 'competitive_switch_risk')"

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

RULES: tuple[Rule, ...] = (
    Rule(
        "fills_only_on_therapy",
        "a prescription or refill is dated from the patient's initiation (journey start + "
        "days_to_treatment) and before the patient's switch or discontinuation",
        f"""
        SELECT e.event_id, e.patient_id, e.event_type, e.event_date, th.stop
        FROM treatment_events e JOIN patient_journeys j USING (patient_id)
        JOIN ({_THERAPY}) th USING (patient_id)
        WHERE e.event_type IN ('prescription', 'refill')
          AND (NOT j.treatment_initiated
               OR e.event_date < j.journey_start_date + j.days_to_treatment
               OR e.event_date >= th.stop)
        """,
    ),
    Rule(
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
    Rule(
        "churn_scores_only_on_therapy",
        "a churn_risk score is dated from the patient's first fill and before the stop",
        f"""
        SELECT p.prediction_id, p.patient_id, {_PREDICTION_DAY} AS day, th.first_fill, th.stop
        FROM ml_predictions p JOIN ({_THERAPY}) th USING (patient_id)
        WHERE p.prediction_type = 'churn_risk'
          AND (th.first_fill IS NULL OR {_PREDICTION_DAY} < th.first_fill
               OR {_PREDICTION_DAY} >= th.stop)
        """,
    ),
    Rule(
        "propensity_scores_only_until_initiation",
        "a treatment_propensity score is dated no later than the patient's first fill",
        f"""
        SELECT p.prediction_id, p.patient_id, {_PREDICTION_DAY} AS day, th.first_fill
        FROM ml_predictions p JOIN ({_THERAPY}) th USING (patient_id)
        WHERE p.prediction_type = 'treatment_propensity' AND {_PREDICTION_DAY} > th.first_fill
        """,
    ),
    Rule(
        "therapy_triggers_only_on_therapy",
        "a refill_gap or competitive_switch_risk trigger is dated after the patient's first "
        "fill and before the stop",
        f"""
        SELECT t.trigger_id, t.trigger_type, t.patient_id, {_TRIGGER_DAY} AS day,
               th.first_fill, th.stop
        FROM triggers t JOIN ({_THERAPY}) th USING (patient_id)
        WHERE t.trigger_type IN {_THERAPY_TRIGGERS}
          AND (th.first_fill IS NULL OR {_TRIGGER_DAY} <= th.first_fill
               OR {_TRIGGER_DAY} >= th.stop)
        """,
    ),
    Rule(
        "high_propensity_triggers_only_before_initiation",
        "a high_propensity trigger is about a patient not yet treated on its date",
        f"""
        SELECT t.trigger_id, t.patient_id, {_TRIGGER_DAY} AS day, th.first_fill
        FROM triggers t JOIN ({_THERAPY}) th USING (patient_id)
        WHERE t.trigger_type = 'high_propensity' AND {_TRIGGER_DAY} >= th.first_fill
        """,
    ),
    Rule(
        "events_inside_the_journey",
        "a treatment event is dated inside its patient's journey",
        """
        SELECT e.event_id, e.patient_id, e.event_date
        FROM treatment_events e JOIN patient_journeys j USING (patient_id)
        WHERE e.event_date NOT BETWEEN j.journey_start_date AND j.journey_end_date
        """,
    ),
    Rule(
        "predictions_inside_the_journey",
        "a patient's prediction is dated inside the patient's journey",
        f"""
        SELECT p.prediction_id, p.patient_id, {_PREDICTION_DAY} AS day
        FROM ml_predictions p JOIN patient_journeys j USING (patient_id)
        WHERE {_PREDICTION_DAY} NOT BETWEEN j.journey_start_date AND j.journey_end_date
        """,
    ),
    Rule(
        "triggers_inside_the_journey",
        "a patient's trigger is dated inside the patient's journey",
        f"""
        SELECT t.trigger_id, t.patient_id, {_TRIGGER_DAY} AS day
        FROM triggers t JOIN patient_journeys j USING (patient_id)
        WHERE {_TRIGGER_DAY} NOT BETWEEN j.journey_start_date AND j.journey_end_date
        """,
    ),
    Rule(
        "patient_feature_values_inside_the_journey",
        "a feature value about a patient is dated inside the patient's journey (and names a "
        "patient that exists)",
        f"""
        SELECT v.feature_value_id, v.entity_values ->> 'patient_id' AS patient_id,
               {_utc_day("v.event_timestamp")} AS day
        FROM feature_values v
        LEFT JOIN patient_journeys j ON j.patient_id = v.entity_values ->> 'patient_id'
        WHERE v.entity_values ? 'patient_id'
          AND (j.patient_id IS NULL OR {_utc_day("v.event_timestamp")}
               NOT BETWEEN j.journey_start_date AND j.journey_end_date)
        """,
    ),
    *(
        Rule(
            f"{table}_split_follows_its_date",
            f"data_split of every {table} row is the split of its {column}"
            + (" (UTC date)" if utc else ""),
            f"SELECT x.{key}, x.data_split, {day} AS day FROM {table} x "
            f"WHERE x.data_split IS DISTINCT FROM {split_of(day)}",
        )
        for table, key, column, utc in DATED_TABLES
        for day in [_utc_day(f"x.{column}") if utc else f"x.{column}"]
    ),
)
RULE_NAMES = tuple(r.name for r in RULES)


def violations(
    conn: psycopg.Connection, scenario: Scenario, limit: int = 5
) -> dict[str, list[tuple]]:
    """Up to `limit` violating rows of each rule, by rule name (empty lists when coherent)."""
    values = params(scenario)
    return {
        rule.name: conn.execute(
            f"SELECT * FROM ({rule.query}) v LIMIT {int(limit)}", values
        ).fetchall()
        for rule in RULES
    }
