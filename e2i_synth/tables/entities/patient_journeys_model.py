"""patient_journeys: one row per patient, with the causal structure the agents estimate."""

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import BRANDS, DATA_SPLITS, GENDERS, INSURANCE_TYPES, REGIONS


class PatientJourneys(pa.DataFrameModel):
    patient_id: str = pa.Field(unique=True, str_matches=r"^PAT\d{7}$", description="patient key")
    hcp_id: str = pa.Field(description="treating HCP (hcp_profiles.hcp_id)")
    brand: str = pa.Field(isin=BRANDS, description="brand of the journey (the HCP's focus)")
    region: str = pa.Field(isin=REGIONS, description="region of the treating HCP")
    journey_start_date: pl.Date = pa.Field(description="diagnosis date, start of the journey")
    journey_end_date: pl.Date = pa.Field(description="last observed date of the journey")
    age_at_diagnosis: pl.Int16 = pa.Field(ge=18, le=95, description="age in years at diagnosis")
    gender: str = pa.Field(isin=GENDERS, description="recorded gender")
    insurance_type: str = pa.Field(isin=INSURANCE_TYPES, description="primary payer type")
    comorbidity_count: pl.Int16 = pa.Field(ge=0, description="number of recorded comorbidities")
    prior_treatment_count: pl.Int16 = pa.Field(ge=0, description="therapies tried before")
    disease_severity: pl.Float64 = pa.Field(
        ge=0, le=10, description="severity 0-10; confounder of engagement and treatment"
    )
    academic_hcp: bool = pa.Field(description="treating HCP is academic; confounder")
    engagement_score: pl.Float64 = pa.Field(
        ge=0, le=10, description="engagement 0-10; the treatment in the causal question"
    )
    treatment_initiated: bool = pa.Field(description="started therapy; the causal outcome")
    days_to_treatment: pl.Int32 = pa.Field(
        ge=0, nullable=True, description="diagnosis to first prescription; null if not initiated"
    )
    data_split: str = pa.Field(isin=DATA_SPLITS, description="ML split, assigned by start date")

    @pa.dataframe_check(description="journey ends on or after it starts")
    def end_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("journey_end_date") >= pl.col("journey_start_date"))

    @pa.dataframe_check(description="days_to_treatment is set exactly when treatment_initiated")
    def days_iff_initiated(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("days_to_treatment").is_not_null() == pl.col("treatment_initiated")
        )

    @pa.dataframe_check(description="first prescription falls inside the journey")
    def treatment_inside_journey(cls, data: pa.PolarsData) -> pl.LazyFrame:
        days = (pl.col("journey_end_date") - pl.col("journey_start_date")).dt.total_days()
        return data.lazyframe.select(
            pl.col("days_to_treatment").is_null() | (pl.col("days_to_treatment") <= days)
        )

    class Config:
        strict = True


SPEC = TableSpec(
    name="patient_journeys",
    model=PatientJourneys,
    primary_key=("patient_id",),
    description="One journey per patient: dates, demographics, confounders, engagement, outcome.",
)
