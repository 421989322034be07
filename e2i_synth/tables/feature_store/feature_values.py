"""feature_values generator: observations of every feature over time, with planted drift.

Each feature is refreshed on its cadence (features.refresh_cadence) for the entities of its key,
so its values grow with the population: a day holds observations_per_day(scenario, feature)
values of it, the entities' count divided by the cadence's days (a weekly feature: each entity
about once a week), at most MAX_VALUES_PER_DAY (beyond that the store keeps a uniform sample).
An observation picks its entity uniformly from those that exist that day (every HCP, or the
patients whose journey covers the day: nothing about a patient is dated before the diagnosis
or after the journey's end, so a day no journey covers has no patient observations). An HCP or
patient feature reads the entity's source value (hcp_profiles, patient_journeys) plus
stationary noise drawn independently per observation (see PROCESSES). A brand feature is kept
per HCP and brand (an HCP prescribes its brand_focus), exact, as of the start of the day:
trx_30d and nrx_30d count the fills of the HCP's patients in the 30 days before (the world's
timelines, which treatment_events lists), conversion_rate the share of the HCP's patients
diagnosed in the year before already filled. There is no trend and no random walk beyond what
the world does: without planted drift any two windows of the steady state are samples of the
same distribution.

A planted drift of a patient attribute (world.drift.is_world_drift) is an event in the world:
patient_journeys holds the moved attribute of the patients diagnosed from its start, and the
values here read it like any other (with the patients diagnosed before the start still
observed). Only the other drifts (HCP and brand features) are edits of this table: from a
DriftSpec's start the feature's values change: mean_shift adds magnitude x the feature's
standard deviation, variance_change scales the deviation from the feature mean by magnitude,
category_mix moves a share magnitude of values to another category (bool: flips). Mean and
standard deviation are those of the undrifted process over the entity population (a brand
feature: over a fixed sample of HCP-days of the scenario), so they do not depend on which days
are generated.

Every draw of a day comes from rng_for(seed, "feature_values", day) in a fixed layout, and ids
are FV-<YYYYMMDD>-<index within the day>, so any window is exactly the union of its days. The
n observations of a feature on a day sit in n equal slots of the day, which makes
(feature_id, event_timestamp), and so (feature_id, entity_values, event_timestamp), unique.
entity_values names the keys an analyst joins on: hcp_id; brand and hcp_id; a patient's
brand, hcp_id and patient_id. Every row carries the split of its own date.
"""

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl

from e2i_synth.core.sampling import in_key_order
from e2i_synth.core.scenario import DriftSpec, Scenario, SeasonalSpec
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.vocabulary import FEATURE_GROUPS, FEATURES
from e2i_synth.tables.feature_store.catalog import (
    CONVERSION_WINDOW_DAYS,
    COUNT_WINDOW_DAYS,
    FEATURE_DEFINITIONS,
    INSURANCE_TIERS,
    SUCCESS_FILLS,
)
from e2i_synth.tables.feature_store.feature_values_model import SPEC, STALE_WINDOWS
from e2i_synth.world.drift import is_world_drift
from e2i_synth.world.initiation import start_factor
from e2i_synth.world.timelines import NO_DAY, TIMELINE_COLUMNS, iter_timelines, stop_hazard

# Values of one feature per day, at most (a 7-day window of 1,050, plenty for a drift test):
# beyond it (scale about 1.4 for patients, 2.1 for HCPs) the store keeps a uniform sample of each
# refresh, which bounds feature_values at about 2 million rows at any scale.
MAX_VALUES_PER_DAY = 150
# Share of the patients whose journey covers a day in the steady state (journeys of 30-540 days
# in a 912-day scenario: about 285 / 912).
PATIENT_PRESENCE = 0.3
CADENCE_DAYS: dict[str, int] = {"daily": 1, "weekly": 7}
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
    # Counted from the world and computed from the model: exact.
    "trx_30d": ValueProcess("static"),
    "nrx_30d": ValueProcess("static"),
    "conversion_rate": ValueProcess("static", decimals=4),
    "engagement_score": ValueProcess("additive", 0.4, 2),
    "treatment_propensity": ValueProcess("static", decimals=4),
    "outcome_probability": ValueProcess("static", decimals=4),
}


def entity_key(feature: str) -> str:
    return FEATURE_GROUPS[FEATURES[feature][0]][0]


def observations_per_day(scenario: Scenario, feature: str) -> int:
    """Values of `feature` per day: its entities per refresh over the cadence's days (HCPs, for
    brand features too, and the patients of a steady-state day), at most MAX_VALUES_PER_DAY."""
    key = entity_key(feature)
    # Brand features are kept per HCP and brand (an HCP prescribes its brand_focus).
    population = scenario.n_patients * PATIENT_PRESENCE if key == "patient_id" else scenario.n_hcps
    per_day = population / CADENCE_DAYS[FEATURE_DEFINITIONS[feature].refresh_cadence]
    return max(1, min(MAX_VALUES_PER_DAY, round(per_day)))


def patient_features() -> tuple[str, ...]:
    """The features about a patient (observed only inside the patient's journey)."""
    return tuple(f for f in FEATURES if entity_key(f) == "patient_id")


def expected_feature_values(scenario: Scenario, patient_journeys: pl.DataFrame) -> int:
    """Rows of feature_values over the scenario's whole window [start_date, end_date]: every
    feature every day, except patient features on days no journey covers."""
    days = (scenario.end_date - scenario.start_date).days + 1
    covered = _covered_days(patient_journeys, scenario.start_date, scenario.end_date)
    return sum(
        observations_per_day(scenario, f) * (covered if f in patient_features() else days)
        for f in FEATURES
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
    others = [f for f in FEATURES if f not in patient_features()]
    return len(days) * sum(observations_per_day(scenario, f) for f in others)


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
    return (rounding if process.decimals else 0.0), 0.0  # static: exact, up to its rounding


def as_of(scenario: Scenario) -> datetime:
    """The instant freshness is judged at: the end of the scenario's reference date (UTC)."""
    day = scenario.reference_date + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# Sorted keys hcp index x _KEY_DAYS + day number: one HCP's days never reach the next HCP's.
_KEY_DAYS = 1 << 20
# (hcp, day) pairs of the scenario's window, of at most MOMENT_HCPS HCPs, on which a drifted or
# seasonal brand feature's mean and standard deviation are estimated: a fixed sample, whatever
# days are generated, and bounded memory at any scale.
MOMENT_SAMPLE = 100_000
MOMENT_HCPS = 2_000


@dataclass(frozen=True)
class _Intervals:
    """Day intervals [begin, stop) of each HCP, as sorted keys."""

    begins: np.ndarray
    stops: np.ndarray

    @classmethod
    def of(cls, hcp: np.ndarray, begin: np.ndarray, stop: np.ndarray) -> "_Intervals":
        stop = np.maximum(begin, stop)
        return cls(np.sort(hcp * _KEY_DAYS + begin), np.sort(hcp * _KEY_DAYS + stop))

    def count(self, hcp: np.ndarray, day: np.ndarray) -> np.ndarray:
        """How many of the HCP's intervals hold each day."""
        key = hcp * _KEY_DAYS + day
        return np.searchsorted(self.begins, key, side="right") - np.searchsorted(
            self.stops, key, side="right"
        )


@dataclass(frozen=True)
class HcpActivity:
    """What the brand features count, per HCP (of its brand: an HCP's patients are of its
    brand_focus): fills, first fills, diagnoses and diagnoses already filled, each as the days
    on which it falls in the trailing window of a value dated that day."""

    fills: _Intervals
    first_fills: _Intervals
    diagnoses: _Intervals
    converted: _Intervals

    def values(self, feature: str, hcp: np.ndarray, day: np.ndarray) -> np.ndarray:
        """The brand feature's value for each (HCP index, day number), as of the day's start."""
        if feature == "trx_30d":
            return self.fills.count(hcp, day).astype(float)
        if feature == "nrx_30d":
            return self.first_fills.count(hcp, day).astype(float)
        diagnosed = self.diagnoses.count(hcp, day)
        converted = self.converted.count(hcp, day)
        return np.where(diagnosed > 0, converted / np.maximum(diagnosed, 1), 0.0)


def hcp_activity(
    scenario: Scenario,
    hcp_ids: pl.Series,
    patient_journeys: pl.DataFrame,
    views: dict[str, tuple[int, int, np.ndarray | None]],
) -> dict[str, HcpActivity]:
    """The simulated sample's activity per HCP (index into `hcp_ids`), from the world's
    timelines (the fills treatment_events lists), for each view (first day, last day, HCPs
    kept or None for all): only what bears on a value dated in it, so a day's refresh at scale
    1000 holds a month of fills, not the scenario's.

    trx_30d counts fills (first fills and refills) dated in the COUNT_WINDOW_DAYS days before
    the value's date, nrx_30d the first fills among them; conversion_rate is, of the patients
    diagnosed in the CONVERSION_WINDOW_DAYS days before, the share whose first fill is before
    the date (0 when none was diagnosed).
    """
    index = {h: i for i, h in enumerate(hcp_ids.to_list())}
    parts: dict[str, dict[str, list]] = {
        view: {"fills": [], "first_fills": [], "diagnoses": [], "converted": []} for view in views
    }

    def add(name: str, hcp: np.ndarray, begin: np.ndarray, stop: np.ndarray) -> None:
        for view, (first, last, kept) in views.items():
            keep = (begin <= last) & (stop > first)
            if kept is not None:
                keep &= kept[hcp]
            parts[view][name].append((hcp[keep], begin[keep], stop[keep]))

    # Each patient's HCP, in the timelines' patient_id order (the blocks follow it).
    hcp_of = (
        in_key_order(patient_journeys, ("patient_id", "hcp_id"), "patient_id")["hcp_id"]
        .replace_strict(index, return_dtype=pl.Int64)
        .to_numpy()
    )
    done = 0
    for block in iter_timelines(scenario, patient_journeys):
        patients = block.patients
        hcp = hcp_of[done : done + patients.height]
        done += patients.height
        start = patients["journey_start_date"].cast(pl.Int64).to_numpy()
        fill = start[block.fill_patient] + block.fill_day
        fill_hcp = hcp[block.fill_patient]
        add("fills", fill_hcp, fill + 1, fill + 1 + COUNT_WINDOW_DAYS)
        first = block.fill_number == 0
        add("first_fills", fill_hcp[first], fill[first] + 1, fill[first] + 1 + COUNT_WINDOW_DAYS)
        dx_stop = start + 1 + CONVERSION_WINDOW_DAYS
        add("diagnoses", hcp, start + 1, dx_stop)
        treated = block.first_fill != NO_DAY
        first_fill = start[treated] + block.first_fill[treated]
        add("converted", hcp[treated], first_fill + 1, dx_stop[treated])
    return {
        view: HcpActivity(
            **{
                name: _Intervals.of(
                    *(np.concatenate(column) for column in zip(*chunks, strict=True))
                )
                for name, chunks in named.items()
            }
        )
        for view, named in parts.items()
    }


def _scenario_days(scenario: Scenario) -> tuple[int, int]:
    return (scenario.start_date - _EPOCH).days, (scenario.end_date - _EPOCH).days


def moment_hcps(scenario: Scenario, hcps: int) -> np.ndarray:
    """The HCPs (a fixed sample of at most MOMENT_HCPS) a brand feature's moments are taken
    over, as a mask."""
    rng = rng_for(scenario.seed, "feature_values", "brand_moments")
    kept = np.zeros(hcps, dtype=bool)
    kept[rng.permutation(hcps)[:MOMENT_HCPS]] = True
    return kept


def brand_moments(
    scenario: Scenario, activity: HcpActivity, kept: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each brand feature over (HCP, day) of the scenario's
    window, on a fixed sample of MOMENT_SAMPLE pairs of the HCPs `kept`."""
    rng = rng_for(scenario.seed, "feature_values", "brand_moment_pairs")
    first, last = _scenario_days(scenario)
    hcp = rng.choice(np.flatnonzero(kept), MOMENT_SAMPLE)
    day = rng.integers(first, last + 1, MOMENT_SAMPLE)
    moments = {}
    for feature in BRAND_FEATURES:
        values = activity.values(feature, hcp, day)
        moments[feature] = (float(np.mean(values)), float(np.std(values)))
    return moments


def causal_features(scenario: Scenario, patient_journeys: pl.DataFrame) -> pl.DataFrame:
    """Per patient, treatment_propensity and outcome_probability.

    treatment_propensity: P(treatment_initiated) of scenario.causal at the expected engagement
    given the confounders (the model is linear in engagement: the probability averaged over
    engagement's noise, before its clipping), times the chance a start goes ahead under a
    planted start shock (world.initiation.start_factor: in force from before the diagnosis).
    outcome_probability: P(treatment success): initiated (the model at the patient's
    engagement, times the same chance) and still on therapy at the SUCCESS_FILLS-th fill, each
    fill followed by a stop with the world's stop hazard (world.timelines.stop_hazard).
    """
    c = scenario.causal
    severity = pl.col("disease_severity")
    academic = pl.col("academic_hcp").cast(pl.Float64)
    propensity = c.treatment_probability(
        c.expected_engagement(severity, academic), severity, academic
    )
    initiation = c.treatment_probability(pl.col("engagement_score"), severity, academic)
    persistence = (1 - stop_hazard(patient_journeys)) ** (SUCCESS_FILLS - 1)
    factor = pl.Series(
        start_factor(
            scenario,
            patient_journeys["brand"],
            patient_journeys["region"],
            patient_journeys["journey_start_date"],
        )
    )
    return patient_journeys.select(
        "patient_id",
        treatment_propensity=propensity.clip(0.0, 1.0) * factor,
        outcome_probability=initiation.clip(0.0, 1.0) * factor * pl.Series(persistence),
    )


@dataclass(frozen=True)
class _Source:
    key: str  # entity key: hcp_id or patient_id
    # The keys entity_values names, per entity, in jsonb's key order (polars, not numpy: an
    # object array of millions of id strings costs GBs per feature).
    keys: pl.DataFrame
    values: np.ndarray  # float source values; category codes for bool and category features
    # Patients only: day numbers (since 1970-01-01) of each journey's start and end.
    journeys: tuple[np.ndarray, np.ndarray] | None = None


# The columns of the inputs the feature values derive from (the asset reads only these).
HCP_COLUMNS = (
    "hcp_id",
    "brand_focus",
    "specialty",
    "years_experience",
    "academic_hcp",
    "patient_volume_monthly",
)
# The timeline's columns and the attributes the features read besides.
PATIENT_COLUMNS = (*TIMELINE_COLUMNS, "hcp_id", "age_at_diagnosis", "prior_treatment_count")
BRAND_FEATURES = ("trx_30d", "nrx_30d", "conversion_rate")


def _sources(
    scenario: Scenario,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    categories: dict[str, list],
) -> dict[str, _Source]:
    """The HCP and patient features' sources (brand features: HcpActivity)."""
    hcps = in_key_order(hcp_profiles, HCP_COLUMNS, "hcp_id")
    patients = in_key_order(patient_journeys, PATIENT_COLUMNS, "patient_id")
    causal = causal_features(scenario, patients)

    def codes(feature: str, values: pl.Series) -> np.ndarray:
        index = {v: i for i, v in enumerate(categories[feature])}
        unknown = set(values.unique().to_list()) - set(index)
        if unknown:
            raise ValueError(f"{feature}: source values {sorted(unknown)} are not categories")
        return values.replace_strict(index, return_dtype=pl.Int64).to_numpy().astype(float)

    def hcp(values: np.ndarray) -> _Source:
        return _Source("hcp_id", hcps.select("hcp_id"), values)

    journeys = (
        patients["journey_start_date"].cast(pl.Int64).to_numpy(),
        patients["journey_end_date"].cast(pl.Int64).to_numpy(),
    )
    patient_keys = patients.select("brand", "hcp_id", "patient_id")

    def patient(values: np.ndarray) -> _Source:
        return _Source("patient_id", patient_keys, values, journeys)

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
        "engagement_score": patient(num(patients, "engagement_score")),
        "treatment_propensity": patient(num(causal, "treatment_propensity")),
        "outcome_probability": patient(num(causal, "outcome_probability")),
    }


def _day_draws(
    scenario: Scenario, day: date, sizes: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A day's uniforms (5, n) and truncated normals (n) of each feature (FEATURES order), from
    the day's own stream, in a layout that does not depend on the window."""
    rng = rng_for(scenario.seed, "feature_values", day.isoformat())
    uniforms = [rng.random((_UNIFORMS, n)) for n in sizes]
    normals = [np.clip(rng.standard_normal(n), -NOISE_BOUND, NOISE_BOUND) for n in sizes]
    return uniforms, normals


def _patient_picks(
    journeys: tuple[np.ndarray, np.ndarray], u: dict[str, np.ndarray], day_numbers: np.ndarray
) -> dict[str, np.ndarray]:
    """For each patient feature's uniforms (days, n): the patient (row index) each observation
    picks among those whose journey covers its day, -1 where none does. One pass over the days
    for every patient feature: the covering set of a day is the costly part at large scales."""
    start, end = journeys
    picked = {f: np.full(v.shape, -1, dtype=np.int64) for f, v in u.items()}
    for i, day in enumerate(day_numbers):
        covering = np.flatnonzero((start <= day) & (day <= end))
        if covering.size:
            for f, v in u.items():
                index = np.minimum((v[i] * covering.size).astype(np.int64), covering.size - 1)
                picked[f][i] = covering[index]
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
    moments: tuple[float, float],
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
    mean, sd = moments
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
    return as_stored(values, bounds, is_int, process.decimals)


def feature_bounds(feature: dict) -> tuple[float, float]:
    """A numeric feature's (min_value, max_value) from its features row, unbounded where null."""
    low, high = feature["min_value"], feature["max_value"]
    return (-np.inf if low is None else low, np.inf if high is None else high)


def as_stored(
    values: np.ndarray, bounds: tuple[float, float], is_int: bool, decimals: int
) -> np.ndarray:
    """Numeric values as feature_values stores them: clipped to the feature's bounds, and
    rounded (whole for an int feature)."""
    values = np.clip(values, *bounds)
    return np.round(values) if is_int else np.round(values, decimals) + 0.0


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


def _entity_json(keys: pl.DataFrame) -> pl.Series:
    """entity_values of each row of `keys` (one column per key, in jsonb's key order)."""
    pairs = [pl.concat_str(pl.lit(f'"{key}": "'), pl.col(key), pl.lit('"')) for key in keys.columns]
    return keys.select(
        pl.concat_str(pl.lit("{"), pl.concat_str(pairs, separator=", "), pl.lit("}"))
    ).to_series()


def _moments(process: ValueProcess, values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the undrifted process over `values`, the population's
    source values."""
    return float(np.mean(values)), math.sqrt(float(np.var(values)) + process.noise_variance(values))


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
    hcps = in_key_order(hcp_profiles, HCP_COLUMNS, "hcp_id")
    views: dict[str, tuple[int, int, np.ndarray | None]] = {
        "window": ((days[0] - _EPOCH).days, (days[-1] - _EPOCH).days, None)
    }
    moved = {d.feature for d in scenario.drifts} | {s.feature for s in scenario.seasonal}
    if moved & set(BRAND_FEATURES):  # their moments: over the scenario, whatever the window
        kept = moment_hcps(scenario, hcps.height)
        views["moments"] = (*_scenario_days(scenario), kept)
    activities = hcp_activity(scenario, hcps["hcp_id"], patient_journeys, views)
    activity = activities["window"]
    moments = (
        brand_moments(scenario, activities["moments"], kept) if "moments" in activities else {}
    )
    brand_keys = hcps.select(brand="brand_focus", hcp_id="hcp_id")
    # World drifts are in the sources already (patient_journeys): only the others are edits.
    drifts = {d.feature: d for d in scenario.drifts if not is_world_drift(d.feature)}
    seasonal = {s.feature: s for s in scenario.seasonal}
    sizes = [observations_per_day(scenario, f) for f in FEATURES]
    first_index = dict(zip(FEATURES, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
    draws = [_day_draws(scenario, d, sizes) for d in days]

    day_numbers = np.array([(d - _EPOCH).days for d in days], dtype=np.int64)
    day_us = day_numbers * US_PER_DAY
    as_of_us = (as_of(scenario).date() - _EPOCH).days * US_PER_DAY
    feature_index = {name: i for i, name in enumerate(FEATURES)}
    # Patient features pick among the patients whose journey covers the day.
    patient_picks = _patient_picks(
        sources[patient_features()[0]].journeys,
        {f: np.stack([u[feature_index[f]][_ENTITY] for u, _ in draws]) for f in patient_features()},
        day_numbers,
    )
    frames = []
    for row in features.iter_rows(named=True):
        name, value_type = row["name"], row["value_type"]
        fi = feature_index[name]
        n, process = sizes[fi], PROCESSES[name]
        u = np.stack([d[0][fi] for d in draws])  # (days, 5, n)
        z = np.stack([d[1][fi] for d in draws]).ravel()
        slot = US_PER_DAY // n
        ts = (day_us[:, None] + np.arange(n) * slot + (u[:, _TIME] * slot).astype(np.int64)).ravel()
        if name in BRAND_FEATURES:  # an HCP's count of its brand, as of the day
            size = brand_keys.height
            entity = np.minimum((u[:, _ENTITY] * size).astype(np.int64), size - 1).ravel()
            base = activity.values(name, entity, np.repeat(day_numbers, n))
            keys, feature_moments = brand_keys, moments.get(name, (0.0, 0.0))
        else:
            source = sources[name]
            if source.journeys is None:
                size = source.keys.height
                entity = np.minimum((u[:, _ENTITY] * size).astype(np.int64), size - 1).ravel()
            else:
                entity = patient_picks[name].ravel()
            base = source.values[entity]
            keys, feature_moments = source.keys, _moments(process, source.values)
        drift = drifts.get(name)
        if value_type in ("bool", "category"):
            codes = _category_codes(
                base, u[:, _MIX].ravel(), u[:, _CATEGORY].ravel(), ts, drift, len(categories[name])
            )
            value = _json_values(codes, value_type, categories[name])
        else:
            numbers = _numeric_values(
                process,
                feature_moments,
                base,
                z,
                u[:, _STEP].ravel(),
                ts,
                drift,
                feature_bounds(row),
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
                    "_index": np.tile(first_index[name] + np.arange(n), len(days)) + 1,
                    "feature_id": pl.repeat(row["feature_id"], len(ts), eager=True),
                    "entity_values": _entity_json(keys[np.maximum(entity, 0)]),
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
        entity_values="entity_values",
        value="value",
        event_timestamp="event_timestamp",
        freshness_status="freshness_status",
        data_split=split_for_dates(pl.col("event_timestamp").dt.date(), scenario),
    )
