"""Checks on ground_truth: the loaded tables hold what the answer key says was planted.

Blocking checks fail only when the generator is wrong: they assert what it controls exactly,
or bounds whose false-failure rate is at most answer_key.bounds.FALSE_FAILURE_RATE per run.
Whether the reference methods recover the plants on this one sample is a warning: those
statistics are recorded in ground_truth. The rules live in e2i_synth.answer_key (pure), which
the ground_truth generator and the many-seed test share.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from e2i_synth.answer_key import causal, drift, gaps
from e2i_synth.answer_key.verdict import Rule, Verdict
from e2i_synth.assets.scenario_resource import ScenarioResource
from e2i_synth.checks.table_checks import table_checks
from e2i_synth.db.copy import read_table
from e2i_synth.db.metadata import markdown_table
from e2i_synth.db.resource import Database
from e2i_synth.domain import FEATURES
from e2i_synth.schemas import TABLES


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


def _utc(day) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


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
            read_table(conn, spec, window=(_utc(start), _utc(end)), columns=drift.VALUE_COLUMNS)
            for start, end in (
                (w.baseline_start, w.baseline_end),
                (w.current_start, w.current_end),
            )
        )
    answers = drift.drift_answers(loaded, features, values)
    yield from _results(drift.drift_verdicts(loaded, answers), drift.RULES)


@dg.multi_asset_check(specs=_specs(gaps.RULES))
def gap_checks(database: Database, scenario: ScenarioResource):
    loaded = scenario.load()
    with database.connect() as conn:
        metrics = read_table(conn, TABLES["business_metrics"], columns=gaps.COLUMNS)
    scored = gaps.scored_rows(loaded, metrics)
    answers = gaps.gap_answers(loaded, scored)
    yield from _results(gaps.gap_verdicts(loaded, scored, answers), gaps.RULES)


ANSWER_KEY_CHECKS = [
    *table_checks(TABLES["ground_truth"], expected=lambda s: 2 + len(FEATURES) + len(s.gaps)),
    causal_checks,
    drift_checks,
    gap_checks,
]
