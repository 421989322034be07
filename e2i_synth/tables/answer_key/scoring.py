"""Score an agent's answers against the answer key, next to the reference methods' own score.

Pure: `score(answers, ground_truth)` takes the answers (answer_key.answers) and the
ground_truth table as a polars frame (from the database, or from the generators), and returns
a JSON-ready scorecard. The same answers on the same ground_truth always give the same card.

Metrics, per family:

gaps, drift   a detection task over a known set of candidates (series; features): true and
              false positives, misses, precision, recall and F1 over the planted set, recall
              over the plants the reference method can detect at this size (power >= 0.8), and
              the onset error in days of the true positives that give one. F1 is the headline:
              it punishes false alarms and misses alike, which is what a monitor is judged on.
              An empty answer has precision 1 (it claims nothing false) and recall 0; with
              nothing planted (the null scenario), recall is 1 and only false alarms count.
              A drift flag on a feature downstream of a planted world drift (ground_truth's
              downstream_of_planted) is neither a hit nor a false alarm: the plant moves it.
              Likewise a gap on the imprint of a shock that the world left too small to detect
              (ground_truth's imprint_of, detectable false): a start shock that kept out a
              start or two may leave NRx on target, or not. Gaps also get the end error:
              months between the reported and the planted last month short (an open gap ends
              with the scenario's last month).
effects       absolute and relative error of the estimate, whether the 95% interval covers the
              true value, whether the sign is right (for a null effect: the interval holds 0)
              and the interval's width. The headline is the interval score of Gneiting and
              Raftery (2007): width + (2 / 0.05) x the distance by which the interval misses
              the truth. It is a proper scoring rule: it rewards narrow intervals, and only if
              they cover, so neither a lucky point estimate nor a huge interval wins.

Each family's headline is compared with the reference methods' answer on the same sample
(stored in ground_truth's scenario row as `reference_answers`): better, same or worse.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import polars as pl

from e2i_synth.tables.answer_key.answers import Answers, AnswersError, parse_answers
from e2i_synth.tables.answer_key.bounds import REFERENCE_ALPHA

SCORECARD_VERSION = 1


class ScoreRefused(ValueError):
    """The answers cannot be scored against this ground_truth (exit code 2)."""


def _details(value: Any) -> dict:
    return value if isinstance(value, dict) else json.loads(value)


def _ratio(numerator: int, denominator: int, empty: float) -> float:
    return numerator / denominator if denominator else empty


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _days(a: date, b: date) -> int:
    return abs((a - b).days)


def _compare(agent: float | None, reference: float | None, higher_is_better: bool) -> str:
    """better / same / worse than the reference; an unanswered metric is worse."""
    if agent is None and reference is None:
        return "same"
    if agent is None:
        return "worse"
    if reference is None:
        return "better"
    if math.isclose(agent, reference, rel_tol=1e-9, abs_tol=1e-12):
        return "same"
    return "better" if (agent > reference) == higher_is_better else "worse"


def _detection(
    reported: dict[str, dict], planted: dict[str, dict], detectable: set[str], onset_key: str
) -> dict:
    """Detection metrics of `reported` (key -> finding) against `planted` (key -> truth)."""
    hits = sorted(set(reported) & set(planted))
    false_alarms = sorted(set(reported) - set(planted))
    missed = sorted(set(planted) - set(reported))
    precision = _ratio(len(hits), len(reported), 1.0)
    recall = _ratio(len(hits), len(planted), 1.0)
    found_detectable = len(set(hits) & detectable)
    onset_errors = {
        k: _days(reported[k][onset_key], planted[k]["onset"])
        for k in hits
        if reported[k].get(onset_key) is not None
    }
    return {
        "planted": len(planted),
        "reported": len(reported),
        "true_positives": len(hits),
        "false_positives": len(false_alarms),
        "missed": len(missed),
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "recall_detectable": _ratio(found_detectable, len(detectable), 1.0),
        "onset_error_days_mean": _mean(list(onset_errors.values())),
        "onset_error_days_max": max(onset_errors.values()) if onset_errors else None,
        "onset_error_days": onset_errors,
        "false_positive_keys": false_alarms,
        "missed_keys": missed,
    }


def _month(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _gap_truth(truth: pl.DataFrame) -> tuple[dict[str, dict], set[str], set[str]]:
    """The planted gaps and the imprints a detection must find (key -> onset and end), the
    detectable ones, and the imprints too small to detect (neither required nor false)."""
    planted, detectable, excused = {}, set(), set()
    for row in truth.filter(pl.col("kind") == "gap").iter_rows(named=True):
        details = _details(row["details"])
        if details.get("imprint_of") and not details.get("detectable"):
            excused.add(row["subject"])
            continue
        spec = details["planted"]
        planted[row["subject"]] = {
            "onset": _month(spec["start_month"]),
            "end": _month(spec.get("end_month")),
        }
        if details.get("detectable"):
            detectable.add(row["subject"])
    return planted, detectable, excused


def _score_gaps(answers: Answers, truth: pl.DataFrame, last_month: date) -> dict:
    planted, detectable, excused = _gap_truth(truth)
    reported = {
        g.key: {"onset": g.start_month, "end": g.end_month}
        for g in answers.gaps
        if g.key not in excused
    }
    card = _detection(reported, planted, detectable, "onset")
    ends = {
        k: _days(reported[k]["end"] or last_month, planted[k]["end"] or last_month)
        for k in sorted(set(reported) & set(planted))
    }
    card["end_error_days_mean"] = _mean(list(ends.values()))
    card["end_error_days"] = ends
    return card


def _score_drift(answers: Answers, truth: pl.DataFrame) -> dict:
    planted, detectable, downstream = {}, set(), set()
    for row in truth.filter(pl.col("kind") == "drift").iter_rows(named=True):
        details = _details(row["details"])
        if details.get("downstream_of_planted"):  # moved by a plant in the world: not scored
            downstream.add(row["subject"])
        if row["planted"]:
            planted[row["subject"]] = {"onset": date.fromisoformat(details["planted"]["start"])}
            if details.get("detectable"):
                detectable.add(row["subject"])
    reported = {
        f.feature: {"onset": f.onset} for f in answers.drift.flagged if f.feature not in downstream
    }
    card = _detection(reported, planted, detectable, "onset")
    windows = answers.drift.window
    if windows is not None:
        expected = _details(truth.filter(pl.col("kind") == "drift")["details"][0])["windows"]
        card["window_matches_answer_key"] = windows.model_dump(mode="json") == expected
    return card


def interval_score(lower: float, upper: float, truth: float, alpha: float = REFERENCE_ALPHA):
    """Gneiting & Raftery's interval score of a central (1 - alpha) interval: lower is better."""
    return (
        (upper - lower)
        + (2 / alpha) * max(lower - truth, 0.0)
        + (2 / alpha) * max(truth - upper, 0.0)
    )


def _effect_metrics(estimate: float, ci95: tuple[float, float], truth: float) -> dict:
    error = abs(estimate - truth)
    lower, upper = ci95
    if truth == 0:  # no sign to find: right when the interval does not claim one
        sign_right = lower <= 0 <= upper
    else:
        sign_right = estimate != 0 and (estimate > 0) == (truth > 0)
    return {
        "estimate": estimate,
        "ci95": [lower, upper],
        "absolute_error": error,
        "relative_error": error / abs(truth) if truth != 0 else None,
        "covers": lower <= truth <= upper,
        "sign_right": bool(sign_right),
        "interval_width": upper - lower,
        "interval_score": interval_score(lower, upper, truth),
    }


def _score_effects(answers: Answers, reference: Answers, truth: pl.DataFrame) -> dict:
    mine = {e.answer_id: e for e in answers.effects}
    theirs = {e.answer_id: e for e in reference.effects or []}
    items = []
    for row in (
        truth.filter(pl.col("kind") == "causal_effect").sort("answer_id").iter_rows(named=True)
    ):
        details = _details(row["details"])
        true_value = row["expected_value"]
        agent, ref = mine.get(row["answer_id"]), theirs.get(row["answer_id"])
        agent_card = _effect_metrics(agent.estimate, agent.ci95, true_value) if agent else None
        ref_card = _effect_metrics(ref.estimate, ref.ci95, true_value) if ref else None
        items.append(
            {
                "answer_id": row["answer_id"],
                "true_value": true_value,
                "power": details.get("power"),
                "detectable": details.get("detectable"),
                "agent": agent_card,
                "reference": ref_card,
                "vs_reference": _compare(
                    agent_card and agent_card["interval_score"],
                    ref_card and ref_card["interval_score"],
                    higher_is_better=False,
                ),
            }
        )
    known = {i["answer_id"] for i in items}
    return {"items": items, "unknown_answer_ids": sorted(set(mine) - known)}


def _family_cards(answers: Answers, truth: pl.DataFrame, last_month: date) -> dict:
    cards = {}
    if answers.gaps is not None:
        cards["gaps"] = _score_gaps(answers, truth, last_month)
    if answers.drift is not None:
        cards["drift"] = _score_drift(answers, truth)
    return cards


def scenario_row(ground_truth: pl.DataFrame) -> dict:
    rows = ground_truth.filter(pl.col("kind") == "scenario")
    if rows.height != 1:
        raise ScoreRefused(
            f"ground_truth holds {rows.height} scenario rows, not 1: is the database "
            "materialized (`e2i-synth materialize`)?"
        )
    return rows.row(0, named=True)


def reference_answers(ground_truth: pl.DataFrame) -> Answers:
    """The reference methods' answers stored with ground_truth."""
    details = _details(scenario_row(ground_truth)["details"])
    if "reference_answers" not in details:
        raise ScoreRefused(
            "ground_truth has no reference_answers: it was generated by an older e2i-synth; "
            "materialize again to score against it"
        )
    return parse_answers(details["reference_answers"], "ground_truth reference_answers")


def score(answers: Answers | dict | str, ground_truth: pl.DataFrame) -> dict:
    """The scorecard of `answers` against `ground_truth` (one scenario's rows), next to the
    reference methods' scorecard on the same sample. Raises AnswersError for answers that do
    not parse and ScoreRefused for answers computed for another scenario."""
    if not isinstance(answers, Answers):
        answers = parse_answers(answers)
    hashes = sorted(set(ground_truth["scenario_hash"].to_list()))
    if len(hashes) != 1:
        raise ScoreRefused(f"ground_truth holds {len(hashes)} scenario hashes, not 1: {hashes}")
    row = scenario_row(ground_truth)
    if answers.scenario_hash != hashes[0]:
        raise ScoreRefused(
            f"the answers are for scenario {answers.scenario_hash}, but the answer key is for "
            f"scenario {hashes[0]} ({row['subject']}): score answers against the data they "
            "were computed on"
        )
    scenario = _details(row["details"])["scenario"]
    last_month = date.fromisoformat(scenario["end_date"]).replace(day=1)
    reference = reference_answers(ground_truth)
    agent_cards = _family_cards(answers, ground_truth, last_month)
    reference_cards = _family_cards(reference, ground_truth, last_month)
    families: dict[str, Any] = {}
    for family in ("gaps", "drift"):
        if family not in agent_cards:
            families[family] = {"scored": False}
            continue
        families[family] = {
            "scored": True,
            "headline": "f1",
            "agent": agent_cards[family],
            "reference": reference_cards[family],
            "vs_reference": _compare(
                agent_cards[family]["f1"], reference_cards[family]["f1"], higher_is_better=True
            ),
        }
    if answers.effects is None:
        families["effects"] = {"scored": False}
    else:
        effects = _score_effects(answers, reference, ground_truth)
        verdicts = {i["vs_reference"] for i in effects["items"]}
        families["effects"] = {
            "scored": True,
            "headline": "interval_score",
            **effects,
            "vs_reference": "worse"
            if "worse" in verdicts
            else "better"
            if "better" in verdicts
            else "same",
        }
    return {
        "scorecard_version": SCORECARD_VERSION,
        "scenario": {"name": row["subject"], "scenario_hash": hashes[0]},
        "agent": answers.agent,
        "families": families,
        "summary": summary(families),
    }


def summary(families: dict) -> dict:
    """The headline of each scored family, the agent's and the reference's."""
    out = {}
    for family in ("gaps", "drift"):
        card = families[family]
        if card["scored"]:
            out[family] = {
                "f1": card["agent"]["f1"],
                "reference_f1": card["reference"]["f1"],
                "vs_reference": card["vs_reference"],
            }
    if families["effects"]["scored"]:
        for item in families["effects"]["items"]:
            out[item["answer_id"]] = {
                "interval_score": item["agent"] and item["agent"]["interval_score"],
                "reference_interval_score": item["reference"]
                and item["reference"]["interval_score"],
                "vs_reference": item["vs_reference"],
            }
    return out


def perfect_answers(ground_truth: pl.DataFrame) -> Answers:
    """The answers an oracle gives: every plant, its onset, the true effect (a zero-width
    interval). A perfect score, by construction; the tests and the leaderboard use it."""
    row = scenario_row(ground_truth)
    truth = ground_truth
    gaps = []
    for r in truth.filter(pl.col("kind") == "gap").sort("answer_id").iter_rows(named=True):
        spec = _details(r["details"])["planted"]
        gaps.append({k: spec[k] for k in ("brand", "region", "metric_name", "start_month")})
        if spec.get("end_month"):
            gaps[-1]["end_month"] = spec["end_month"]
    flagged = [
        {"feature": r["subject"], "onset": _details(r["details"])["planted"]["start"]}
        for r in truth.filter((pl.col("kind") == "drift") & pl.col("planted"))
        .sort("answer_id")
        .iter_rows(named=True)
    ]
    effects = [
        {
            "answer_id": r["answer_id"],
            "estimate": r["expected_value"],
            "ci95": [r["expected_value"]] * 2,
        }
        for r in truth.filter(pl.col("kind") == "causal_effect").iter_rows(named=True)
    ]
    return parse_answers(
        {
            "scenario_hash": row["scenario_hash"],
            "agent": "oracle",
            "gaps": gaps,
            "drift": {"flagged": flagged},
            "effects": effects,
        }
    )


def empty_answers(scenario_hash: str) -> Answers:
    """The answer "nothing found" in every family."""
    return parse_answers(
        {"scenario_hash": scenario_hash, "gaps": [], "drift": {"flagged": []}, "effects": []}
    )


__all__ = [
    "AnswersError",
    "ScoreRefused",
    "empty_answers",
    "interval_score",
    "perfect_answers",
    "reference_answers",
    "score",
]
