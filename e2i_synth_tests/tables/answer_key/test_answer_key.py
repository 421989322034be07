"""A scenario with an answer key: each packaged scenario, materialized at full scale with every
check, plants exactly what its file says, and the reference consumers find exactly that in
PostgreSQL: the causal effect, the drifts and the gaps, nothing else, matching ground_truth."""

from collections import Counter
from datetime import date
from pathlib import Path
from statistics import mean

import polars as pl
import pytest
from psycopg import sql

import e2i_synth.scenarios
from e2i_synth.consumers.causal import estimate_ate
from e2i_synth.consumers.drift import drift_report, expected_flags
from e2i_synth.core.scenario import SHOCK_METRICS, START_SHOCK_METRICS, Scenario, load_scenario
from e2i_synth.core.vocabulary import FEATURES
from e2i_synth.db.copy import read_table
from e2i_synth.db.resource import Database
from e2i_synth.definitions import CHECKS
from e2i_synth.pipeline import runner
from e2i_synth.tables import TABLES
from e2i_synth.tables.answer_key import gaps
from e2i_synth.tables.answer_key.bounds import bonferroni_z

SCENARIO_DIR = Path(e2i_synth.scenarios.__file__).parent
BLOCKING_CHECKS = {
    "causal_model_holds",
    "feature_values_stationary_unless_planted",
    "business_metrics_match_plan",
}
WARNING_CHECKS = {
    "causal_effect_recovered",
    "drift_recovered",
    "gaps_recovered",
    "reference_scorecard",
}
PSI_TOLERANCE = 1e-9


def _scenario(name: str) -> Scenario:
    return load_scenario(SCENARIO_DIR / f"{name}.yaml", scale="full")


def _series(brand: str, region: str, metric_name: str) -> str:
    return f"{brand}/{region}/{metric_name}"


def _materialize(scenario: Scenario, database: Database) -> runner.RunSummary:
    """Run the whole pipeline with every check and assert that every check passed."""
    summary = runner.materialize(scenario, database)
    assert summary.success, summary.render()
    expected_checks = Counter(
        spec.asset_key.path[-1] for definition in CHECKS for spec in definition.check_specs
    )
    specs = {
        spec.name: spec.blocking
        for definition in CHECKS
        for spec in definition.check_specs
        if spec.asset_key.path[-1] == "ground_truth"
    }
    # The answer key's own checks: exact or bounded ones block, recovery ones only warn.
    assert {name for name, blocking in specs.items() if blocking} >= BLOCKING_CHECKS
    assert {name for name, blocking in specs.items() if not blocking} == WARNING_CHECKS
    tables = {t.table: t for t in summary.tables}
    assert set(tables) == set(TABLES), summary.render()
    for name, table in tables.items():
        assert table.status == "loaded", summary.render()
        assert not table.checks_failed, summary.render()
        assert table.checks_passed >= expected_checks[name], summary.render()
    return summary


def _ground_truth(database: Database) -> pl.DataFrame:
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT answer_id, kind, subject, planted, expected_value, details, "
            "scenario_hash, seed FROM ground_truth ORDER BY answer_id"
        ).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "answer_id": pl.String,
            "kind": pl.String,
            "subject": pl.String,
            "planted": pl.Boolean,
            "expected_value": pl.Float64,
            "details": pl.Object,
            "scenario_hash": pl.String,
            "seed": pl.Int64,
        },
        orient="row",
    )


def _table_counts(database: Database) -> dict[str, int]:
    with database.connect() as conn:
        return {
            name: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
            ).fetchone()[0]
            for name in TABLES
        }


def _assert_causal_effect_recovered(scenario: Scenario, database: Database) -> None:
    truth = scenario.causal.true_ate
    est = estimate_ate(database)
    assert est.n == scenario.n_patients
    # The bundled seeds are ones on which the reference interval covers the truth; the
    # confounders bias the naive slope away from it.
    assert est.covers(truth), (truth, est)
    assert est.naive - truth > 0.01, (truth, est)


def _assert_drifts_recovered(scenario: Scenario, database: Database) -> pl.DataFrame:
    planted, downstream = expected_flags(scenario)
    report = drift_report(database, scenario.monitoring)
    assert sorted(report["feature"]) == sorted(FEATURES)
    flagged = set(report.filter(pl.col("drifted"))["feature"])
    # Every plant, and beyond them only features the plants move in the world.
    assert planted <= flagged <= planted | downstream, f"planted {planted}, flagged {flagged}"
    return report


def _assert_gaps_recovered(scenario: Scenario, database: Database) -> None:
    with database.connect() as conn:
        metrics = read_table(conn, TABLES["business_metrics"], columns=gaps.COLUMNS)
    scored = gaps.scored_rows(scenario, metrics)
    assert scored["z"].max() <= bonferroni_z(scored.height)
    answers = gaps.gap_answers(scenario, scored)
    assert len(answers) == len(gaps.gap_series(scenario))
    for answer in answers:
        assert answer.months > 0, answer
        # A planted gap is sized to be found; a shock's imprint is as large as the world makes
        # it (an adherence shock's on trx is diluted by first fills and carryover), its
        # detectability recorded.
        if answer.imprint_of is None:
            assert answer.detectable, answer
        if answer.detectable:
            assert answer.months_flagged >= answer.months / 2, answer
    # The planted series and the shocks' detectable imprints, found from their start month: a
    # shock varies month to month with the refills it happens to take (a start shock's NRx
    # follow the diagnoses it strikes by the wait to a first fill), so a planted shock's first
    # run of three significant months may start up to a quarter late, an imprint's (flagged in
    # at least half its months, above) up to half its months late. An undetectable imprint
    # found is no error, whenever it is found.
    found = {
        (f["brand"], f["region"], f["metric_name"]): date.fromisoformat(f["start_month"])
        for f in gaps.reference_gap_findings(scored)
    }
    planted = {(g.brand, g.region, g.metric_name): (g, of) for g, of in gaps.gap_series(scenario)}
    judged = {
        (a.gap.brand, a.gap.region, a.gap.metric_name): a
        for a in answers
        if a.imprint_of is None or a.detectable
    }
    assert set(judged) <= set(found) <= set(planted)
    for key, answer in judged.items():
        onset, gap = found[key], answer.gap
        late = (onset.year - gap.start_month.year) * 12 + onset.month - gap.start_month.month
        if answer.imprint_of is not None:
            allowed = max(3, answer.months // 2)
        else:
            allowed = 3 if gap.metric_name in SHOCK_METRICS + START_SHOCK_METRICS else 0
        assert 0 <= late <= allowed, (key, onset, gap.start_month)


def _assert_answer_key(scenario: Scenario, database: Database, report: pl.DataFrame) -> None:
    truth = _ground_truth(database)
    series = gaps.gap_series(scenario)  # the planted gaps and each access shock's imprint
    assert truth.height == 2 + len(FEATURES) + len(series)
    assert set(truth["scenario_hash"]) == {scenario.content_hash()}
    assert set(truth["seed"]) == {scenario.seed}
    assert Counter(truth["kind"]) == {
        "scenario": 1,
        "causal_effect": 1,
        "drift": len(FEATURES),
        **({"gap": len(series)} if series else {}),
    }

    (row,) = truth.filter(kind="scenario").iter_rows(named=True)
    assert row["subject"] == scenario.name
    assert row["details"]["scenario"] == scenario.model_dump(mode="json")

    (row,) = truth.filter(kind="causal_effect").iter_rows(named=True)
    assert row["expected_value"] == scenario.causal.true_ate
    assert row["planted"] == (scenario.causal.true_ate != 0)
    est = estimate_ate(database)
    details = row["details"]
    assert details["recovered"]["adjusted_estimate"] == pytest.approx(est.adjusted, abs=1e-12)
    assert details["recovered"]["naive_estimate"] == pytest.approx(est.naive, abs=1e-12)
    # planted, realised and recovered kept apart; the realised in-sample effect is near the
    # planted one (it is a share of patients, within a few standard errors of it).
    assert details["planted"] == {"true_ate": scenario.causal.true_ate}
    realised = details["realised"]["effect_in_sample"]
    assert abs(realised - scenario.causal.true_ate) < 4 * (0.25 / scenario.n_patients) ** 0.5
    assert details["detectable"] is (True if scenario.causal.true_ate else None)

    drifts = truth.filter(kind="drift")
    planted_drifts = {d.feature: d for d in scenario.drifts}
    assert set(drifts.filter("planted")["subject"]) == set(planted_drifts)
    assert sorted(drifts["subject"]) == sorted(FEATURES)
    psi = dict(report.select("feature", "psi").iter_rows())
    for row in drifts.iter_rows(named=True):
        feature = row["subject"]
        assert row["expected_value"] == pytest.approx(psi[feature], abs=PSI_TOLERANCE), feature
        spec = planted_drifts.get(feature)
        assert row["details"]["planted"] == (spec.model_dump(mode="json") if spec else None)
        assert row["details"]["detectable"] is (True if spec else None), feature

    gap_rows = truth.filter(kind="gap")
    expected_gaps = {
        _series(g.brand, g.region, g.metric_name): g.achievement_rate for g, _ in series
    }
    assert gap_rows["planted"].all()
    assert dict(gap_rows.select("subject", "expected_value").iter_rows()) == expected_gaps
    for row in gap_rows.iter_rows(named=True):
        details = row["details"]
        assert details["detectable"] is True or details["imprint_of"] is not None
        realised = details["realised"]
        # Measurement adds little to the world's shortfall ...
        assert abs(realised["mean_achievement"] - realised["world_mean_achievement"]) < 0.05, row
        # ... and the world's is the plant's expectation up to the sample of fills it hit.
        expected = details["expected"]["achievement_by_month"].values()
        metric = details["planted"]["metric_name"]
        tolerance = 0.15 if metric in SHOCK_METRICS + START_SHOCK_METRICS else 1e-3
        if details["detectable"]:  # an undetectable imprint is a handful of fills
            assert abs(realised["world_mean_achievement"] - mean(expected)) < tolerance, row


def _loaded(copy_of, templates, name: str) -> Database:
    """A new database holding the bundled scenario `name` at full scale, every check passed
    (_materialize); one run per scenario and session, copied for each test. Strong is loaded
    over default: the scenario change that the last test checks, run once for both tests."""
    scenario = _scenario(name)

    def load(database: Database) -> runner.RunSummary:
        return _materialize(scenario, database)

    if name != "strong":
        return Database(url=copy_of(f"full_{name}", load))
    default = _scenario("default")
    templates.template("full_default", lambda database: _materialize(default, database))
    return Database(url=copy_of("full_strong", load, base="full_default"))


@pytest.mark.parametrize("name", ["default", "null", "strong"])
def test_scenario_is_recovered_and_matches_its_answer_key(name, copy_of, templates):
    scenario = _scenario(name)
    if name == "null":
        assert scenario.causal.true_ate == 0 and not scenario.drifts and not scenario.gaps
    database = _loaded(copy_of, templates, name)

    _assert_causal_effect_recovered(scenario, database)
    report = _assert_drifts_recovered(scenario, database)
    _assert_gaps_recovered(scenario, database)
    _assert_answer_key(scenario, database, report)


def test_strong_scenario_plants_more_than_the_default():
    default, strong = _scenario("default"), _scenario("strong")
    assert strong.causal.true_ate > default.causal.true_ate
    lo, hi = strong.causal.probability_range()
    assert 0 <= lo and hi <= 1
    assert len(strong.drifts) >= 4
    assert {d.kind for d in strong.drifts} == {"mean_shift", "variance_change", "category_mix"}
    groups = {FEATURES[d.feature][0] for d in strong.drifts}
    assert {"hcp_demographics", "patient_features", "brand_performance"} <= groups
    assert len(strong.gaps) >= 3
    for attribute in ("brand", "region", "metric_name"):
        assert len({getattr(g, attribute) for g in strong.gaps}) >= 3, attribute


def test_changing_the_scenario_changes_what_is_planted_and_the_answer_key_follows(
    copy_of, templates
):
    default, strong = _scenario("default"), _scenario("strong")
    assert default.content_hash() != strong.content_hash()

    before = _ground_truth(_loaded(copy_of, templates, "default"))
    assert set(before["scenario_hash"]) == {default.content_hash()}

    database = _loaded(copy_of, templates, "strong")  # strong materialized over default
    summary = templates.result("full_strong")
    after = _ground_truth(database)
    assert set(after["scenario_hash"]) == {strong.content_hash()}

    def planted(truth: pl.DataFrame, kind: str) -> set[str]:
        return set(truth.filter(pl.col("kind") == kind, pl.col("planted"))["subject"])

    strong_drifts = {d.feature for d in strong.drifts}
    strong_gaps = {_series(g.brand, g.region, g.metric_name) for g, _ in gaps.gap_series(strong)}
    assert planted(before, "drift") == {d.feature for d in default.drifts}
    assert planted(after, "drift") == strong_drifts != planted(before, "drift")
    assert planted(after, "gap") == strong_gaps != planted(before, "gap")
    assert set(after.filter(kind="gap")["subject"]) == strong_gaps  # no gap row of default left
    (causal,) = after.filter(kind="causal_effect")["expected_value"]
    assert causal == strong.causal.true_ate

    # The data is strong's alone: every table holds exactly the rows strong's run loaded ...
    counts = _table_counts(database)
    assert counts == {t.table: t.rows for t in summary.tables}
    with database.connect() as conn:
        (active,) = conn.execute("SELECT scenario_hash FROM e2i_active_scenario").fetchone()
    assert active == strong.content_hash()
    # ... and the consumers find strong's effect, drifts and gaps, none of default's.
    _assert_causal_effect_recovered(strong, database)
    report = _assert_drifts_recovered(strong, database)
    _assert_gaps_recovered(strong, database)
    _assert_answer_key(strong, database, report)
    with database.connect() as conn:
        metrics = read_table(conn, TABLES["business_metrics"], columns=gaps.COLUMNS)
    scored = gaps.scored_rows(strong, metrics)
    for gap in default.gaps:  # default's gaps are gone: those series are back on target
        assert _series(gap.brand, gap.region, gap.metric_name) not in strong_gaps
        rows = scored.filter(brand=gap.brand, region=gap.region, metric_name=gap.metric_name)
        # on target up to the target's rounding (a whole prescription, a 6-decimal share)
        assert ((rows["expected"] - rows["target"]).abs() <= 0.5).all()
        assert rows["flagged"].mean() < 0.2, gap
