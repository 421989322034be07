"""Planted drift as an event in the world: a patient attribute's population changes from a date.

A DriftSpec of a feature held in patient_journeys (JOURNEY_ATTRIBUTES) changes the patients
diagnosed (journey_start_date) from its start: the generator draws the attribute as usual, then
moves it by the share of the magnitude reached on the patient's own diagnosis date (a step, or
the ramp), so a patient's drift depends on nothing but that date. Everything computed from the
attribute afterwards (the attributes drawn from it, treatment_initiated through the causal
model, the timelines, ml_predictions, feature_values) moves with it by construction:
downstream_of names the features that may therefore move too.

Drifts of other features (HCP and brand features) are not world events: feature_values edits
their values from the start (tables.feature_store.feature_values), and nothing else moves.

The sizes are in the terms of the attribute among the patients diagnosed before the start
(reference_moments: known at the start): mean_shift adds magnitude x that standard deviation,
variance_change scales the deviation from that mean by the magnitude, category_mix gives a
share magnitude of the patients another category (insurance_tier: another tier, uniformly, and
a payer of it).
"""

from datetime import date

import numpy as np

from e2i_synth.core.scenario import DriftSpec
from e2i_synth.tables.feature_store.catalog import INSURANCE_TIERS, TIER_LABELS

# Feature -> the patient_journeys column it reads, for the features that are patient attributes.
JOURNEY_ATTRIBUTES: dict[str, str] = {
    "age_at_diagnosis": "age_at_diagnosis",
    "disease_severity": "disease_severity",
    "comorbidity_count": "comorbidity_count",
    "prior_treatment_count": "prior_treatment_count",
    "engagement_score": "engagement_score",
    "insurance_tier": "insurance_type",
}
# Feature -> the features computed from it in the world (patient_journeys' draws, the causal
# model, the stop hazard of world.timelines, the fills the brand features count).
_CHILDREN: dict[str, tuple[str, ...]] = {
    "age_at_diagnosis": ("insurance_tier", "comorbidity_count"),
    "disease_severity": (
        "comorbidity_count",
        "prior_treatment_count",
        "engagement_score",
        "treatment_propensity",
        "outcome_probability",
        "trx_30d",
        "nrx_30d",
        "conversion_rate",
    ),
    # Initiation (the causal model) and the stop hazard: outcomes and the fills counted.
    "engagement_score": ("outcome_probability", "trx_30d", "nrx_30d", "conversion_rate"),
    # The stop hazard: persistence and refills.
    "comorbidity_count": ("outcome_probability", "trx_30d"),
    "insurance_tier": ("outcome_probability", "trx_30d"),
}
# Payers of each tier, with the weights a moved patient's new payer is drawn with: the payer mix
# of the patient's age band within the tier (from 65 nobody is uninsured: dual-eligible).
_TIER_PAYERS: dict[str, tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]] = {
    # tier: (payers, weights under 65, weights from 65)
    "high": (("commercial",), (1.0,), (1.0,)),
    "medium": (("medicare",), (1.0,), (1.0,)),
    "low": (("medicaid", "uninsured"), (0.21, 0.08), (1.0, 0.0)),
}
_EPOCH = date(1970, 1, 1)


def is_world_drift(feature: str) -> bool:
    """Whether a drift of `feature` is an event in patient_journeys (else a feature_values edit)."""
    return feature in JOURNEY_ATTRIBUTES


def downstream_of(feature: str) -> tuple[str, ...]:
    """The features a world drift of `feature` moves besides itself, sorted (none for a
    feature_values edit): the one list the answer key's rules and the monitor's expected flags
    accept as moving."""
    if not is_world_drift(feature):
        return ()
    found: set[str] = set()
    todo = list(_CHILDREN.get(feature, ()))
    while todo:
        child = todo.pop()
        if child not in found and child != feature:
            found.add(child)
            todo.extend(_CHILDREN.get(child, ()))
    return tuple(sorted(found))


def diagnosis_share(drift: DriftSpec, diagnosed: np.ndarray) -> np.ndarray:
    """Share of the magnitude each patient gets, from their diagnosis day number (since
    1970-01-01): 0 before the start, the ramp's share on the diagnosis date."""
    return drift.fraction(np.asarray(diagnosed) - (drift.start - _EPOCH).days)


def reference_moments(values: np.ndarray, share: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the attribute among the patients the drift leaves alone
    (diagnosed before the start; all of them when there are fewer than two)."""
    before = values[share == 0]
    pool = before if before.size >= 2 else values
    return float(np.mean(pool)), float(np.std(pool))


def move_numeric(drift: DriftSpec, values: np.ndarray, share: np.ndarray) -> np.ndarray:
    """The attribute after the drift, before the caller's clipping and rounding."""
    mean, sd = reference_moments(values, share)
    if drift.kind == "mean_shift":
        moved = values + share * drift.magnitude * sd
    else:  # variance_change: the spread's multiplier moves from 1 to magnitude
        moved = mean + (1 + share * (drift.magnitude - 1)) * (values - mean)
    return np.where(share > 0, moved, values)


def move_payers(
    drift: DriftSpec,
    payers: np.ndarray,
    share: np.ndarray,
    older: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """insurance_type after a category_mix of insurance_tier: a share magnitude x share of the
    patients get another tier (uniformly among the others) and a payer of it, drawn from the
    payer mix of their age band (`older`: 65 and over)."""
    n = len(payers)
    u_mix, u_tier, u_payer = rng.random((3, n))
    names, inverse = np.unique(np.asarray(payers), return_inverse=True)
    tier_of = np.array([TIER_LABELS.index(INSURANCE_TIERS[p]) for p in names], dtype=np.int64)
    tiers = tier_of[inverse.reshape(-1)]
    moved = u_mix < drift.magnitude * share
    step = 1 + np.floor(u_tier * (len(TIER_LABELS) - 1)).astype(np.int64)
    new_tiers = (tiers + step) % len(TIER_LABELS)
    out = np.asarray(payers).copy()
    for t, label in enumerate(TIER_LABELS):
        options, young, old = _TIER_PAYERS[label]
        for band, weights in ((~older, young), (older, old)):
            chosen = moved & (new_tiers == t) & band
            cumulative = np.cumsum(weights) / sum(weights)
            pick = np.searchsorted(cumulative, u_payer[chosen], side="right")
            out[chosen] = np.array(options)[np.minimum(pick, len(options) - 1)]
    return out
