"""patient_journeys generator: one journey per patient, with a known causal structure.

disease_severity and academic_hcp raise both engagement_score and the probability of
treatment_initiated; engagement_score adds exactly `causal.true_ate` to that probability per
point (see scenario.CausalModel). So a naive comparison is biased and a backdoor-adjusted one
recovers the truth.

A planted gap on nrx or conversion_rate is a start shock (world.initiation): some of the
patients of its brand and region diagnosed in its months who would start do not.

A planted drift of a patient attribute (world.drift.JOURNEY_ATTRIBUTES) is drawn here: the
patients diagnosed from its start get the moved attribute before anything is computed from it,
so the attributes drawn from it, treatment_initiated (the causal model's draw at the realised
engagement) and every table that reads the journey move with it.
"""

from datetime import date

import numpy as np
import polars as pl

from e2i_synth.core.sampling import padded_ids, weighted_choice
from e2i_synth.core.scenario import ENGAGEMENT_MAX, SEVERITY_MAX, Scenario
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.vocabulary import INSURANCE_TYPES
from e2i_synth.world.drift import diagnosis_share, move_numeric, move_payers
from e2i_synth.world.initiation import kept_out, start_factor, treatment_uniforms, waits

# Typical patient ages per brand: (mean, sd).
AGE_BY_BRAND = {"Remibrutinib": (42, 14), "Fabhalta": (48, 15), "Kisqali": (58, 11)}
FEMALE_SHARE = {"Remibrutinib": 0.68, "Fabhalta": 0.55, "Kisqali": 0.99}
# Payer mix by age at diagnosis (commercial, medicare, medicaid, uninsured): Medicare from 65
# (a few keep employer coverage, the poorest are dual-eligible); under 65 Medicare only
# through disability.
INSURANCE_WEIGHTS_UNDER_65 = dict(zip(INSURANCE_TYPES, (0.68, 0.03, 0.21, 0.08), strict=True))
INSURANCE_WEIGHTS_65_PLUS = dict(zip(INSURANCE_TYPES, (0.12, 0.82, 0.06, 0.00), strict=True))
MEDICARE_AGE = 65
_EPOCH = date(1970, 1, 1)


def _payers(rng: np.random.Generator, age: np.ndarray) -> np.ndarray:
    """Each patient's payer, drawn from the mix of the patient's age band."""
    older = age >= MEDICARE_AGE
    payers = weighted_choice(rng, INSURANCE_WEIGHTS_UNDER_65, len(age))
    payers[older] = weighted_choice(rng, INSURANCE_WEIGHTS_65_PLUS, int(older.sum()))
    return payers


class _Drifts:
    """The scenario's world drifts, applied to each attribute as it is drawn."""

    def __init__(self, scenario: Scenario, diagnosed: np.ndarray) -> None:
        self.scenario = scenario
        self.diagnosed = diagnosed
        self.specs = {d.feature: d for d in scenario.drifts}

    def numeric(
        self, feature: str, values: np.ndarray, low: float, high: float, decimals: int
    ) -> np.ndarray:
        """The attribute, moved from the drift's start when it is planted, clipped and rounded
        as the generator keeps it."""
        drift = self.specs.get(feature)
        if drift is None:
            return values
        moved = move_numeric(drift, values, diagnosis_share(drift, self.diagnosed))
        return np.round(np.clip(moved, low, high), decimals)

    def payers(self, payers: np.ndarray, age: np.ndarray) -> np.ndarray:
        drift = self.specs.get("insurance_tier")
        if drift is None:
            return payers
        # A stream of its own: an undrifted scenario's draws are unchanged.
        rng = rng_for(self.scenario.seed, "patient_journeys", "drift", "insurance_tier")
        share = diagnosis_share(drift, self.diagnosed)
        return move_payers(drift, payers, share, age >= MEDICARE_AGE, rng)


def generate_patient_journeys(scenario: Scenario, hcp_profiles: pl.DataFrame) -> pl.DataFrame:
    rng = rng_for(scenario.seed, "patient_journeys")
    causal = scenario.causal
    n = scenario.n_patients

    # Busier HCPs treat more of the patients.
    volume = hcp_profiles["patient_volume_monthly"].to_numpy().astype(float)
    hcp_idx = rng.choice(hcp_profiles.height, size=n, p=volume / volume.sum())
    # Only the columns used: gathering whole HCP rows for millions of patients costs GBs.
    hcps = hcp_profiles.select("hcp_id", "brand_focus", "academic_hcp", "region")[hcp_idx]
    # Per-brand parameters looked up in polars: a numpy object array of millions of brand
    # strings would cost more memory than the whole table.
    brand = hcps["brand_focus"]
    academic = hcps["academic_hcp"].to_numpy()

    def by_brand(values: dict[str, float]) -> np.ndarray:
        return brand.replace_strict(values, return_dtype=pl.Float64).to_numpy()

    span = (scenario.end_date - scenario.start_date).days
    start_offset = rng.integers(0, span, n)
    duration = np.minimum(rng.integers(30, 541, n), span - start_offset)
    drifts = _Drifts(scenario, (scenario.start_date - _EPOCH).days + start_offset)

    age_mean = by_brand({b: m for b, (m, _) in AGE_BY_BRAND.items()})
    age_sd = by_brand({b: sd for b, (_, sd) in AGE_BY_BRAND.items()})
    age = np.clip(np.round(rng.normal(age_mean, age_sd)), 18, 95)
    age = drifts.numeric("age_at_diagnosis", age, 18, 95, 0)
    female = rng.random(n) < by_brand(FEMALE_SHARE)

    # Academic centres see the more severe cases.
    severity = np.round(SEVERITY_MAX * rng.beta(2.2 + 0.8 * academic, 2.6, n), 1)
    severity = drifts.numeric("disease_severity", severity, 0, SEVERITY_MAX, 1)
    comorbidities = rng.poisson(0.4 + 0.12 * severity + 0.02 * np.maximum(age - 40, 0))
    comorbidities = drifts.numeric("comorbidity_count", comorbidities, 0, np.inf, 0)
    prior_treatments = rng.poisson(0.6 + 0.1 * severity)
    prior_treatments = drifts.numeric("prior_treatment_count", prior_treatments, 0, np.inf, 0)

    engagement = np.round(
        np.clip(
            causal.expected_engagement(severity, academic)
            + rng.normal(0, causal.engagement_noise_sd, n),
            0,
            ENGAGEMENT_MAX,
        ),
        2,
    )
    # treatment_initiated below is the model's draw at this realised engagement, drifted or not.
    engagement = drifts.numeric("engagement_score", engagement, 0, ENGAGEMENT_MAX, 2)
    initiated = treatment_uniforms(scenario) < causal.treatment_probability(
        engagement, severity, academic
    )
    ids = padded_ids("PAT", n, 7)
    span_start = pl.Series(start_offset).cast(pl.Int64) + (scenario.start_date - _EPOCH).days
    factor = start_factor(scenario, brand, hcps["region"], span_start.cast(pl.Date))
    # A start shock keeps some of them from starting (world.initiation).
    initiated &= ~kept_out(scenario, ids, factor)
    # Time to first prescription: right-skewed, keyed by patient, so the world can replay the
    # start a shock prevented.
    wait = waits(scenario, ids, duration).astype(np.int32)

    start = pl.lit(scenario.start_date) + pl.duration(days=pl.col("_start_offset"))
    return (
        pl.DataFrame(
            {
                "patient_id": ids,
                "hcp_id": hcps["hcp_id"],
                "brand": brand,
                "region": hcps["region"],
                "_start_offset": start_offset,
                "_duration": duration,
                "age_at_diagnosis": age.astype(np.int16),
                "gender": pl.Series(female).replace_strict(
                    {True: "female", False: "male"}, return_dtype=pl.String
                ),
                "insurance_type": drifts.payers(_payers(rng, age), age),
                "comorbidity_count": comorbidities.astype(np.int16),
                "prior_treatment_count": prior_treatments.astype(np.int16),
                "disease_severity": severity,
                "academic_hcp": academic,
                "engagement_score": engagement,
                "treatment_initiated": initiated,
                "_wait": wait,
            },
        )
        .with_columns(
            days_to_treatment=pl.when("treatment_initiated").then("_wait"),
            journey_start_date=start.cast(pl.Date),
        )
        .with_columns(
            journey_end_date=(pl.col("journey_start_date") + pl.duration(days=pl.col("_duration"))),
            data_split=split_for_dates(pl.col("journey_start_date"), scenario),
        )
        .drop("_start_offset", "_duration", "_wait")
    )
