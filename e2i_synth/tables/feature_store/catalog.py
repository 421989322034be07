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
# insurance_tier is the payer type as a formulary tier.
INSURANCE_TIERS: dict[str, str] = dict(
    zip(INSURANCE_TYPES, ("tier_1", "tier_2", "tier_3", "tier_4"), strict=True)
)
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
        "latest disease severity assessment, 0-10",
        "patient_journeys",
        "disease_severity",
        "daily",
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
        "formulary tier of the primary payer (tier_1 commercial ... tier_4 uninsured)",
        "patient_journeys",
        "insurance_type",
        "weekly",
        categories=tuple(INSURANCE_TIERS.values()),
    ),
    "trx_30d": FeatureDefinition(
        "prescriptions filled in a 30-day window (initiations and monthly refills)",
        "patient_journeys",
        "brand, journey_start_date, journey_end_date, treatment_initiated, days_to_treatment",
        "daily",
        0,
        None,
    ),
    "nrx_30d": FeatureDefinition(
        "new prescriptions (initiations) in a 30-day window",
        "patient_journeys",
        "brand, treatment_initiated",
        "daily",
        0,
        None,
    ),
    "conversion_rate": FeatureDefinition(
        "share of the brand's diagnosed patients who initiate treatment",
        "patient_journeys",
        "brand, treatment_initiated",
        "daily",
        0,
        1,
    ),
    "engagement_score": FeatureDefinition(
        "engagement 0-10; the treatment of the causal question",
        "patient_journeys",
        "engagement_score",
        "daily",
        0,
        ENGAGEMENT_MAX,
    ),
    "treatment_propensity": FeatureDefinition(
        "expected engagement given the confounders, as a share of the 0-10 scale "
        "(causal model: engagement_intercept + severity and academic terms)",
        "patient_journeys",
        "disease_severity, academic_hcp",
        "daily",
        0,
        1,
    ),
    "outcome_probability": FeatureDefinition(
        "P(treatment_initiated) from the causal linear probability model",
        "patient_journeys",
        "engagement_score, disease_severity, academic_hcp",
        "daily",
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
