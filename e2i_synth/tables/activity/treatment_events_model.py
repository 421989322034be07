"""treatment_events: a claims-like event stream per patient, from diagnosis to the end of the
journey (medical claims, pharmacy claims, and derived events such as discontinuation)."""

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import BRANDS, DATA_SPLITS, INSURANCE_TYPES

# Order matters: events of one patient on one day are numbered in this order.
EVENT_TYPES: tuple[str, ...] = (
    "diagnosis",
    "lab_test",
    "office_visit",
    "prescription",
    "refill",
    "switch",
    "discontinuation",
    "hospitalization",
)
# Events about therapy with the brand; none of them for a patient who never initiated.
TREATMENT_EVENT_TYPES: tuple[str, ...] = ("prescription", "refill", "switch", "discontinuation")
# Pharmacy claims: a product was dispensed (a switch dispenses the competitor product).
DISPENSING_EVENT_TYPES: tuple[str, ...] = ("prescription", "refill", "switch")
# Medical claims: they carry a procedure (CPT) code.
MEDICAL_EVENT_TYPES: tuple[str, ...] = ("diagnosis", "lab_test", "office_visit", "hospitalization")
CLAIM_TYPES: tuple[str, ...] = ("medical", "pharmacy", "derived")


def _set_iff(column: str, event_types: tuple[str, ...]) -> pl.Expr:
    return pl.col(column).is_not_null() == pl.col("event_type").is_in(event_types)


class TreatmentEvents(pa.DataFrameModel):
    event_id: str = pa.Field(
        unique=True,
        str_matches=r"^EVT\d{8}$",
        description="event key EVTnnnnnnnn, numbered by patient, date and event type",
    )
    patient_id: str = pa.Field(description="patient (patient_journeys.patient_id)")
    hcp_id: str = pa.Field(description="treating HCP (hcp_profiles.hcp_id), the patient's HCP")
    brand: str = pa.Field(isin=BRANDS, description="brand of the patient's journey")
    event_type: str = pa.Field(isin=EVENT_TYPES, description="kind of event")
    event_date: pl.Date = pa.Field(description="date of service, inside the patient's journey")
    days_from_diagnosis: pl.Int32 = pa.Field(
        ge=0, description="event_date minus journey_start_date, in days"
    )
    claim_type: str = pa.Field(
        isin=CLAIM_TYPES,
        description="medical or pharmacy claim, or derived (discontinuation, no claim behind it)",
    )
    icd10_code: str = pa.Field(
        str_matches=r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$",
        description="ICD-10-CM code of the indication on the claim",
    )
    procedure_code: str = pa.Field(
        nullable=True,
        str_matches=r"^[0-9]{5}$",
        description="CPT code of a medical claim; null for pharmacy and derived events",
    )
    product_name: str = pa.Field(
        nullable=True,
        description="product dispensed or stopped (the competitor's for a switch); "
        "null for medical events",
    )
    ndc_code: str = pa.Field(
        nullable=True,
        str_matches=r"^[0-9]{5}-[0-9]{4}-[0-9]{2}$",
        description="NDC (5-4-2, synthetic) of a pharmacy claim; null otherwise",
    )
    quantity: pl.Int32 = pa.Field(
        nullable=True, ge=1, description="units dispensed; null unless a pharmacy claim"
    )
    days_supply: pl.Int16 = pa.Field(
        nullable=True, ge=1, le=90, description="days of therapy dispensed; null unless pharmacy"
    )
    cost_usd: pl.Float64 = pa.Field(
        ge=0, description="allowed amount in USD (0 for derived events)"
    )
    insurance_type: str = pa.Field(
        isin=INSURANCE_TYPES, description="payer type of the claim (the patient's)"
    )
    data_split: str = pa.Field(isin=DATA_SPLITS, description="ML split of the event date")

    @pa.dataframe_check(description="claim_type follows from event_type")
    def claim_type_of_event(cls, data: pa.PolarsData) -> pl.LazyFrame:
        expected = (
            pl.when(pl.col("event_type").is_in(MEDICAL_EVENT_TYPES))
            .then(pl.lit("medical"))
            .when(pl.col("event_type").is_in(DISPENSING_EVENT_TYPES))
            .then(pl.lit("pharmacy"))
            .otherwise(pl.lit("derived"))
        )
        return data.lazyframe.select(pl.col("claim_type") == expected)

    @pa.dataframe_check(description="procedure_code is set exactly on medical events")
    def procedure_iff_medical(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_set_iff("procedure_code", MEDICAL_EVENT_TYPES))

    @pa.dataframe_check(description="product_name is set exactly on treatment events")
    def product_iff_treatment(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_set_iff("product_name", TREATMENT_EVENT_TYPES))

    @pa.dataframe_check(
        description="ndc_code, quantity and days_supply are set exactly on pharmacy claims"
    )
    def dispensing_fields_iff_pharmacy(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            _set_iff("ndc_code", DISPENSING_EVENT_TYPES)
            & _set_iff("quantity", DISPENSING_EVENT_TYPES)
            & _set_iff("days_supply", DISPENSING_EVENT_TYPES)
        )

    class Config:
        strict = True
        # One claim per patient, day and kind of event.
        unique = ["patient_id", "event_date", "event_type"]


SPEC = TableSpec(
    name="treatment_events",
    model=TreatmentEvents,
    primary_key=("event_id",),
    description="Claims-like events per patient: diagnosis, labs, visits, fills, switches, stops.",
)
