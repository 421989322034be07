"""False-failure rates of the answer key's checks, over many seeds of each bundled scenario.

    python -m bench.false_failures [--seeds 2000] [--scenarios default null strong]

Each seed runs the pure generators (no database) and every answer-key rule, the blocking ones
and the recorded (warning) ones, plus the rules that blocked before issue 11, so one run shows
what blocked then and what blocks now. For each rule: failures, the observed rate and its 95%
upper bound (exact binomial), and for blocking rules the largest margin used (statistic / bound:
1.0 is the bound).
"""

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.stats import beta

import e2i_synth.scenarios
from e2i_synth.core.scenario import load_scenario
from e2i_synth.tables.answer_key import causal, drift, gaps
from e2i_synth.tables.answer_key.sample import generate_answer_key_tables

# Spawned, not forked: a fork of a process whose polars threads hold a lock deadlocks.
SPAWN = multiprocessing.get_context("spawn")

OUT = Path(__file__).parent / "out" / "false_failures.json"


def _one_seed(name: str, seed: int) -> dict:
    base = load_scenario(Path(e2i_synth.scenarios.__file__).parent / f"{name}.yaml")
    scenario = base.model_copy(update={"seed": seed})
    tables = generate_answer_key_tables(scenario)
    c = causal.causal_answer(scenario, tables.patient_journeys)
    # With the power, as the pipeline runs it: drift_recovered requires detectable plants only.
    d = drift.drift_answers(
        scenario, tables.features, tables.feature_values, patient_journeys=tables.patient_journeys
    )
    scored = gaps.scored_rows(scenario, tables.business_metrics)
    g = gaps.gap_answers(scenario, scored)
    verdicts = {
        v.name: v.passed
        for v in [
            *causal.causal_verdicts(scenario, c),
            *drift.drift_verdicts(scenario, d),
            *gaps.gap_verdicts(scenario, scored, g),
        ]
    }
    alpha = drift.unplanted_alpha(scenario, len(d))
    # The features the blocking rule judges: neither planted nor downstream of a world drift.
    moving = drift.accepted_moving(scenario)
    unplanted_p = [a.ks_pvalue for a in d if a.planted is None and a.feature not in moving]
    truth = scenario.causal.true_ate
    old_rules = {
        # What blocked before: the 95% interval covers the truth, the naive estimate is 30% off,
        # every planted drift flagged and at most one other (none for null), each gap's mean
        # achievement within 2 points of the plan, every other month within [0.9, 1.1]. (The
        # gap rule is left out: it was written for the old, noise-free business_metrics.)
        "old: causal interval covers and naive >= 30% off": (
            c.ci95[0] <= truth <= c.ci95[1] and abs(c.naive - truth) >= 0.3 * abs(truth)
        ),
        "old: drift flags planted, at most 1 other": (
            all(a.flagged for a in d if a.planted)
            and sum(a.flagged for a in d if a.planted is None) <= (1 if scenario.drifts else 0)
        ),
    }
    margins = {
        "causal_model_holds": abs(c.adjusted - truth - c.start_shock_shift) / c.bound,
        "feature_values_stationary_unless_planted": alpha / min(unplanted_p, default=np.inf),
        "business_metrics_match_plan": float(scored["z"].max()) / gaps.bonferroni_z(scored.height),
    }
    return {"passed": verdicts | old_rules, "margins": margins}


def _batch(name: str, seeds: list[int]) -> list[dict]:
    return [_one_seed(name, s) for s in seeds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--scenarios", nargs="+", default=["default", "null", "strong"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rules = causal.RULES | drift.RULES | gaps.RULES
    report = {}
    for name in args.scenarios:
        started = time.perf_counter()
        seeds = list(range(1, args.seeds + 1))
        parts = [seeds[i :: args.workers] for i in range(args.workers)]
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=SPAWN) as pool:
            results = [r for part in pool.map(_batch, [name] * len(parts), parts) for r in part]
        n = len(results)
        print(f"\n{name}: {n} seeds in {time.perf_counter() - started:.0f}s")
        line = "  {:<50} {:<8} {:>6} {:>8} {:>10} {:>11}"
        print(line.format("rule", "kind", "fails", "rate", "95% upper", "max margin"))
        rows = []
        for rule in results[0]["passed"]:
            fails = sum(not r["passed"][rule] for r in results)
            upper = float(beta.ppf(0.95, fails + 1, n - fails)) if fails < n else 1.0
            kind = "old" if rule.startswith("old") else "block" if rules[rule].blocking else "warn"
            margin = (
                max(r["margins"][rule] for r in results) if rule in results[0]["margins"] else None
            )
            margin_text = f"{margin:.3f}" if margin is not None else ""
            print(line.format(rule, kind, fails, f"{fails / n:.4f}", f"{upper:.5f}", margin_text))
            rows.append(
                {
                    "rule": rule,
                    "kind": kind,
                    "failures": fails,
                    "seeds": n,
                    "rate": fails / n,
                    "upper95": upper,
                    "max_margin": margin,
                }
            )
        report[name] = rows
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
