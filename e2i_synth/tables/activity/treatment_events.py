"""treatment_events generator: a claims-like event stream per patient.

Every journey opens with one diagnosis claim on journey_start_date, followed by baseline labs,
recurring office visits and labs, and rare hospitalizations spread over the journey. The fills
(first prescription, then refills) and the switch or discontinuation are the patient's timeline
(e2i_synth.world.timelines), read as claims: a stop is the last treatment event. Product, NDC
and CPT codes are illustrative.

Every draw is keyed by its patient (and event), as the timelines' are: a patient's claims
depend on that patient's row only, so nothing planted after day t moves a claim dated before
t. event_id numbers the claims in (patient, date) order, so it is a surrogate key, not a fact.
"""

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import polars as pl

from e2i_synth.core.keyed import KeyedStream
from e2i_synth.core.sampling import in_key_order
from e2i_synth.core.scenario import Scenario
from e2i_synth.core.split import split_for_dates
from e2i_synth.tables.activity.treatment_events_model import (
    DISPENSING_EVENT_TYPES,
    EVENT_TYPES,
    MEDICAL_EVENT_TYPES,
    SPEC,
    TREATMENT_EVENT_TYPES,
)
from e2i_synth.world.timelines import (
    DAYS_SUPPLY,
    PATIENT_BLOCK,
    STOP_KINDS,
    TIMELINE_COLUMNS,
    Timelines,
    iter_timelines,
)

TABLE = "treatment_events"
EVENT_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}


class Product(NamedTuple):
    name: str
    ndc: str  # synthetic code in the 5-4-2 NDC format
    quantity: int  # units per fill
    days_supply: int
    cost_per_fill: float  # USD, list price


BRAND_PRODUCTS: dict[str, Product] = {
    "Remibrutinib": Product(
        "Remibrutinib 25 mg tablet", "00078-1250-15", 60, DAYS_SUPPLY["Remibrutinib"], 5_200.0
    ),
    "Fabhalta": Product(
        "Fabhalta 200 mg capsule", "00078-1189-20", 60, DAYS_SUPPLY["Fabhalta"], 46_000.0
    ),
    "Kisqali": Product(
        "Kisqali 200 mg tablet", "00078-0867-63", 63, DAYS_SUPPLY["Kisqali"], 13_800.0
    ),
}
# What patients switch to, per brand (picked with equal chance).
COMPETITOR_PRODUCTS: dict[str, tuple[Product, ...]] = {
    "Remibrutinib": (
        Product("omalizumab 300 mg/2 mL syringe", "50242-0215-01", 1, 28, 3_300.0),
        Product("dupilumab 300 mg/2 mL pen", "00024-5915-02", 2, 28, 3_800.0),
    ),
    "Fabhalta": (
        Product("ravulizumab 1100 mg/11 mL vial", "25682-0025-01", 3, 56, 60_000.0),
        Product("pegcetacoplan 1080 mg/20 mL vial", "73606-0010-01", 8, 28, 40_000.0),
    ),
    "Kisqali": (
        Product("palbociclib 125 mg capsule", "00069-0189-21", 21, 28, 14_500.0),
        Product("abemaciclib 150 mg tablet", "00002-5337-54", 56, 28, 14_000.0),
    ),
}
# ICD-10-CM codes of each brand's indication, with the share of patients coded with each.
INDICATION_CODES: dict[str, dict[str, float]] = {
    "Remibrutinib": {"L50.1": 1.0},
    "Fabhalta": {"D59.5": 0.7, "N02.8": 0.3},
    "Kisqali": {"C50.911": 0.5, "C50.912": 0.5},
}
# CPT codes per medical event type; lab panels depend on what the brand's label monitors.
VISIT_CODES: dict[str, tuple[str, ...]] = {
    "diagnosis": ("99204", "99205"),
    "office_visit": ("99213", "99214", "99215"),
    "hospitalization": ("99222", "99223"),
}
LAB_CODES: dict[str, tuple[str, ...]] = {
    "Remibrutinib": ("85025", "86140", "80053"),
    "Fabhalta": ("85025", "83615", "86356", "80053"),
    "Kisqali": ("85025", "80076", "93000", "80053"),
}
# Allowed amount of a medical claim: (median USD, lognormal sigma).
MEDICAL_COST: dict[str, tuple[float, float]] = {
    "diagnosis": (310.0, 0.25),
    "lab_test": (95.0, 0.6),
    "office_visit": (165.0, 0.3),
    "hospitalization": (18_000.0, 0.7),
}
# Allowed amount relative to commercial rates.
PAYER_FACTOR: dict[str, float] = {
    "commercial": 1.0,
    "medicare": 0.8,
    "medicaid": 0.65,
    "uninsured": 1.25,
}
BASELINE_LAB_SHARE = 0.85  # patients with labs in the two weeks after diagnosis
BASELINE_LAB_DAYS = 14
OFFICE_VISITS_PER_YEAR = 5.0
LAB_TESTS_PER_YEAR: dict[str, float] = {"Remibrutinib": 2.0, "Fabhalta": 5.0, "Kisqali": 7.0}
# The columns of patient_journeys the events derive from (the asset reads only these).
PATIENT_COLUMNS = (*TIMELINE_COLUMNS, "hcp_id")


def iter_treatment_events(
    scenario: Scenario, patient_journeys: pl.DataFrame
) -> Iterator[pl.DataFrame]:
    """The events of each block of patients in turn; event_ids run on across blocks."""
    # Key order, so the result does not depend on how the input was read.
    patients = in_key_order(patient_journeys, PATIENT_COLUMNS, "patient_id")
    offset = 0
    draw = KeyedStream(scenario.seed, TABLE)
    for block, timelines in enumerate(iter_timelines(scenario, patients)):
        block_patients = patients.slice(block * PATIENT_BLOCK, PATIENT_BLOCK)
        frame = _block_events(scenario, draw, block_patients, timelines, offset)
        offset += frame.height
        yield frame


def generate_treatment_events(scenario: Scenario, patient_journeys: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(list(iter_treatment_events(scenario, patient_journeys)))


def _block_events(
    scenario: Scenario,
    draw: KeyedStream,
    patients: pl.DataFrame,
    timelines: Timelines,
    offset: int,
) -> pl.DataFrame:
    n = patients.height
    duration = (
        (patients["journey_end_date"] - patients["journey_start_date"]).dt.total_days().to_numpy()
    )
    brand = patients["brand"].to_numpy()
    years = duration / 365.25

    key = timelines.key
    icd10 = np.empty(n, dtype=object)
    for b, codes in INDICATION_CODES.items():
        mask = brand == b
        icd10[mask] = draw.named("icd10").choice(codes, key[mask])

    # (patient index, days from diagnosis, event code) of every event, by kind.
    parts: list[tuple[np.ndarray, np.ndarray, int | np.ndarray]] = []
    everyone = np.arange(n)
    parts.append((everyone, np.zeros(n, dtype=np.int64), EVENT_CODE["diagnosis"]))

    baseline = everyone[draw.named("baseline_lab").uniform(key) < BASELINE_LAB_SHARE]
    parts.append(
        (
            baseline,
            draw.named("baseline_day").integers(
                0, np.minimum(BASELINE_LAB_DAYS, duration[baseline]) + 1, key[baseline]
            ),
            EVENT_CODE["lab_test"],
        )
    )
    lab_rate = np.array([LAB_TESTS_PER_YEAR[b] for b in brand])
    hospital_rate = 0.02 + 0.025 * patients["disease_severity"].to_numpy()
    for code, rate in (
        (EVENT_CODE["office_visit"], np.full(n, OFFICE_VISITS_PER_YEAR)),
        (EVENT_CODE["lab_test"], lab_rate),
        (EVENT_CODE["hospitalization"], hospital_rate),
    ):
        count = draw.named("count").poisson(rate * years, key, code)
        who = np.repeat(everyone, count)
        nth = np.arange(who.size) - np.repeat(np.cumsum(count) - count, count)
        # Uniform over days 1..duration (day 0 is the diagnosis visit itself).
        day = 1 + (draw.named("day").uniform(key[who], code, nth) * duration[who]).astype(np.int64)
        parts.append((who, day, code))

    parts.extend(_fills_and_stops(timelines))

    events = (
        pl.DataFrame(
            {
                "_p": np.concatenate([p for p, _, _ in parts]),
                "_day": np.concatenate([d for _, d, _ in parts]),
                "_code": np.concatenate([np.broadcast_to(c, p.shape) for p, _, c in parts]).astype(
                    np.int64
                ),
            }
        )
        # Two draws of the same recurring event on one day are one claim.
        .unique(["_p", "_day", "_code"], keep="first", maintain_order=True)
        .sort("_p", "_day", "_code")
    )
    return _describe_events(scenario, draw, events, patients, key, icd10, offset)


def _fills_and_stops(t: Timelines) -> list[tuple[np.ndarray, np.ndarray, int | np.ndarray]]:
    """The timeline's fills (the first a prescription, then refills) and stops, as events."""
    stopped = np.flatnonzero(t.stop_kind >= 0)
    stop_code = np.array([EVENT_CODE[k] for k in STOP_KINDS])[t.stop_kind[stopped]]
    return [
        (
            t.fill_patient,
            t.fill_day,
            np.where(t.fill_number == 0, EVENT_CODE["prescription"], EVENT_CODE["refill"]),
        ),
        (stopped, t.stop[stopped].astype(np.int64), stop_code),
    ]


def _describe_events(
    scenario: Scenario,
    draw: KeyedStream,
    events: pl.DataFrame,
    patients: pl.DataFrame,
    key: np.ndarray,
    icd10: np.ndarray,
    offset: int,
) -> pl.DataFrame:
    """The claim columns of each (patient, day, event code), in event order."""
    idx = events["_p"].to_numpy()
    # (patient, day, code) is unique: the key of the claim's own draws.
    claim = (
        key[idx],
        events["_day"].to_numpy(),
        events["_code"].to_numpy(),
    )
    m = events.height
    frame = pl.concat(
        [
            patients[idx].select(
                "patient_id",
                "hcp_id",
                "brand",
                "insurance_type",
                "journey_start_date",
            ),
            events,
            pl.DataFrame(
                {
                    "icd10_code": icd10[idx],
                    "_u_code": draw.named("code").uniform(*claim),
                    "_u_competitor": draw.named("competitor").uniform(*claim),
                    "_cost_noise": draw.named("cost").normal(*claim),
                },
                schema_overrides={"icd10_code": pl.String},
            ),
        ],
        how="horizontal",
    )
    event_type = pl.col("event_type")
    medical = event_type.is_in(MEDICAL_EVENT_TYPES)
    dispensing = event_type.is_in(DISPENSING_EVENT_TYPES)
    n_competitors = {b: len(ps) for b, ps in COMPETITOR_PRODUCTS.items()}
    competitor = (pl.col("_u_competitor") * pl.col("brand").replace_strict(n_competitors)).floor()
    cost = (
        pl.when(medical)
        .then(pl.col("_median") * (pl.col("_sigma") * pl.col("_cost_noise")).exp())
        .when(dispensing)
        .then(pl.col("_fill_cost") * (1 + 0.01 * pl.col("_cost_noise").clip(-3, 3)))
        .otherwise(0.0)
    )
    payer = pl.col("insurance_type").replace_strict(PAYER_FACTOR, return_dtype=pl.Float64)
    return (
        frame.with_columns(
            event_type=pl.col("_code").replace_strict(
                dict(enumerate(EVENT_TYPES)), return_dtype=pl.String
            ),
            event_date=pl.col("journey_start_date") + pl.duration(days=pl.col("_day")),
            days_from_diagnosis=pl.col("_day").cast(pl.Int32),
        )
        .with_columns(
            _product_key=pl.when(event_type == "switch")
            .then(pl.format("{}|{}", pl.col("brand"), competitor.cast(pl.Int64)))
            .when(event_type.is_in(TREATMENT_EVENT_TYPES))
            .then(pl.col("brand"))
        )
        .join(
            _procedure_code_table(), on=["brand", "event_type"], how="left", maintain_order="left"
        )
        .join(_product_table(), on="_product_key", how="left", maintain_order="left")
        .join(_medical_cost_table(), on="event_type", how="left", maintain_order="left")
        .with_columns(
            event_id=pl.format(
                "EVT{}", pl.int_range(offset + 1, offset + m + 1).cast(pl.String).str.zfill(8)
            ),
            claim_type=pl.when(medical)
            .then(pl.lit("medical"))
            .when(dispensing)
            .then(pl.lit("pharmacy"))
            .otherwise(pl.lit("derived")),
            procedure_code=pl.col("_codes").list.get(
                (pl.col("_u_code") * pl.col("_codes").list.len()).floor().cast(pl.Int64),
                null_on_oob=True,
            ),
            ndc_code=pl.when(dispensing).then(pl.col("_ndc")),
            quantity=pl.when(dispensing).then(pl.col("_quantity")),
            days_supply=pl.when(dispensing).then(pl.col("_days_supply")),
            cost_usd=(cost * payer).round(2),
        )
        # Each event carries the split of its own date.
        .with_columns(data_split=split_for_dates(pl.col("event_date"), scenario))
        .select(SPEC.columns)
    )


def _procedure_code_table() -> pl.DataFrame:
    """Candidate CPT codes per (brand, medical event type)."""
    rows = [
        (b, t, list(LAB_CODES[b] if t == "lab_test" else VISIT_CODES[t]))
        for b in BRAND_PRODUCTS
        for t in MEDICAL_EVENT_TYPES
    ]
    return pl.DataFrame(rows, schema=["brand", "event_type", "_codes"], orient="row")


def _medical_cost_table() -> pl.DataFrame:
    return pl.DataFrame(
        [(t, median, sigma) for t, (median, sigma) in MEDICAL_COST.items()],
        schema=["event_type", "_median", "_sigma"],
        orient="row",
    )


def _product_table() -> pl.DataFrame:
    """Product attributes keyed by brand (its own product) or brand|k (its k-th competitor)."""
    keyed = [(b, p) for b, p in BRAND_PRODUCTS.items()] + [
        (f"{b}|{k}", p) for b, ps in COMPETITOR_PRODUCTS.items() for k, p in enumerate(ps)
    ]
    return pl.DataFrame(
        {
            "_product_key": [k for k, _ in keyed],
            "product_name": [p.name for _, p in keyed],
            "_ndc": [p.ndc for _, p in keyed],
            "_quantity": pl.Series([p.quantity for _, p in keyed], dtype=pl.Int32),
            "_days_supply": pl.Series([p.days_supply for _, p in keyed], dtype=pl.Int16),
            "_fill_cost": [p.cost_per_fill for _, p in keyed],
        }
    )
