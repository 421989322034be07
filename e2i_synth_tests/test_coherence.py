"""The cross-table rules (e2i_synth.coherence) hold on loaded bundled scenarios, each can fail,
and the scores are honest: churn_risk predicts stopping and treatment_propensity predicts
initiation, neither better than the true probability behind the data (pure frames, fixed
seed: tests of the generator, not blocking checks)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
import pytest

import e2i_synth.scenarios
from e2i_synth import coherence
from e2i_synth.core.scenario import Scenario, load_scenario
from e2i_synth.db.connection import with_database
from e2i_synth.db.migrate import migrate
from e2i_synth.db.resource import Database
from e2i_synth.tables.activity import assets as activity
from e2i_synth.tables.answer_key import models
from e2i_synth.tables.entities import assets as entities
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.feature_store import assets as feature_store
from e2i_synth.tables.metrics import assets as metrics
from e2i_synth_tests.pipeline import load_small, run, small_template_key

# The small default scenario and the null rung (no effect, drift or gap), both at scale small;
# every other bundled scenario in the soak (test_every_other_bundled_scenario_is_coherent).
SCENARIOS = ("default", "null")
OTHER_SCENARIOS = tuple(n for n in e2i_synth.scenarios.LADDER if n not in SCENARIOS)


@pytest.fixture(scope="module", params=SCENARIOS)
def loaded(request, server_url: str, templates) -> Iterator[tuple[Database, Scenario]]:
    """A database holding every table (the answer key aside), loaded through Dagster: for the
    default scenario a copy of the session's small one (conftest's small_db, every table and
    check, loaded once per session)."""
    with _loaded(request.param, server_url, templates) as loaded:
        yield loaded


@contextmanager
def _loaded(scenario_name: str, server_url: str, templates) -> Iterator[tuple[Database, Scenario]]:
    name = f"t_coherence_{scenario_name}"
    path = str(e2i_synth.scenarios.bundled_path(scenario_name))
    template = None
    if scenario_name == "default":
        assert load_scenario(path, "small") == load_scenario(scale="small")
        template = templates.template(small_template_key(), load_small)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    url = with_database(server_url, name)
    database = Database(url=url)
    if template is None:
        migrate(url)
        assets = dg.load_assets_from_modules([entities, activity, metrics, feature_store])
        assert run(database, assets, scenario_path=path, scale="small").success
    yield database, load_scenario(path, "small")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.soak
@pytest.mark.parametrize("name", OTHER_SCENARIOS)
def test_every_other_bundled_scenario_is_coherent(name, server_url, templates):
    """Every rule returns no rows on each bundled scenario's world, at scale small."""
    with _loaded(name, server_url, templates) as (database, scenario):
        with database.connect() as conn:
            found = coherence.violations(conn, scenario)
        assert {rule: rows for rule, rows in found.items() if rows} == {}


def test_every_rule_returns_no_rows(loaded):
    database, scenario = loaded
    with database.connect() as conn:
        found = coherence.violations(conn, scenario)
        # The rules are not vacuous: the tables they join hold rows of every kind they read.
        kinds = dict(
            conn.execute(
                """SELECT 'stops', count(*) FROM treatment_events
                   WHERE event_type IN ('switch', 'discontinuation')
                   UNION ALL SELECT 'churn', count(*) FROM ml_predictions
                   WHERE prediction_type = 'churn_risk'
                   UNION ALL SELECT 'therapy_triggers', count(*) FROM triggers
                   WHERE trigger_type IN ('refill_gap', 'competitive_switch_risk')
                   UNION ALL SELECT 'patient_values', count(*) FROM feature_values
                   WHERE entity_values ? 'patient_id'
                   UNION ALL SELECT f.name, count(*) FROM feature_values v
                   JOIN features f USING (feature_id)
                   WHERE f.name IN ('trx_30d', 'nrx_30d') AND v.value <> '0'::jsonb
                   GROUP BY f.name"""
            ).fetchall()
        )
    assert {rule: rows for rule, rows in found.items() if rows} == {}
    assert all(n > 0 for n in kinds.values()) and len(kinds) == 6, kinds


# One corruption per rule: a statement that makes that rule return rows.
_STOPPED = (
    "SELECT patient_id FROM treatment_events WHERE event_type IN ('switch', 'discontinuation')"
)
_NEVER_TREATED = "SELECT patient_id FROM patient_journeys WHERE NOT treatment_initiated LIMIT 1"
_SWAP_SPLIT = "CASE x.data_split WHEN 'train' THEN 'test' ELSE 'train' END"


def _first_value(feature: str) -> str:
    return f"""SELECT min(feature_value_id) FROM feature_values JOIN features f
               USING (feature_id) WHERE f.name = '{feature}'"""


CORRUPTIONS: dict[str, str] = {
    "metric_counts_are_the_fills": """
        UPDATE business_metrics SET simulated_count = simulated_count + 1
        WHERE metric_id = (SELECT min(metric_id) FROM business_metrics
                           WHERE metric_name = 'nrx')""",
    "share_counts_its_brand_trx": """
        UPDATE business_metrics SET simulated_count = simulated_count + 1
        WHERE metric_id = (SELECT min(metric_id) FROM business_metrics
                           WHERE metric_name = 'market_share')""",
    "fills_only_on_therapy": f"""
        UPDATE treatment_events r SET event_date = s.event_date FROM treatment_events s
        WHERE s.patient_id = r.patient_id AND s.event_type IN ('switch', 'discontinuation')
          AND r.event_id = (SELECT min(event_id) FROM treatment_events
                            WHERE event_type = 'refill' AND patient_id IN ({_STOPPED}))""",
    "one_stop_after_a_fill": f"""
        DELETE FROM treatment_events WHERE event_id = (
            SELECT min(event_id) FROM treatment_events
            WHERE event_type = 'prescription' AND patient_id IN ({_STOPPED}))""",
    "churn_scores_only_on_therapy": f"""
        UPDATE ml_predictions SET patient_id = ({_NEVER_TREATED})
        WHERE prediction_id = (SELECT min(prediction_id) FROM ml_predictions
                               WHERE prediction_type = 'churn_risk')""",
    "propensity_scores_only_until_initiation": """
        UPDATE ml_predictions p
        SET prediction_timestamp = (j.journey_start_date + j.days_to_treatment + 1)::timestamp
                                   AT TIME ZONE 'UTC'
        FROM patient_journeys j
        WHERE j.patient_id = p.patient_id AND p.prediction_id = (
            SELECT min(p2.prediction_id) FROM ml_predictions p2 JOIN patient_journeys j2
            USING (patient_id)
            WHERE p2.prediction_type = 'treatment_propensity' AND j2.treatment_initiated)""",
    "therapy_triggers_only_on_therapy": f"""
        UPDATE triggers SET patient_id = ({_NEVER_TREATED})
        WHERE trigger_id = (SELECT min(trigger_id) FROM triggers
                            WHERE trigger_type = 'refill_gap')""",
    # A refill_gap is raised after the first fill: as a high_propensity alert it comes late.
    "high_propensity_triggers_only_before_initiation": """
        UPDATE triggers SET trigger_type = 'high_propensity'
        WHERE trigger_id = (SELECT min(trigger_id) FROM triggers
                            WHERE trigger_type = 'refill_gap')""",
    "events_inside_the_journey": """
        UPDATE treatment_events e SET event_date = j.journey_start_date - 1
        FROM patient_journeys j
        WHERE j.patient_id = e.patient_id
          AND e.event_id = (SELECT min(event_id) FROM treatment_events)""",
    "predictions_inside_the_journey": """
        UPDATE ml_predictions p
        SET prediction_timestamp = (j.journey_end_date + 1)::timestamp AT TIME ZONE 'UTC'
        FROM patient_journeys j
        WHERE j.patient_id = p.patient_id AND p.prediction_id = (
            SELECT min(prediction_id) FROM ml_predictions WHERE patient_id IS NOT NULL)""",
    "triggers_inside_the_journey": """
        UPDATE triggers t SET created_at = created_at - interval '1 day'
        WHERE trigger_id = (SELECT min(trigger_id) FROM triggers
                            WHERE trigger_type = 'new_patient_diagnosed')""",
    "patient_feature_values_inside_the_journey": """
        UPDATE feature_values SET entity_values = jsonb_set(entity_values, '{patient_id}',
            to_jsonb((SELECT patient_id FROM patient_journeys ORDER BY journey_end_date LIMIT 1)))
        WHERE feature_value_id = (SELECT feature_value_id FROM feature_values
                                  WHERE entity_values ? 'patient_id'
                                  ORDER BY event_timestamp DESC LIMIT 1)""",
    # A refill the day before the gap's trigger: the supply had not run out long enough.
    "refill_gaps_follow_a_lapse": """
        UPDATE treatment_events e SET event_date = (t.created_at AT TIME ZONE 'UTC')::date - 1
        FROM triggers t
        WHERE t.trigger_id = (SELECT min(trigger_id) FROM triggers
                              WHERE trigger_type = 'refill_gap')
          AND e.event_id = (SELECT max(event_id) FROM treatment_events
                            WHERE patient_id = t.patient_id
                              AND event_type IN ('prescription', 'refill')
                              AND event_date < (t.created_at AT TIME ZONE 'UTC')::date)""",
    # Each on the feature's first value (ids follow dates: before any planted drift).
    "insurance_tier_is_the_payers_tier": f"""
        UPDATE feature_values
        SET value = CASE WHEN value = '"high"' THEN '"medium"' ELSE '"high"' END::jsonb
        WHERE feature_value_id = ({_first_value("insurance_tier")})""",
    **{
        f"{feature}_counts_the_fills": f"""
            UPDATE feature_values SET value = to_jsonb((value #>> '{{}}')::int + 1)
            WHERE feature_value_id = ({_first_value(feature)})"""
        for feature in ("trx_30d", "nrx_30d")
    },
    "feature_value_keys_agree": f"""
        UPDATE feature_values v SET entity_values = jsonb_set(v.entity_values, '{{hcp_id}}',
            to_jsonb((SELECT min(hcp_id) FROM hcp_profiles
                      WHERE hcp_id <> v.entity_values ->> 'hcp_id')))
        WHERE feature_value_id = ({_first_value("disease_severity")})""",
    **{
        f"{table}_split_follows_its_date": f"""
            UPDATE {table} x SET data_split = {_SWAP_SPLIT}
            WHERE x.{key} = (SELECT min({key}) FROM {table})"""
        for table, key, _, _ in coherence.DATED_TABLES
    },
}


def test_every_rule_has_a_statement_a_corruption_and_a_line_in_the_readme():
    assert set(CORRUPTIONS) == set(coherence.RULE_NAMES)
    assert len(set(coherence.RULE_NAMES)) == len(coherence.RULES)
    assert all(r.statement and "\n" not in r.statement for r in coherence.RULES)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## What holds across tables") :]
    assert [n for n in coherence.RULE_NAMES if f"`{n}`" not in section] == []


@pytest.mark.parametrize("rule", coherence.RULE_NAMES)
def test_each_rule_fails_on_data_that_breaks_it(loaded, rule):
    database, scenario = loaded
    with database.connect() as conn:
        with conn.transaction(force_rollback=True):
            assert conn.execute(CORRUPTIONS[rule]).rowcount == 1
            found = coherence.violations(conn, scenario)
    assert found[rule], f"{rule} found nothing after: {CORRUPTIONS[rule]}"


# ----------------------------------------------------------------- honest scores (pure frames)


@pytest.fixture(scope="module")
def judged() -> dict[str, models.Judged]:
    # Full scale with the bundled seed: pure generation takes about a second.
    scenario = load_scenario(scale="full")
    hcps = generate_hcp_profiles(scenario)
    return models.judged_rows(scenario, hcps, generate_patient_journeys(scenario, hcps))


@pytest.mark.parametrize("kind", ["treatment_propensity", "churn_risk"])
def test_a_score_predicts_its_outcome_but_not_better_than_the_true_probability(judged, kind):
    rows = judged[kind]
    assert rows.outcome.sum() > 50 and (~rows.outcome).sum() > 50  # enough of each for an AUC
    score, oracle = models.auc(rows.score, rows.outcome), models.auc(rows.oracle, rows.outcome)
    assert 0.55 < score < oracle, (score, oracle)


def test_a_churn_score_that_knows_the_future_beats_the_hazard(judged):
    # What the comparison above guards against: a score built from the realised stop.
    rows = judged["churn_risk"]
    leaky = rows.outcome + 0.5 * rows.score
    assert models.auc(leaky, rows.outcome) > models.auc(rows.oracle, rows.outcome)
