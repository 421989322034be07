"""ml_predictions generator: what the deployed models scored, day by day.

Rows are drawn one day at a time, each day from its own random stream, and numbered within
their day; so the rows of a window are exactly the union of its days' rows, whatever window is
asked for (the table is partitioned by month; a month is the union of its days). The
helpers for that are shared with the triggers generator.

treatment_propensity scores every patient at diagnosis and rescores them while untreated;
its score is the true P(treatment_initiated) of the causal model, known at diagnosis, blurred
by a lasting per-patient model error and scoring noise: it uses nothing that happens after its
timestamp (never the realised outcome), so it discriminates less well than the generating
probability itself. churn_risk scores treated patients only while they are on therapy (their
timeline, e2i_synth.world.timelines): its score is the chance of stopping within
CHURN_HORIZON_DAYS implied by the patient's stop hazard (known at initiation), blurred the same
way, so it predicts stopping but never better than the hazard itself. next_best_action
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
from e2i_synth.core.split import split_for_dates
from e2i_synth.tables.activity.ml_predictions_model import (
    NEXT_BEST_ACTIONS,
    PREDICTION_MODELS,
    SPEC,
)
from e2i_synth.world.timelines import DAYS_SUPPLY, NO_DAY, iter_timelines

TABLE = "ml_predictions"
EPOCH = date(1970, 1, 1)
NEVER = np.iinfo(np.int64).max  # day number of a first prescription that never happens
DAY_SECONDS = 86_400
US_PER_SECOND = 1_000_000

# Daily chance of a score, per eligible patient or HCP.
PROPENSITY_RESCORE_PER_DAY = 1 / 90  # untreated patients, after the score at diagnosis
CHURN_SCORE_PER_DAY = 1 / 60  # patients on therapy
NBA_PER_HCP_PER_DAY = 1 / 180
# Propensity model: logit(score) = logit(true p) + patient effect + scoring noise.
PATIENT_EFFECT_SD = 0.3
SCORING_NOISE_SD = 0.2
# Churn model: logit(score) = logit(P(stop within the horizon | stop hazard)) + patient effect
# + scoring noise.
CHURN_HORIZON_DAYS = 90
CHURN_EFFECT_SD = 0.5
CHURN_NOISE_SD = 0.3
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
    """Patients and HCPs in key order, with the day numbers the daily draws compare against."""

    patients: pl.DataFrame
    hcps: pl.DataFrame
    start: np.ndarray  # day number (days since 1970-01-01) of journey_start_date
    end: np.ndarray  # day number of journey_end_date
    first_rx: np.ndarray  # day number of the first prescription; NEVER if not initiated
    therapy_end: np.ndarray  # day number of the last day on therapy (before the first_rx if none)
    stop_hazard: np.ndarray  # chance of stopping after each fill (the timeline's)
    p_true: np.ndarray  # P(treatment_initiated) of the causal model

    def on_therapy(self, day: int) -> np.ndarray:
        """Patients on therapy on `day`: from the first fill to the day before the stop (or
        the journey's end)."""
        return (self.first_rx <= day) & (day <= self.therapy_end)

    @property
    def n_patients(self) -> int:
        return self.patients.height

    @property
    def n_hcps(self) -> int:
        return self.hcps.height


# The columns of the inputs that predictions and triggers derive from (their assets read only
# these).
PATIENT_COLUMNS = (
    "patient_id",
    "hcp_id",
    "brand",
    "insurance_type",
    "journey_start_date",
    "journey_end_date",
    "comorbidity_count",
    "disease_severity",
    "academic_hcp",
    "engagement_score",
    "treatment_initiated",
    "days_to_treatment",
)
HCP_COLUMNS = ("hcp_id", "brand_focus", "decile", "digital_engagement", "kol_flag", "academic_hcp")


def population(
    scenario: Scenario, hcp_profiles: pl.DataFrame, patient_journeys: pl.DataFrame
) -> Population:
    # Key order, so the result does not depend on how the inputs were read.
    patients = in_key_order(patient_journeys, PATIENT_COLUMNS, "patient_id")
    start = patients["journey_start_date"].cast(pl.Int64).to_numpy()
    # Only what the scores and alerts need of each timeline, block by block.
    first_fill, therapy_end, hazard = [], [], []
    for block in iter_timelines(scenario, patients):
        first_fill.append(block.first_fill)
        therapy_end.append(block.therapy_end)
        hazard.append(block.hazard)
    first = np.concatenate(first_fill) if first_fill else np.empty(0, dtype=np.int32)
    return Population(
        patients=patients,
        hcps=in_key_order(hcp_profiles, HCP_COLUMNS, "hcp_id"),
        start=start,
        end=patients["journey_end_date"].cast(pl.Int64).to_numpy(),
        first_rx=np.where(first == NO_DAY, NEVER, start + first),
        therapy_end=start + (np.concatenate(therapy_end) if therapy_end else 0),
        stop_hazard=np.concatenate(hazard) if hazard else np.empty(0),
        p_true=true_treatment_probability(scenario, patients),
    )


def true_treatment_probability(scenario: Scenario, patients: pl.DataFrame) -> np.ndarray:
    """P(treatment_initiated) of each patient under the scenario's causal model."""
    return scenario.causal.treatment_probability(
        patients["engagement_score"].to_numpy(),
        patients["disease_severity"].to_numpy(),
        patients["academic_hcp"].to_numpy(),
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


def _select_day(
    rng: np.random.Generator, pop: Population, day: int
) -> tuple[np.ndarray, np.ndarray]:
    # Fixed-size draws every day, so each day's stream is used the same way.
    u_propensity, u_churn = rng.random((2, pop.n_patients))
    u_nba = rng.random(pop.n_hcps)
    active = (pop.start <= day) & (day <= pop.end)
    propensity = (pop.start == day) | (
        active & (day < pop.first_rx) & (u_propensity < PROPENSITY_RESCORE_PER_DAY)
    )
    churn = pop.on_therapy(day) & (u_churn < CHURN_SCORE_PER_DAY)
    groups = (
        (KIND_CODE["treatment_propensity"], np.flatnonzero(propensity)),
        (KIND_CODE["churn_risk"], np.flatnonzero(churn)),
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
    rows = daily_draws(scenario, TABLE, pop, start, end, _select_day, DRAWS_PER_ROW)
    # A lasting per-patient error of the propensity model, the same whatever the window.
    patient_effect = rng_for(scenario.seed, TABLE, "patient_effect").standard_normal(pop.n_patients)
    churn_effect = rng_for(scenario.seed, TABLE, "churn_effect").standard_normal(pop.n_patients)
    patient_kinds = [KIND_CODE[t] for t, (_, e, _) in PREDICTION_MODELS.items() if e == "patient"]
    is_patient = pl.col("_kind").is_in(patient_kinds)
    patient_rows = _patient_predictions(
        scenario,
        rows.filter(is_patient),
        pop,
        PATIENT_EFFECT_SD * patient_effect,
        CHURN_EFFECT_SD * churn_effect,
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


def churn_probability(stop_hazard: np.ndarray, brand: pl.Series) -> np.ndarray:
    """P(stopping within CHURN_HORIZON_DAYS) of a patient on therapy with this stop hazard: one
    chance to stop per fill, a fill every days_supply days."""
    supply = brand.replace_strict(DAYS_SUPPLY, return_dtype=pl.Float64).to_numpy()
    return 1 - (1 - stop_hazard) ** (CHURN_HORIZON_DAYS / supply)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def _patient_predictions(
    scenario: Scenario,
    rows: pl.DataFrame,
    pop: Population,
    patient_effect: np.ndarray,
    churn_effect: np.ndarray,
) -> pl.DataFrame:
    idx = rows["_entity"].to_numpy()
    patients = pop.patients[idx].select("patient_id", "hcp_id", "brand", "treatment_initiated")
    frame = pl.concat(
        [
            rows,
            patients,
            pl.DataFrame(
                {
                    "_logit_p": _logit(pop.p_true[idx]),
                    "_effect": patient_effect[idx],
                    "_logit_churn": _logit(
                        churn_probability(pop.stop_hazard[idx], patients["brand"])
                    ),
                    "_churn_effect": churn_effect[idx],
                }
            ),
        ],
        how="horizontal",
    )
    propensity = pl.col("_logit_p") + pl.col("_effect") + SCORING_NOISE_SD * normal("_u1")
    # Known at the score's date: the stop hazard's factors (engagement, payer, comorbidities).
    churn = pl.col("_logit_churn") + pl.col("_churn_effect") + CHURN_NOISE_SD * normal("_u1")
    logit = pl.when(pl.col("_kind") == KIND_CODE["treatment_propensity"]).then(propensity)
    return frame.with_columns(
        score=_sigmoid(logit.otherwise(churn)),
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
