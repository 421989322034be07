"""Checks on ground_truth: the loaded tables hold what the answer key says was planted.

Blocking checks fail only when the generator is wrong: they assert what it controls exactly,
or bounds whose false-failure rate is at most answer_key.bounds.FALSE_FAILURE_RATE per run.
Whether the reference methods recover the plants on this one sample is a warning: those
statistics are recorded in ground_truth. The rules live in e2i_synth.tables.answer_key (pure), which
the ground_truth generator and the many-seed test share.
"""

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl

from e2i_synth.core.vocabulary import FEATURES
from e2i_synth.db.copy import read_table
from e2i_synth.db.metadata import markdown_table
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.stats.drift import utc_day
from e2i_synth.tables import TABLES
from e2i_synth.tables.answer_key import causal, drift, gaps, scoring
from e2i_synth.tables.answer_key.verdict import Rule, Verdict


def _specs(rules: dict[str, Rule]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name, asset="ground_truth", blocking=rule.blocking, description=rule.description
        )
        for name, rule in rules.items()
    ]


def _metadata(value: object) -> object:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return dg.MetadataValue.md(markdown_table(pl.DataFrame(value)))
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return value


def _results(verdicts: list[Verdict], rules: dict[str, Rule]) -> Iterator[dg.AssetCheckResult]:
    for verdict in verdicts:
        rule = rules[verdict.name]
        yield dg.AssetCheckResult(
            check_name=verdict.name,
            asset_key="ground_truth",
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR if rule.blocking else dg.AssetCheckSeverity.WARN,
            metadata={k: _metadata(v) for k, v in verdict.metadata.items()},
        )


@dg.multi_asset_check(specs=_specs(causal.RULES))
def causal_checks(database: Database, scenario: ScenarioResource):
    loaded = scenario.load()
    with database.connect() as conn:
        journeys = read_table(conn, TABLES["patient_journeys"], columns=causal.COLUMNS)
    answer = causal.causal_answer(loaded, journeys)
    yield from _results(causal.causal_verdicts(loaded, answer), causal.RULES)


@dg.multi_asset_check(specs=_specs(drift.RULES))
def drift_checks(database: Database, scenario: ScenarioResource):
    loaded = scenario.load()
    w = loaded.monitoring
    spec = TABLES["feature_values"]
    with database.connect() as conn:
        features = read_table(conn, TABLES["features"], columns=drift.FEATURE_COLUMNS)
        values = pl.concat(
            read_table(
                conn, spec, window=(utc_day(start), utc_day(end)), columns=drift.VALUE_COLUMNS
            )
            for start, end in (
                (w.baseline_start, w.baseline_end),
                (w.current_start, w.current_end),
            )
        )
        recorded = read_table(conn, TABLES["ground_truth"], columns=["kind", "subject", "details"])
    # The power simulation ran once, in the ground_truth generator, on these same windows: the
    # check reads it back instead of simulating again (the verdicts only report it).
    power = {
        row["subject"]: json.loads(row["details"])["power"]
        for row in recorded.filter(pl.col("kind") == "drift").iter_rows(named=True)
    }
    answers = [
        replace(a, power=power.get(a.feature))
        for a in drift.drift_answers(loaded, features, values, with_power=False)
    ]
    yield from _results(drift.drift_verdicts(loaded, answers), drift.RULES)


@dg.multi_asset_check(specs=_specs(gaps.RULES))
def gap_checks(database: Database, scenario: ScenarioResource):
    loaded = scenario.load()
    with database.connect() as conn:
        metrics = read_table(conn, TABLES["business_metrics"], columns=gaps.COLUMNS)
    scored = gaps.scored_rows(loaded, metrics)
    answers = gaps.gap_answers(loaded, scored)
    yield from _results(gaps.gap_verdicts(loaded, scored, answers), gaps.RULES)


def _documented(scenario_hash: str) -> dict | None:
    """The leaderboard's row for this scenario (bundled rungs at their bundled seed and scale)."""
    path = Path(scoring.__file__).parent / "leaderboard.json"
    if not path.is_file():
        return None
    rows = json.loads(path.read_text()).get("bundled_seed", [])
    return next((r for r in rows if r["scenario_hash"] == scenario_hash), None)


@dg.asset_check(
    asset="ground_truth",
    name="reference_scorecard",
    blocking=False,
    description="the reference methods' answers (stored in ground_truth) scored like an agent's: "
    "their scorecard, and whether it matches the README's leaderboard for a bundled scenario "
    "(a warning: scores of one sample; other scenarios have no documented level and pass)",
)
def reference_scorecard(database: Database) -> dg.AssetCheckResult:
    from e2i_synth.tables.answer_key.scorecard import read_ground_truth

    with database.connect() as conn:
        truth = read_ground_truth(conn)
    card = scoring.score(scoring.reference_answers(truth), truth)
    families = card["families"]
    (effect, *_) = families["effects"]["items"] or [{"reference": None}]
    observed = {
        "gaps_f1": families["gaps"]["agent"]["f1"],
        "drift_f1": families["drift"]["agent"]["f1"],
        "effect_covers": (effect["reference"] or {}).get("covers"),
        "effect_interval_score": (effect["reference"] or {}).get("interval_score"),
    }
    documented = _documented(card["scenario"]["scenario_hash"])
    differs = []
    if documented is not None:
        differs = [
            key
            for key, value in observed.items()
            if not (
                value == documented[key]
                or (isinstance(value, float) and abs(value - documented[key]) <= 1e-9)
            )
        ]
    table = [
        {"metric": k, "reference": str(v), "documented": str((documented or {}).get(k, "-"))}
        for k, v in observed.items()
    ]
    return dg.AssetCheckResult(
        passed=not differs,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "scorecard": dg.MetadataValue.md(markdown_table(pl.DataFrame(table))),
            "documented": documented is not None,
            "differs_from_leaderboard": ", ".join(differs) or "none",
            "scorecard_json": dg.MetadataValue.json(card),
        },
    )


ANSWER_KEY_CHECKS = [
    *table_checks(
        TABLES["ground_truth"], expected=lambda s: 2 + len(FEATURES) + len(gaps.gap_series(s))
    ),
    causal_checks,
    drift_checks,
    gap_checks,
    reference_scorecard,
]
