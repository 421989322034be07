"""Fixed vocabulary of the commercial domain: brands, regions, specialties.

Scenario files may pick subsets of these; anything outside them is an error.
"""

BRANDS: tuple[str, ...] = ("Remibrutinib", "Fabhalta", "Kisqali")

# Indication each brand is marketed for (used for descriptions and specialties).
BRAND_INDICATION: dict[str, str] = {
    "Remibrutinib": "chronic spontaneous urticaria",
    "Fabhalta": "paroxysmal nocturnal hemoglobinuria / IgA nephropathy",
    "Kisqali": "HR+/HER2- breast cancer",
}

# Specialties that prescribe each brand, with relative weights.
BRAND_SPECIALTIES: dict[str, dict[str, float]] = {
    "Remibrutinib": {"dermatology": 0.55, "allergy_immunology": 0.35, "primary_care": 0.10},
    "Fabhalta": {"hematology": 0.60, "nephrology": 0.35, "internal_medicine": 0.05},
    "Kisqali": {"medical_oncology": 0.85, "hematology_oncology": 0.15},
}
SPECIALTIES: tuple[str, ...] = tuple(
    sorted({s for weights in BRAND_SPECIALTIES.values() for s in weights})
)

REGIONS: tuple[str, ...] = ("northeast", "south", "midwest", "west")
REGION_STATES: dict[str, tuple[str, ...]] = {
    "northeast": ("NY", "MA", "PA", "NJ", "CT"),
    "south": ("TX", "FL", "GA", "NC", "TN"),
    "midwest": ("IL", "OH", "MI", "MN", "WI"),
    "west": ("CA", "WA", "CO", "AZ", "OR"),
}
# Share of national volume per region (roughly population-weighted).
REGION_WEIGHTS: dict[str, float] = {"northeast": 0.22, "south": 0.36, "midwest": 0.20, "west": 0.22}

PRACTICE_SETTINGS: tuple[str, ...] = (
    "academic_medical_center",
    "community_hospital",
    "private_practice",
    "integrated_delivery_network",
)
ADOPTION_STAGES: tuple[str, ...] = (
    "innovator",
    "early_adopter",
    "early_majority",
    "late_majority",
    "laggard",
)
GENDERS: tuple[str, ...] = ("female", "male")
INSURANCE_TYPES: tuple[str, ...] = ("commercial", "medicare", "medicaid", "uninsured")
DATA_SPLITS: tuple[str, ...] = ("train", "validation", "test", "holdout")

# Monthly business metrics per brand and region; brand-specific ones only for their brand.
COMMON_METRICS: tuple[str, ...] = (
    "trx",
    "nrx",
    "market_share",
    "conversion_rate",
    "hcp_engagement_score",
)
BRAND_METRICS: dict[str, tuple[str, ...]] = {
    "Remibrutinib": (),
    "Fabhalta": ("adherence_rate",),
    "Kisqali": ("os_rate",),
}
METRIC_NAMES: tuple[str, ...] = COMMON_METRICS + tuple(
    m for ms in BRAND_METRICS.values() for m in ms
)

# The feature store: group -> (entity key, description).
FEATURE_GROUPS: dict[str, tuple[str, str]] = {
    "hcp_demographics": ("hcp_id", "HCP attributes from the HCP master"),
    "patient_features": ("patient_id", "patient clinical and payer attributes"),
    "brand_performance": ("brand", "commercial performance of a brand, per prescribing HCP"),
    "causal_features": ("patient_id", "variables of the engagement -> treatment causal model"),
}
# feature -> (group, value type). Value types: float, int, bool, category.
FEATURES: dict[str, tuple[str, str]] = {
    "specialty_encoded": ("hcp_demographics", "category"),
    "years_experience": ("hcp_demographics", "int"),
    "academic_flag": ("hcp_demographics", "bool"),
    "patient_volume_monthly": ("hcp_demographics", "int"),
    "disease_severity": ("patient_features", "float"),
    "age_at_diagnosis": ("patient_features", "int"),
    "comorbidity_count": ("patient_features", "int"),
    "prior_treatment_count": ("patient_features", "int"),
    "insurance_tier": ("patient_features", "category"),
    "trx_30d": ("brand_performance", "int"),
    "nrx_30d": ("brand_performance", "int"),
    "conversion_rate": ("brand_performance", "float"),
    "engagement_score": ("causal_features", "float"),
    "treatment_propensity": ("causal_features", "float"),
    "outcome_probability": ("causal_features", "float"),
}


def npi_check_digit(base: str) -> int:
    """The NPI's tenth digit for its first nine: Luhn over the digits prefixed with 80840 (the
    health-industry issuer prefix of ISO 7812, as CMS specifies). Written out: no library we
    use validates NPIs, and it is four lines."""
    digits = [int(d) for d in "80840" + base]
    total = sum(
        d if i % 2 else (2 * d if 2 * d < 10 else 2 * d - 9) for i, d in enumerate(digits[::-1])
    )
    return (10 - total % 10) % 10


def is_valid_npi(npi: str) -> bool:
    return len(npi) == 10 and npi.isdigit() and npi_check_digit(npi[:9]) == int(npi[9])
