"""hcp_profiles generator: the HCP master table."""

import numpy as np
import polars as pl

from e2i_synth.core.sampling import padded_ids, weighted_choice
from e2i_synth.core.scenario import Scenario
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.vocabulary import (
    ADOPTION_STAGES,
    BRAND_SPECIALTIES,
    PRACTICE_SETTINGS,
    REGION_STATES,
    REGION_WEIGHTS,
    npi_check_digit,
)

# Name pools large enough that full names rarely repeat (about 1 pair in 80 HCPs at full
# scale), as in a real HCP master.
FIRST_NAMES = tuple(
    """Aaron Abigail Adam Adrian Aisha Alan Alex Alice Amanda Amir Ana Andrea Andrew Angela Anil
    Anna Anthony Arjun Beatriz Benjamin Brian Camila Carlos Caroline Catherine Charles Chen Chloe
    Christopher Claire Daniel David Deborah Diana Dmitri Eduardo Elena Elizabeth Emily Emma Eric
    Esther Ethan Fatima Fernando Fiona Francesca Gabriel George Grace Hannah Hassan Helen Hiroshi
    Ian Ibrahim Irene Isabel Jacob James Jane Javier Jennifer Jessica Jin John Jonathan Jose
    Joseph Julia Karen Kenji Kevin Kwame Laura Leila Linda Lucas Luis Maria Mark Martha Matthew
    Mei Michael Michelle Mohammed Nadia Nathan Nicole Nina Noah Olivia Omar Patricia Paul Peter
    Priya Rachel Rafael Rahul Rebecca Richard Robert Rosa Ruth Samuel Sandra Sarah Sean Sofia
    Stephen Susan Thomas Tomas Victoria Wei William Yuki Zainab""".split()
)
LAST_NAMES = tuple(
    """Adams Ahmed Alvarez Anderson Bailey Baker Banerjee Bennett Brooks Brown Campbell Carter
    Castillo Chang Chen Clark Cohen Collins Cooper Costa Cruz Davis Diaz Edwards Evans Fischer
    Flores Foster Garcia Gomez Gonzalez Gupta Hall Harris Hernandez Hill Hoffman Hughes Ito Jackson
    James Jenkins Johnson Jones Kang Khan Kim King Kowalski Kumar Lee Levy Lewis Li Lin Lopez
    Martin Martinez Mehta Miller Mitchell Moore Morales Morgan Murphy Nakamura Nelson Nguyen
    Novak Okafor Okonkwo Ortiz Park Parker Patel Perez Peterson Phillips Price Ramirez Reddy Reed
    Reyes Richardson Rivera Roberts Robinson Rodriguez Rossi Russo Sanchez Sato Schmidt Scott
    Shah Silva Singh Smith Stewart Sullivan Tanaka Taylor Thomas Thompson Torres Tran Turner
    Walker Wang Ward Watson White Williams Wilson Wong Wright Wu Yamamoto Young Zhang""".split()
)
PRACTICE_WEIGHTS = {
    "academic_medical_center": 0.25,
    "community_hospital": 0.30,
    "private_practice": 0.30,
    "integrated_delivery_network": 0.15,
}
ADOPTION_WEIGHTS = dict(zip(ADOPTION_STAGES, (0.05, 0.15, 0.35, 0.30, 0.15), strict=True))


def _npis(rng: np.random.Generator, n: int) -> list[str]:
    """Distinct NPIs: nine digits starting with 1 (as issued so far) and their check digit."""
    bases = (100_000_000 + rng.choice(100_000_000, size=n, replace=False)).astype(str)
    return [base + str(npi_check_digit(base)) for base in bases]


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
            "npi": _npis(rng, n),
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
