"""The national market the simulated patients are a sample of: prescription volumes per
(brand, region, month) as weighted aggregates of the world's fills.

Simulated TRx of a region-month are the fills of its patients (treatment_events' prescriptions
and refills), simulated NRx the first fills (prescriptions). Each simulated patient stands for
patient_weight(scenario, brand) real patients: WEIGHT_AT_FULL at scale full, so the national
volumes keep their size at any scale. The simulated patients are the cohort diagnosed from the
scenario's start_date; the patients already on therapy then (the prevalent pool, not simulated)
add carryover TRx, a planned curve decaying with the brand's persistence, split over the regions
by REGION_WEIGHTS. So a region-month's TRx is carryover + weight x fills, its NRx weight x first
fills, and national volumes are the sum of the regions.

The counterfactual market (trx_without_shock, nrx_without_shock) is the same world without the
refill and start shocks of the planted gaps (e2i_synth.world.timelines and .initiation): what
a perfect forecaster would have planned.

Counts are summed block by block of patients, so no more than one block's fills is held.
"""

from datetime import date

import numpy as np
import polars as pl

from e2i_synth.core.scenario import FULL_PATIENTS, Scenario
from e2i_synth.core.vocabulary import REGION_WEIGHTS
from e2i_synth.world.timelines import DAYS_SUPPLY, STOP_AFTER_FILL, Timelines, iter_timelines

# Real patients per simulated patient at scale full, per brand: national TRx then stays inside
# business_metrics_model.NATIONAL_TRX_RANGE at scale full and above (checked there).
WEIGHT_AT_FULL: dict[str, float] = {"Remibrutinib": 500.0, "Fabhalta": 180.0, "Kisqali": 700.0}
# National TRx of the prevalent pool in the scenario's first month, per brand.
CARRYOVER_TRX: dict[str, float] = {
    "Remibrutinib": 8_000.0,
    "Fabhalta": 3_000.0,
    "Kisqali": 30_000.0,
}
AVERAGE_MONTH_DAYS = 365.25 / 12
KEYS = ("brand", "region", "_month")
COUNT_SCHEMA = {
    "brand": pl.String,
    "region": pl.String,
    "_month": pl.Int64,
    "trx": pl.Int64,
    "nrx": pl.Int64,
    "trx_without_shock": pl.Int64,
    "nrx_without_shock": pl.Int64,
}


def month_index(day: date) -> int:
    """Months since year 0 of the month containing `day`."""
    return day.year * 12 + day.month - 1


def patient_weight(scenario: Scenario, brand: str) -> float:
    """Real patients each simulated patient of `brand` stands for."""
    return WEIGHT_AT_FULL[brand] * FULL_PATIENTS / scenario.n_patients


def region_shares(scenario: Scenario) -> dict[str, float]:
    """Each region's share of the national prevalent pool (the scenario's regions)."""
    weights = {r: REGION_WEIGHTS[r] for r in scenario.regions}
    total = sum(weights.values())
    return {r: w / total for r, w in weights.items()}


def carryover(scenario: Scenario, brand: str, region: str, month: np.ndarray) -> np.ndarray:
    """TRx of the prevalent pool in (brand, region) in each month (a month index): the pool
    persists as the brand's patients do, losing STOP_AFTER_FILL after each fill."""
    elapsed = np.asarray(month) - month_index(scenario.start_date)
    fills_per_month = AVERAGE_MONTH_DAYS / DAYS_SUPPLY[brand]
    persistence = (1 - STOP_AFTER_FILL[brand]) ** (fills_per_month * np.maximum(elapsed, 0))
    return CARRYOVER_TRX[brand] * region_shares(scenario)[region] * persistence


def _block_counts(t: Timelines) -> pl.DataFrame:
    """Fills, first fills and shock-lost fills of one block per (brand, region, month)."""
    start = t.patients["journey_start_date"].cast(pl.Int64).to_numpy()  # days since 1970
    patients = t.patients.select("brand", "region")

    def by_month(patient: np.ndarray, day: np.ndarray, **flags: np.ndarray) -> pl.DataFrame:
        months = (start[patient] + day).astype("datetime64[D]").astype("datetime64[M]")
        return patients[patient].with_columns(
            _month=pl.Series(months.astype(np.int64) + 1970 * 12, dtype=pl.Int64),
            **{k: pl.Series(v, dtype=pl.Int64) for k, v in flags.items()},
        )

    fills = by_month(
        t.fill_patient,
        t.fill_day,
        trx=np.ones(t.fill_patient.size, dtype=np.int64),
        nrx=(t.fill_number == 0).astype(np.int64),
        lost=np.zeros(t.fill_patient.size, dtype=np.int64),
        lost_nrx=np.zeros(t.fill_patient.size, dtype=np.int64),
    )
    lost = by_month(
        t.lost_patient,
        t.lost_day,
        trx=np.zeros(t.lost_patient.size, dtype=np.int64),
        nrx=np.zeros(t.lost_patient.size, dtype=np.int64),
        lost=np.ones(t.lost_patient.size, dtype=np.int64),
        lost_nrx=(t.lost_number == 0).astype(np.int64),
    )
    return pl.concat([fills, lost]).group_by(KEYS).agg(pl.all().sum())


def world_counts(scenario: Scenario, patient_journeys: pl.DataFrame) -> pl.DataFrame:
    """Simulated trx and nrx, and both without the shocks (the counterfactual), of every
    (brand, region, month index) of the scenario, zero where no fill falls."""
    first, last = month_index(scenario.start_date), month_index(scenario.end_date)
    grid = pl.DataFrame(
        [
            (b, r, m)
            for b in scenario.brands
            for r in scenario.regions
            for m in range(first, last + 1)
        ],
        schema={"brand": pl.String, "region": pl.String, "_month": pl.Int64},
        orient="row",
    )
    blocks = [_block_counts(t) for t in iter_timelines(scenario, patient_journeys)]
    counts = (
        pl.concat(blocks).group_by(KEYS).agg(pl.all().sum())
        if blocks
        else pl.DataFrame(
            schema={"brand": pl.String, "region": pl.String, "_month": pl.Int64}
            | dict.fromkeys(("trx", "nrx", "lost", "lost_nrx"), pl.Int64)
        )
    )
    return (
        grid.join(counts, on=list(KEYS), how="left")
        .with_columns(pl.col("trx", "nrx", "lost", "lost_nrx").fill_null(0).cast(pl.Int64))
        .with_columns(
            trx_without_shock=pl.col("trx") + pl.col("lost"),
            nrx_without_shock=pl.col("nrx") + pl.col("lost_nrx"),
        )
        .select(list(COUNT_SCHEMA))
        .cast(COUNT_SCHEMA)
    )
