"""hcp_profiles: the HCP master table, one row per healthcare professional."""

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import (
    ADOPTION_STAGES,
    BRANDS,
    PRACTICE_SETTINGS,
    REGIONS,
    SPECIALTIES,
    is_valid_npi,
)


class HcpProfiles(pa.DataFrameModel):
    hcp_id: str = pa.Field(unique=True, str_matches=r"^HCP\d{6}$", description="HCP key, HCPnnnnnn")
    npi: str = pa.Field(
        unique=True,
        str_matches=r"^\d{10}$",
        description="10-digit NPI number with a valid check digit (Luhn with prefix 80840)",
    )
    first_name: str = pa.Field(description="given name (synthetic)")
    last_name: str = pa.Field(description="family name (synthetic)")
    specialty: str = pa.Field(isin=SPECIALTIES, description="primary specialty")
    practice_setting: str = pa.Field(isin=PRACTICE_SETTINGS, description="where the HCP practises")
    academic_hcp: bool = pa.Field(description="practises at an academic medical center")
    kol_flag: bool = pa.Field(description="key opinion leader")
    years_experience: pl.Int32 = pa.Field(ge=1, le=45, description="years since residency")
    patient_volume_monthly: pl.Int32 = pa.Field(ge=1, description="patients seen per month")
    region: str = pa.Field(isin=REGIONS, description="US sales region")
    state: str = pa.Field(str_matches=r"^[A-Z]{2}$", description="US state code")
    brand_focus: str = pa.Field(isin=BRANDS, description="brand the HCP is targeted for")
    decile: pl.Int16 = pa.Field(ge=1, le=10, description="volume decile within brand (10 = top)")
    priority_tier: pl.Int16 = pa.Field(ge=1, le=4, description="call priority (1 = highest)")
    adoption_stage: str = pa.Field(isin=ADOPTION_STAGES, description="innovation adoption stage")
    digital_engagement: pl.Float64 = pa.Field(
        ge=0, le=1, description="share of promotional touches that are digital"
    )

    @pa.check("npi", name="npi_check_digit")
    def npi_check_digit(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("npi").map_elements(is_valid_npi, return_dtype=pl.Boolean)
        )

    class Config:
        strict = True


SPEC = TableSpec(
    name="hcp_profiles",
    model=HcpProfiles,
    primary_key=("hcp_id",),
    description="HCP master: specialty, practice, experience, volume, region and brand focus.",
)
