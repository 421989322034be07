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

from dataclasses import dataclass, fields
from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.special import ndtri
from scipy.stats import norm

from e2i_synth.core.scenario import Scenario
from e2i_synth.tables.activity import ml_predictions as mp

CALIBRATION_BINS = 10
NEWTON_STEPS = 50
Z95 = float(norm.ppf(0.975))
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
    """The rows of one model: score, outcome, true probability, and the patient (index) each
    row is about (a patient's rows share its model error: not independent)."""

    score: np.ndarray
    outcome: np.ndarray
    oracle: np.ndarray
    patient: np.ndarray


def judged_rows(
    scenario: Scenario, hcp_profiles: pl.DataFrame, patient_journeys: pl.DataFrame
) -> dict[str, Judged]:
    """Each patient model's rows of ml_predictions over the scenario window."""
    pop = mp.population(scenario, hcp_profiles, patient_journeys)
    patient_effect, churn_effect = mp.model_errors(scenario, pop.n_patients)
    initiated = pop.patients["treatment_initiated"].to_numpy()
    # Each month's rows are judged as they come, a kind at a time: at scale 1000 the rows of
    # every month and kind together would cost hundreds of MB more.
    parts: dict[str, list[Judged]] = {kind: [] for kind in OUTCOMES}
    patient_kinds = [mp.KIND_CODE[t] for t in OUTCOMES]
    end = scenario.end_date + timedelta(days=1)
    for start, stop in _months(scenario.start_date, end):
        rows = mp.daily_draws(scenario, mp.TABLE, pop, start, stop, mp.select_day, mp.DRAWS_PER_ROW)
        kind, patient = rows["_kind"].to_numpy(), rows["_entity"].to_numpy().astype(np.int32)
        day = rows["_day"].cast(pl.Int64).to_numpy()
        noise = ndtri(np.clip(rows["_u1"].to_numpy(), 1e-12, 1 - 1e-12))
        del rows
        judged = np.isin(kind, patient_kinds)
        kind, patient, day, noise = kind[judged], patient[judged], day[judged], noise[judged]
        score = mp.patient_scores(pop, kind, patient, day, noise, patient_effect, churn_effect)
        score = np.round(score, 4)  # as the table stores it
        propensity = kind == mp.KIND_CODE["treatment_propensity"]
        p, d = patient[propensity], day[propensity]
        parts["treatment_propensity"].append(
            Judged(
                score=score[propensity],
                outcome=initiated[p],
                oracle=mp.initiation_probability(pop.p_true[p], d - pop.start[p]),
                patient=p,
            )
        )
        churn = kind == mp.KIND_CODE["churn_risk"]
        fill = pop.fill_index(day[churn], patient[churn])
        known = pop.fill_resolved[fill]
        parts["churn_risk"].append(
            Judged(
                score=score[churn][known],
                outcome=pop.fill_last[fill][known],
                oracle=pop.stop_hazard[patient[churn][known]],
                patient=patient[churn][known],
            )
        )
    return {kind: _joined(judged) for kind, judged in parts.items()}


def _joined(parts: list[Judged]) -> Judged:
    return Judged(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Judged)))


def _months(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end) a calendar month at a time (bounded memory at large scales)."""
    windows = []
    while start < end:
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        windows.append((start, min(following, end)))
        start = following
    return windows


def _twice_below(ordered: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per value, twice (the entries of `ordered` (sorted) below it plus half those equal to
    it): an integer, so its sums are exact."""
    return np.searchsorted(ordered, values, "left") + np.searchsorted(ordered, values, "right")


def auc(score: np.ndarray, outcome: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties half (Mann-Whitney U: per positive, the
    negatives below it, by binary search in the sorted negatives, not ranks of every row)."""
    positives, negatives = int(outcome.sum()), int((~outcome).sum())
    if positives == 0 or negatives == 0:
        return None
    u = int(_twice_below(np.sort(score[~outcome]), score[outcome]).sum()) / 2
    return float(u / positives / negatives)


def _influence(s: np.ndarray, outcome: np.ndarray, m: int, n: int) -> np.ndarray:
    """A score's DeLong influence value of each row, in row order: for a positive, the share
    of negatives below it (ties half), centred, over m; for a negative, the share of
    positives above it, centred, over n (binary searches in the sorted other class)."""
    pos, neg = s[outcome], s[~outcome]
    v10 = _twice_below(np.sort(neg), pos) / 2 / n
    v01 = 1 - _twice_below(np.sort(pos), neg) / 2 / m
    del pos, neg
    row = np.empty(outcome.size)
    row[outcome] = (v10 - v10.mean()) / m
    row[~outcome] = (v01 - v01.mean()) / n
    return row


def delong(
    scores: list[np.ndarray], outcome: np.ndarray, groups: np.ndarray | None = None
) -> np.ndarray | None:
    """DeLong's covariance matrix of the AUCs of `scores` on the same rows (None without two
    positives and two negatives). With `groups` (e.g. the patient of each row), rows of one
    group are not taken as independent: the rows' influence values are summed per group
    (Obuchowski's clustered form)."""
    m, n = int(outcome.sum()), int((~outcome).sum())
    if m < 2 or n < 2:
        return None
    if groups is None:  # each row its own group: DeLong's S10 / m + S01 / n
        psi = np.array([_influence(s, outcome, m, n) for s in scores])
        return (
            np.atleast_2d(np.cov(psi[:, outcome])) * m + np.atleast_2d(np.cov(psi[:, ~outcome])) * n
        )
    # Per score, its influence values summed per group (groups in sorted order, as np.unique
    # numbers them), one score at a time. Patient indices (non-negative integers) are summed
    # by bincount straight on them, keeping the groups that occur.
    if np.issubdtype(groups.dtype, np.integer) and groups.min() >= 0:
        index = groups.astype(np.intp, copy=False)
        present = np.bincount(index) > 0
    else:
        _, index = np.unique(groups, return_inverse=True)
        present = np.ones(int(index.max()) + 1, dtype=bool)
    sums = np.array(
        [np.bincount(index, _influence(s, outcome, m, n), present.size)[present] for s in scores]
    )
    k = int(present.sum())
    return (sums @ sums.T) * k / max(k - 1, 1)


def auc_se(
    score: np.ndarray, outcome: np.ndarray, groups: np.ndarray | None = None
) -> float | None:
    """DeLong's standard error of AUC(score)."""
    cov = delong([score], outcome, groups)
    return None if cov is None else float(np.sqrt(cov[0, 0]))


def auc_difference_se(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, groups: np.ndarray | None = None
) -> float | None:
    """DeLong's standard error of AUC(a) - AUC(b) on the same rows."""
    cov = delong([a, b], outcome, groups)
    if cov is None:
        return None
    return float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))


def calibration(score: np.ndarray, outcome: np.ndarray) -> dict:
    """Brier score; logistic recalibration logit P(outcome) = a + b logit(score) (slope b, and
    the intercept with the slope fixed at 1, each with its 95% interval); Spiegelhalter's z
    (0 when calibrated); expected calibration error over deciles of the score, and the
    deciles themselves."""
    y = outcome.astype(float)
    if not y.size:  # a model with no judged rows (a window too short for it): no figures
        return {"brier": None, "mean_score": None, "outcome_rate": None}
    x = logit_score(score)
    result: dict = {
        "brier": float(np.mean((score - y) ** 2)),
        "mean_score": float(score.mean()),
        "outcome_rate": float(y.mean()),
    }
    if 0 < y.sum() < y.size and np.ptp(x) > 0:
        (_, slope), (_, slope_se) = _logistic(np.column_stack([np.ones_like(x), x]), y)
        (intercept,), (intercept_se,) = _logistic(np.ones((x.size, 1)), y, offset=x)
        result["calibration_slope"] = slope
        result["calibration_slope_ci95"] = [slope - Z95 * slope_se, slope + Z95 * slope_se]
        result["calibration_intercept"] = intercept
        result["calibration_intercept_ci95"] = [
            intercept - Z95 * intercept_se,
            intercept + Z95 * intercept_se,
        ]
    weight = (1 - 2 * score) ** 2 * score * (1 - score)
    if weight.sum() > 0:
        z = float(np.sum((y - score) * (1 - 2 * score)) / np.sqrt(weight.sum()))
        result["spiegelhalter_z"] = z
        result["spiegelhalter_p"] = float(2 * norm.sf(abs(z)))
    order = np.lexsort((y, score))  # ties in a fixed order, whatever the rows' order
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


def _logistic(
    x: np.ndarray, y: np.ndarray, offset: np.ndarray | float = 0.0
) -> tuple[list[float], list[float]]:
    """Maximum-likelihood logistic regression of y on the columns of x (with an offset):
    coefficients and their standard errors, by Newton's method (a few columns: a k x k
    Hessian; statsmodels' GLM held hundreds of MB for a million rows)."""
    beta = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(x @ beta + offset)))
        hessian = (x * (p * (1 - p))[:, None]).T @ x
        step = np.linalg.solve(hessian, x.T @ (y - p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = 1 / (1 + np.exp(-(x @ beta + offset)))
    covariance = np.linalg.inv((x * (p * (1 - p))[:, None]).T @ x)
    return [float(b) for b in beta], [float(v) for v in np.sqrt(np.diag(covariance))]


def logit_score(score: np.ndarray) -> np.ndarray:
    """logit of a stored score (rounded to 4 decimals, so possibly 0 or 1)."""
    p = np.clip(score, SCORE_CLIP, 1 - SCORE_CLIP)
    return np.log(p / (1 - p))


def _rounded(data: object) -> object:
    if isinstance(data, float):
        # JSON has no NaN: a figure of no rows (a kind absent from a short window) is null.
        return round(data, 6) if np.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _rounded(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_rounded(v) for v in data]
    return data


def judge(rows: Judged) -> dict:
    """Discrimination and calibration of a model's rows, and of the true probability. The
    AUCs' standard errors are DeLong's, clustered by patient."""
    model_auc, oracle_auc = auc(rows.score, rows.outcome), auc(rows.oracle, rows.outcome)
    se = auc_difference_se(rows.score, rows.oracle, rows.outcome, rows.patient)
    return _rounded(
        {
            "n": int(rows.score.size),
            "positives": int(rows.outcome.sum()),
            "auc": model_auc,
            "auc_se": auc_se(rows.score, rows.outcome, rows.patient),
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
    answers = {}
    for kind in list(judged):
        rows = judged.pop(kind)  # each model's rows freed once judged
        answers[kind] = {"outcome": OUTCOMES[kind], "oracle": ORACLES[kind], **judge(rows)}
        del rows
    answers.update({kind: {"outcome": None, "note": note} for kind, note in NOT_JUDGED.items()})
    return answers
