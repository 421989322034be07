"""The simulated market (e2i_synth.world.market) and the access shock of a planted volume gap
(e2i_synth.world.timelines): counts are the world's fills, the shock takes refills only, in
its brand, region and months, and leaves initiation and stops alone."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from e2i_synth.core.scenario import load_scenario
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.world import market
from e2i_synth.world.timelines import iter_timelines, patient_timelines


@pytest.fixture(scope="module")
def world() -> dict:
    scenario = load_scenario(scale="full")
    shock = next(g for g in scenario.gaps if g.metric_name == "trx")
    patients = generate_patient_journeys(scenario, generate_hcp_profiles(scenario))
    clean = scenario.model_copy(update={"gaps": ()})
    return {"scenario": scenario, "clean": clean, "shock": shock, "patients": patients}


def test_counts_are_the_fills_and_the_counterfactual_adds_what_the_shock_took(world):
    scenario, patients, shock = world["scenario"], world["patients"], world["shock"]
    counts = market.world_counts(scenario, patients)
    _, fills = patient_timelines(scenario, patients)
    assert counts["trx"].sum() == fills.height
    assert counts["nrx"].sum() == (fills["fill_number"] == 0).sum()
    clean = market.world_counts(world["clean"], patients)
    assert (counts["trx_without_shock"] == clean["trx"]).all()
    assert (counts["nrx"] == clean["nrx"]).all()  # first fills are never taken
    hit = (
        (pl.col("brand") == shock.brand)
        & (pl.col("region") == shock.region)
        & (pl.col("_month") >= market.month_index(shock.start_month))
    )
    moved = counts.filter(pl.col("trx") != pl.col("trx_without_shock"))
    assert moved.height > 0 and moved.filter(~hit).is_empty()
    assert (counts["trx"] <= counts["trx_without_shock"]).all()


def test_the_shock_leaves_initiation_and_stops_alone(world):
    patients = world["patients"]
    shocked = list(iter_timelines(world["scenario"], patients))
    clean = list(iter_timelines(world["clean"], patients))
    for s, c in zip(shocked, clean, strict=True):
        assert np.array_equal(s.first_fill, c.first_fill)
        assert np.array_equal(s.stop, c.stop) and np.array_equal(s.therapy_end, c.therapy_end)
        # The taken refills and the dispensed fills are together the fills without the shock.
        both = (
            np.concatenate([s.fill_patient, s.lost_patient]),
            np.concatenate([s.fill_day, s.lost_day]),
        )
        order = np.lexsort((both[1], both[0]))
        assert np.array_equal(both[0][order], c.fill_patient)
        assert np.array_equal(both[1][order], c.fill_day)
        # Fills are renumbered: 0 for the first, then consecutive per patient.
        frame = pl.DataFrame({"p": s.fill_patient, "n": s.fill_number})
        assert (frame.with_columns(r=pl.int_range(pl.len()).over("p"))["r"] == frame["n"]).all()
    lost = sum(s.lost_patient.size for s in shocked)
    assert lost > 0


def test_weights_keep_volumes_scale_free_and_the_carryover_decays():
    full, double = load_scenario(scale="full"), load_scenario(scale=2.0)
    for brand in full.brands:
        assert market.patient_weight(double, brand) == pytest.approx(
            market.patient_weight(full, brand) / 2
        )
        first = market.month_index(full.start_date)
        national = sum(market.carryover(full, brand, r, np.array([first]))[0] for r in full.regions)
        assert national == pytest.approx(market.CARRYOVER_TRX[brand])
        later = market.carryover(full, brand, "south", np.array([first, first + 12]))
        assert later[1] < later[0]
    assert market.month_index(date(2026, 1, 31)) == 2026 * 12
