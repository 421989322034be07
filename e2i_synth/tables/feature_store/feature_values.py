"""feature_values generator: observations of every feature over time, with planted drift.

Each day holds n = observations_per_day(scale) observations of every feature. An observation
picks its entity uniformly from the entities of the feature's key that exist that day (every
HCP, every scenario brand, or the patients whose journey covers the day: nothing about a
patient is dated before the diagnosis or after the journey's end, so a day no journey covers
has no patient observations), and reads the entity's source value (hcp_profiles,
patient_journeys, or brand aggregates of patient_journeys) plus
stationary noise drawn independently per observation (see PROCESSES). There is no trend and no
random walk: without planted drift any two windows are samples of the same distribution.

From a DriftSpec's start the feature's values change: mean_shift adds magnitude x the feature's
standard deviation, variance_change scales the deviation from the feature mean by magnitude,
category_mix moves a share magnitude of values to another category (bool: flips). Mean and
standard deviation are those of the undrifted process over the entity population, so they do
not depend on which days are generated.

Every draw of a day comes from rng_for(seed, "feature_values", day) in a fixed layout, and ids
are FV-<YYYYMMDD>-<index within the day>, so any window is exactly the union of its days. The
n observations of a feature on a day sit in n equal slots of the day, which makes
(feature_id, event_timestamp), and so (feature_id, entity_values, event_timestamp), unique.
Every row carries the split of its own date.
"""

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl

from e2i_synth.core.sampling import in_key_order
from e2i_synth.core.scenario import ENGAGEMENT_MAX, DriftSpec, Scenario, SeasonalSpec
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.vocabulary import FEATURE_GROUPS, FEATURES
from e2i_synth.tables.feature_store.catalog import INSURANCE_TIERS
from e2i_synth.tables.feature_store.feature_values_model import SPEC, STALE_WINDOWS

OBSERVATIONS_PER_DAY = 8
# Noise is a normal truncated at this many standard deviations: every undrifted value stays
# within a known distance of its source (the checks' tolerance).
NOISE_BOUND = 3.0
US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
_EPOCH = date(1970, 1, 1)
# Uniform draws per observation, in this order, then one standard normal.
_ENTITY, _TIME, _STEP, _MIX, _CATEGORY = range(5)
_UNIFORMS = 5


@dataclass(frozen=True)
class ValueProcess:
    """How an observation departs from its entity's source value (z: truncated normal).

    static: the source value. additive: source + size * z. relative: source * (1 + size * z).
    step: source + 1 or - 1 with probability size / 2 each (a count recorded one off).
    Floats are rounded to `decimals`, ints to whole numbers.
    """

    kind: Literal["static", "additive", "relative", "step"]
    size: float = 0.0
    decimals: int = 0

    def noise_variance(self, base: np.ndarray) -> float:
        if self.kind == "additive":
            return self.size**2
        if self.kind == "relative":
            return self.size**2 * float(np.mean(base**2))
        if self.kind == "step":
            return self.size
        return 0.0


PROCESSES: dict[str, ValueProcess] = {
    "specialty_encoded": ValueProcess("static"),
    "years_experience": ValueProcess("static"),
    "academic_flag": ValueProcess("static"),
    "patient_volume_monthly": ValueProcess("relative", 0.08),
    "disease_severity": ValueProcess("additive", 0.3, 1),
    "age_at_diagnosis": ValueProcess("static"),
    "comorbidity_count": ValueProcess("step", 0.1),
    "prior_treatment_count": ValueProcess("step", 0.1),
    "insurance_tier": ValueProcess("static"),
    "trx_30d": ValueProcess("relative", 0.05, 2),
    "nrx_30d": ValueProcess("relative", 0.08, 2),
    "conversion_rate": ValueProcess("relative", 0.04, 4),
    "engagement_score": ValueProcess("additive", 0.4, 2),
    "treatment_propensity": ValueProcess("additive", 0.01, 4),
    "outcome_probability": ValueProcess("additive", 0.01, 4),
}


def observations_per_day(scale: float) -> int:
    """Observations of each feature per day: 8 up to scale 1, then growing with sqrt(scale)."""
    return round(OBSERVATIONS_PER_DAY * max(1.0, math.sqrt(scale)))


def patient_features() -> tuple[str, ...]:
    """The features about a patient (observed only inside the patient's journey)."""
    return tuple(
        f for f, (group, _) in FEATURES.items() if FEATURE_GROUPS[group][0] == "patient_id"
    )


def expected_feature_values(scenario: Scenario, patient_journeys: pl.DataFrame) -> int:
    """Rows of feature_values over the scenario's whole window [start_date, end_date]: every
    feature every day, except patient features on days no journey covers."""
    days = (scenario.end_date - scenario.start_date).days + 1
    n = observations_per_day(scenario.scale)
    covered = _covered_days(patient_journeys, scenario.start_date, scenario.end_date)
    return n * (
        days * (len(FEATURES) - len(patient_features())) + covered * len(patient_features())
    )


def _covered_days(patient_journeys: pl.DataFrame, first: date, last: date) -> int:
    """Days of [first, last] inside at least one patient's journey."""
    day = np.arange((first - _EPOCH).days, (last - _EPOCH).days + 1)
    start = patient_journeys["journey_start_date"].cast(pl.Int64).to_numpy()
    end = patient_journeys["journey_end_date"].cast(pl.Int64).to_numpy()
    opened = np.searchsorted(np.sort(start), day, side="right")
    closed = np.searchsorted(np.sort(end), day, side="left")
    return int(np.count_nonzero(opened - closed > 0))


def window_days(start: date, end: date) -> list[date]:
    """The days of [start, end) that get observations: every one, after end_date too (the
    feature store is live: the nightly refresh keeps adding days past the scenario's window)."""
    return [start + timedelta(days=i) for i in range(max(0, (end - start).days))]


def rows_in_window(scenario: Scenario, start: date, end: date) -> int | None:
    """Rows generate_feature_values gives for [start, end): exact outside the scenario's window
    (no journey covers those days, so no patient features), else None (depends on which days
    the journeys cover)."""
    days = window_days(start, end)
    if any(scenario.start_date <= d <= scenario.end_date for d in days):
        return None
    return (
        len(days) * (len(FEATURES) - len(patient_features())) * observations_per_day(scenario.scale)
    )


def tolerance(feature: str) -> tuple[float, float]:
    """(absolute, relative) bound of |value - source| for an undrifted value of `feature`."""
    process = PROCESSES[feature]
    rounding = 0.5 * 10.0**-process.decimals + 1e-9
    if process.kind == "additive":
        return NOISE_BOUND * process.size + rounding, 0.0
    if process.kind == "relative":
        return rounding, NOISE_BOUND * process.size
    if process.kind == "step":
        return 1.0, 0.0
    return 0.0, 0.0


def as_of(scenario: Scenario) -> datetime:
    """The instant freshness is judged at: the end of the scenario's reference date (UTC)."""
    day = scenario.reference_date + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def brand_performance(scenario: Scenario, patient_journeys: pl.DataFrame) -> pl.DataFrame:
    """Brand-level source values: trx_30d, nrx_30d and conversion_rate per scenario brand.

    Over the scenario's span, each initiated patient fills a prescription at initiation and
    every 30 days until the journey ends; the 30-day rates are the span's averages.
    """
    span = (scenario.end_date - scenario.start_date).days
    treated_days = (
        pl.col("journey_end_date") - pl.col("journey_start_date")
    ).dt.total_days() - pl.col("days_to_treatment")
    per_brand = patient_journeys.group_by("brand").agg(
        patients=pl.len(),
        initiated=pl.col("treatment_initiated").sum(),
        fills=(treated_days // 30 + 1).filter(pl.col("treatment_initiated")).sum(),
    )
    return (
        pl.DataFrame({"brand": list(scenario.brands)})
        .join(per_brand, on="brand", how="left", maintain_order="left")
        .fill_null(0)
        .select(
            "brand",
            trx_30d=pl.col("fills").cast(pl.Float64) * 30 / span,
            nrx_30d=pl.col("initiated").cast(pl.Float64) * 30 / span,
            conversion_rate=pl.when(pl.col("patients") > 0)
            .then(pl.col("initiated") / pl.col("patients"))
            .otherwise(0.0),
        )
    )


def causal_features(scenario: Scenario, patient_journeys: pl.DataFrame) -> pl.DataFrame:
    """Per patient, treatment_propensity and outcome_probability from scenario.causal.

    treatment_propensity: expected engagement given the confounders (engagement_intercept +
    severity_on_engagement x severity + academic_on_engagement x academic), over ENGAGEMENT_MAX.
    outcome_probability: P(treatment_initiated) of the linear probability model at the
    patient's engagement, severity and academic flag.
    """
    c = scenario.causal
    severity = pl.col("disease_severity")
    academic = pl.col("academic_hcp").cast(pl.Float64)
    propensity = (
        c.engagement_intercept
        + c.severity_on_engagement * severity
        + c.academic_on_engagement * academic
    ) / ENGAGEMENT_MAX
    outcome = c.treatment_probability(pl.col("engagement_score"), severity, academic)
    return patient_journeys.select(
        "patient_id",
        treatment_propensity=propensity.clip(0.0, 1.0),
        outcome_probability=outcome.clip(0.0, 1.0),
    )


@dataclass(frozen=True)
class _Source:
    key: str  # entity key: hcp_id, patient_id or brand
    # polars, not numpy: an object array of millions of id strings costs GBs per feature.
    ids: pl.Series  # entity ids, in a fixed order
    values: np.ndarray  # float source values; category codes for bool and category features
    # Patients only: day numbers (since 1970-01-01) of each journey's start and end.
    journeys: tuple[np.ndarray, np.ndarray] | None


# The columns of the inputs the feature values derive from (the asset reads only these).
HCP_COLUMNS = ("hcp_id", "specialty", "years_experience", "academic_hcp", "patient_volume_monthly")
PATIENT_COLUMNS = (
    "patient_id",
    "brand",
    "insurance_type",
    "journey_start_date",
    "journey_end_date",
    "age_at_diagnosis",
    "comorbidity_count",
    "prior_treatment_count",
    "disease_severity",
    "academic_hcp",
    "engagement_score",
    "treatment_initiated",
    "days_to_treatment",
)


def _sources(
    scenario: Scenario,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    categories: dict[str, list],
) -> dict[str, _Source]:
    hcps = in_key_order(hcp_profiles, HCP_COLUMNS, "hcp_id")
    patients = in_key_order(patient_journeys, PATIENT_COLUMNS, "patient_id")
    causal = causal_features(scenario, patients)
    brands = brand_performance(scenario, patients)

    def codes(feature: str, values: pl.Series) -> np.ndarray:
        index = {v: i for i, v in enumerate(categories[feature])}
        unknown = set(values.unique().to_list()) - set(index)
        if unknown:
            raise ValueError(f"{feature}: source values {sorted(unknown)} are not categories")
        return values.replace_strict(index, return_dtype=pl.Int64).to_numpy().astype(float)

    def hcp(values: np.ndarray) -> _Source:
        return _Source("hcp_id", hcps["hcp_id"], values, None)

    journeys = (
        patients["journey_start_date"].cast(pl.Int64).to_numpy(),
        patients["journey_end_date"].cast(pl.Int64).to_numpy(),
    )

    def patient(values: np.ndarray) -> _Source:
        return _Source("patient_id", patients["patient_id"], values, journeys)

    def brand(column: str) -> _Source:
        return _Source("brand", brands["brand"], brands[column].to_numpy(), None)

    def num(frame: pl.DataFrame, column: str) -> np.ndarray:
        return frame[column].cast(pl.Float64).to_numpy()

    tiers = patients["insurance_type"].replace_strict(INSURANCE_TIERS, return_dtype=pl.String)
    return {
        "specialty_encoded": hcp(codes("specialty_encoded", hcps["specialty"])),
        "years_experience": hcp(num(hcps, "years_experience")),
        "academic_flag": hcp(num(hcps, "academic_hcp")),
        "patient_volume_monthly": hcp(num(hcps, "patient_volume_monthly")),
        "disease_severity": patient(num(patients, "disease_severity")),
        "age_at_diagnosis": patient(num(patients, "age_at_diagnosis")),
        "comorbidity_count": patient(num(patients, "comorbidity_count")),
        "prior_treatment_count": patient(num(patients, "prior_treatment_count")),
        "insurance_tier": patient(codes("insurance_tier", tiers)),
        "trx_30d": brand("trx_30d"),
        "nrx_30d": brand("nrx_30d"),
        "conversion_rate": brand("conversion_rate"),
        "engagement_score": patient(num(patients, "engagement_score")),
        "treatment_propensity": patient(num(causal, "treatment_propensity")),
        "outcome_probability": patient(num(causal, "outcome_probability")),
    }


def _day_draws(scenario: Scenario, days: list[date], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniforms (days, 5, features, n) and truncated normals (days, features, n), each day's
    from its own stream, in a layout that does not depend on the window."""
    shape = (_UNIFORMS, len(FEATURES), n)
    uniforms = np.empty((len(days), *shape))
    normals = np.empty((len(days), len(FEATURES), n))
    for i, day in enumerate(days):
        rng = rng_for(scenario.seed, "feature_values", day.isoformat())
        uniforms[i] = rng.random(shape)
        normals[i] = rng.standard_normal(shape[1:])
    return uniforms, np.clip(normals, -NOISE_BOUND, NOISE_BOUND)


def _patient_picks(
    journeys: tuple[np.ndarray, np.ndarray], u: np.ndarray, day_numbers: np.ndarray
) -> np.ndarray:
    """For uniforms u (days, features, n): the patient (row index) each observation picks among
    those whose journey covers its day, -1 where none does. One pass over the days for every
    patient feature: the covering set of a day is the costly part at large scales."""
    start, end = journeys
    picked = np.full(u.shape, -1, dtype=np.int64)
    for i, day in enumerate(day_numbers):
        covering = np.flatnonzero((start <= day) & (day <= end))
        if covering.size:
            index = np.minimum((u[i] * covering.size).astype(np.int64), covering.size - 1)
            picked[i] = covering[index]
    return picked


def _drift_us(drift: DriftSpec) -> int:
    return (drift.start - _EPOCH).days * US_PER_DAY


def drift_fraction(drift: DriftSpec, ts: np.ndarray) -> np.ndarray:
    """Share of the drift's magnitude reached at each timestamp (microseconds since the epoch,
    UTC): a step at start, or a linear ramp over ramp_days."""
    return drift.fraction((np.asarray(ts) - _drift_us(drift)) / US_PER_DAY)


def calendar_months(ts: np.ndarray) -> np.ndarray:
    """Calendar month (1-12) of each timestamp (microseconds since the epoch, UTC)."""
    return np.asarray(ts).astype("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12 + 1


def _numeric_values(
    process: ValueProcess,
    source: _Source,
    base: np.ndarray,
    z: np.ndarray,
    u_step: np.ndarray,
    ts: np.ndarray,
    drift: DriftSpec | None,
    bounds: tuple[float, float],
    is_int: bool,
    seasonal: SeasonalSpec | None = None,
) -> np.ndarray:
    if process.kind == "additive":
        values = base + process.size * z
    elif process.kind == "relative":
        values = base * (1.0 + process.size * z)
    elif process.kind == "step":
        values = base + (u_step > 1 - process.size / 2) - (u_step < process.size / 2)
    else:
        values = base.copy()
    if drift is not None or seasonal is not None:
        mean = float(np.mean(source.values))
        sd = math.sqrt(float(np.var(source.values)) + process.noise_variance(source.values))
    if seasonal is not None:
        values = values + seasonal.offset_sd(calendar_months(ts)) * sd
    if drift is not None:
        share = drift_fraction(drift, ts)
        # Values before the start are left untouched (not even rounded through the formula).
        if drift.kind == "mean_shift":
            moved = values + share * drift.magnitude * sd
        else:  # variance_change: the spread's multiplier moves from 1 to magnitude
            moved = mean + (1 + share * (drift.magnitude - 1)) * (values - mean)
        values = np.where(share > 0, moved, values)
    values = np.clip(values, *bounds)
    return np.round(values) if is_int else np.round(values, process.decimals) + 0.0


def _category_codes(
    base: np.ndarray,
    u_mix: np.ndarray,
    u_category: np.ndarray,
    ts: np.ndarray,
    drift: DriftSpec | None,
    n_categories: int,
) -> np.ndarray:
    codes = base.astype(np.int64)
    if drift is not None:
        moved = u_mix < drift.magnitude * drift_fraction(drift, ts)
        # Another category, uniformly among the others (a bool flips).
        step = 1 + np.floor(u_category * (n_categories - 1)).astype(np.int64)
        codes = np.where(moved, (codes + step) % n_categories, codes)
    return codes


def _json_values(values: np.ndarray, value_type: str, categories: list | None) -> pl.Series:
    if value_type == "float":
        return pl.Series(values, dtype=pl.Float64).cast(pl.String)
    if value_type == "int":
        return pl.Series(values.astype(np.int64)).cast(pl.String)
    labels = [json.dumps(c) for c in categories]  # "tier_1", or true / false for bool
    return pl.Series(np.array(labels, dtype=object)[values], dtype=pl.String)


def generate_feature_values(
    scenario: Scenario,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    features: pl.DataFrame,
    start: date,
    end: date,
) -> pl.DataFrame:
    """Observations with event_timestamp in [start, end) (UTC days), in feature_value_id order."""
    days = window_days(start, end)
    n = observations_per_day(scenario.scale)
    if not days:
        return pl.DataFrame(schema=SPEC.polars_schema)
    categories = {
        row["name"]: (
            [False, True] if row["value_type"] == "bool" else json.loads(row["allowed_values"])
        )
        for row in features.iter_rows(named=True)
        if row["value_type"] in ("bool", "category")
    }
    sources = _sources(scenario, hcp_profiles, patient_journeys, categories)
    drifts = {d.feature: d for d in scenario.drifts}
    seasonal = {s.feature: s for s in scenario.seasonal}
    uniforms, normals = _day_draws(scenario, days, n)

    day_numbers = np.array([(d - _EPOCH).days for d in days], dtype=np.int64)
    day_us = day_numbers * US_PER_DAY
    slot = US_PER_DAY // n
    as_of_us = (as_of(scenario).date() - _EPOCH).days * US_PER_DAY
    feature_index = {name: i for i, name in enumerate(FEATURES)}
    # Patient features pick among the patients whose journey covers the day.
    patient_index = {name: i for i, name in enumerate(patient_features())}
    patient_picks = _patient_picks(
        sources[patient_features()[0]].journeys,
        uniforms[:, _ENTITY][:, [feature_index[f] for f in patient_features()]],
        day_numbers,
    )
    frames = []
    for row in features.iter_rows(named=True):
        name, value_type = row["name"], row["value_type"]
        fi = feature_index[name]
        source, process = sources[name], PROCESSES[name]
        u = uniforms[:, :, fi, :]  # (days, 5, n)
        if source.journeys is None:
            size = len(source.ids)
            entity = np.minimum((u[:, _ENTITY] * size).astype(np.int64), size - 1).ravel()
        else:
            entity = patient_picks[:, patient_index[name], :].ravel()
        ts = (day_us[:, None] + np.arange(n) * slot + (u[:, _TIME] * slot).astype(np.int64)).ravel()
        drift = drifts.get(name)
        base = source.values[entity]
        if value_type in ("bool", "category"):
            codes = _category_codes(
                base, u[:, _MIX].ravel(), u[:, _CATEGORY].ravel(), ts, drift, len(categories[name])
            )
            value = _json_values(codes, value_type, categories[name])
        else:
            bounds = (
                -np.inf if row["min_value"] is None else row["min_value"],
                np.inf if row["max_value"] is None else row["max_value"],
            )
            numbers = _numeric_values(
                process,
                source,
                base,
                normals[:, fi, :].ravel(),
                u[:, _STEP].ravel(),
                ts,
                drift,
                bounds,
                value_type == "int",
                seasonal.get(name),
            )
            value = _json_values(numbers, value_type, None)
        window = row["freshness_window_hours"] * US_PER_HOUR
        age = as_of_us - ts
        frames.append(
            pl.DataFrame(
                {
                    "_day": np.repeat(np.arange(len(days)), n),
                    "_index": np.tile(fi * n + np.arange(n), len(days)) + 1,
                    "feature_id": pl.repeat(row["feature_id"], len(ts), eager=True),
                    "_key": pl.repeat(source.key, len(ts), eager=True),
                    "_entity": source.ids.gather(np.maximum(entity, 0)),
                    "value": value,
                    "event_timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
                    "freshness_status": np.where(
                        age <= window,
                        "fresh",
                        np.where(age <= STALE_WINDOWS * window, "stale", "expired"),
                    ),
                }
            ).filter(pl.Series(entity >= 0))  # no patient to observe on a day no journey covers
        )
    frame = pl.concat(frames).sort("_day", "_index")
    return frame.select(
        feature_value_id=pl.concat_str(
            pl.lit("FV-"),
            pl.col("event_timestamp").dt.strftime("%Y%m%d"),
            pl.lit("-"),
            pl.col("_index").cast(pl.String).str.zfill(5),
        ),
        feature_id="feature_id",
        entity_values=pl.concat_str(
            pl.lit('{"'), pl.col("_key"), pl.lit('": "'), pl.col("_entity"), pl.lit('"}')
        ),
        value="value",
        event_timestamp="event_timestamp",
        freshness_status="freshness_status",
        data_split=split_for_dates(pl.col("event_timestamp").dt.date(), scenario),
    )
