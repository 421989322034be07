"""hcp_profiles generator: the HCP master table."""

import numpy as np
import polars as pl

from e2i_synth.domain import (
    ADOPTION_STAGES,
    BRAND_SPECIALTIES,
    PRACTICE_SETTINGS,
    REGION_STATES,
    REGION_WEIGHTS,
)
from e2i_synth.generators.sampling import padded_ids, weighted_choice
from e2i_synth.scenario import Scenario
from e2i_synth.seeds import rng_for

FIRST_NAMES = (
    "Alex",
    "Maria",
    "James",
    "Priya",
    "Chen",
    "Fatima",
    "David",
    "Elena",
    "Kwame",
    "Sofia",
    "Michael",
    "Aisha",
    "Robert",
    "Yuki",
    "Daniel",
    "Laura",
    "Omar",
    "Grace",
)
LAST_NAMES = (
    "Smith",
    "Garcia",
    "Patel",
    "Nguyen",
    "Johnson",
    "Kim",
    "Okafor",
    "Rossi",
    "Cohen",
    "Lopez",
    "Brown",
    "Singh",
    "Martin",
    "Tanaka",
    "Khan",
    "Miller",
    "Silva",
    "Wright",
)
PRACTICE_WEIGHTS = {
    "academic_medical_center": 0.25,
    "community_hospital": 0.30,
    "private_practice": 0.30,
    "integrated_delivery_network": 0.15,
}
ADOPTION_WEIGHTS = dict(zip(ADOPTION_STAGES, (0.05, 0.15, 0.35, 0.30, 0.15), strict=True))


def generate_hcp_profiles(scenario: Scenario) -> pl.DataFrame:
    rng = rng_for(scenario.seed, "hcp_profiles")
    n = scenario.n_hcps

    brand = weighted_choice(rng, {b: 1.0 for b in scenario.brands}, n)
    specialty = np.empty(n, dtype=object)
    for b in scenario.brands:
        mask = brand == b
        specialty[mask] = weighted_choice(rng, BRAND_SPECIALTIES[b], int(mask.sum()))

    region = weighted_choice(rng, {r: REGION_WEIGHTS[r] for r in scenario.regions}, n)
    state = np.array(
        [REGION_STATES[r][i] for r, i in zip(region, rng.integers(0, 5, n), strict=True)]
    )
    practice = weighted_choice(rng, PRACTICE_WEIGHTS, n)
    academic = practice == PRACTICE_SETTINGS[0]
    kol = rng.random(n) < np.where(academic, 0.30, 0.04)
    years = np.clip(np.round(rng.gamma(4.0, 4.5, n)), 1, 45).astype(np.int32)
    # Academic HCPs see fewer but more complex patients.
    volume = np.clip(np.round(rng.lognormal(np.where(academic, 4.2, 4.6), 0.6, n)), 1, 2000)

    frame = pl.DataFrame(
        {
            "hcp_id": padded_ids("HCP", n, 6),
            "npi": (1_000_000_000 + rng.choice(9_000_000_000, size=n, replace=False)).astype(str),
            "first_name": rng.choice(np.array(FIRST_NAMES, dtype=object), n),
            "last_name": rng.choice(np.array(LAST_NAMES, dtype=object), n),
            "specialty": specialty,
            "practice_setting": practice,
            "academic_hcp": academic,
            "kol_flag": kol,
            "years_experience": years,
            "patient_volume_monthly": volume.astype(np.int32),
            "region": region,
            "state": state,
            "brand_focus": brand,
            "adoption_stage": weighted_choice(rng, ADOPTION_WEIGHTS, n),
            "digital_engagement": np.round(rng.beta(2.0, 3.0, n), 4),
        },
        schema_overrides={"first_name": pl.String, "last_name": pl.String},
    )
    # Decile of monthly volume within the brand (10 = highest); tier follows the decile.
    decile = (
        (pl.col("patient_volume_monthly").rank("ordinal").over("brand_focus") - 1)
        * 10
        // pl.len().over("brand_focus")
        + 1
    ).cast(pl.Int16)
    tier = (pl.lit(4) - (pl.col("decile") - 1) // 3).clip(1, 4).cast(pl.Int16)
    return frame.with_columns(decile=decile).with_columns(priority_tier=tier)
