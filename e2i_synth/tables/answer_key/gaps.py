"""The gap answer: business_metrics against target, by series and month.

planted   the scenario's GapSpecs (series, start_month, achievement_rate), each a shock in
          the world that shows in other series of its brand and region too, its imprint:
          - a gap on trx, market_share or adherence_rate is a refill shock
            (e2i_synth.world.timelines: that share of the brand's refills in the region
            dispensed): it shows in all three series in the same months; NRx (first fills) stay
            on target;
          - a gap on nrx or conversion_rate is a start shock (e2i_synth.world.initiation: that
            share of the starts of the patients diagnosed in its months goes ahead): it shows
            in conversion_rate in the same months, in NRx as the kept-out patients' first fills
            would have come (to a month after the gap), and in TRx and share from its start
            for as long as those patients would have refilled (to the scenario's end).
expected  per month, the achievement the plant gives in expectation: for a refill shock's trx
          and market_share, 1 - (1 - achievement_rate) x the counterfactual refills' part of
          planned TRx; for a start shock's nrx, 1 - (1 - achievement_rate) x the part of the
          month's first fills from patients diagnosed in the gap's months (waits from
          world.initiation, diagnoses spread evenly); for adherence_rate and conversion_rate,
          achievement_rate. A start shock's trx and market_share move as the world's draw of
          who starts makes them: their expectation is the world's (true value / target).
realised  the mean observed achievement over the gap's months in this sample.
recovered the reference Gap Analyzer rule on the row's own statistics: a month is short when
          value < target and statistical_significance >= 0.95.
power     per planted month, the probability that the rule flags it at the expected size, from
          the row's standard error (the generator draws the observed value as the true value
          plus that error: e2i_synth.tables.metrics.business_metrics).

Blocking rule: every row's value lies within a Bonferroni bound of its true value (the
world's volume or share from simulated_count, else target x planned achievement) in units of
the standard error it was drawn with, so a correct generator fails it with probability
<= FALSE_FAILURE_RATE over all rows.
"""

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
from scipy.stats import binomtest

from e2i_synth.core.scenario import SHOCK_METRICS, START_SHOCK_METRICS, GapSpec, Scenario
from e2i_synth.core.vocabulary import BRAND_METRICS, COMMON_METRICS
from e2i_synth.tables.answer_key.bounds import (
    DETECTABLE_POWER,
    FALSE_FAILURE_RATE,
    REFERENCE_ALPHA,
    bonferroni_z,
    power_two_sided,
)
from e2i_synth.tables.answer_key.verdict import Rule, Verdict
from e2i_synth.tables.metrics.business_metrics import (
    DECIMALS,
    planned_achievement,
    standard_error,
    true_value,
)
from e2i_synth.tables.metrics.business_metrics_model import WORLD_METRICS
from e2i_synth.world.initiation import month_after, waited_at_most
from e2i_synth.world.market import carryover, month_index, patient_weight

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
    "simulated_count",
    "market_trx",
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
        description="every row's value is its true value (the simulated market's for trx, nrx "
        "and market_share; target, or target x the planted rate, otherwise) plus its sampling "
        "error, within a Bonferroni bound of standard errors over all rows; the target of a "
        "world metric is its world value outside the declared access shocks; each shock took "
        "a number of refills its declared rate makes plausible (exact binomial, same bound) "
        f"(false-failure rate <= {FALSE_FAILURE_RATE:g} per run); every planted gap has months",
    ),
    "gaps_recovered": Rule(
        blocking=False,
        description="the reference rule (value < target, significance >= 0.95) flags at least "
        "half the months of every detectable planted gap and imprint of a shock, and "
        "unplanted months near their nominal 2.5% (a warning; realised shortfall, recall and "
        "power are in ground_truth)",
    ),
}


@dataclass(frozen=True)
class GapAnswer:
    gap: GapSpec
    imprint_of: str | None  # the planted shock's series, for the imprint of a shock
    months: int
    expected_by_month: dict[str, float]  # the plant's expected achievement per month
    realised_achievement: float | None  # mean observed value / target over the gap's months
    world_achievement: float | None  # mean true value / target: the world's, before measurement
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
            "mechanism": _mechanism(self.gap.metric_name),
            "imprint_of": self.imprint_of,
            "expected": {"achievement_by_month": self.expected_by_month},
            "realised": {
                "mean_achievement": self.realised_achievement,
                "world_mean_achievement": self.world_achievement,
                "months": self.months,
            },
            "recovered": {
                "rule": f"value < target and statistical_significance >= {SIGNIFICANT}",
                "months_flagged": self.months_flagged,
                "recall": self.months_flagged / self.months if self.months else None,
            },
            "power": self.power,
            "min_power": self.min_power,
            "detectable": self.detectable,
        }


def _mechanism(metric: str) -> str:
    if metric in START_SHOCK_METRICS:
        return (
            "start shock, a new-patient access barrier (formulary exclusion, new starts' prior "
            "authorisations denied): each patient of the brand and region diagnosed in the gap's "
            "months whom the causal model starts goes ahead with chance achievement_rate "
            "(patient_journeys.treatment_initiated is false for the others; conversion_rate "
            "falls by achievement_rate, nrx about as much from a few weeks later, trx and "
            "market_share by the refills those patients would have taken)"
        )
    cause = (
        "patients miss refills (non-adherence)"
        if metric == "adherence_rate"
        else "access shock (prior-authorisation renewals denied, claims rejected)"
    )
    return (
        f"{cause}: each refill of the brand's patients in the region is dispensed with chance "
        "achievement_rate in the gap's months (treatment_events has fewer refills; trx and "
        "market_share fall alike, adherence_rate by achievement_rate, nrx stays on target)"
    )


def shock_series(gap: GapSpec) -> list[str]:
    """The brand's series a refill shock shows in: trx, market_share and, where the brand
    reports it, adherence_rate."""
    return [m for m in SHOCK_METRICS if m in COMMON_METRICS + BRAND_METRICS[gap.brand]]


def scored_rows(scenario: Scenario, metrics: pl.DataFrame) -> pl.DataFrame:
    """Rows with their true value, the standard error it was drawn with, the standardised
    error of the observed value, the reference rule's flag and the power at the true value."""
    frame = metrics.select(COLUMNS).sort("metric_id")  # a fixed order: float sums
    frame = frame.with_columns(design=_design_achievement(scenario, frame))
    expected = true_value(scenario, frame)
    se = standard_error(expected, frame["sample_size"].to_numpy(), frame["metric_type"].to_numpy())
    rounding = 0.5 * 10.0 ** -frame["metric_type"].replace_strict(DECIMALS).to_numpy()
    deviation = np.abs(frame["value"].to_numpy() - expected)
    # Power at the plant's expected size (the design), not at this sample's realised one.
    target = frame["target"].to_numpy()
    design_se = standard_error(
        target * frame["design"].to_numpy(),
        frame["sample_size"].to_numpy(),
        frame["metric_type"].to_numpy(),
    )
    shift = np.abs(1 - frame["design"].to_numpy()) * target / np.maximum(design_se, 1e-300)
    world = expected / planned_achievement(scenario, frame).to_numpy()
    return frame.with_columns(
        expected=expected,
        # Off the plan: a world metric whose target is not its world value (up to rounding)
        # outside the declared shocks: the world moved without a declared cause.
        off_plan=pl.Series(np.abs(world - target) > rounding + 1e-9)
        & pl.col("metric_name").is_in(WORLD_METRICS)
        & ~_shock_rows(scenario),
        se=se,
        z=np.maximum(deviation - rounding, 0) / np.maximum(se, 1e-300),
        flagged=(pl.col("value") < pl.col("target"))
        & (pl.col("statistical_significance") >= SIGNIFICANT),
        power=power_two_sided(shift),
    )


def _design_achievement(scenario: Scenario, frame: pl.DataFrame) -> pl.Series:
    """Each row's achievement under the plants, in expectation: a surveyed series' rate
    (planned_achievement); for the trx and market_share rows of a refill shock, 1 - (1 - rate)
    x the part of planned TRx that is simulated refills ((trx target - carryover - nrx target)
    / trx target); for the nrx rows of a start shock, 1 - (1 - rate) x the part of the month's
    first fills from the patients diagnosed in its months (_diagnosed_in_window), for its trx
    and market_share rows the world's (true value / target); else 1."""
    rate = planned_achievement(scenario, frame).to_numpy().copy()
    trx = frame.filter(pl.col("metric_name") == "trx").select(
        "brand", "region", "metric_date", _trx="target"
    )
    nrx = frame.filter(pl.col("metric_name") == "nrx").select(
        "brand", "region", "metric_date", _nrx="target"
    )
    keys = ["brand", "region", "metric_date"]
    plan = frame.join(trx, on=keys, how="left", maintain_order="left").join(
        nrx, on=keys, how="left", maintain_order="left"
    )
    for gap in shock_gaps(scenario):
        for metric in [m for m in shock_series(gap) if m in WORLD_METRICS]:
            rows = plan.with_row_index("_i").filter(_gap_rows(gap, metric))
            if rows.is_empty():
                continue
            month = np.array([month_index(d) for d in rows["metric_date"]])
            carry = carryover(scenario, gap.brand, gap.region, month)
            planned = rows["_trx"].to_numpy()
            refills = np.maximum(planned - carry - rows["_nrx"].to_numpy(), 0)
            part = np.where(planned > 0, refills / np.maximum(planned, 1e-300), 0)
            rate[rows["_i"].to_numpy()] = 1 - (1 - gap.achievement_rate) * part
    world = None
    for gap in scenario.gaps:
        if gap.metric_name not in START_SHOCK_METRICS:
            continue
        for imprint in imprints(gap):
            rows = plan.with_row_index("_i").filter(_gap_rows(imprint))
            index = rows["_i"].to_numpy()
            if imprint.metric_name == "nrx":
                part = _diagnosed_in_window(gap, rows["metric_date"].to_list())
                rate[index] = 1 - (1 - gap.achievement_rate) * part
            elif imprint.metric_name in ("trx", "market_share") and index.size:
                if world is None:
                    target = frame["target"].to_numpy()
                    expected = true_value(scenario, frame)
                    world = np.where(target > 0, expected / np.where(target > 0, target, 1), 1)
                rate[index] = world[index]
    return pl.Series("design", rate)


def _diagnosed_in_window(gap: GapSpec, months: list[date]) -> np.ndarray:
    """Per month, the part of the first fills that come from patients diagnosed in the gap's
    months, diagnoses spread evenly in time: a first fill on day t comes from a diagnosis in
    [S, E) with probability F(t - S) - F(t - E), F the wait's distribution
    (world.initiation.waited_at_most), averaged over the month's days."""
    end = None if gap.end_month is None else month_after(gap.end_month)
    parts = []
    for month in months:
        after = month_after(month)
        days = np.arange((after - month).days, dtype=float)
        since_start = (month - gap.start_month).days + days
        part = waited_at_most(since_start)
        if end is not None:
            part = part - waited_at_most((month - end).days + days)
        parts.append(float(part.mean()))
    return np.array(parts)


def _shock_rows(scenario: Scenario) -> pl.Expr:
    """Rows of the series a declared shock shows in (imprints), in the months it does."""
    hit = pl.lit(False)
    for gap in scenario.gaps:
        for imprint in imprints(gap):
            hit = hit | _gap_rows(imprint)
    return hit


def shock_draws(scenario: Scenario, scored: pl.DataFrame) -> list[dict]:
    """Per declared shock, the refills it took (lost) of those the world without it had
    (refills), read back from the trx rows: lost = (target - true value) / weight and refills =
    trx without the shock - nrx, in simulated fills; with the exact two-sided binomial p-value
    of lost at the declared chance 1 - achievement_rate."""
    draws = []
    for gap in shock_gaps(scenario):
        trx = scored.filter(_gap_rows(gap, "trx")).sort("metric_date")
        nrx = scored.filter(_gap_rows(gap, "nrx")).sort("metric_date")
        weight = patient_weight(scenario, gap.brand)
        lost = np.round((trx["target"].to_numpy() - trx["expected"].to_numpy()) / weight)
        without = trx["simulated_count"].to_numpy() + lost
        refills = int(np.sum(without - nrx["simulated_count"].to_numpy()))
        lost_total = int(np.sum(lost))
        if refills > 0 and 0 <= lost_total <= refills:
            p = binomtest(lost_total, refills, 1 - gap.achievement_rate).pvalue
        else:  # no refill to take: plausible only if none was taken
            p = 1.0 if lost_total == 0 else 0.0
        draws.append(
            {
                "series": f"{gap.brand}/{gap.region}/{gap.metric_name}",
                "refills_without_shock": refills,
                "refills_lost": lost_total,
                "p_value": float(p),
            }
        )
    return draws


def shock_gaps(scenario: Scenario) -> list[GapSpec]:
    return [g for g in scenario.gaps if g.metric_name in SHOCK_METRICS]


def imprints(gap: GapSpec) -> list[GapSpec]:
    """The series a planted gap's shock shows in, each with the months it shows in: a refill
    shock in shock_series over its own months; a start shock in conversion_rate over its own
    months, in nrx to the month after its end (first fills come after diagnosis), in trx and
    market_share from its start to the scenario's end (the patients who did not start would
    have kept refilling)."""
    if gap.metric_name in SHOCK_METRICS:
        return [gap.model_copy(update={"metric_name": m}) for m in shock_series(gap)]
    nrx_end = None if gap.end_month is None else month_after(gap.end_month)
    return [
        gap.model_copy(update={"metric_name": "conversion_rate"}),
        gap.model_copy(update={"metric_name": "nrx", "end_month": nrx_end}),
        gap.model_copy(update={"metric_name": "trx", "end_month": None}),
        gap.model_copy(update={"metric_name": "market_share", "end_month": None}),
    ]


def gap_series(scenario: Scenario) -> list[tuple[GapSpec, str | None]]:
    """Every series short by a plant: the planted gaps, then each shock's imprint on the other
    series of its brand and region it shows in (imprints; unless planted too), with the
    shock's key."""
    planted = {(g.brand, g.region, g.metric_name) for g in scenario.gaps}
    series: list[tuple[GapSpec, str | None]] = [(g, None) for g in scenario.gaps]
    for gap in scenario.gaps:
        for imprint in imprints(gap):
            if (gap.brand, gap.region, imprint.metric_name) not in planted:
                planted.add((gap.brand, gap.region, imprint.metric_name))
                key = f"{gap.brand}/{gap.region}/{gap.metric_name}"
                series.append((imprint, key))
    return series


def _gap_rows(gap: GapSpec, metric: str | None = None) -> pl.Expr:
    rows = (
        (pl.col("brand") == gap.brand)
        & (pl.col("region") == gap.region)
        & (pl.col("metric_name") == (metric or gap.metric_name))
        & (pl.col("metric_date") >= gap.start_month)
    )
    return rows if gap.end_month is None else rows & (pl.col("metric_date") <= gap.end_month)


def gap_answers(scenario: Scenario, scored: pl.DataFrame) -> list[GapAnswer]:
    answers = []
    for gap, imprint_of in gap_series(scenario):
        rows = scored.filter(_gap_rows(gap)).sort("metric_date")
        planned = rows["target"] > 0
        achieved = (rows["value"] / rows["target"]).filter(planned)
        world = (rows["expected"] / rows["target"]).filter(planned)
        answers.append(
            GapAnswer(
                gap=gap,
                imprint_of=imprint_of,
                months=rows.height,
                expected_by_month={
                    d.isoformat(): round(float(a), 6)
                    for d, a in zip(rows["metric_date"], rows["design"], strict=True)
                },
                realised_achievement=achieved.mean() if achieved.len() else None,
                world_achievement=world.mean() if world.len() else None,
                months_flagged=int(rows["flagged"].sum()),
                power=rows["power"].mean() if rows.height else None,
                min_power=rows["power"].min() if rows.height else None,
            )
        )
    return answers


def gap_verdicts(
    scenario: Scenario, scored: pl.DataFrame, answers: list[GapAnswer]
) -> list[Verdict]:
    draws = shock_draws(scenario, scored)
    # One test per row (its measurement) and per declared shock (its draw of refills), the
    # false-failure rate split over all of them; off-plan rows are exact (never by chance).
    tests = scored.height + len(draws)
    limit = bonferroni_z(tests)
    beyond = scored.filter(pl.col("z") > limit)
    off_plan = scored.filter("off_plan")
    unlikely = [d for d in draws if d["p_value"] < FALSE_FAILURE_RATE / max(tests, 1)]
    planted = pl.lit(False)
    for gap, _ in gap_series(scenario):
        planted = planted | _gap_rows(gap)
    unplanted = scored.filter(~planted)
    false_flags = int(unplanted["flagged"].sum())
    # The rule flags an on-target row (value below and significant) about alpha/2 of the time.
    nominal = REFERENCE_ALPHA / 2
    # Judged only when detectable (power >= DETECTABLE_POWER), as drift_recovered judges
    # plants: an imprint is as large as the world makes it, and a plant too weak for the scale
    # is reported before the run (the CLI's note) and in ground_truth, not failed.
    judged = [a for a in answers if a.detectable]
    weak = [a.key for a in judged if a.months and a.months_flagged < a.months / 2]
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
            passed=beyond.is_empty()
            and off_plan.is_empty()
            and not unlikely
            and all(a.months for a in answers),
            metadata={
                "rows": scored.height,
                "z_limit": limit,
                "max_z": float(scored["z"].max()) if scored.height else None,
                "rows_beyond": beyond.select("metric_id", "value", "expected", "se").to_dicts()[
                    :20
                ],
                "gaps_without_months": [a.key for a in answers if not a.months],
                "off_plan_rows": off_plan.select("metric_id", "target", "expected").to_dicts()[:20],
                "shock_draws": draws,
                "unlikely_shock_draws": unlikely,
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
