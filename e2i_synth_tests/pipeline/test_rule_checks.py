"""The rule-check factory (uniform metadata, one pass for several rules, bounded examples), the
constraints_present check (the catalog against sql/schema.sql), and the SQL forms of rules
owned elsewhere (core/split.py's data_split, CausalModel's formulas) against their polars form."""

from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
from psycopg import sql

from e2i_synth.core.scenario import load_scenario
from e2i_synth.core.split import split_for_dates
from e2i_synth.pipeline.constraints import declared_constraints
from e2i_synth.pipeline.rule_checks import EXAMPLES, row_rules, rule_check
from e2i_synth.pipeline.split_sql import split_params, split_sql
from e2i_synth.pipeline.sql_arithmetic import SqlExpr
from e2i_synth.pipeline.table_checks import constraints_check
from e2i_synth.tables import TABLES

RULES = {"negative": "n is not negative", "too_big": "n is at most %(limit)s"}


def _numbers_check(params: dict) -> dg.AssetChecksDefinition:
    query = row_rules(
        sql.SQL("numbers"),
        ["n"],
        {"negative": sql.SQL("n < 0"), "too_big": sql.SQL("abs(n) > %(limit)s")},
    )
    return rule_check("numbers", "in_range", RULES, query, params=params)


def test_a_rule_check_reports_uniform_metadata(database):
    with database.connect() as conn:
        conn.execute("CREATE TABLE numbers (n int)")
        conn.execute("INSERT INTO numbers SELECT generate_series(-20, 5)")
        conn.commit()
    result = _numbers_check({"limit": 10})(database=database)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    # -20..-11 break both rules, one row per broken rule; -10..-1 only the first.
    assert result.metadata["violations_by_rule"].value == {"negative": 20, "too_big": 10}
    assert result.metadata["violations"].value == 30
    examples = result.metadata["examples"].value
    assert examples.count("| negative |") == EXAMPLES == examples.count("| too_big |")
    assert "`too_big`: n is at most" in result.metadata["rule"].value

    passing = _numbers_check({"limit": 100})
    with database.connect() as conn:
        conn.execute("DELETE FROM numbers WHERE n < 0")
        conn.commit()
    result = passing(database=database)
    assert result.passed
    assert result.metadata["violations"].value == 0
    assert result.metadata["violations_by_rule"].value == {}
    assert "examples" not in result.metadata


def test_the_declared_constraints_cover_every_table():
    declared = declared_constraints()
    for name in TABLES:
        kinds = {kind for kind, _ in declared[name].values()}
        assert "p" in kinds, name
    assert declared["treatment_events"]["treatment_events_one_per_day_and_type"] == (
        "u",
        "UNIQUE (patient_id, event_date, event_type)",
    )
    assert declared["features"]["features_entity_key_of_group"][0] == "f"


def _constraints(database, table: str) -> dg.AssetCheckResult:
    return constraints_check(TABLES[table])(database=database)


@pytest.mark.parametrize(
    ("statement", "table", "problem"),
    [
        ("ALTER TABLE triggers DROP CONSTRAINT triggers_lifecycle_ordered", "triggers", "missing"),
        (
            "ALTER TABLE treatment_events DROP CONSTRAINT treatment_events_one_per_day_and_type",
            "treatment_events",
            "missing",
        ),
        (
            "ALTER TABLE treatment_events DISABLE TRIGGER ALL",
            "treatment_events",
            "triggers_disabled",
        ),
        (
            "ALTER TABLE ml_predictions ADD CONSTRAINT extra CHECK (score < 2) NOT VALID",
            "ml_predictions",
            "not_validated",
        ),
        (
            "ALTER TABLE hcp_profiles ALTER COLUMN npi DROP NOT NULL",
            "hcp_profiles",
            "nullable_but_declared_not_null",
        ),
    ],
)
def test_constraints_present_reads_the_catalog(database, statement, table, problem):
    before = _constraints(database, table)
    assert before.passed, before.metadata
    with database.connect() as conn:
        conn.execute(statement)
        conn.commit()
    after = _constraints(database, table)
    assert not after.passed
    assert after.metadata["violations_by_rule"].value[problem] >= 1
    # Every other table still agrees with its declaration.
    assert all(_constraints(database, t).passed for t in TABLES if t != table)


def test_split_sql_is_split_for_dates(database):
    """Every day of the window and two on each side: the SQL form gives the polars form's split."""
    scenario = load_scenario(None, scale="small")
    span = (scenario.end_date - scenario.start_date).days
    days = [scenario.start_date + timedelta(days=i) for i in range(-2, span + 3)]
    expected = pl.DataFrame({"day": days}).select(split_for_dates(pl.col("day"), scenario))
    query = sql.SQL(
        "SELECT {} FROM unnest(%(days)s::date[]) WITH ORDINALITY AS d(day, i) ORDER BY i"
    ).format(split_sql(sql.SQL("d.day")))
    with database.connect() as conn:
        found = [r[0] for r in conn.execute(query, {"days": days, **split_params(scenario)})]
    assert found == expected.to_series().to_list()
    assert set(found) == {"train", "validation", "test", "holdout"}


def test_causal_formulas_render_as_the_same_sql(database):
    causal = load_scenario(None, scale="small").causal
    rng = np.random.default_rng(7)
    severity = np.round(rng.uniform(0, 10, 50), 1)
    engagement = np.round(rng.uniform(0, 10, 50), 2)
    academic = rng.random(50) < 0.3
    s, e, a = SqlExpr("s"), SqlExpr("e"), SqlExpr("a::int")
    query = sql.SQL(
        "SELECT {}, {} FROM unnest(%s::float8[], %s::float8[], %s::bool[]) "
        "WITH ORDINALITY AS t(s, e, a, i) ORDER BY i"
    ).format(causal.expected_engagement(s, a).sql, causal.treatment_probability(e, s, a).sql)
    with database.connect() as conn:
        rows = conn.execute(query, (list(severity), list(engagement), list(academic))).fetchall()
    got = np.array(rows)
    np.testing.assert_array_equal(got[:, 0], causal.expected_engagement(severity, academic))
    np.testing.assert_array_equal(
        got[:, 1], causal.treatment_probability(engagement, severity, academic)
    )


def test_sql_arithmetic_refuses_what_is_not_a_number():
    with pytest.raises(TypeError):
        SqlExpr("x") + "1; DROP TABLE x"  # noqa: B018 - the operation is the test
