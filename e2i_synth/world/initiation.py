"""Who starts therapy, and when: the causal model's draw, the wait from diagnosis to the first
prescription, and the start shocks of planted gaps. One statement for the journeys that draw
them, the timelines and propensity model that read them, and the answer key that replays them.

A planted gap on nrx or conversion_rate (core.scenario.START_SHOCK_METRICS) is a start shock:
from its start_month to its end_month, each patient of its brand and region diagnosed in those
months (journey_start_date) who would start therapy (the causal model's draw) is kept from
starting with chance 1 - achievement_rate, a new-patient access barrier (a formulary exclusion,
prior authorisations of new starts denied). So such a patient's P(treatment_initiated) is the
causal model's times achievement_rate (start_factor): fewer first fills (NRx), and fewer
patients refilling after them (TRx, share), and the conversion survey measures the planted rate.
The kept-out patients' timelines as if they had started are the world without the shock
(Timelines.lost_*), so the targets are what a perfect forecaster planned.
"""

from datetime import date

import numpy as np
import polars as pl
from scipy.stats import gamma

from e2i_synth.core.keyed import KeyedStream, entity_numbers
from e2i_synth.core.scenario import START_SHOCK_METRICS, GapSpec, Scenario
from e2i_synth.core.seeds import rng_for

# Days from diagnosis to the first prescription: gamma(shape, scale), rounded to whole days.
WAIT_GAMMA_SHAPE = 2.0
WAIT_GAMMA_SCALE_DAYS = 14.0
_EPOCH = date(1970, 1, 1)


def waits(scenario: Scenario, patient_ids: pl.Series, duration: np.ndarray) -> np.ndarray:
    """Each patient's wait in days from diagnosis to a first prescription, never past the
    journey's end (`duration` days after diagnosis), keyed by patient: patient_journeys holds
    it for the patients who start, and the world replays it for those a start shock kept out."""
    u = KeyedStream(scenario.seed, "patient_journeys", "wait").uniform(entity_numbers(patient_ids))
    wait = np.round(gamma.ppf(u, WAIT_GAMMA_SHAPE, scale=WAIT_GAMMA_SCALE_DAYS))
    return np.minimum(wait, duration).astype(np.int64)


def still_waiting(days: np.ndarray) -> np.ndarray:
    """P(wait > d) for d >= 1 days after diagnosis; 1 at d <= 0 (the day of diagnosis itself,
    before anything is known). A rounded wait exceeds d when the gamma exceeds d + 0.5."""
    d = np.asarray(days, dtype=float)
    return np.where(d > 0, gamma.sf(d + 0.5, WAIT_GAMMA_SHAPE, scale=WAIT_GAMMA_SCALE_DAYS), 1.0)


def waited_at_most(days: np.ndarray) -> np.ndarray:
    """P(wait <= d) for d >= 0 days (0 before diagnosis): a rounded wait is at most d when the
    gamma is below d + 0.5. still_waiting's complement, except on the day of diagnosis, where
    still_waiting states what is known then."""
    d = np.asarray(days, dtype=float)
    return np.where(d >= 0, gamma.cdf(d + 0.5, WAIT_GAMMA_SHAPE, scale=WAIT_GAMMA_SCALE_DAYS), 0.0)


def treatment_uniforms(scenario: Scenario) -> np.ndarray:
    """The uniform draw behind each patient's treatment_initiated (the model says initiated
    when it is below the patient's probability), in patient_id order. A stream of its own, so
    the answer key and the world can replay it."""
    return rng_for(scenario.seed, "patient_journeys", "treatment_initiated").random(
        scenario.n_patients
    )


def start_shocks(scenario: Scenario) -> list[GapSpec]:
    """The scenario's gaps that are start shocks in the world."""
    return [g for g in scenario.gaps if g.metric_name in START_SHOCK_METRICS]


def month_after(month: date) -> date:
    """The first day of the month after `month`'s."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def start_factor(
    scenario: Scenario, brand: pl.Series, region: pl.Series, diagnosed: pl.Series
) -> np.ndarray:
    """Each patient's chance that a start goes ahead: the achievement_rate of the start shock
    the patient's brand, region and diagnosis date (journey_start_date) fall in, else 1."""
    factor = np.ones(len(brand))
    if not start_shocks(scenario):
        return factor
    day = diagnosed.cast(pl.Date).cast(pl.Int64).to_numpy()
    brand, region = brand.to_numpy(), region.to_numpy()
    for gap in start_shocks(scenario):
        hit = (brand == gap.brand) & (region == gap.region)
        hit &= day >= (gap.start_month - _EPOCH).days
        if gap.end_month is not None:
            hit &= day < (month_after(gap.end_month) - _EPOCH).days
        factor[hit] = gap.achievement_rate
    return factor


def kept_out(scenario: Scenario, patient_ids: pl.Series, factor: np.ndarray) -> np.ndarray:
    """Whether a shock keeps each patient from starting, were the causal model to start them:
    a keyed draw below 1 - factor (never where the factor is 1)."""
    if not (factor < 1).any():
        return np.zeros(len(factor), dtype=bool)
    draw = KeyedStream(scenario.seed, "start_shock").uniform(entity_numbers(patient_ids))
    return draw < 1 - factor


def would_start(scenario: Scenario, patients: pl.DataFrame, uniforms: np.ndarray) -> np.ndarray:
    """The causal model's draw for each patient of `patients` (patient_id, engagement_score,
    disease_severity, academic_hcp), replayed from `uniforms` (treatment_uniforms, drawn once
    by the caller) by patient number: whether the patient starts in the world without start
    shocks."""
    u = uniforms[entity_numbers(patients["patient_id"]).astype(np.int64) - 1]
    return u < scenario.causal.treatment_probability(
        patients["engagement_score"].to_numpy(),
        patients["disease_severity"].to_numpy(),
        patients["academic_hcp"].to_numpy().astype(float),
    )
