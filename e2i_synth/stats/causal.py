"""Effect of engagement_score on treatment_initiated, from patient_journeys.

Estimand: the average change in P(treatment_initiated) per point of engagement_score, over
patients; adjustment set {disease_severity, academic_hcp} (the backdoor set of the generator's
causal graph). Estimated by OLS (a linear probability model) with heteroskedasticity-robust
(HC1) standard errors from statsmodels, next to the naive estimate that ignores confounding.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

# The class itself, not statsmodels.api: that imports every model and plot (0.8 s at start-up).
from statsmodels.regression.linear_model import OLS

TREATMENT = "engagement_score"
OUTCOME = "treatment_initiated"
ADJUSTMENT_SET = ("disease_severity", "academic_hcp")


@dataclass(frozen=True)
class AteEstimate:
    adjusted: float
    ci_lower: float
    ci_upper: float
    std_error: float
    naive: float
    naive_ci_lower: float
    naive_ci_upper: float
    n: int
    treatment: str = TREATMENT
    outcome: str = OUTCOME
    adjustment_set: tuple[str, ...] = ADJUSTMENT_SET

    def covers(self, value: float) -> bool:
        return self.ci_lower <= value <= self.ci_upper


def estimate_ate_from_frame(journeys: pl.DataFrame, alpha: float = 0.05) -> AteEstimate:
    """Backdoor-adjusted and naive estimates from a patient_journeys frame."""
    y = journeys[OUTCOME].cast(pl.Float64).to_numpy()
    treatment = journeys[TREATMENT].cast(pl.Float64).to_numpy()
    covariates = journeys.select(pl.col(c).cast(pl.Float64) for c in ADJUSTMENT_SET).to_numpy()
    ones = np.ones_like(y)
    # One model at a time, each freed once read: statsmodels keeps several arrays of the
    # design's size per fit (the pseudo-inverse, residuals, the HC1 sandwich's terms).
    adjusted = OLS(y, np.column_stack([ones, treatment, covariates])).fit(cov_type="HC1")
    del covariates
    (lo, hi), estimate, std_error = adjusted.conf_int(alpha)[1], adjusted.params[1], adjusted.bse[1]
    del adjusted
    naive = OLS(y, np.column_stack([ones, treatment])).fit(cov_type="HC1")
    naive_lo, naive_hi = naive.conf_int(alpha)[1]
    naive_estimate = naive.params[1]
    del naive
    return AteEstimate(
        adjusted=float(estimate),
        ci_lower=float(lo),
        ci_upper=float(hi),
        std_error=float(std_error),
        naive=float(naive_estimate),
        naive_ci_lower=float(naive_lo),
        naive_ci_upper=float(naive_hi),
        n=len(y),
    )
