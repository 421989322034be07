"""Three small agents built on the reference consumers (e2i_synth.consumers), answering in the
benchmark's format and scored against the answer key of the database's active scenario.

    .venv/bin/python examples/reference_agents.py [--out answers.json] [--json]

- Gap Analyzer: consumers.gaps.achievement_by_series; a series is short from the first of
  RUN_MONTHS consecutive months below GAP_ACHIEVEMENT (a plain threshold rule: the reference
  method also uses each month's statistical_significance, so it should do better).
- Drift Monitor: consumers.drift.drift_report over the scenario's monitoring windows; every
  feature whose PSI or KS p-value crosses the thresholds is flagged (the reference rule).
- Causal agent: consumers.causal.estimate_ate, the backdoor-adjusted estimate and its 95%
  interval (the reference estimator).

It connects as the database owner (the URL of `e2i-synth db url`), which may read the active
scenario (its hash and monitoring windows) and score; an agent under test would get the hash
from the operator and connect as e2i_reader. The consumers need only an object with .connect():
here e2i_synth.db.connection.DatabaseTarget, the same URL resolution as the Dagster resource.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from e2i_synth.consumers.causal import estimate_ate
from e2i_synth.consumers.drift import drift_report
from e2i_synth.consumers.gaps import achievement_by_series
from e2i_synth.core.scenario import parse_scenario
from e2i_synth.db.active_scenario import get_active_yaml
from e2i_synth.db.connection import DatabaseTarget
from e2i_synth.tables.answer_key.answers import parse_answers
from e2i_synth.tables.answer_key.ground_truth import CAUSAL_ANSWER_ID
from e2i_synth.tables.answer_key.scorecard import active_hash, render, score_active

RUN_MONTHS = 3
GAP_ACHIEVEMENT = 0.93


def gap_findings(database) -> list[dict]:
    """Series with RUN_MONTHS consecutive months below GAP_ACHIEVEMENT, from the first one."""
    series = achievement_by_series(database).with_columns(
        short=pl.col("achievement_rate") < GAP_ACHIEVEMENT
    )
    found = []
    keys = ["brand", "region", "metric_name"]
    for (brand, region, metric), rows in series.group_by(keys, maintain_order=True):
        months, short = rows["metric_date"].to_list(), rows["short"].to_list()
        for i in range(len(short) - RUN_MONTHS + 1):
            if all(short[i : i + RUN_MONTHS]):
                found.append(
                    {
                        "brand": brand,
                        "region": region,
                        "metric_name": metric,
                        "start_month": months[i].isoformat(),
                    }
                )
                break
    return found


def drift_findings(database, windows) -> dict:
    report = drift_report(database, windows)
    flagged = report.filter(pl.col("drifted").fill_null(False))["feature"].to_list()
    return {
        "window": windows.model_dump(mode="json"),
        "flagged": [{"feature": name} for name in flagged],
    }


def effect_findings(database) -> list[dict]:
    ate = estimate_ate(database)
    return [
        {
            "answer_id": CAUSAL_ANSWER_ID,
            "estimate": ate.adjusted,
            "ci95": [ate.ci_lower, ate.ci_upper],
        }
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="answers.json", help="answers file to write")
    parser.add_argument("--json", action="store_true", help="print the scorecard as JSON")
    args = parser.parse_args(argv)

    database = DatabaseTarget()
    with database.connect() as conn:
        scenario_hash = active_hash(conn)  # as the operator would hand it over
        scenario = parse_scenario(get_active_yaml(conn), "active scenario")
    answers = {
        "scenario_hash": scenario_hash,
        "agent": "examples/reference_agents.py",
        "gaps": gap_findings(database),
        "drift": drift_findings(database, scenario.monitoring),
        "effects": effect_findings(database),
    }
    validated = parse_answers(answers)  # the format's own check, as `e2i-synth score` does
    Path(args.out).write_text(validated.model_dump_json(indent=2, exclude_none=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    with database.connect() as conn:
        card = score_active(conn, validated)
    print(json.dumps(card, indent=2, sort_keys=True) if args.json else render(card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
