"""The simulated market (e2i_synth.world.market), the access shock of a planted volume gap
(e2i_synth.world.timelines) and the start shock of a planted conversion gap
(e2i_synth.world.initiation): counts are the world's fills; the access shock takes refills
only, in its brand, region and months, and leaves initiation and stops alone; the start shock
takes whole timelines of patients diagnosed in its months, which the counterfactual keeps."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from e2i_synth.core.scenario import GapSpec, load_scenario
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.world import market
from e2i_synth.world.timelines import iter_timelines, patient_timelines


@pytest.fixture(scope="module")
def world() -> dict:
    default = load_scenario(scale="full")
    shock = next(g for g in default.gaps if g.metric_name == "trx")
    scenario = default.model_copy(update={"gaps": (shock,)})
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


def test_a_start_shock_takes_whole_timelines_and_the_counterfactual_keeps_them():
    base = load_scenario(scale="full")
    gap = GapSpec(
        brand="Kisqali",
        region="south",
        metric_name="nrx",
        start_month=date(2025, 1, 1),
        end_month=date(2025, 12, 1),
        achievement_rate=0.5,
    )
    planted = base.model_copy(update={"gaps": (gap,)})
    clean = base.model_copy(update={"gaps": ()})
    hcps = generate_hcp_profiles(base)
    patients = generate_patient_journeys(planted, hcps)
    clean_patients = generate_patient_journeys(clean, hcps)
    kept_out = patients.join(clean_patients, on="patient_id", suffix="_clean").filter(
        pl.col("treatment_initiated_clean") & ~pl.col("treatment_initiated")
    )
    assert kept_out.height > 5
    assert (kept_out["journey_start_date"] >= gap.start_month).all()
    assert (kept_out["journey_start_date"] < date(2026, 1, 1)).all()
    # The kept-out patients have no fill and no stop in the world.
    timelines, fills = patient_timelines(planted, patients)
    assert fills.join(kept_out.select("patient_id"), on="patient_id").is_empty()
    out = timelines.join(kept_out.select("patient_id"), on="patient_id")
    assert out["first_fill_date"].is_null().all() and out["stop_date"].is_null().all()
    # The counterfactual is the world without the shock, exactly: the kept-out patients'
    # timelines replay the draws (keyed by patient) they have in the clean world.
    counts = market.world_counts(planted, patients)
    without = market.world_counts(clean, clean_patients)
    assert (counts["nrx_without_shock"] == without["nrx"]).all()
    assert (counts["trx_without_shock"] == without["trx"]).all()
    assert counts["nrx"].sum() == without["nrx"].sum() - kept_out.height
    moved = counts.filter(pl.col("nrx") != pl.col("nrx_without_shock"))
    assert moved.height > 0
    assert (moved["brand"] == gap.brand).all() and (moved["region"] == gap.region).all()
    assert (counts["trx"] <= counts["trx_without_shock"]).all()
