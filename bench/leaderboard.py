"""The baseline leaderboard: the reference methods scored on every rung of the ladder.

No database: each bundled scenario's answer-key tables come from the pure generators
(e2i_synth.tables.answer_key.sample), ground_truth from its generator, and the reference answers
stored in it are scored like any agent's. Writes e2i_synth/tables/answer_key/leaderboard.json and
prints the markdown table that the README's leaderboard holds.

    .venv/bin/python -m bench.leaderboard [--seeds N] [RUNG ...]

With --seeds N (default 1: the bundled seed) every rung also runs N-1 further seeds, and the
table shows the mean of each headline over them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import e2i_synth.tables.answer_key
from e2i_synth.core.scenario import load_scenario
from e2i_synth.scenarios import LADDER, bundled_path
from e2i_synth.tables.answer_key.sample import generate_ground_truth_frame
from e2i_synth.tables.answer_key.scoring import reference_answers, score

# Spawned, not forked: a fork of a process whose polars threads hold a lock deadlocks.
SPAWN = multiprocessing.get_context("spawn")

# Packaged: the README's table, a test and the reference_scorecard asset check read it.
OUT = Path(e2i_synth.tables.answer_key.__file__).parent / "leaderboard.json"
CAUSAL_ID = "causal_effect:engagement_score->treatment_initiated"


def rung_scores(name: str, seed: int | None = None) -> dict:
    """The reference methods' headline metrics on one rung (at the bundled seed by default)."""
    scenario = load_scenario(bundled_path(name))
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    truth = generate_ground_truth_frame(scenario)
    card = score(reference_answers(truth), truth)
    families = card["families"]
    effect = next(i for i in families["effects"]["items"] if i["answer_id"] == CAUSAL_ID)
    ref = effect["reference"] or {}
    gaps, drift = families["gaps"]["agent"], families["drift"]["agent"]
    return {
        "rung": name,
        "seed": scenario.seed,
        "scenario_hash": scenario.content_hash(),
        "gaps_precision": gaps["precision"],
        "gaps_recall": gaps["recall"],
        "gaps_f1": gaps["f1"],
        "gaps_onset_error_days": gaps["onset_error_days_mean"],
        "gaps_end_error_days": gaps["end_error_days_mean"],
        "drift_precision": drift["precision"],
        "drift_recall": drift["recall"],
        "drift_f1": drift["f1"],
        "drift_false_positives": drift["false_positive_keys"],
        "effect_true": effect["true_value"],
        "effect_power": effect["power"],
        "effect_estimate": ref.get("estimate"),
        "effect_abs_error": ref.get("absolute_error"),
        "effect_covers": ref.get("covers"),
        "effect_sign_right": ref.get("sign_right"),
        "effect_interval_score": ref.get("interval_score"),
    }


def _mean(rows: list[dict], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r[key] is not None]
    return statistics.fmean(values) if values else None


def _f(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    head = (
        "| rung | gaps P / R / F1 | gap onset / end error (days) | drift P / R / F1 | "
        "effect: true, estimate | abs. error | covers | sign | interval score | power |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['rung']} | {_f(r['gaps_precision'])} / {_f(r['gaps_recall'])} / "
            f"{_f(r['gaps_f1'])} | {_f(r['gaps_onset_error_days'], 0)} / "
            f"{_f(r['gaps_end_error_days'], 0)} | {_f(r['drift_precision'])} / "
            f"{_f(r['drift_recall'])} / {_f(r['drift_f1'])} | {_f(r['effect_true'], 3)}, "
            f"{_f(r['effect_estimate'], 3)} | {_f(r['effect_abs_error'], 3)} | "
            f"{_f(r['effect_covers'])} | {_f(r['effect_sign_right'])} | "
            f"{_f(r['effect_interval_score'], 3)} | {_f(r['effect_power'])} |"
        )
    return "\n".join(lines)


def _run(args: tuple[str, int | None]) -> dict:
    return rung_scores(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rungs", nargs="*", default=list(LADDER))
    parser.add_argument("--seeds", type=int, default=1, help="seeds per rung (1: bundled seed)")
    args = parser.parse_args(argv)
    jobs = [(name, None) for name in args.rungs]
    jobs += [(name, seed) for name in args.rungs for seed in range(1, args.seeds)]
    with ProcessPoolExecutor(max_workers=2, mp_context=SPAWN) as pool:
        results = list(pool.map(_run, jobs))
    bundled = [r for r, (_, seed) in zip(results, jobs, strict=True) if seed is None]
    output: dict = {"bundled_seed": bundled}
    if args.seeds > 1:
        keys = [k for k in bundled[0] if k.startswith(("gaps_", "drift_", "effect_"))]
        output["mean_over_seeds"] = {
            name: {
                k: _mean([r for r in results if r["rung"] == name], k)
                for k in keys
                if k != "drift_false_positives"
            }
            for name in args.rungs
        }
        output["seeds"] = args.seeds
    if args.rungs == list(LADDER):
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(output, indent=2, sort_keys=True) + "\n")
    print(markdown(bundled))
    if args.seeds > 1:
        print(f"\nmean over {args.seeds} seeds:")
        print(markdown([{"rung": n, **m} for n, m in output["mean_over_seeds"].items()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
