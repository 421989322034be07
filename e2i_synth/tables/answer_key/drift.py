"""The drift answer: every feature of feature_values, baseline window against current window.

planted   the scenario's DriftSpec of the feature, or none.
realised  the size of the change in this sample, in the planted kind's own terms: the shift of
          the mean in baseline standard deviations (mean_shift), the ratio of standard
          deviations (variance_change), the total variation distance of the category shares
          (category_mix).
recovered the Drift Monitor's reference statistics (PSI, KS; e2i_synth.stats.drift) and
          whether its rule flags the feature.
power     how often the reference rule flags the planted drift at this sample's window sizes:
          simulated by resampling the (undrifted) baseline window and applying the plant.

The generator makes every unplanted feature a stationary process (entities drawn uniformly
from those that exist that day, noise independent per observation, the world in its steady
state over the monitoring windows). Values are repeated observations of their entities (each
window holds many rows of the same HCPs and patients, and an HCP's counts change slowly), so
every p-value here is the KS test at the windows' effective sizes (Kish's, over entities:
e2i_synth.stats.drift), as the Drift Monitor computes it. The blocking rule flags an unplanted
feature only below FALSE_FAILURE_RATE / (number of unplanted features).
"""

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from e2i_synth.core.scenario import DriftSpec, Scenario
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.vocabulary import FEATURE_GROUPS, FEATURES
from e2i_synth.stats.drift import feature_statistics, is_flagged, kish_size, window_masks
from e2i_synth.tables.answer_key.bounds import DETECTABLE_POWER, FALSE_FAILURE_RATE
from e2i_synth.tables.answer_key.verdict import Rule, Verdict
from e2i_synth.tables.feature_store.feature_values import observations_per_day

PATIENT_GROUPS = {g for g, (key, _) in FEATURE_GROUPS.items() if key == "patient_id"}

POWER_SIMULATIONS = 200
# The columns of feature_values and features the drift answer reads.
VALUE_COLUMNS = ("feature_id", "value", "event_timestamp", "entity_values")
FEATURE_COLUMNS = ("feature_id", "name", "value_type", "allowed_values")


RULES = {
    "feature_values_stationary_unless_planted": Rule(
        blocking=True,
        description="each monitoring window holds exactly days x observations per day of every "
        "feature, and no unplanted feature moves between them (KS at FALSE_FAILURE_RATE / "
        f"unplanted features: false-failure rate <= {FALSE_FAILURE_RATE:g} per run)",
    ),
    "drift_recovered": Rule(
        blocking=False,
        description="the Drift Monitor's reference rule (PSI >= 0.2 or KS p < 0.01) flags every "
        "planted drift and no other feature (with 15 features it flags an unplanted one by "
        "chance in about 1 run in 7: a warning; statistics and power are in ground_truth)",
    ),
}


@dataclass(frozen=True)
class DriftAnswer:
    feature: str
    value_type: str
    planted: DriftSpec | None
    n_baseline: int
    n_current: int
    realised: dict  # effect sizes of this sample (see the module docstring)
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    # The blocking rule's p-value: the KS p-value (at the effective sizes, like every p here).
    stationarity_pvalue: float | None
    flagged: bool  # by the reference rule
    power: float | None  # planted features only

    @property
    def detectable(self) -> bool | None:
        return None if self.power is None else self.power >= DETECTABLE_POWER

    def as_details(self) -> dict:
        return {
            "planted": self.planted.model_dump(mode="json") if self.planted else None,
            "realised": self.realised,
            "recovered": {
                "psi": self.psi,
                "ks_statistic": self.ks_statistic,
                "ks_pvalue": self.ks_pvalue,
                "flagged": self.flagged,
            },
            "n_baseline": self.n_baseline,
            "n_current": self.n_current,
            "stationarity_pvalue": self.stationarity_pvalue,
            "power": self.power,
            "detectable": self.detectable,
        }


def expected_window_rows(scenario: Scenario, feature: str) -> tuple[int, int]:
    """Observations of `feature` in the baseline and in the current window (a patient
    feature: at most these, n for each day some journey covers)."""
    w, n = scenario.monitoring, observations_per_day(scenario, feature)
    return (w.baseline_end - w.baseline_start).days * n, (w.current_end - w.current_start).days * n


def _window_size_holds(answer: DriftAnswer, scenario: Scenario) -> bool:
    """Every day's n observations: all of them, or for a patient feature n per covered day."""
    actual = (answer.n_baseline, answer.n_current)
    sizes = expected_window_rows(scenario, answer.feature)
    if FEATURES[answer.feature][0] not in PATIENT_GROUPS:
        return actual == sizes
    n = observations_per_day(scenario, answer.feature)
    return all(0 <= a <= e and a % n == 0 for a, e in zip(actual, sizes, strict=True))


def _labels(feature: dict) -> list[str] | None:
    """A categorical feature's values as they appear in feature_values (JSON text)."""
    if feature["value_type"] == "bool":
        return ["false", "true"]
    if feature["value_type"] == "category":
        return [json.dumps(c) for c in json.loads(feature["allowed_values"])]
    return None


def realised_effects(baseline: pl.Series, current: pl.Series, labels: list[str] | None) -> dict:
    if labels is not None:
        shares_b = baseline.value_counts(normalize=True, name="share").rename({"share": "b"})
        shares_c = current.value_counts(normalize=True, name="share").rename({"share": "c"})
        # Sorted: group order is not deterministic, and the float sum must be.
        joined = (
            shares_b.join(shares_c, on=baseline.name, how="full", coalesce=True)
            .fill_null(0)
            .sort(baseline.name)
        )
        return {"total_variation": float(0.5 * (joined["b"] - joined["c"]).abs().sum())}
    b, c = baseline.cast(pl.Float64).to_numpy(), current.cast(pl.Float64).to_numpy()
    sd_b = float(np.std(b, ddof=1))
    return {
        "mean_shift_sd": float((np.mean(c) - np.mean(b)) / sd_b) if sd_b > 0 else None,
        "sd_ratio": float(np.std(c, ddof=1) / sd_b) if sd_b > 0 else None,
    }


def _apply(
    drift: DriftSpec, values, labels, rng: np.random.Generator, mean: float, sd: float, share=1.0
):
    """The plant applied to resampled undrifted values, as the generator applies it; `share`
    is the part of the magnitude reached when each value was observed (1 after a step)."""
    if drift.kind == "mean_shift":
        return values + share * drift.magnitude * sd
    if drift.kind == "variance_change":
        return mean + (1 + share * (drift.magnitude - 1)) * (values - mean)
    index = {label: i for i, label in enumerate(labels)}
    codes = np.array([index[v] for v in values])
    moved = rng.random(len(codes)) < drift.magnitude * share
    step = 1 + np.floor(rng.random(len(codes)) * (len(labels) - 1)).astype(np.int64)
    codes = np.where(moved, (codes + step) % len(labels), codes)
    return np.array(labels, dtype=object)[codes]


def simulated_power(
    scenario: Scenario,
    drift: DriftSpec,
    baseline: pl.Series,
    value_type: str,
    labels: list[str] | None,
    sizes: tuple[int, int],
    simulations: int = POWER_SIMULATIONS,
    effective: tuple[float, float] | None = None,
) -> float:
    """Share of simulated window pairs (resampled from the undrifted baseline, the plant
    applied to the current one) that the reference rule flags, its KS p-value at the windows'
    effective sizes `effective` (else at `sizes`)."""
    rng = rng_for(scenario.seed, "answer_key", "drift_power", drift.feature)
    if labels is None:
        pool = baseline.cast(pl.Float64).to_numpy()
        mean, sd = float(np.mean(pool)), float(np.std(pool))
    else:
        pool, mean, sd = np.array(baseline.to_list(), dtype=object), 0.0, 0.0
    w = scenario.monitoring
    current_days = (w.current_end - w.current_start).days
    since_start = (w.current_start - drift.start).days
    hits = 0
    for _ in range(simulations):
        b = rng.choice(pool, sizes[0])
        share = 1.0
        if drift.ramp_days is not None:  # observed uniformly over the current window
            share = drift.fraction(since_start + rng.random(sizes[1]) * current_days)
        c = _apply(drift, rng.choice(pool, sizes[1]), labels, rng, mean, sd, share)
        psi, _, pvalue = feature_statistics(pl.Series(b), pl.Series(c), value_type, effective)
        hits += is_flagged(psi, pvalue)
    return hits / simulations


def drift_answers(
    scenario: Scenario,
    features: pl.DataFrame,
    feature_values: pl.DataFrame,
    with_power: bool = True,
) -> list[DriftAnswer]:
    """One answer per feature (feature_id order). `feature_values` needs VALUE_COLUMNS and
    may hold any days; only the monitoring windows are read."""
    masks = window_masks(scenario.monitoring)
    planted = {d.feature: d for d in scenario.drifts}
    # In a fixed order, so the power simulation and float sums do not depend on how the rows
    # were read: (feature_id, event_timestamp) is unique.
    values = feature_values.select(VALUE_COLUMNS).sort("feature_id", "event_timestamp")
    answers = []
    for feature in features.sort("feature_id").iter_rows(named=True):
        own = values.filter(pl.col("feature_id") == feature["feature_id"])
        baseline_rows, current_rows = own.filter(masks["baseline"]), own.filter(masks["current"])
        baseline, current = baseline_rows["value"], current_rows["value"]
        labels, drift = _labels(feature), planted.get(feature["name"])
        effective = None
        if baseline.is_empty() or current.is_empty():
            psi = statistic = pvalue = None
            realised = {}
        else:
            effective = (
                kish_size(baseline_rows["entity_values"]),
                kish_size(current_rows["entity_values"]),
            )
            psi, statistic, pvalue = feature_statistics(
                baseline, current, feature["value_type"], effective
            )
            realised = realised_effects(baseline, current, labels)
        power = None
        if drift is not None and with_power and not baseline.is_empty():
            sizes = (baseline.len(), max(current.len(), 1))
            power = simulated_power(
                scenario, drift, baseline, feature["value_type"], labels, sizes, effective=effective
            )
        answers.append(
            DriftAnswer(
                feature=feature["name"],
                value_type=feature["value_type"],
                planted=drift,
                n_baseline=baseline.len(),
                n_current=current.len(),
                realised=realised,
                psi=psi,
                ks_statistic=statistic,
                ks_pvalue=pvalue,
                stationarity_pvalue=pvalue,
                flagged=psi is not None and is_flagged(psi, pvalue),
                power=power,
            )
        )
    return answers


def shows_in(scenario: Scenario, drift: DriftSpec) -> list[dict]:
    """Where a planted drift must show, and its expected size there (the current window's mean
    share of the magnitude, for a ramp): the drift is an edit of feature_values' values of its
    feature from its start (no other table moves with it), in the planted kind's own terms."""
    w = scenario.monitoring
    days = np.arange((w.current_start - drift.start).days, (w.current_end - drift.start).days)
    reached = float(np.mean(drift.fraction(days + 0.5)))  # observed through each day
    if drift.kind == "mean_shift":
        expected = {"mean_shift_sd": drift.magnitude * reached}
    elif drift.kind == "variance_change":
        expected = {"sd_ratio": 1 + reached * (drift.magnitude - 1)}
    else:
        expected = {"share_moved_to_another_category": drift.magnitude * reached}
    return [
        {
            "table": "feature_values",
            "column": "value",
            "rows": f"the values of feature {drift.feature} (features.name) from "
            f"{drift.start.isoformat()}",
            "expected_in_current_window": expected,
            "note": "values are then clipped to the feature's range and rounded, which can "
            "shrink the realised size",
        }
    ]


def unplanted_alpha(scenario: Scenario, features: int) -> float:
    """The per-feature KS level at which the blocking check flags an unplanted feature."""
    return FALSE_FAILURE_RATE / max(features - len(scenario.drifts), 1)


def drift_verdicts(scenario: Scenario, answers: list[DriftAnswer]) -> list[Verdict]:
    alpha = unplanted_alpha(scenario, len(answers))
    wrong_size = [a.feature for a in answers if not _window_size_holds(a, scenario)]
    moved = [
        a.feature
        for a in answers
        if a.planted is None and (a.stationarity_pvalue is None or a.stationarity_pvalue < alpha)
    ]
    missed = [a.feature for a in answers if a.planted is not None and not a.flagged]
    false_alarms = [a.feature for a in answers if a.planted is None and a.flagged]
    table = [
        {
            "feature": a.feature,
            "planted": a.planted.kind if a.planted else None,
            **{k: a.realised.get(k) for k in ("mean_shift_sd", "sd_ratio", "total_variation")},
            "psi": a.psi,
            "ks_pvalue": a.ks_pvalue,
            "flagged": a.flagged,
            "power": a.power,
        }
        for a in answers
    ]
    return [
        Verdict(
            name="feature_values_stationary_unless_planted",
            passed=not wrong_size and not moved,
            metadata={
                "expected_rows_per_window": {
                    a.feature: list(expected_window_rows(scenario, a.feature)) for a in answers
                },
                "features_with_wrong_window_size": wrong_size,
                "unplanted_features_moved": moved,
                "ks_alpha_unplanted": alpha,
                "table": table,
            },
        ),
        Verdict(
            name="drift_recovered",
            passed=not missed and not false_alarms,
            metadata={
                "missed_planted": missed,
                "unplanted_flagged": false_alarms,
                "undetectable_planted": [a.feature for a in answers if a.detectable is False],
                "table": table,
            },
        ),
    ]
