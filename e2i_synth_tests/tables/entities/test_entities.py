"""hcp_profiles and patient_journeys as a pharma analyst reads them: valid NPIs, names that
rarely repeat, a payer mix that follows age."""

import polars as pl
import pytest

from e2i_synth.core.scenario import load_scenario
from e2i_synth.core.vocabulary import is_valid_npi, npi_check_digit
from e2i_synth.tables import TABLES, FrameValidationError
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import (
    MEDICARE_AGE,
    generate_patient_journeys,
    treatment_uniforms,
)


@pytest.fixture(scope="module")
def entities() -> tuple[pl.DataFrame, pl.DataFrame]:
    scenario = load_scenario(scale=2.0)
    hcps = generate_hcp_profiles(scenario)
    return hcps, generate_patient_journeys(scenario, hcps)


def test_npi_check_digit_is_the_cms_one():
    # CMS's worked example: 123456789 takes check digit 3.
    assert npi_check_digit("123456789") == 3
    assert is_valid_npi("1234567893") and not is_valid_npi("1234567890")


def test_every_npi_is_valid_and_a_wrong_check_digit_is_refused(entities):
    hcps, _ = entities
    assert all(is_valid_npi(n) for n in hcps["npi"])
    first = hcps["npi"][0]
    wrong = first[:9] + str((int(first[9]) + 1) % 10)
    broken = hcps.with_columns(npi=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(wrong)))
    broken = broken.with_columns(npi=pl.coalesce("npi", hcps["npi"]))
    with pytest.raises(FrameValidationError, match="npi"):
        TABLES["hcp_profiles"].validate(broken)


def test_full_names_rarely_repeat(entities):
    hcps, _ = entities
    names = hcps.select(pl.concat_str("first_name", "last_name", separator=" ")).to_series()
    assert names.n_unique() >= 0.95 * hcps.height


def test_payer_follows_age(entities):
    _, all_patients = entities
    # From 65 nobody is uninsured, drifted payer mix or not (world.drift keeps the age band).
    older = all_patients.filter(pl.col("age_at_diagnosis") >= MEDICARE_AGE)
    assert (older["insurance_type"] == "uninsured").sum() == 0
    # The mix itself: before any planted drift moves it.
    first_drift = min(d.start for d in load_scenario(scale=2.0).drifts)
    patients = all_patients.filter(pl.col("journey_start_date") < first_drift)
    share = patients.group_by(older=pl.col("age_at_diagnosis") >= MEDICARE_AGE).agg(
        medicare=(pl.col("insurance_type") == "medicare").mean(),
        uninsured=(pl.col("insurance_type") == "uninsured").mean(),
    )
    by_age = {row["older"]: row for row in share.iter_rows(named=True)}
    assert by_age[True]["medicare"] > 0.7 and by_age[True]["uninsured"] == 0
    assert by_age[False]["medicare"] < 0.1


def test_a_planted_attribute_drift_moves_the_patients_diagnosed_from_its_start():
    scenario = load_scenario(scale=1.0)
    hcps = generate_hcp_profiles(scenario)
    drifted = generate_patient_journeys(scenario, hcps)
    plain = generate_patient_journeys(scenario.model_copy(update={"drifts": ()}), hcps)
    engagement = next(d for d in scenario.drifts if d.feature == "engagement_score")
    after = pl.col("journey_start_date") >= min(d.start for d in scenario.drifts)
    # As of its diagnosis date: nobody diagnosed before any start changes.
    assert drifted.filter(~after).equals(plain.filter(~after))
    new = drifted.filter(after)["engagement_score"]
    old = plain.filter(after)["engagement_score"]
    sd = plain.filter(~after)["engagement_score"].std()
    assert abs((new.mean() - old.mean()) / sd - engagement.magnitude) < 0.1  # clipped at 10
    # treatment_initiated is the causal model's draw at the drifted engagement.
    p = scenario.causal.treatment_probability(
        drifted["engagement_score"], drifted["disease_severity"], drifted["academic_hcp"]
    )
    assert (drifted["treatment_initiated"] == (treatment_uniforms(scenario) < p.to_numpy())).all()
