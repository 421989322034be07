"""The world's patient timelines (e2i_synth.world.timelines): deterministic, internally
consistent, streamed in blocks, and the one source of treatment_events' fills and stops."""

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from e2i_synth.core.scenario import load_scenario
from e2i_synth.tables.activity.treatment_events import generate_treatment_events
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.world import timelines
from e2i_synth.world.timelines import DAYS_SUPPLY, STOP_GRACE_DAYS, patient_timelines


@pytest.fixture(scope="module")
def world() -> dict:
    scenario = load_scenario(scale="full")
    patients = generate_patient_journeys(scenario, generate_hcp_profiles(scenario))
    summary, fills = patient_timelines(scenario, patients)
    return {"scenario": scenario, "patients": patients, "summary": summary, "fills": fills}


def test_same_seed_same_timelines_another_seed_others(world):
    again, fills = patient_timelines(world["scenario"], world["patients"].reverse())
    assert_frame_equal(again, world["summary"])
    assert_frame_equal(fills, world["fills"])
    other = world["scenario"].model_copy(update={"seed": world["scenario"].seed + 1})
    assert not patient_timelines(other, world["patients"])[1].equals(world["fills"])


def test_a_timeline_is_ordered_inside_its_journey(world):
    s = world["summary"].join(
        world["patients"].select("patient_id", "brand", "treatment_initiated", "days_to_treatment"),
        on="patient_id",
    )
    treated = s.filter("treatment_initiated")
    assert s.filter(~pl.col("treatment_initiated"))["first_fill_date"].null_count() == (
        s.height - treated.height
    )
    # Initiation is the first fill.
    expected = pl.col("journey_start_date") + pl.duration(days=pl.col("days_to_treatment"))
    assert (treated["first_fill_date"] == treated.select(expected).to_series()).all()
    stopped = treated.filter(pl.col("stop_date").is_not_null())
    assert stopped.height > 200 and set(stopped["stop_kind"]) == {"switch", "discontinuation"}
    supply = pl.col("brand").replace_strict(DAYS_SUPPLY, return_dtype=pl.Int64)
    ran_out = pl.col("last_fill_date") + pl.duration(days=supply)
    assert stopped.filter(
        (pl.col("stop_date") < stopped.select(ran_out).to_series())
        | (pl.col("stop_date") > pl.col("journey_end_date"))
        | (pl.col("therapy_end_date") != pl.col("stop_date") - pl.duration(days=1))
    ).is_empty()
    # An access shock may deny the last refill; the schedule, and so the stop, stays as it
    # was: the grace counts from the last fill of the schedule.
    denied = {
        patient
        for block in timelines.iter_timelines(world["scenario"], world["patients"])
        for patient in block.patients["patient_id"].gather(block.lost_patient)
    }
    assert denied
    kept_schedule = stopped.filter(~pl.col("patient_id").is_in(denied))
    assert (
        kept_schedule.select((pl.col("stop_date") - ran_out).dt.total_days().max()).item()
        <= STOP_GRACE_DAYS
    )
    # Without a stop, therapy lasts to the journey's end.
    ongoing = treated.filter(pl.col("stop_date").is_null())
    assert (ongoing["therapy_end_date"] == ongoing["journey_end_date"]).all()

    fills = world["fills"].join(world["summary"], on="patient_id")
    assert fills.filter(
        (pl.col("fill_date") < pl.col("first_fill_date"))
        | (pl.col("fill_date") > pl.col("therapy_end_date"))
    ).is_empty()
    counted = world["fills"].group_by("patient_id").len()
    assert counted.join(s, on="patient_id").filter(pl.col("len") != pl.col("fills")).is_empty()


def test_a_higher_stop_hazard_means_more_stops(world):
    treated = world["summary"].filter(pl.col("first_fill_date").is_not_null())
    hazard = treated["stop_hazard"].to_numpy()
    stopped = treated["stop_date"].is_not_null().to_numpy()
    low, high = np.quantile(hazard, [0.25, 0.75])
    assert stopped[hazard >= high].mean() > 1.5 * stopped[hazard <= low].mean()


def test_treatment_events_are_the_timelines_fills_and_stops(world):
    events = generate_treatment_events(world["scenario"], world["patients"])
    fills = events.filter(pl.col("event_type").is_in(["prescription", "refill"])).select(
        "patient_id",
        fill_date="event_date",
        first=pl.col("event_type") == "prescription",
    )
    expected = world["fills"].select("patient_id", "fill_date", first=pl.col("fill_number") == 0)
    assert_frame_equal(
        fills.sort("patient_id", "fill_date"), expected.sort("patient_id", "fill_date")
    )
    stops = events.filter(pl.col("event_type").is_in(["switch", "discontinuation"])).select(
        "patient_id", stop_date="event_date", stop_kind="event_type"
    )
    expected_stops = world["summary"].filter(pl.col("stop_date").is_not_null())
    assert_frame_equal(
        stops.sort("patient_id"), expected_stops.select(stops.columns).sort("patient_id")
    )


def test_a_block_depends_on_its_own_patients_only(world, monkeypatch):
    # What lets every consumer stream the timelines block by block at large scales; and the
    # draws are keyed by patient, so the block size changes nothing.
    monkeypatch.setattr(timelines, "PATIENT_BLOCK", 1_000)
    small_blocks = patient_timelines(world["scenario"], world["patients"])
    assert_frame_equal(small_blocks[0], world["summary"])
    assert_frame_equal(small_blocks[1], world["fills"])
    patients, scenario = world["patients"], world["scenario"]
    blocks = [timelines.timeline_frame(b) for b in timelines.iter_timelines(scenario, patients)]
    assert [b.height for b in blocks] == [1_000, 1_000, 500]
    first_two = [
        timelines.timeline_frame(b)
        for b in timelines.iter_timelines(scenario, patients.head(2_000))
    ]
    assert_frame_equal(first_two[0], blocks[0])
    assert_frame_equal(first_two[1], blocks[1])
