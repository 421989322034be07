"""ml_predictions generator: what the deployed models scored, day by day.

Rows are drawn one day at a time, each day from its own random stream, and numbered within
their day; so the rows of a window are exactly the union of its days' rows, whatever window is
asked for (the table is partitioned by month; a month is the union of its days). The
helpers for that are shared with the triggers generator.

treatment_propensity scores every patient at diagnosis and rescores them while untreated;
churn_risk scores a treated patient at a fill (the pharmacy claim triggers it) and asks whether
that fill is the last: whether the patient stops, by a switch or a discontinuation, instead of
refilling. Each score is an honest, calibrated model of its outcome (e2i_synth.tables.activity
.calibration): it sees the true probability only through a noisy signal (a lasting
per-patient model error and scoring noise) and reports the posterior mean given that signal and
what is known at its timestamp; so it never uses the realised outcome, ranks no better than the
true probability, and P(outcome | score) = score. The true probabilities: for propensity,
P(treatment_initiated) of the causal model, and for a patient still untreated d days after
diagnosis the chance to start all the same (initiation_probability); for churn, the timeline's
stop hazard (the chance of stopping after each fill, known at initiation). Both models were fit
on the training period (data_split train): their priors are the patients diagnosed, and the
fills whose outcome was known, before it ended; so no score dated after it depends on a later
patient (scores dated inside it are the fitted model's in-sample scores), and a population
that drifts after training meets a model that has not seen it (its calibration there is
measured in the answer key). next_best_action
recommends an action per HCP. Every row carries the split of its own date.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.special import ndtri

from e2i_synth.core.sampling import in_key_order
from e2i_synth.core.scenario import Scenario
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.split import split_cutoffs, split_for_dates
from e2i_synth.tables.activity.calibration import Posterior, logit
from e2i_synth.tables.activity.ml_predictions_model import (
    NEXT_BEST_ACTIONS,
    PREDICTION_MODELS,
    SPEC,
)
from e2i_synth.world.initiation import start_factor, still_waiting
from e2i_synth.world.timelines import (
    DAYS_SUPPLY,
    LATE_REFILL_DAYS,
    NO_DAY,
    TIMELINE_COLUMNS,
    Timelines,
    iter_timelines,
)

TABLE = "ml_predictions"
EPOCH = date(1970, 1, 1)
NEVER = np.iinfo(np.int64).max  # day number of a first prescription that never happens
DAY_SECONDS = 86_400
US_PER_SECOND = 1_000_000

# Daily chance of a score, per eligible patient or HCP.
PROPENSITY_RESCORE_PER_DAY = 1 / 90  # untreated patients, after the score at diagnosis
CHURN_SCORE_SHARE = 0.5  # of fills
NBA_PER_HCP_PER_DAY = 1 / 180
# Propensity model: logit(score) = logit(true p) + patient effect + scoring noise.
PATIENT_EFFECT_SD = 0.3
SCORING_NOISE_SD = 0.2
PROPENSITY_SIGNAL_SD = float(np.hypot(PATIENT_EFFECT_SD, SCORING_NOISE_SD))
# Churn model: signal = logit(stop hazard) + patient effect + scoring noise.
CHURN_EFFECT_SD = 0.5
CHURN_NOISE_SD = 0.3
CHURN_SIGNAL_SD = float(np.hypot(CHURN_EFFECT_SD, CHURN_NOISE_SD))
# A fill's outcome (a next fill, or the stop) is known once this many days past its supply
# are inside the journey: more than the timeline's latest refill (LATE_REFILL_DAYS + a 45-day
# lapse) and latest stop (30 days); a test pins it.
RESOLVED_AFTER_SUPPLY_DAYS = 60
# A refill gap: the supply ran out more than this many days ago and no refill has come.
REFILL_GAP_LATE_DAYS = LATE_REFILL_DAYS
# Preference of next_best_action for each action: base logit, and its weight on
# (digital_engagement, kol_flag, academic_hcp).
NBA_PREFERENCES: dict[str, tuple[float, float, float, float]] = {
    "schedule_rep_visit": (0.8, -1.5, 0.0, -0.3),
    "send_email": (-0.6, 2.0, 0.0, 0.0),
    "invite_to_webinar": (-0.8, 1.5, 0.3, 0.4),
    "share_clinical_data": (-0.5, 0.0, 0.6, 1.0),
    "offer_speaker_program": (-2.0, 0.0, 2.5, 0.5),
    "provide_samples": (0.0, -0.5, -0.5, -0.5),
}
KIND_CODE = {t: i for i, t in enumerate(PREDICTION_MODELS)}
DRAWS_PER_ROW = 4  # uniforms per row: time of day, and three for its values


@dataclass(frozen=True)
class Population:
    """Patients and HCPs in key order, with the day numbers the daily draws compare against;
    fills (and refill gaps) in (day, patient) order."""

    patients: pl.DataFrame
    hcps: pl.DataFrame
    start: np.ndarray  # day number (days since 1970-01-01) of journey_start_date
    end: np.ndarray  # day number of journey_end_date
    first_rx: np.ndarray  # day number of the first prescription; NEVER if not initiated
    therapy_end: np.ndarray  # day number of the last day on therapy (before the first_rx if none)
    stop_hazard: np.ndarray  # chance of stopping after each fill (the timeline's)
    p_true: np.ndarray  # P(treatment_initiated) in the world (true_treatment_probability)
    fill_day: np.ndarray  # int32 day number of each fill
    fill_patient: np.ndarray  # int32 patient index of each fill
    fill_last: np.ndarray  # the patient's last fill in the journey
    fill_resolved: np.ndarray  # the fill's outcome (a next fill or the stop) lies in the journey
    gap_day: np.ndarray  # day a refill gap opens: REFILL_GAP_LATE_DAYS + 1 past the supply
    gap_patient: np.ndarray
    propensity_model: Posterior
    churn_model: Posterior

    def on_therapy(self, day: int) -> np.ndarray:
        """Patients on therapy on `day`: from the first fill to the day before the stop (or
        the journey's end)."""
        return (self.first_rx <= day) & (day <= self.therapy_end)

    def fills_on(self, day: int) -> np.ndarray:
        """Patients (indices) with a fill on `day`."""
        lo, hi = np.searchsorted(self.fill_day, [day, day + 1])
        return self.fill_patient[lo:hi].astype(np.int64)

    def gaps_opening_on(self, day: int) -> np.ndarray:
        """Patients whose refill gap opens on `day` (no refill nor stop by then)."""
        lo, hi = np.searchsorted(self.gap_day, [day, day + 1])
        return self.gap_patient[lo:hi].astype(np.int64)

    def fill_index(self, day: np.ndarray, patient: np.ndarray) -> np.ndarray:
        """Index of the fill of `patient` on `day` (each must exist)."""
        n = max(self.n_patients, 1)
        keys = self.fill_day.astype(np.int64) * n + self.fill_patient
        return np.searchsorted(keys, day.astype(np.int64) * n + patient)

    @property
    def n_patients(self) -> int:
        return self.patients.height

    @property
    def n_hcps(self) -> int:
        return self.hcps.height


# The columns of the inputs that predictions and triggers derive from (their assets read only
# these).
# The timeline's columns and what the scores read besides.
PATIENT_COLUMNS = (*TIMELINE_COLUMNS, "hcp_id")
HCP_COLUMNS = ("hcp_id", "brand_focus", "decile", "digital_engagement", "kol_flag", "academic_hcp")


def population(
    scenario: Scenario, hcp_profiles: pl.DataFrame, patient_journeys: pl.DataFrame
) -> Population:
    # Key order, so the result does not depend on how the inputs were read.
    patients = in_key_order(patient_journeys, PATIENT_COLUMNS, "patient_id")
    start = patients["journey_start_date"].cast(pl.Int64).to_numpy()
    # Only what the scores and alerts need of each timeline, block by block.
    blocks: list[dict[str, np.ndarray]] = []
    offset = 0
    trained_until = (split_cutoffs(scenario)[0] - EPOCH).days  # the models' training cutoff
    for block in iter_timelines(scenario, patients):
        patient_start = start[offset : offset + block.patients.height]
        blocks.append(_block_fills(block, patient_start, offset, trained_until))
        offset += block.patients.height

    def joined(key: str, dtype: type = np.int64) -> np.ndarray:
        # Each block's array is dropped once joined: fills run to tens of millions.
        parts = [b.pop(key) for b in blocks]
        return np.concatenate(parts) if parts else np.empty(0, dtype)

    first, therapy_end = joined("first_fill"), joined("therapy_end")
    hazard = joined("hazard", np.float64)
    fill_day = joined("fill_day", np.int32)
    # Blocks are in patient order, so a stable sort by day gives (day, patient) order.
    order = np.argsort(fill_day, kind="stable")
    fill_day = fill_day[order]
    fill_patient = joined("fill_patient", np.int32)[order]
    fill_last = joined("fill_last", np.bool_)[order]
    resolved = joined("fill_resolved", np.bool_)[order]
    del order
    gaps = joined("gap_day", np.int32)
    gap_order = np.argsort(gaps, kind="stable")
    p_true = true_treatment_probability(scenario, patients)
    # The models' priors: the patients, and the fills whose outcome was known, in training.
    propensity_rows = (start < trained_until).astype(np.float64)
    churn_rows = joined("churn_prior_rows")
    return Population(
        patients=patients,
        hcps=in_key_order(hcp_profiles, HCP_COLUMNS, "hcp_id"),
        start=start,
        end=patients["journey_end_date"].cast(pl.Int64).to_numpy(),
        first_rx=np.where(first == NO_DAY, NEVER, start + first),
        therapy_end=start + therapy_end,
        stop_hazard=hazard,
        p_true=p_true,
        fill_day=fill_day,
        fill_patient=fill_patient,
        fill_last=fill_last,
        fill_resolved=resolved,
        gap_day=gaps[gap_order],
        gap_patient=joined("gap_patient", np.int32)[gap_order],
        propensity_model=Posterior.fit(p_true, PROPENSITY_SIGNAL_SD, propensity_rows),
        churn_model=Posterior.fit(hazard, CHURN_SIGNAL_SD, churn_rows),
    )


def _block_fills(
    block: Timelines, start: np.ndarray, offset: int, trained_until: int
) -> dict[str, np.ndarray]:
    """One block's timeline as the models and agents read it; patient indices and day numbers
    absolute. For each fill: whether it is the last, whether its outcome is known inside the
    journey; per patient, its fills whose outcome was known before the day trained_until (the
    churn model's prior); and each refill gap (a fill whose supply
    ran out more than REFILL_GAP_LATE_DAYS before the next fill or the stop, or the journey's
    end)."""
    who, day = block.fill_patient, block.fill_day.astype(np.int64)
    supply = (
        block.patients["brand"].replace_strict(DAYS_SUPPLY, return_dtype=pl.Int64).to_numpy()[who]
    )
    same = who[1:] == who[:-1]
    last = np.ones(who.size, dtype=np.bool_)
    last[:-1][same] = False
    following = np.empty(who.size, dtype=np.int64)  # the next fill, or the stop (NO_DAY: none)
    following[:-1] = day[1:]
    following[last] = block.stop[who[last]]
    duration = block.duration[who]
    gap = day + supply + REFILL_GAP_LATE_DAYS + 1
    lapsed = (gap < following) & (gap <= duration)
    known = day + supply + RESOLVED_AFTER_SUPPLY_DAYS  # the fill's outcome is known by then
    resolved = known <= duration
    return {
        "first_fill": block.first_fill,
        "therapy_end": block.therapy_end,
        "hazard": block.hazard,
        "fill_day": (start[who] + day).astype(np.int32),
        "fill_patient": (offset + who).astype(np.int32),
        "fill_last": last,
        "fill_resolved": resolved,
        "churn_prior_rows": np.bincount(
            who[resolved & (start[who] + known < trained_until)],
            minlength=block.patients.height,
        ),
        "gap_day": (start[who] + gap)[lapsed].astype(np.int32),
        "gap_patient": (offset + who)[lapsed].astype(np.int32),
    }


def true_treatment_probability(scenario: Scenario, patients: pl.DataFrame) -> np.ndarray:
    """P(treatment_initiated) of each patient in the world: the scenario's causal model, times
    the chance that a start goes ahead under a planted start shock (world.initiation; the
    shock is in force from before the diagnosis of every patient it reaches)."""
    return scenario.causal.treatment_probability(
        patients["engagement_score"].to_numpy(),
        patients["disease_severity"].to_numpy(),
        patients["academic_hcp"].to_numpy(),
    ) * start_factor(
        scenario, patients["brand"], patients["region"], patients["journey_start_date"]
    )


def window_days(scenario: Scenario, start: date, end: date) -> list[date]:
    """The days of [start, end) that lie inside the scenario's date range."""
    first = max(start, scenario.start_date)
    stop = min(end, scenario.end_date + timedelta(days=1))
    return [first + timedelta(days=i) for i in range((stop - first).days)]


def rows_in_window(scenario: Scenario, start: date, end: date) -> int | None:
    """Rows of [start, end) as far as the scenario fixes them: 0 for a window with none of its
    days (daily_draws draws only window_days), else None (some, drawn day by day). For
    ml_predictions and triggers alike."""
    return None if window_days(scenario, start, end) else 0


# select(rng, population, day number) -> (kind codes, entity indices) of that day's rows.
DaySelector = Callable[[np.random.Generator, Population, int], tuple[np.ndarray, np.ndarray]]


def daily_draws(
    scenario: Scenario,
    table: str,
    pop: Population,
    start: date,
    end: date,
    select: DaySelector,
    n_uniforms: int,
) -> pl.DataFrame:
    """The rows `select` picks on each day of [start, end), each day from its own stream.

    Columns: _day (date), _kind, _entity, _us (microseconds into the day, whole seconds) and
    _u1.._u{n_uniforms-1} (per-row uniforms for the caller), sorted by day and time.
    """
    days, kinds, entities, uniforms = [], [], [], []
    for day in window_days(scenario, start, end):
        rng = rng_for(scenario.seed, table, day.isoformat())
        kind, entity = select(rng, pop, (day - EPOCH).days)
        days.append(np.full(kind.size, (day - EPOCH).days, dtype=np.int32))
        kinds.append(kind)
        entities.append(entity)
        uniforms.append(rng.random((kind.size, n_uniforms)))
    u = np.concatenate(uniforms) if uniforms else np.empty((0, n_uniforms))
    frame = pl.DataFrame(
        {
            "_day": pl.Series(np.concatenate(days) if days else [], dtype=pl.Int32).cast(pl.Date),
            "_kind": pl.Series(np.concatenate(kinds) if kinds else [], dtype=pl.Int64),
            "_entity": pl.Series(np.concatenate(entities) if entities else [], dtype=pl.Int64),
            "_us": np.floor(u[:, 0] * DAY_SECONDS).astype(np.int64) * US_PER_SECOND,
            **{f"_u{i}": u[:, i] for i in range(1, n_uniforms)},
        }
    )
    return frame.sort("_day", "_us", "_kind", "_entity")


def timestamp_and_id(prefix: str, id_column: str, timestamp_column: str) -> dict[str, pl.Expr]:
    """The UTC timestamp from _day and _us, and the key <prefix>-<YYYYMMDD>-<n within day>.

    Expects rows sorted by _day and then by their order within the day."""
    number = pl.int_range(1, pl.len() + 1).over("_day").cast(pl.String).str.zfill(6)
    timestamp = pl.col("_day").cast(pl.Datetime("us")) + pl.duration(microseconds=pl.col("_us"))
    return {
        id_column: pl.format(
            "{}-{}-{}", pl.lit(prefix), pl.col("_day").dt.strftime("%Y%m%d"), number
        ),
        timestamp_column: timestamp.dt.replace_time_zone("UTC"),
    }


def normal(column: str) -> pl.Expr:
    """A standard normal from a uniform column (inverse CDF), vectorised."""
    return (
        pl.col(column)
        .clip(1e-12, 1 - 1e-12)
        .map_batches(lambda s: pl.Series(ndtri(s.to_numpy())), return_dtype=pl.Float64)
    )


def select_day(
    rng: np.random.Generator, pop: Population, day: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (kind codes, entity indices) of the rows of `day` (a DaySelector)."""
    # Fixed-size draws every day, so each day's stream is used the same way.
    u_propensity, u_churn = rng.random((2, pop.n_patients))
    u_nba = rng.random(pop.n_hcps)
    active = (pop.start <= day) & (day <= pop.end)
    propensity = (pop.start == day) | (
        active & (day < pop.first_rx) & (u_propensity < PROPENSITY_RESCORE_PER_DAY)
    )
    filled = pop.fills_on(day)
    churn = filled[u_churn[filled] < CHURN_SCORE_SHARE]
    groups = (
        (KIND_CODE["treatment_propensity"], np.flatnonzero(propensity)),
        (KIND_CODE["churn_risk"], churn),
        (KIND_CODE["next_best_action"], np.flatnonzero(u_nba < NBA_PER_HCP_PER_DAY)),
    )
    return (
        np.concatenate([np.full(e.size, k, dtype=np.int64) for k, e in groups]),
        np.concatenate([e for _, e in groups]).astype(np.int64),
    )


def generate_ml_predictions(
    scenario: Scenario,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    start: date,
    end: date,
) -> pl.DataFrame:
    """Predictions whose prediction_timestamp falls in [start, end)."""
    pop = population(scenario, hcp_profiles, patient_journeys)
    return predictions_in_window(scenario, pop, start, end)


def predictions_in_window(
    scenario: Scenario, pop: Population, start: date, end: date
) -> pl.DataFrame:
    """generate_ml_predictions from a population built once (the asset scores month by month)."""
    rows = daily_draws(scenario, TABLE, pop, start, end, select_day, DRAWS_PER_ROW)
    patient_effect, churn_effect = model_errors(scenario, pop.n_patients)
    patient_kinds = [KIND_CODE[t] for t, (_, e, _) in PREDICTION_MODELS.items() if e == "patient"]
    is_patient = pl.col("_kind").is_in(patient_kinds)
    patient_rows = _patient_predictions(
        scenario,
        rows.filter(is_patient),
        pop,
        patient_effect,
        churn_effect,
    )
    hcp_rows = _hcp_predictions(rows.filter(~is_patient), pop, scenario)

    types = dict(enumerate(PREDICTION_MODELS))
    return (
        pl.concat([patient_rows, hcp_rows], how="diagonal")
        .sort("_day", "_us", "_kind", "_entity")
        .with_columns(
            prediction_type=pl.col("_kind").replace_strict(types, return_dtype=pl.String),
            **timestamp_and_id("PRD", "prediction_id", "prediction_timestamp"),
        )
        .with_columns(
            model_name=pl.col("prediction_type").replace_strict(
                {t: m for t, (m, _, _) in PREDICTION_MODELS.items()}, return_dtype=pl.String
            ),
            entity_type=pl.col("prediction_type").replace_strict(
                {t: e for t, (_, e, _) in PREDICTION_MODELS.items()}, return_dtype=pl.String
            ),
            threshold=pl.col("prediction_type").replace_strict(
                {t: th for t, (_, _, th) in PREDICTION_MODELS.items()}, return_dtype=pl.Float64
            ),
            model_version=pl.format("1.{}.0", _quarters_since(scenario.start_date)),
            score=pl.col("score").round(4),
        )
        .with_columns(predicted_label=pl.col("score") >= pl.col("threshold"))
        .select(SPEC.columns)
    )


def _quarters_since(first: date) -> pl.Expr:
    # The models are retrained every calendar quarter; version 1.0.0 serves the first one.
    day = pl.col("_day")
    return (day.dt.year() * 4 + (day.dt.month() - 1) // 3) - (
        first.year * 4 + (first.month - 1) // 3
    )


def initiation_probability(p: np.ndarray, days_since_diagnosis: np.ndarray) -> np.ndarray:
    """P(treatment_initiated) of a patient with causal probability p, known untreated
    days_since_diagnosis days after diagnosis (at diagnosis, day 0: p itself): the wait to a
    first prescription is the journeys' rounded gamma, so P(starting later) = p S / (p S + 1 - p)
    with S = P(wait > d)."""
    return _still_starts(np.clip(p, 0.0, 1.0), days_since_diagnosis)


def _still_starts(p: np.ndarray, days_since_diagnosis: np.ndarray) -> np.ndarray:
    still = still_waiting(days_since_diagnosis)
    return p * still / (1 - (1 - still) * p)


def patient_scores(
    pop: Population,
    kind: np.ndarray,
    patient: np.ndarray,
    day: np.ndarray,
    signal_noise: np.ndarray,
    patient_effect: np.ndarray,
    churn_effect: np.ndarray,
) -> np.ndarray:
    """The score of each patient row (kind code, patient index, day number, standard normal
    scoring noise; per-patient model errors), unrounded."""
    propensity = kind == KIND_CODE["treatment_propensity"]
    z_propensity = logit(pop.p_true[patient]) + patient_effect[patient]
    z_churn = logit(pop.stop_hazard[patient]) + churn_effect[patient]
    z = np.where(propensity, z_propensity + SCORING_NOISE_SD * signal_noise, z_churn)
    z = np.where(propensity, z, z + CHURN_NOISE_SD * signal_noise)
    # Propensity: E[initiation | signal, untreated d days after diagnosis]. Over the rows
    # untreated at d the prior of p is tilted by 1 - p + pS, and the posterior mean works out
    # to the same formula applied to E[p | signal] over all patients.
    return np.where(
        propensity,
        _still_starts(pop.propensity_model.mean(z), day - pop.start[patient]),
        pop.churn_model.mean(z),
    )


def model_errors(scenario: Scenario, n_patients: int) -> tuple[np.ndarray, np.ndarray]:
    """The lasting per-patient errors of the propensity and churn models (the same whatever
    the window)."""
    return (
        PATIENT_EFFECT_SD
        * rng_for(scenario.seed, TABLE, "patient_effect").standard_normal(n_patients),
        CHURN_EFFECT_SD * rng_for(scenario.seed, TABLE, "churn_effect").standard_normal(n_patients),
    )


def _patient_predictions(
    scenario: Scenario,
    rows: pl.DataFrame,
    pop: Population,
    patient_effect: np.ndarray,
    churn_effect: np.ndarray,
) -> pl.DataFrame:
    idx = rows["_entity"].to_numpy()
    patients = pop.patients[idx].select("patient_id", "hcp_id", "brand")
    score = patient_scores(
        pop,
        rows["_kind"].to_numpy(),
        idx,
        rows["_day"].cast(pl.Int64).to_numpy(),
        ndtri(np.clip(rows["_u1"].to_numpy(), 1e-12, 1 - 1e-12)),
        patient_effect,
        churn_effect,
    )
    return pl.concat([rows, patients], how="horizontal").with_columns(
        score=pl.Series(score, dtype=pl.Float64),
        recommended_action=pl.lit(None, dtype=pl.String),
        data_split=split_for_dates(pl.col("_day"), scenario),
    )


def _hcp_predictions(rows: pl.DataFrame, pop: Population, scenario: Scenario) -> pl.DataFrame:
    idx = rows["_entity"].to_numpy()
    hcps = pop.hcps[idx]
    features = np.column_stack(
        [
            np.ones(idx.size),
            hcps["digital_engagement"].to_numpy(),
            hcps["kol_flag"].to_numpy(),
            hcps["academic_hcp"].to_numpy(),
        ]
    )
    # Softmax over the actions' preferences, sampled with the row's uniform.
    weights = np.exp(features @ np.array(list(NBA_PREFERENCES.values())).T)
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    u = rows["_u1"].to_numpy()[:, None]
    choice = np.minimum((cumulative < u).sum(axis=1), len(NEXT_BEST_ACTIONS) - 1)
    # Confidence grows with how much the model knows about the HCP (volume decile).
    confidence = (pl.col("decile").cast(pl.Float64) - 5.5) / 4.5 * 0.8 + 0.9 * normal("_u2")
    return pl.concat(
        [rows, hcps.select("hcp_id", "decile", brand="brand_focus")], how="horizontal"
    ).with_columns(
        patient_id=pl.lit(None, dtype=pl.String),
        recommended_action=pl.Series(np.array(NEXT_BEST_ACTIONS, dtype=object)[choice]).cast(
            pl.String
        ),
        score=_sigmoid(confidence),
        data_split=split_for_dates(pl.col("_day"), scenario),
    )


def _sigmoid(x: pl.Expr) -> pl.Expr:
    return 1 / (1 + (-x).exp())
