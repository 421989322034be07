"""A scenario with an answer key: each packaged scenario, materialized at full scale with every
check, plants exactly what its file says, and the reference consumers find exactly that in
PostgreSQL: the causal effect, the drifts and the gaps, nothing else, matching ground_truth."""

from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from psycopg import sql

import e2i_synth.scenarios
from e2i_synth import runner
from e2i_synth.consumers.causal import estimate_ate
from e2i_synth.consumers.drift import drift_report
from e2i_synth.consumers.gaps import achievement_by_series
from e2i_synth.db.resource import Database
from e2i_synth.definitions import CHECKS
from e2i_synth.domain import FEATURES
from e2i_synth.scenario import Scenario, load_scenario
from e2i_synth.schemas import TABLES

SCENARIO_DIR = Path(e2i_synth.scenarios.__file__).parent
ANSWER_KEY_CHECKS = {"causal_effect_recovered", "drift_recovered", "gaps_recovered"}
NAIVE_BIAS_MIN = 0.30  # the naive estimate misses TRUE_ATE by at least 30% of it
GAP_TOLERANCE = 0.02
ON_TARGET = (0.90, 1.10)
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
    blocking = {
        spec.name
        for definition in CHECKS
        for spec in definition.check_specs
        if spec.asset_key.path[-1] == "ground_truth" and spec.blocking
    }
    assert ANSWER_KEY_CHECKS <= blocking  # the answer-key checks exist and block
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
    assert est.covers(truth), (truth, est)
    assert abs(est.naive - truth) >= NAIVE_BIAS_MIN * abs(truth), (truth, est)
    if truth == 0:
        assert est.covers(0.0)


def _assert_drifts_recovered(scenario: Scenario, database: Database) -> pl.DataFrame:
    planted = {d.feature for d in scenario.drifts}
    report = drift_report(database, scenario.monitoring)
    assert sorted(report["feature"]) == sorted(FEATURES)
    flagged = set(report.filter(pl.col("drifted"))["feature"])
    assert planted <= flagged, f"missed planted drift: {planted - flagged}"
    unplanted_flagged = flagged - planted
    assert len(unplanted_flagged) <= (1 if planted else 0), unplanted_flagged
    return report


def _assert_gaps_recovered(scenario: Scenario, database: Database) -> None:
    series = achievement_by_series(database)
    planted_mask = pl.lit(False)
    for gap in scenario.gaps:
        mask = (
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == gap.metric_name)
            & (pl.col("metric_date") >= gap.start_month)
        )
        planted_mask = planted_mask | mask
        observed = series.filter(mask)["achievement_rate"]
        assert observed.len() > 0, gap
        assert abs(observed.mean() - gap.achievement_rate) <= GAP_TOLERANCE, (gap, observed)
        # Every month of the gap, not only the mean, sits at the planted rate.
        assert (observed - gap.achievement_rate).abs().max() <= GAP_TOLERANCE, (gap, observed)
    unplanted = series.filter(~planted_mask)
    assert not unplanted.is_empty()
    off_target = unplanted.filter(~pl.col("achievement_rate").is_between(*ON_TARGET))
    assert off_target.is_empty(), off_target


def _assert_answer_key(scenario: Scenario, database: Database, report: pl.DataFrame) -> None:
    truth = _ground_truth(database)
    assert truth.height == 2 + len(FEATURES) + len(scenario.gaps)
    assert set(truth["scenario_hash"]) == {scenario.content_hash()}
    assert set(truth["seed"]) == {scenario.seed}
    assert Counter(truth["kind"]) == {
        "scenario": 1,
        "causal_effect": 1,
        "drift": len(FEATURES),
        **({"gap": len(scenario.gaps)} if scenario.gaps else {}),
    }

    (row,) = truth.filter(kind="scenario").iter_rows(named=True)
    assert row["subject"] == scenario.name
    assert row["details"]["scenario"] == scenario.model_dump(mode="json")

    (row,) = truth.filter(kind="causal_effect").iter_rows(named=True)
    assert row["expected_value"] == scenario.causal.true_ate
    assert row["planted"] == (scenario.causal.true_ate != 0)
    est = estimate_ate(database)
    assert row["details"]["adjusted_estimate"] == pytest.approx(est.adjusted, abs=1e-12)
    assert row["details"]["naive_estimate"] == pytest.approx(est.naive, abs=1e-12)

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

    gaps = truth.filter(kind="gap")
    expected_gaps = {
        _series(g.brand, g.region, g.metric_name): g.achievement_rate for g in scenario.gaps
    }
    assert gaps["planted"].all()
    assert dict(gaps.select("subject", "expected_value").iter_rows()) == expected_gaps


@pytest.mark.parametrize("name", ["default", "null", "strong"])
def test_scenario_is_recovered_and_matches_its_answer_key(name, database):
    scenario = _scenario(name)
    if name == "null":
        assert scenario.causal.true_ate == 0 and not scenario.drifts and not scenario.gaps
    _materialize(scenario, database)

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


def test_changing_the_scenario_changes_what_is_planted_and_the_answer_key_follows(database):
    default, strong = _scenario("default"), _scenario("strong")
    assert default.content_hash() != strong.content_hash()

    _materialize(default, database)
    before = _ground_truth(database)
    assert set(before["scenario_hash"]) == {default.content_hash()}

    summary = _materialize(strong, database)
    after = _ground_truth(database)
    assert set(after["scenario_hash"]) == {strong.content_hash()}

    def planted(truth: pl.DataFrame, kind: str) -> set[str]:
        return set(truth.filter(pl.col("kind") == kind, pl.col("planted"))["subject"])

    strong_drifts = {d.feature for d in strong.drifts}
    strong_gaps = {_series(g.brand, g.region, g.metric_name) for g in strong.gaps}
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
    series = achievement_by_series(database)
    for gap in default.gaps:  # default's gaps are gone: those series are back on target
        assert _series(gap.brand, gap.region, gap.metric_name) not in strong_gaps
        rates = series.filter(brand=gap.brand, region=gap.region, metric_name=gap.metric_name)[
            "achievement_rate"
        ]
        assert rates.is_between(*ON_TARGET).all(), gap
