"""Each patient's treatment timeline: the one record of what happens to a patient, and when.

A journey opens at diagnosis (journey_start_date). A patient who initiates treatment fills the
brand first at journey_start_date + days_to_treatment (initiation is the first fill), then
refills about every days_supply days until stopping after a geometric number of fills. The
chance of stopping after each fill, the stop hazard, depends on the brand and on what is known
about the patient at initiation: engagement, a fragile payer, comorbidities. A stop is dated
after the last supply ran out (up to STOP_GRACE_DAYS later) and is a switch to a competitor or a
discontinuation. What would fall after journey_end_date is not seen: later fills are censored,
and so is a later stop.

treatment_events lists the fills and stops; ml_predictions and triggers score and alert about a
treated patient only while on therapy, from the first fill to the day before the stop (or to
the journey's end).

A planted gap on trx, market_share or adherence_rate (core.scenario.SHOCK_METRICS) is a refill
shock in the world: from its start_month to its end_month, each refill of a patient of its
brand and region is not dispensed with chance 1 - achievement_rate. On trx or market_share it is
an access shock (a prior-authorisation renewal denied, a claim rejected), on adherence_rate the
patients' own missed refills; the world draws both alike. The patient misses that refill and
keeps the schedule: first fills (initiation) and stops are as without the shock, so
patient_journeys and the causal model are untouched, and the fills it took are kept aside
(Timelines.lost_*) so the counterfactual market is known exactly.

A planted gap on nrx or conversion_rate is a start shock (world.initiation): the patients it
kept from starting are untreated here, and their timelines as if they had started (the same
keyed draws, from the wait patient_journeys would have held) are kept aside as lost fills, so
the counterfactual market is exact for them too.

Every draw is keyed by its patient (and fill): a patient's timeline depends on that patient's
row only, so a change to one patient (a drift planted after day t) moves nothing else, and no
fill or stop dated before t. Patients are taken in blocks of PATIENT_BLOCK in patient_id order
only to bound memory: every consumer streams the same timelines, whatever the block size.
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import polars as pl

from e2i_synth.core.keyed import KeyedStream, entity_numbers
from e2i_synth.core.sampling import in_key_order
from e2i_synth.core.scenario import SHOCK_METRICS, GapSpec, Scenario
from e2i_synth.world.initiation import (
    kept_out,
    month_after,
    start_factor,
    start_shocks,
    treatment_uniforms,
    waits,
    would_start,
)

PATIENT_BLOCK = 20_000  # memory only: the rows do not depend on it
_EPOCH = date(1970, 1, 1)
NO_DAY = np.iinfo(np.int32).max  # day of an event that does not happen in the journey
STOP_KINDS = ("switch", "discontinuation")

DAYS_SUPPLY: dict[str, int] = {"Remibrutinib": 30, "Fabhalta": 30, "Kisqali": 28}
# Chance of stopping after each fill for a reference patient (engagement 4.5, commercial or
# Medicare, one comorbidity), by brand; the number of fills is geometric.
STOP_AFTER_FILL: dict[str, float] = {"Remibrutinib": 0.10, "Fabhalta": 0.05, "Kisqali": 0.07}
# Log-odds of stopping: per engagement point above the reference, for a fragile payer, per
# comorbidity above one.
ENGAGEMENT_ON_STOP = -0.3
REFERENCE_ENGAGEMENT = 4.5  # about the mean engagement of the default scenario
FRAGILE_PAYER_ON_STOP = 0.7
FRAGILE_PAYERS = ("medicaid", "uninsured")
COMORBIDITY_ON_STOP = 0.2
SWITCH_SHARE = 0.3  # of stops, the share that are switches to a competitor
EARLY_REFILL_DAYS = 2  # refills come at most this many days before the supply runs out
LATE_REFILL_DAYS = 7
LAPSE_SHARE = 0.06  # refills after a longer lapse (15-45 days late)
STOP_GRACE_DAYS = 30  # a stop is recorded up to this long after the last supply ran out

# The columns of patient_journeys a timeline derives from.
TIMELINE_COLUMNS = (
    "patient_id",
    "brand",
    "insurance_type",
    "comorbidity_count",
    "engagement_score",
    "journey_start_date",
    "journey_end_date",
    "treatment_initiated",
    "days_to_treatment",
    "region",  # where the scenario's refill and start shocks strike
    "disease_severity",  # with academic_hcp, the causal model's draw a start shock replays
    "academic_hcp",
)


@dataclass(frozen=True)
class Timelines:
    """The timelines of one block of patients. Days count from each patient's journey start;
    per-patient arrays follow the block's rows, fills are in (patient, day) order."""

    patients: pl.DataFrame  # the block's rows of patient_journeys, in patient_id order
    key: np.ndarray  # each patient's key of the world's keyed draws (core.keyed.entity_numbers)
    duration: np.ndarray  # journey_end_date - journey_start_date, in days
    hazard: np.ndarray  # chance of stopping after each fill
    first_fill: np.ndarray  # day of the first fill (the initiation); NO_DAY if not initiated
    stop: np.ndarray  # day of the switch or discontinuation; NO_DAY if none in the journey
    stop_kind: np.ndarray  # index into STOP_KINDS; -1 if no stop
    fill_patient: np.ndarray  # row of each fill's patient in the block
    fill_day: np.ndarray
    fill_number: np.ndarray  # 0 for the first fill (the prescription), then the refills
    lost_patient: np.ndarray  # fills a shock took (not dispensed): patient row
    lost_day: np.ndarray  # day
    lost_number: np.ndarray  # and number in the world without shocks; empty without a shock

    @property
    def therapy_end(self) -> np.ndarray:
        """Last day on therapy: the day before the stop, else the journey's last day; -1 for a
        patient never treated."""
        end = np.where(self.stop == NO_DAY, self.duration, self.stop.astype(np.int64) - 1)
        return np.where(self.first_fill == NO_DAY, -1, end)


def stop_hazard(patients: pl.DataFrame) -> np.ndarray:
    """Each patient's chance of stopping after a fill, from what is known at initiation."""
    base = patients["brand"].replace_strict(STOP_AFTER_FILL, return_dtype=pl.Float64).to_numpy()
    logit = (
        np.log(base / (1 - base))
        + ENGAGEMENT_ON_STOP * (patients["engagement_score"].to_numpy() - REFERENCE_ENGAGEMENT)
        + FRAGILE_PAYER_ON_STOP * patients["insurance_type"].is_in(FRAGILE_PAYERS).to_numpy()
        + COMORBIDITY_ON_STOP * (patients["comorbidity_count"].to_numpy() - 1)
    )
    return 1 / (1 + np.exp(-logit))


def refill_shocks(scenario: Scenario) -> list[GapSpec]:
    """The scenario's gaps that are refill shocks in the world."""
    return [g for g in scenario.gaps if g.metric_name in SHOCK_METRICS]


def iter_timelines(scenario: Scenario, patient_journeys: pl.DataFrame) -> Iterator[Timelines]:
    """The timelines of each block of patients in turn, in patient_id order, with the
    scenario's refill shocks: every reader sees the same fills."""
    shocks = refill_shocks(scenario)
    patients = in_key_order(patient_journeys, TIMELINE_COLUMNS, "patient_id")
    draw = KeyedStream(scenario.seed, "timelines")
    # The causal draws a start shock's kept-out patients are found by, once per pass.
    uniforms = treatment_uniforms(scenario) if start_shocks(scenario) else None
    for start in range(0, patients.height, PATIENT_BLOCK):
        block = patients.slice(start, PATIENT_BLOCK)
        barred = _kept_out(scenario, block, uniforms)
        timelines = _block_timelines(scenario, draw, block, barred)
        if shocks:
            # The stream's name predates adherence shocks; renaming it would change the data.
            timelines = _shocked(timelines, shocks, draw.named("access_shock"))
        yield timelines


def _kept_out(
    scenario: Scenario, patients: pl.DataFrame, uniforms: np.ndarray | None
) -> np.ndarray:
    """The block's patients a start shock kept from starting (world.initiation): the causal
    model starts them, the shock's draw stops them, so treatment_initiated is false."""
    if uniforms is None:
        return np.zeros(patients.height, dtype=bool)
    factor = start_factor(
        scenario, patients["brand"], patients["region"], patients["journey_start_date"]
    )
    if not (factor < 1).any():
        return np.zeros(patients.height, dtype=bool)
    return (
        would_start(scenario, patients, uniforms)
        & kept_out(scenario, patients["patient_id"], factor)
        & ~patients["treatment_initiated"].to_numpy()
    )


def _shocked(t: Timelines, shocks: list[GapSpec], stream: KeyedStream) -> Timelines:
    """The timelines with each shock's refills not dispensed, with chance 1 - achievement_rate
    per refill dated in the shock's months; the fills left are renumbered."""
    u = stream.uniform(t.key[t.fill_patient], t.fill_number)
    start = t.patients["journey_start_date"].cast(pl.Int64).to_numpy()
    fill_date = start[t.fill_patient] + t.fill_day  # days since 1970-01-01
    brand = t.patients["brand"].to_numpy()[t.fill_patient]
    region = t.patients["region"].to_numpy()[t.fill_patient]
    lost = np.zeros(t.fill_patient.size, dtype=bool)
    for gap in shocks:
        first = (gap.start_month - _EPOCH).days
        end = month_after(gap.end_month) if gap.end_month is not None else None
        hit = (brand == gap.brand) & (region == gap.region) & (fill_date >= first)
        if end is not None:
            hit &= fill_date < (end - _EPOCH).days
        lost |= hit & (t.fill_number > 0) & (u < 1 - gap.achievement_rate)
    kept = ~lost
    patient = t.fill_patient[kept]
    # Fills are in (patient, day) order: a fill's number is its rank within its patient.
    _, first_of, counts = np.unique(patient, return_index=True, return_counts=True)
    number = np.arange(patient.size) - np.repeat(first_of, counts)
    return replace(
        t,
        fill_patient=patient,
        fill_day=t.fill_day[kept],
        fill_number=number,
        lost_patient=np.concatenate([t.lost_patient, t.fill_patient[lost]]),
        lost_day=np.concatenate([t.lost_day, t.fill_day[lost]]),
        lost_number=np.concatenate([t.lost_number, t.fill_number[lost]]),
    )


def _block_timelines(
    scenario: Scenario, draw: KeyedStream, patients: pl.DataFrame, barred: np.ndarray
) -> Timelines:
    """The block's timelines; `barred`: the patients a start shock kept from starting, whose
    timelines as if they had started are the world without the shock (lost_*)."""
    n = patients.height
    keys = entity_numbers(patients["patient_id"])
    duration = (
        (patients["journey_end_date"] - patients["journey_start_date"]).dt.total_days().to_numpy()
    )
    hazard = stop_hazard(patients)
    initiated = patients["treatment_initiated"].to_numpy()
    treated = np.flatnonzero(initiated | barred)
    key = keys[treated]
    supply = patients["brand"].replace_strict(DAYS_SUPPLY, return_dtype=pl.Int64).to_numpy()
    supply = supply[treated]
    # A kept-out patient's wait is not in patient_journeys: replayed here.
    wait = patients["days_to_treatment"].fill_null(0).to_numpy().astype(np.int64)
    if barred.any():
        kept_out_ids = patients["patient_id"].filter(pl.Series(barred))
        wait[barred] = waits(scenario, kept_out_ids, duration[barred])
    first = wait[treated]
    planned = draw.named("planned").geometric(hazard[treated], key)
    room = duration[treated] - first
    # Never more candidate fills than fit in the journey at the shortest refill interval.
    cap = np.minimum(planned, room // (supply - EARLY_REFILL_DAYS) + 1)

    who = np.repeat(np.arange(treated.size), cap)
    group_start = np.repeat(np.cumsum(cap) - cap, cap)
    nth = np.arange(who.size) - group_start
    fill_key = (key[who], nth)
    late = draw.named("refill").integers(-EARLY_REFILL_DAYS, LATE_REFILL_DAYS + 1, *fill_key)
    lapsed = draw.named("lapse").uniform(*fill_key) < LAPSE_SHARE
    lapse = lapsed * draw.named("lapse_days").integers(15, 46, *fill_key)
    gap = supply[who] + late + lapse
    gap[nth == 0] = 0
    total = np.cumsum(gap)
    day = first[who] + total - total[group_start]
    kept = day <= duration[treated][who]
    who, day, nth = who[kept], day[kept], nth[kept]

    fills = np.bincount(who, minlength=treated.size)
    last = np.zeros(treated.size, dtype=np.int64)
    np.maximum.at(last, who, day)
    # A stop is seen when every planned fill happened and it falls inside the journey.
    stop_day = last + supply + draw.named("grace").integers(0, STOP_GRACE_DAYS + 1, key)
    switched = draw.named("switch").uniform(key) < SWITCH_SHARE
    stopped = (fills == planned) & (stop_day <= duration[treated])

    first_fill = np.full(n, NO_DAY, dtype=np.int32)
    first_fill[treated] = first
    stop = np.full(n, NO_DAY, dtype=np.int32)
    stop[treated[stopped]] = stop_day[stopped]
    stop_kind = np.full(n, -1, dtype=np.int8)
    stop_kind[treated[stopped]] = np.where(switched[stopped], 0, 1)
    # The kept-out patients never start: their fills are the shock's loss.
    lost = barred[treated][who]
    first_fill[barred], stop[barred], stop_kind[barred] = NO_DAY, NO_DAY, -1
    return Timelines(
        patients=patients,
        key=keys,
        duration=duration,
        hazard=hazard,
        first_fill=first_fill,
        stop=stop,
        stop_kind=stop_kind,
        fill_patient=treated[who][~lost],
        fill_day=day[~lost],
        fill_number=nth[~lost],
        lost_patient=treated[who][lost],
        lost_day=day[lost],
        lost_number=nth[lost],
    )


def _dates(start: pl.Series, days: np.ndarray) -> pl.Series:
    """start + days as dates; null where days is NO_DAY or negative (no such day)."""
    return (
        pl.DataFrame({"s": start, "d": pl.Series(days, dtype=pl.Int64)})
        .select(
            pl.when((pl.col("d") >= 0) & (pl.col("d") < NO_DAY)).then(
                pl.col("s") + pl.duration(days=pl.col("d"))
            )
        )
        .to_series()
    )


def timeline_frame(timelines: Timelines) -> pl.DataFrame:
    """One row per patient of the block: the dates of the timeline, and the stop hazard."""
    t, start = timelines, timelines.patients["journey_start_date"]
    fills = np.bincount(t.fill_patient, minlength=t.patients.height)
    last = np.full(t.patients.height, -1, dtype=np.int64)
    np.maximum.at(last, t.fill_patient, t.fill_day)
    kinds = pl.Series(t.stop_kind, dtype=pl.Int64).replace_strict(
        dict(enumerate(STOP_KINDS)), default=None, return_dtype=pl.String
    )
    return pl.DataFrame(
        {
            "patient_id": t.patients["patient_id"],
            "journey_start_date": start,
            "first_fill_date": _dates(start, t.first_fill),
            "last_fill_date": _dates(start, last),
            "fills": pl.Series(fills, dtype=pl.Int32),
            "stop_date": _dates(start, t.stop),
            "stop_kind": kinds,
            "therapy_end_date": _dates(start, t.therapy_end),
            "journey_end_date": t.patients["journey_end_date"],
            "stop_hazard": t.hazard,
        }
    )


def fill_frame(timelines: Timelines) -> pl.DataFrame:
    """One row per fill of the block: patient_id, fill_date, fill_number (0: the first)."""
    t = timelines
    return pl.DataFrame(
        {
            "patient_id": t.patients["patient_id"].gather(t.fill_patient),
            "fill_date": _dates(
                t.patients["journey_start_date"].gather(t.fill_patient), t.fill_day
            ),
            "fill_number": pl.Series(t.fill_number, dtype=pl.Int32),
        }
    )


def patient_timelines(
    scenario: Scenario, patient_journeys: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every patient's timeline (timeline_frame) and every fill (fill_frame), whole: for tests,
    notebooks and small scales; consumers at scale stream iter_timelines instead."""
    blocks = list(iter_timelines(scenario, patient_journeys))
    return (
        pl.concat([timeline_frame(b) for b in blocks]),
        pl.concat([fill_frame(b) for b in blocks]),
    )
