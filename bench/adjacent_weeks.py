"""False-alarm rate of the Drift Monitor's reference rule on adjacent unplanted 7-day windows.

Generates feature_values (pure generators, no database) for the weeks of [start, start + weeks
x 7 days) of a scenario with nothing planted, then applies the reference rule (PSI >= 0.2 or
KS p < 0.01, e2i_synth.stats.drift) to every feature on every pair of adjacent weeks. Prints
the values per 7-day window per feature and the share of pairs flagged; pairs the reference
monitor refuses as too thin (consumers.drift.MIN_WINDOW_VALUES) are counted apart.

    .venv/bin/python -m bench.adjacent_weeks --scenario null --scale full --weeks 52
"""

import argparse
from datetime import date, timedelta

import polars as pl

import e2i_synth.scenarios
from e2i_synth.core.scenario import load_scenario
from e2i_synth.stats.drift import feature_statistics, is_flagged
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.feature_store.catalog import generate_feature_groups, generate_features
from e2i_synth.tables.feature_store.feature_values import generate_feature_values

# The script runs on earlier commits too (the "before" figure), which lack these.
try:
    from e2i_synth.consumers.drift import MIN_WINDOW_VALUES
    from e2i_synth.stats.drift import kish_size
except ImportError:
    MIN_WINDOW_VALUES, kish_size = 0, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", default="null")
    parser.add_argument("--scale", default="full")
    parser.add_argument("--start", default="2025-07-01")
    parser.add_argument("--weeks", type=int, default=52)
    args = parser.parse_args()
    scenario = load_scenario(e2i_synth.scenarios.bundled_path(args.scenario), args.scale)
    start = date.fromisoformat(args.start)
    hcps = generate_hcp_profiles(scenario)
    journeys = generate_patient_journeys(scenario, hcps)
    features = generate_features(scenario, generate_feature_groups(scenario))
    end = start + timedelta(days=7 * args.weeks)
    values = generate_feature_values(scenario, hcps, journeys, features, start, end)
    week = ((pl.col("event_timestamp").dt.date() - start).dt.total_days() // 7).alias("week")
    values = values.with_columns(week)
    print(f"{args.scenario} scale {scenario.scale}: {values.height} rows over {args.weeks} weeks")
    flagged = judged = refused = 0
    for feature in features.iter_rows(named=True):
        own = values.filter(pl.col("feature_id") == feature["feature_id"])
        weeks = own.partition_by("week", as_dict=True)
        sizes = [w.height for w in weeks.values()]
        hits = pairs = thin = 0
        for w in range(args.weeks - 1):
            a, b = weeks.get((w,)), weeks.get((w + 1,))
            if a is None or b is None:
                continue
            if min(a.height, b.height) < MIN_WINDOW_VALUES:
                thin += 1
                continue
            if kish_size is None:
                psi, _, p = feature_statistics(a["value"], b["value"], feature["value_type"])
            else:  # the KS p-value at the effective sizes, as the monitor computes it
                effective = (kish_size(a["entity_values"]), kish_size(b["entity_values"]))
                psi, _, p = feature_statistics(
                    a["value"], b["value"], feature["value_type"], effective
                )
            hits += is_flagged(psi, p)
            pairs += 1
        flagged, judged, refused = flagged + hits, judged + pairs, refused + thin
        print(
            f"  {feature['name']:24} values/7d {min(sizes):6}-{max(sizes):6}  "
            f"flagged {hits:3}/{pairs:3}  refused {thin}"
        )
    rate = flagged / judged if judged else float("nan")
    print(f"flagged {flagged} of {judged} judged adjacent-week pairs ({rate:.1%})")
    print(f"refused (fewer than {MIN_WINDOW_VALUES} values): {refused}")


if __name__ == "__main__":
    main()
