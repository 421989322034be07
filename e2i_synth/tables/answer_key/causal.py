"""The causal answer: engagement_score -> treatment_initiated in patient_journeys.

planted   the scenario's true_ate.
realised  what this sample of patients realised: the share whose treatment_initiated would
          change with one more engagement point, from the same uniform draws (so the answer
          key knows it exactly, with no estimator involved).
recovered the reference method (OLS adjusted for disease_severity and academic_hcp, HC1
          interval; e2i_synth.stats.causal) on this sample, and the naive estimate.

Because the causal model's probability p is exactly linear in the loaded columns, the adjusted
OLS estimate given this sample's covariates is c'y = true_ate + c'(q - p) + c'(y - q), with
known weights c, q the world's P(treatment_initiated) and known variances q(1 - q): its spread,
its power and a Bernstein bound with a stated false-failure rate are all exact for this
sample. q is p, except for the patients a start shock of a planted gap reaches
(world.initiation: their starts go ahead with chance achievement_rate, q = p x that rate);
c'(q - p), the shift the shock gives the estimate, is stated (start_shock_shift).
"""

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from e2i_synth.core.sampling import in_key_order
from e2i_synth.core.scenario import Scenario
from e2i_synth.stats.causal import ADJUSTMENT_SET, OUTCOME, TREATMENT, estimate_ate_from_frame
from e2i_synth.tables.answer_key.bounds import (
    DETECTABLE_POWER,
    FALSE_FAILURE_RATE,
    bernstein_bound,
    power_two_sided,
)
from e2i_synth.tables.answer_key.verdict import Rule, Verdict
from e2i_synth.world.initiation import kept_out, start_factor, treatment_uniforms

# The columns of patient_journeys the causal answer reads (brand, region and the diagnosis
# date place a patient in a start shock).
COLUMNS = (
    "patient_id",
    TREATMENT,
    OUTCOME,
    *ADJUSTMENT_SET,
    "brand",
    "region",
    "journey_start_date",
)


RULES = {
    "causal_model_holds": Rule(
        blocking=True,
        description="every patient's treatment_initiated is the causal model's draw, and the "
        "adjusted estimate lies within the Bernstein bound of true_ate (false-failure rate "
        f"<= {FALSE_FAILURE_RATE:g} for a correct generator, exact for this sample)",
    ),
    "causal_effect_recovered": Rule(
        blocking=False,
        description="the reference method's 95% interval covers true_ate (by design it misses "
        "1 run in 20: a warning; estimate, interval and power are in ground_truth)",
    ),
}


@dataclass(frozen=True)
class CausalAnswer:
    n: int
    planted: float  # true_ate
    realised: float | None  # in-sample share of patients whose treatment flips with +1 point
    outcome_mismatches: int  # rows whose outcome is not the model's draw
    # c'(q - p): what the planted start shocks move the adjusted estimate by, in expectation
    start_shock_shift: float | None
    # The rest needs an identified regression (more patients than coefficients, covariates
    # that vary); None (power 0) in a sample too small for it.
    confounding_bias: float | None  # slope of P(treatment) on engagement alone, minus true_ate
    adjusted: float | None
    ci95: tuple[float, float] | None
    naive: float | None
    estimator_sd: float | None  # exact sd of the adjusted estimate given these covariates
    power: float  # of the reference 95% interval excluding 0, at true_ate
    bound: float | None  # |adjusted - true_ate| above it: P <= FALSE_FAILURE_RATE if correct

    @property
    def detectable(self) -> bool | None:
        """Whether the reference method finds the planted effect (None: nothing planted)."""
        return None if self.planted == 0 else self.power >= DETECTABLE_POWER

    def as_details(self) -> dict:
        return {
            "planted": {"true_ate": self.planted},
            "realised": {
                "effect_in_sample": self.realised,
                "start_shock_shift_of_adjusted_estimate": self.start_shock_shift,
                "confounding_bias_of_naive_slope": self.confounding_bias,
            },
            "recovered": {
                "adjusted_estimate": self.adjusted,
                "adjusted_ci95": list(self.ci95) if self.ci95 else None,
                "naive_estimate": self.naive,
                "naive_bias": None if self.naive is None else self.naive - self.planted,
            },
            "power": self.power,
            "detectable": self.detectable,
            "estimator_sd_given_covariates": self.estimator_sd,
        }


def _design(journeys: pl.DataFrame) -> np.ndarray:
    columns = [journeys[c].cast(pl.Float64).to_numpy() for c in (TREATMENT, *ADJUSTMENT_SET)]
    return np.column_stack([np.ones(journeys.height), *columns])


def causal_answer(scenario: Scenario, journeys: pl.DataFrame) -> CausalAnswer:
    """The causal answer for `journeys` (COLUMNS, any row order) under `scenario`."""
    # Not re-sorted (a copy of every column) when already in order, as read from PostgreSQL.
    journeys = in_key_order(journeys, COLUMNS, "patient_id")
    causal = scenario.causal
    x = _design(journeys)
    p = np.clip(causal.treatment_probability(x[:, 1], x[:, 2], x[:, 3]), 0.0, 1.0)
    y = journeys[OUTCOME].to_numpy()
    factor = start_factor(
        scenario, journeys["brand"], journeys["region"], journeys["journey_start_date"]
    )
    barred = kept_out(scenario, journeys["patient_id"], factor)
    q = p * factor  # the world's P(treatment_initiated)

    # The outcome is the model's draw, unless a start shock kept the patient out; with it,
    # the in-sample effect of +1 point.
    u = treatment_uniforms(scenario)
    realised = None
    mismatches = journeys.height
    if len(u) == journeys.height:
        mismatches = int(np.sum(y != ((u < p) & ~barred)))
        shifted = np.clip(p + causal.true_ate, 0.0, 1.0)
        realised = float(np.mean(((u < shifted) & ~barred).astype(float) - ((u < p) & ~barred)))
    common = {"n": journeys.height, "planted": causal.true_ate, "realised": realised}
    if journeys.height <= x.shape[1] or np.linalg.matrix_rank(x) < x.shape[1]:
        return CausalAnswer(
            **common,
            outcome_mismatches=mismatches,
            start_shock_shift=None,
            confounding_bias=None,
            adjusted=None,
            ci95=None,
            naive=None,
            estimator_sd=None,
            power=0.0,
            bound=None,
        )

    # adjusted - true_ate - shift = c'(y - q): c is the engagement row of (X'X)^-1 X'.
    weights = np.linalg.solve(x.T @ x, x.T)[1]
    shift = float(weights @ (q - p))
    variances = q * (1 - q)
    sd = float(np.sqrt(np.sum(weights**2 * variances)))
    bound = bernstein_bound(weights, variances)
    naive_slope = float(np.polyfit(x[:, 1], p, 1)[0])
    # The design and its solve (a few arrays of patients x coefficients) freed before the
    # reference method's regressions build their own.
    del x, p, q, y, u, weights, variances, factor, barred
    estimate = estimate_ate_from_frame(journeys)
    return CausalAnswer(
        **common,
        outcome_mismatches=mismatches,
        start_shock_shift=shift,
        confounding_bias=naive_slope - causal.true_ate,
        adjusted=estimate.adjusted,
        ci95=(estimate.ci_lower, estimate.ci_upper),
        naive=estimate.naive,
        estimator_sd=sd,
        power=float(power_two_sided(causal.true_ate / sd)) if sd > 0 else 1.0,
        bound=bound,
    )


def causal_verdicts(scenario: Scenario, answer: CausalAnswer) -> list[Verdict]:
    identified = answer.adjusted is not None
    error = answer.adjusted - answer.planted if identified else None
    # The estimate's error about its expectation, which a start shock moves by the stated shift.
    deviation = error - answer.start_shock_shift if identified else None
    holds = (
        answer.n == scenario.n_patients
        and answer.outcome_mismatches == 0
        and (not identified or abs(deviation) <= answer.bound)
    )
    covers = identified and answer.ci95[0] <= answer.planted <= answer.ci95[1]
    return [
        Verdict(
            name="causal_model_holds",
            passed=holds,
            metadata={
                "patients": answer.n,
                "expected_patients": scenario.n_patients,
                "outcome_mismatches": answer.outcome_mismatches,
                "adjusted_minus_true_ate": error,
                "start_shock_shift": answer.start_shock_shift,
                "bound": answer.bound,
            },
        ),
        Verdict(
            name="causal_effect_recovered",
            passed=covers,
            metadata={k: v for k, v in asdict(answer).items() if k != "ci95"}
            | {"ci95": f"[{answer.ci95[0]:.4f}, {answer.ci95[1]:.4f}]" if identified else None},
        ),
    ]
