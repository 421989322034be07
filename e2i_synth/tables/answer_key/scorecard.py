"""Score answers against the database's active scenario: what `e2i-synth score` runs.

Reads e2i_active_scenario and ground_truth (as the owner, or the scorer role: the agent's
reader role cannot read either), checks that they and the answers are about one scenario,
and scores with the pure e2i_synth.tables.answer_key.scoring.
"""

from __future__ import annotations

import polars as pl
import psycopg

from e2i_synth.db.active_scenario import get_active_hash
from e2i_synth.db.copy import read_table
from e2i_synth.tables import TABLES
from e2i_synth.tables.answer_key.answers import Answers
from e2i_synth.tables.answer_key.scoring import ScoreRefused, score

# The columns of ground_truth the scorer reads (types and order from its model).
GROUND_TRUTH_COLUMNS = (
    "answer_id",
    "kind",
    "subject",
    "planted",
    "expected_value",
    "details",
    "scenario_hash",
)


def active_hash(conn: psycopg.Connection) -> str:
    active = get_active_hash(conn)
    if active is None:
        raise ScoreRefused("the database has no active scenario: run `e2i-synth materialize` first")
    return active


def read_ground_truth(conn: psycopg.Connection) -> pl.DataFrame:
    """ground_truth in answer_id order, typed by its pandera model."""
    return read_table(conn, TABLES["ground_truth"], columns=GROUND_TRUTH_COLUMNS)


def score_active(conn: psycopg.Connection, answers: Answers) -> dict:
    """The scorecard of `answers` against the active scenario's ground_truth."""
    active = active_hash(conn)
    if answers.scenario_hash != active:
        raise ScoreRefused(
            f"the answers are for scenario {answers.scenario_hash}, but the database's active "
            f"scenario is {active}: score answers against the data they were computed on"
        )
    truth = read_ground_truth(conn)
    stale = sorted(set(truth["scenario_hash"].to_list()) - {active})
    if truth.is_empty() or stale:
        raise ScoreRefused(
            f"ground_truth is not (only) for the active scenario {active} (it holds "
            f"{stale or 'no rows'}): the last materialization did not finish; run it again"
        )
    return score(answers, truth)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


DETECTION_ROWS = (
    "f1",
    "precision",
    "recall",
    "recall_detectable",
    "true_positives",
    "false_positives",
    "missed",
    "onset_error_days_mean",
)
EFFECT_ROWS = (
    "interval_score",
    "absolute_error",
    "relative_error",
    "covers",
    "sign_right",
    "interval_width",
    "estimate",
)


def render(card: dict) -> str:
    """The scorecard as a text table: each metric, the agent's value and the reference's."""
    scenario = card["scenario"]
    lines = [
        f"scenario {scenario['name']} ({scenario['scenario_hash'][:12]}), "
        f"agent {card['agent'] or '(unnamed)'}",
        f"{'family':<10} {'metric':<24} {'agent':>10} {'reference':>10}  vs reference",
    ]
    families = card["families"]
    for family in ("gaps", "drift"):
        data = families[family]
        if not data["scored"]:
            lines.append(f"{family:<10} not answered")
            continue
        for i, metric in enumerate(
            DETECTION_ROWS + (("end_error_days_mean",) if family == "gaps" else ())
        ):
            verdict = data["vs_reference"] if i == 0 else ""
            agent, reference = _fmt(data["agent"][metric]), _fmt(data["reference"][metric])
            label = family if i == 0 else ""
            lines.append(f"{label:<10} {metric:<24} {agent:>10} {reference:>10}  {verdict}")
    effects = families["effects"]
    if not effects["scored"]:
        lines.append(f"{'effects':<10} not answered")
    else:
        for item in effects["items"]:
            lines.append(
                f"{'effect':<10} {item['answer_id']} (true {_fmt(item['true_value'])}, power "
                f"{_fmt(item['power'])})"
            )
            for i, metric in enumerate(EFFECT_ROWS):
                agent = item["agent"][metric] if item["agent"] else None
                reference = item["reference"][metric] if item["reference"] else None
                verdict = item["vs_reference"] if i == 0 else ""
                lines.append(
                    f"{'':<10} {metric:<24} {_fmt(agent):>10} {_fmt(reference):>10}  {verdict}"
                )
        if effects["unknown_answer_ids"]:
            lines.append(f"{'':<10} unknown answer_ids: {', '.join(effects['unknown_answer_ids'])}")
    return "\n".join(lines)
