"""The gap answer: business_metrics against target, by series and month.

planted   the scenario's GapSpecs (series, start_month, achievement_rate).
realised  the mean observed achievement over the gap's months in this sample.
recovered the reference Gap Analyzer rule on the row's own statistics: a month is short when
          value < target and statistical_significance >= 0.95.
power     per planted month, the probability that the rule flags it at the planted size, from
          the row's standard error (the generator draws the observed value as the true value
          plus that error: e2i_synth.tables.metrics.business_metrics).

Blocking rule: every row's value lies within a Bonferroni bound of its true value (target x
planned achievement) in units of the standard error it was drawn with, so a correct generator
fails it with probability <= FALSE_FAILURE_RATE over all rows.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from e2i_synth.core.scenario import GapSpec, Scenario
from e2i_synth.tables.answer_key.bounds import (
    DETECTABLE_POWER,
    FALSE_FAILURE_RATE,
    REFERENCE_ALPHA,
    bonferroni_z,
    power_two_sided,
)
from e2i_synth.tables.answer_key.verdict import Rule, Verdict
from e2i_synth.tables.metrics.business_metrics import DECIMALS, planned_achievement, standard_error

SERIES = ("brand", "region", "metric_name")
# The columns of business_metrics the gap answer reads.
COLUMNS = (
    "metric_id",
    *SERIES,
    "metric_type",
    "metric_date",
    "value",
    "target",
    "statistical_significance",
    "sample_size",
)
# The reference rule's level: 1 - REFERENCE_ALPHA significance, below target.
SIGNIFICANT = 1 - REFERENCE_ALPHA
# The reference Gap Analyzer reports a series short from the first of this many consecutive
# months the month rule flags (an on-target series does so with probability about
# 28 x 0.025^3 = 4e-4 over 30 months).
REFERENCE_RUN_MONTHS = 3


RULES = {
    "business_metrics_match_plan": Rule(
        blocking=True,
        description="every row's value is its true value (target, or target x the planted rate) "
        "plus its sampling error, within a Bonferroni bound of standard errors over all rows "
        f"(false-failure rate <= {FALSE_FAILURE_RATE:g} per run); every planted gap has months",
    ),
    "gaps_recovered": Rule(
        blocking=False,
        description="the reference rule (value < target, significance >= 0.95) flags at least "
        "half the months of every planted gap, and unplanted months near their nominal 2.5% "
        "(a warning; realised shortfall, recall and power are in ground_truth)",
    ),
}


@dataclass(frozen=True)
class GapAnswer:
    gap: GapSpec
    months: int
    realised_achievement: float | None  # mean observed value / target over the gap's months
    months_flagged: int  # by the reference rule
    power: float | None  # mean over the gap's months
    min_power: float | None

    @property
    def key(self) -> str:
        return f"{self.gap.brand}/{self.gap.region}/{self.gap.metric_name}"

    @property
    def detectable(self) -> bool:
        return self.min_power is not None and self.min_power >= DETECTABLE_POWER

    def as_details(self) -> dict:
        return {
            "planted": self.gap.model_dump(mode="json"),
            "realised": {"mean_achievement": self.realised_achievement, "months": self.months},
            "recovered": {
                "rule": f"value < target and statistical_significance >= {SIGNIFICANT}",
                "months_flagged": self.months_flagged,
                "recall": self.months_flagged / self.months if self.months else None,
            },
            "power": self.power,
            "min_power": self.min_power,
            "detectable": self.detectable,
        }


def scored_rows(scenario: Scenario, metrics: pl.DataFrame) -> pl.DataFrame:
    """Rows with their true value, the standard error it was drawn with, the standardised
    error of the observed value, the reference rule's flag and the power at the true value."""
    metrics = metrics.select(COLUMNS).sort("metric_id")  # a fixed order: float sums
    frame = metrics.with_columns(planned=planned_achievement(scenario, metrics))
    expected = (frame["target"] * frame["planned"]).to_numpy()
    se = standard_error(expected, frame["sample_size"].to_numpy(), frame["metric_type"].to_numpy())
    rounding = 0.5 * 10.0 ** -frame["metric_type"].replace_strict(DECIMALS).to_numpy()
    deviation = np.abs(frame["value"].to_numpy() - expected)
    shift = np.abs(expected - frame["target"].to_numpy()) / np.maximum(se, 1e-300)
    return frame.with_columns(
        expected=expected,
        se=se,
        z=np.maximum(deviation - rounding, 0) / np.maximum(se, 1e-300),
        flagged=(pl.col("value") < pl.col("target"))
        & (pl.col("statistical_significance") >= SIGNIFICANT),
        power=power_two_sided(shift),
    )


def _gap_rows(gap: GapSpec) -> pl.Expr:
    rows = (
        (pl.col("brand") == gap.brand)
        & (pl.col("region") == gap.region)
        & (pl.col("metric_name") == gap.metric_name)
        & (pl.col("metric_date") >= gap.start_month)
    )
    return rows if gap.end_month is None else rows & (pl.col("metric_date") <= gap.end_month)


def gap_answers(scenario: Scenario, scored: pl.DataFrame) -> list[GapAnswer]:
    answers = []
    for gap in scenario.gaps:
        rows = scored.filter(_gap_rows(gap))
        achieved = rows["value"] / rows["target"]
        answers.append(
            GapAnswer(
                gap=gap,
                months=rows.height,
                realised_achievement=achieved.mean() if rows.height else None,
                months_flagged=int(rows["flagged"].sum()),
                power=rows["power"].mean() if rows.height else None,
                min_power=rows["power"].min() if rows.height else None,
            )
        )
    return answers


def gap_verdicts(
    scenario: Scenario, scored: pl.DataFrame, answers: list[GapAnswer]
) -> list[Verdict]:
    limit = bonferroni_z(scored.height)
    beyond = scored.filter(pl.col("z") > limit)
    planted = pl.lit(False)
    for gap in scenario.gaps:
        planted = planted | _gap_rows(gap)
    unplanted = scored.filter(~planted)
    false_flags = int(unplanted["flagged"].sum())
    # The rule flags an on-target row (value below and significant) about alpha/2 of the time.
    nominal = REFERENCE_ALPHA / 2
    weak = [a.key for a in answers if a.months and a.months_flagged < a.months / 2]
    gap_table = [
        {
            "series": a.key,
            "planted": a.gap.achievement_rate,
            "realised": a.realised_achievement,
            "months": a.months,
            "flagged": a.months_flagged,
            "power": a.power,
        }
        for a in answers
    ]
    return [
        Verdict(
            name="business_metrics_match_plan",
            passed=beyond.is_empty() and all(a.months for a in answers),
            metadata={
                "rows": scored.height,
                "z_limit": limit,
                "max_z": float(scored["z"].max()) if scored.height else None,
                "rows_beyond": beyond.select("metric_id", "value", "expected", "se").to_dicts()[
                    :20
                ],
                "gaps_without_months": [a.key for a in answers if not a.months],
            },
        ),
        Verdict(
            name="gaps_recovered",
            passed=not weak and false_flags <= 2 * nominal * max(unplanted.height, 1) + 3,
            metadata={
                "gaps": gap_table,
                "gaps_flagged_in_under_half_their_months": weak,
                "unplanted_months": unplanted.height,
                "unplanted_months_flagged": false_flags,
                "nominal_rate": nominal,
            },
        ),
    ]


def reference_gap_findings(scored: pl.DataFrame) -> list[dict]:
    """The reference Gap Analyzer's answer (the benchmark's answer format): every series with
    REFERENCE_RUN_MONTHS consecutive months flagged by the month rule, short from the first of
    them; end_month is the last flagged month before two unflagged ones in a row, when that
    comes before the series' last month."""
    found = []
    ordered = scored.select(*SERIES, "metric_date", "flagged").sort(*SERIES, "metric_date")
    for (brand, region, metric), rows in ordered.group_by(SERIES, maintain_order=True):
        months, flags = rows["metric_date"].to_list(), rows["flagged"].to_list()
        run = 0
        for i, flagged in enumerate(flags):
            run = run + 1 if flagged else 0
            if run == REFERENCE_RUN_MONTHS:
                start = end = i - run + 1
                # The gap lasts to its last flagged month before two unflagged ones in a row
                # (one month's miss at power < 1 is not a recovery).
                for j in range(i, len(flags)):
                    if flags[j]:
                        end = j
                    elif j - end >= 2:
                        break
                finding = {
                    "brand": brand,
                    "region": region,
                    "metric_name": metric,
                    "start_month": months[start].isoformat(),
                }
                if end + 2 < len(flags):  # two unflagged months after it: recovered
                    finding["end_month"] = months[end].isoformat()
                found.append(finding)
                break
    return found
