"""feature_groups and features generators: the feature store's catalog.

The catalog is fixed by domain.FEATURE_GROUPS and domain.FEATURES; this module adds what a
feature store records about each (owner, version, source, refresh cadence, freshness window,
valid range, categories). Dates derive from scenario.start_date, never from the wall clock.
"""

import json
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from e2i_synth.core.scenario import ENGAGEMENT_MAX, SEVERITY_MAX, Scenario
from e2i_synth.core.vocabulary import FEATURE_GROUPS, FEATURES, INSURANCE_TYPES, SPECIALTIES

# Freshness window per refresh cadence: a daily feature is fresh for 2 days, a weekly one 10.
FRESHNESS_HOURS: dict[str, int] = {"daily": 48, "weekly": 240}
# insurance_tier: the seed's high/medium/low, the payer's coverage (a mapping of ours: the seed
# names the tiers only). Uninsured patients pay cash, the least covered: low, with Medicaid.
INSURANCE_TIERS: dict[str, str] = dict(
    zip(INSURANCE_TYPES, ("high", "medium", "low", "low"), strict=True)
)
TIER_LABELS: tuple[str, ...] = ("high", "medium", "low")
# Trailing windows of the brand features, in days before the value's date.
COUNT_WINDOW_DAYS = 30
CONVERSION_WINDOW_DAYS = 365
# Treatment success (outcome_probability): still on therapy at this many fills, about six
# months of supply (the timelines' stop hazard applies after each fill).
SUCCESS_FILLS = 6
# How often a group's schema was revised: its updated_date is this many quarters after creation.
DAYS_PER_VERSION = 91


@dataclass(frozen=True)
class GroupDefinition:
    owner: str
    version: int


@dataclass(frozen=True)
class FeatureDefinition:
    description: str
    source_table: str
    source_columns: str
    refresh_cadence: str
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] | None = None


GROUP_DEFINITIONS: dict[str, GroupDefinition] = {
    "hcp_demographics": GroupDefinition("commercial-data-engineering", 3),
    "patient_features": GroupDefinition("real-world-evidence", 2),
    "brand_performance": GroupDefinition("commercial-analytics", 4),
    "causal_features": GroupDefinition("causal-ml", 1),
}

FEATURE_DEFINITIONS: dict[str, FeatureDefinition] = {
    "specialty_encoded": FeatureDefinition(
        "primary specialty of the HCP",
        "hcp_profiles",
        "specialty",
        "weekly",
        categories=SPECIALTIES,
    ),
    "years_experience": FeatureDefinition(
        "years since residency", "hcp_profiles", "years_experience", "weekly", 1, 45
    ),
    "academic_flag": FeatureDefinition(
        "HCP practises at an academic medical center", "hcp_profiles", "academic_hcp", "weekly"
    ),
    "patient_volume_monthly": FeatureDefinition(
        "patients seen in the trailing month",
        "hcp_profiles",
        "patient_volume_monthly",
        "weekly",
        1,
        None,
    ),
    "disease_severity": FeatureDefinition(
        "latest disease severity assessment, 0-10 (the journey's severity, assessed with noise)",
        "patient_journeys",
        "disease_severity",
        "weekly",
        0,
        SEVERITY_MAX,
    ),
    "age_at_diagnosis": FeatureDefinition(
        "age in years at diagnosis", "patient_journeys", "age_at_diagnosis", "weekly", 18, 95
    ),
    "comorbidity_count": FeatureDefinition(
        "comorbidities on record", "patient_journeys", "comorbidity_count", "weekly", 0, None
    ),
    "prior_treatment_count": FeatureDefinition(
        "therapies tried before", "patient_journeys", "prior_treatment_count", "weekly", 0, None
    ),
    "insurance_tier": FeatureDefinition(
        "coverage of the primary payer: high (commercial), medium (medicare), low (medicaid, "
        "uninsured)",
        "patient_journeys",
        "insurance_type",
        "weekly",
        categories=TIER_LABELS,
    ),
    "trx_30d": FeatureDefinition(
        "prescriptions filled (first fills and refills) of the brand by the HCP's patients in "
        f"the {COUNT_WINDOW_DAYS} days before the value's date, counted in the simulated sample "
        "(treatment_events; business_metrics weight the same fills to the national market)",
        "treatment_events",
        "hcp_id, brand, event_type, event_date",
        "weekly",
        0,
        None,
    ),
    "nrx_30d": FeatureDefinition(
        "new prescriptions (first fills) of the brand by the HCP's patients in the "
        f"{COUNT_WINDOW_DAYS} days before the value's date, counted in the simulated sample "
        "(treatment_events)",
        "treatment_events",
        "hcp_id, brand, event_type, event_date",
        "weekly",
        0,
        None,
    ),
    "conversion_rate": FeatureDefinition(
        f"of the HCP's patients of the brand diagnosed in the {CONVERSION_WINDOW_DAYS} days "
        "before the value's date, the share with a first fill before that date (0 when none "
        "was diagnosed)",
        "patient_journeys",
        "hcp_id, brand, journey_start_date, treatment_initiated, days_to_treatment",
        "weekly",
        0,
        1,
    ),
    "engagement_score": FeatureDefinition(
        "engagement 0-10 (the journey's score, measured with noise); the treatment of the "
        "causal question",
        "patient_journeys",
        "engagement_score",
        "weekly",
        0,
        ENGAGEMENT_MAX,
    ),
    "treatment_propensity": FeatureDefinition(
        "probability that the patient initiates treatment given what is known before "
        "engagement: the causal model's P(treatment_initiated) at the expected engagement for "
        "the patient's severity and academic flag",
        "patient_journeys",
        "disease_severity, academic_hcp",
        "weekly",
        0,
        1,
    ),
    "outcome_probability": FeatureDefinition(
        "probability of treatment success: the patient initiates (the causal model at the "
        f"patient's engagement) and is still on therapy at the {SUCCESS_FILLS}th fill (the "
        "world's stop hazard after each fill)",
        "patient_journeys",
        "engagement_score, disease_severity, academic_hcp, brand, insurance_type, "
        "comorbidity_count",
        "weekly",
        0,
        1,
    ),
}


def group_ids() -> dict[str, str]:
    return {name: f"FG{i:03d}" for i, name in enumerate(FEATURE_GROUPS, start=1)}


def feature_ids() -> dict[str, str]:
    return {name: f"FEAT{i:03d}" for i, name in enumerate(FEATURES, start=1)}


def _created(scenario: Scenario) -> date:
    # Registered just before the first observation, so every value has a defined feature.
    return scenario.start_date - timedelta(days=1)


def generate_feature_groups(scenario: Scenario) -> pl.DataFrame:
    created = _created(scenario)
    ids = group_ids()
    rows = []
    for name, (entity_key, description) in FEATURE_GROUPS.items():
        definition = GROUP_DEFINITIONS[name]
        updated = min(
            created + timedelta(days=DAYS_PER_VERSION * (definition.version - 1)),
            scenario.end_date,
        )
        rows.append(
            {
                "feature_group_id": ids[name],
                "name": name,
                "description": description,
                "entity_key": entity_key,
                "owner": definition.owner,
                "version": definition.version,
                "created_date": created,
                "updated_date": updated,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"version": pl.Int16})


def generate_features(scenario: Scenario, feature_groups: pl.DataFrame) -> pl.DataFrame:
    """One row per domain feature, referencing the groups' ids in `feature_groups`."""
    groups = {
        row["name"]: row
        for row in feature_groups.select("name", "feature_group_id", "entity_key").iter_rows(
            named=True
        )
    }
    missing = sorted({group for group, _ in FEATURES.values()} - set(groups))
    if missing:
        raise ValueError(f"feature_groups lacks the groups {missing}")
    ids = feature_ids()
    rows = []
    for name, (group, value_type) in FEATURES.items():
        definition = FEATURE_DEFINITIONS[name]
        rows.append(
            {
                "feature_id": ids[name],
                "feature_group_id": groups[group]["feature_group_id"],
                "name": name,
                "value_type": value_type,
                "entity_keys": groups[group]["entity_key"],
                "description": definition.description,
                "source_table": definition.source_table,
                "source_columns": definition.source_columns,
                "refresh_cadence": definition.refresh_cadence,
                "freshness_window_hours": FRESHNESS_HOURS[definition.refresh_cadence],
                "min_value": definition.min_value,
                "max_value": definition.max_value,
                "allowed_values": (
                    json.dumps(list(definition.categories)) if definition.categories else None
                ),
                "created_date": _created(scenario),
            }
        )
    return pl.DataFrame(
        rows,
        schema_overrides={
            "freshness_window_hours": pl.Int32,
            "min_value": pl.Float64,
            "max_value": pl.Float64,
            "allowed_values": pl.String,
        },
    )
