"""The models' answer: how well each model of ml_predictions discriminates and how well it is
calibrated, against the outcome it predicts, next to the true probability behind the data.

Pure: the scores are those of ml_predictions (regenerated month by month from the same
population and per-day streams, so the rows are the table's), the outcomes and true
probabilities come from the world (the journeys and their timelines).

- treatment_propensity: outcome treatment_initiated; true probability P(initiation) given the
  causal model and that the patient is still untreated at the score's date.
- churn_risk: outcome "the fill scored is the patient's last" (a switch or discontinuation
  follows instead of a refill); true probability the stop hazard. Only rows whose outcome is
  known inside the journey (RESOLVED_AFTER_SUPPLY_DAYS past the fill's supply) are judged.
- next_best_action: a recommendation with a confidence, no outcome in the world: not judged.

Figures of one sample, so recorded, never a blocking check.
"""

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy.special import ndtri
from scipy.stats import norm, rankdata

from e2i_synth.core.scenario import Scenario
from e2i_synth.tables.activity import ml_predictions as mp
from e2i_synth.tables.activity.calibration import logit

CALIBRATION_BINS = 10
SCORE_CLIP = 1e-4  # logit of a score rounded to 0 or 1

OUTCOMES = {
    "treatment_propensity": "treatment_initiated of the patient",
    "churn_risk": "the fill scored is the patient's last: a switch or discontinuation follows "
    "instead of a refill (rows whose outcome lies inside the journey)",
}
ORACLES = {
    "treatment_propensity": "P(treatment_initiated) of the causal model, given the patient is "
    "still untreated at the score's date",
    "churn_risk": "the timeline's stop hazard (the chance of stopping after each fill)",
}
NOT_JUDGED = {
    "next_best_action": "a recommended action with a confidence: no outcome in the world to "
    "judge it against"
}


@dataclass(frozen=True)
class Judged:
    """The rows of one model: score, outcome, true probability."""

    score: np.ndarray
    outcome: np.ndarray
    oracle: np.ndarray


def judged_rows(
    scenario: Scenario, hcp_profiles: pl.DataFrame, patient_journeys: pl.DataFrame
) -> dict[str, Judged]:
    """Each patient model's rows of ml_predictions over the scenario window."""
    pop = mp.population(scenario, hcp_profiles, patient_journeys)
    patient_effect, churn_effect = mp.model_errors(scenario, pop.n_patients)
    kinds, patients, days, scores = [], [], [], []
    end = scenario.end_date + timedelta(days=1)
    patient_kinds = [mp.KIND_CODE[t] for t in OUTCOMES]
    for start, stop in _months(scenario.start_date, end):
        rows = mp.daily_draws(scenario, mp.TABLE, pop, start, stop, mp.select_day, mp.DRAWS_PER_ROW)
        rows = rows.filter(pl.col("_kind").is_in(patient_kinds))
        kind, patient = rows["_kind"].to_numpy(), rows["_entity"].to_numpy()
        day = rows["_day"].cast(pl.Int64).to_numpy()
        noise = ndtri(np.clip(rows["_u1"].to_numpy(), 1e-12, 1 - 1e-12))
        score = mp.patient_scores(pop, kind, patient, day, noise, patient_effect, churn_effect)
        kinds.append(kind.astype(np.int8))
        patients.append(patient)
        days.append(day)
        scores.append(np.round(score, 4))  # as the table stores it
    kind, patient, day, score = (np.concatenate(a) for a in (kinds, patients, days, scores))
    propensity = kind == mp.KIND_CODE["treatment_propensity"]
    initiated = pop.patients["treatment_initiated"].to_numpy()
    p = patient[propensity]
    judged = {
        "treatment_propensity": Judged(
            score=score[propensity],
            outcome=initiated[p],
            oracle=mp.initiation_probability(pop.p_true[p], day[propensity] - pop.start[p]),
        )
    }
    churn = kind == mp.KIND_CODE["churn_risk"]
    fill = pop.fill_index(day[churn], patient[churn])
    known = pop.fill_resolved[fill]
    judged["churn_risk"] = Judged(
        score=score[churn][known],
        outcome=pop.fill_last[fill][known],
        oracle=pop.stop_hazard[patient[churn][known]],
    )
    return judged


def _months(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end) a calendar month at a time (bounded memory at large scales)."""
    windows = []
    while start < end:
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        windows.append((start, min(following, end)))
        start = following
    return windows


def auc(score: np.ndarray, outcome: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties half (Mann-Whitney U from average ranks)."""
    positives, negatives = int(outcome.sum()), int((~outcome).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[outcome].sum() - positives * (positives + 1) / 2) / positives / negatives)


def delong(scores: list[np.ndarray], outcome: np.ndarray) -> np.ndarray | None:
    """DeLong's covariance matrix of the AUCs of `scores` on the same rows (None without two
    positives and two negatives)."""
    m, n = int(outcome.sum()), int((~outcome).sum())
    if m < 2 or n < 2:
        return None
    v10, v01 = [], []
    for s in scores:
        pos, neg = s[outcome], s[~outcome]
        # Placement values: for each positive the share of negatives below it (ties half),
        # and for each negative the share of positives above it.
        ranks = rankdata(np.concatenate([pos, neg]))
        v10.append((ranks[:m] - rankdata(pos)) / n)
        v01.append(1 - (ranks[m:] - rankdata(neg)) / m)
    return np.atleast_2d(np.cov(np.array(v10))) / m + np.atleast_2d(np.cov(np.array(v01))) / n


def auc_se(score: np.ndarray, outcome: np.ndarray) -> float | None:
    """DeLong's standard error of AUC(score)."""
    cov = delong([score], outcome)
    return None if cov is None else float(np.sqrt(cov[0, 0]))


def auc_difference_se(a: np.ndarray, b: np.ndarray, outcome: np.ndarray) -> float | None:
    """DeLong's standard error of AUC(a) - AUC(b) on the same rows."""
    cov = delong([a, b], outcome)
    if cov is None:
        return None
    return float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))


def calibration(score: np.ndarray, outcome: np.ndarray) -> dict:
    """Brier score; logistic recalibration logit P(outcome) = a + b logit(score) (slope b, and
    the intercept with the slope fixed at 1, each with its 95% interval); Spiegelhalter's z
    (0 when calibrated); expected calibration error over deciles of the score, and the
    deciles themselves."""
    y = outcome.astype(float)
    x = logit_score(score)
    result: dict = {
        "brier": float(np.mean((score - y) ** 2)),
        "mean_score": float(score.mean()),
        "outcome_rate": float(y.mean()),
    }
    if 0 < y.sum() < y.size and np.ptp(x) > 0:
        slope_fit = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit()
        intercept_fit = sm.GLM(y, np.ones_like(x), family=sm.families.Binomial(), offset=x).fit()
        result["calibration_slope"] = float(slope_fit.params[1])
        result["calibration_slope_ci95"] = [float(v) for v in slope_fit.conf_int()[1]]
        result["calibration_intercept"] = float(intercept_fit.params[0])
        result["calibration_intercept_ci95"] = [float(v) for v in intercept_fit.conf_int()[0]]
    weight = (1 - 2 * score) ** 2 * score * (1 - score)
    if weight.sum() > 0:
        z = float(np.sum((y - score) * (1 - 2 * score)) / np.sqrt(weight.sum()))
        result["spiegelhalter_z"] = z
        result["spiegelhalter_p"] = float(2 * norm.sf(abs(z)))
    order = np.argsort(score, kind="stable")
    bins = []
    for part in np.array_split(order, CALIBRATION_BINS):
        if part.size:
            bins.append(
                {
                    "n": int(part.size),
                    "mean_score": float(score[part].mean()),
                    "outcome_rate": float(y[part].mean()),
                }
            )
    result["ece"] = float(
        sum(b["n"] * abs(b["mean_score"] - b["outcome_rate"]) for b in bins) / max(y.size, 1)
    )
    result["deciles"] = bins
    return result


def logit_score(score: np.ndarray) -> np.ndarray:
    return logit(np.clip(score, SCORE_CLIP, 1 - SCORE_CLIP))


def _rounded(data: object) -> object:
    if isinstance(data, float):
        return round(data, 6)
    if isinstance(data, dict):
        return {k: _rounded(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_rounded(v) for v in data]
    return data


def judge(rows: Judged) -> dict:
    """Discrimination and calibration of a model's rows, and of the true probability."""
    model_auc, oracle_auc = auc(rows.score, rows.outcome), auc(rows.oracle, rows.outcome)
    se = auc_difference_se(rows.score, rows.oracle, rows.outcome)
    return _rounded(
        {
            "n": int(rows.score.size),
            "positives": int(rows.outcome.sum()),
            "auc": model_auc,
            "auc_se": auc_se(rows.score, rows.outcome),
            "oracle_auc": oracle_auc,
            "auc_difference_se": se,
            "calibration": calibration(rows.score, rows.outcome),
            "oracle_brier": float(np.mean((rows.oracle - rows.outcome) ** 2))
            if rows.score.size
            else None,
        }
    )


def model_answers(
    scenario: Scenario, hcp_profiles: pl.DataFrame, patient_journeys: pl.DataFrame
) -> dict[str, dict]:
    """Per prediction_type of ml_predictions: its outcome, true probability and figures."""
    judged = judged_rows(scenario, hcp_profiles, patient_journeys)
    answers = {
        kind: {"outcome": OUTCOMES[kind], "oracle": ORACLES[kind], **judge(rows)}
        for kind, rows in judged.items()
    }
    answers.update({kind: {"outcome": None, "note": note} for kind, note in NOT_JUDGED.items()})
    return answers
