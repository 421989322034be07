"""The Postgres IO manager and COPY loader: atomic replace, reruns, failures, validation first."""

from datetime import timedelta

import dagster as dg
import polars as pl
import pytest

from e2i_synth.core.scenario import load_scenario
from e2i_synth.db.active_scenario import MONITORING_WINDOWS
from e2i_synth.db.copy import LoadError, count_rows, read_table, replace_rows
from e2i_synth.db.io_manager import PostgresIOManager
from e2i_synth.tables import TABLES
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys

HCP = TABLES["hcp_profiles"]
PATIENTS = TABLES["patient_journeys"]


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    scenario = load_scenario(scale="small")
    hcps = generate_hcp_profiles(scenario)
    return hcps, generate_patient_journeys(scenario, hcps)


@pytest.fixture
def loaded(database, frames):
    hcps, patients = frames
    with database.connect() as conn:
        replace_rows(conn, HCP, [hcps])
        replace_rows(conn, PATIENTS, [patients])
    return database


def test_round_trip_returns_the_same_typed_frame(loaded, frames):
    hcps, patients = frames
    with loaded.connect() as conn:
        assert read_table(conn, HCP).equals(HCP.validate(hcps).sort("hcp_id"))
        assert read_table(conn, PATIENTS).equals(PATIENTS.validate(patients).sort("patient_id"))


def test_rerun_replaces_rows_without_duplicates(loaded, frames):
    hcps, patients = frames
    with loaded.connect() as conn:
        for _ in range(3):
            assert replace_rows(conn, PATIENTS, [patients]) == patients.height
        assert count_rows(conn, "patient_journeys") == patients.height
        assert read_table(conn, PATIENTS).equals(PATIENTS.validate(patients).sort("patient_id"))


def test_failure_midway_through_copy_leaves_previous_version(loaded, frames):
    _, patients = frames
    changed = patients.with_columns(engagement_score=pl.lit(0.0))

    def chunks():
        yield changed.head(100)
        raise RuntimeError("generator died halfway through the load")

    with loaded.connect() as conn:
        before = read_table(conn, PATIENTS)
        with pytest.raises(RuntimeError, match="halfway"):
            replace_rows(conn, PATIENTS, chunks())
        assert read_table(conn, PATIENTS).equals(before)


def test_database_refusal_rolls_back_and_names_the_table(loaded, frames):
    _, patients = frames
    orphans = patients.with_columns(hcp_id=pl.lit("HCP999999"))
    with loaded.connect() as conn:
        before = read_table(conn, PATIENTS)
        with pytest.raises(LoadError, match="patient_journeys.*rolled back"):
            replace_rows(conn, PATIENTS, [orphans])
        assert read_table(conn, PATIENTS).equals(before)


def test_invalid_frame_never_reaches_the_database(loaded, frames):
    _, patients = frames
    bad = patients.with_columns(disease_severity=pl.lit(42.0))
    manager = PostgresIOManager(database=loaded)
    with loaded.connect() as conn:
        before = read_table(conn, PATIENTS)
    # Entered as a context manager: its cleanup then runs here, not at garbage collection.
    with (
        dg.build_output_context(asset_key=dg.AssetKey("patient_journeys")) as context,
        pytest.raises(dg.Failure, match="disease_severity") as failure,
    ):
        manager.handle_output(context, bad)
    assert failure.value.metadata["failure_case_count"].value == patients.height
    with loaded.connect() as conn:
        assert read_table(conn, PATIENTS).equals(before)


def test_handle_output_adds_metadata_and_load_input_reads_back(database, frames):
    hcps, _ = frames
    manager = PostgresIOManager(database=database)
    with dg.build_output_context(asset_key=dg.AssetKey("hcp_profiles")) as out:
        manager.handle_output(out, hcps)
        metadata = out.get_logged_metadata()
    assert metadata["dagster/row_count"].value == hcps.height
    assert metadata["dagster/table_name"].text == "public.hcp_profiles"
    schema = metadata["dagster/column_schema"].schema
    assert [c.name for c in schema.columns] == HCP.columns
    assert all(c.description for c in schema.columns)
    with dg.build_input_context(asset_key=dg.AssetKey("hcp_profiles")) as context:
        loaded = manager.load_input(context)
    assert loaded.equals(HCP.validate(hcps).sort("hcp_id"))


def test_load_input_reads_only_the_columns_an_input_asks_for(loaded, frames):
    _, patients = frames
    manager = PostgresIOManager(database=loaded)
    wanted = {"columns": ["engagement_score", "treatment_initiated"]}
    with dg.build_input_context(
        asset_key=dg.AssetKey("patient_journeys"), definition_metadata=wanted
    ) as context:
        projected = manager.load_input(context)
    # In model order, with the key (read in key order, so consumers need not re-sort).
    assert projected.columns == ["patient_id", "engagement_score", "treatment_initiated"]
    expected = PATIENTS.validate(patients).sort("patient_id").select(projected.columns)
    assert projected.equals(expected)
    with (
        dg.build_input_context(
            asset_key=dg.AssetKey("patient_journeys"), definition_metadata={"columns": ["nope"]}
        ) as context,
        pytest.raises(KeyError, match="patient_journeys has no column.*nope"),
    ):
        manager.load_input(context)


def test_concurrent_replacements_leave_exactly_one_copy(loaded, frames):
    import threading

    _, patients = frames
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def load() -> None:
        try:
            with loaded.connect() as conn:
                barrier.wait()
                replace_rows(conn, PATIENTS, [patients])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with loaded.connect() as conn:
        assert count_rows(conn, "patient_journeys") == patients.height
        assert read_table(conn, PATIENTS).equals(PATIENTS.validate(patients).sort("patient_id"))


def test_an_input_can_ask_for_the_monitoring_windows_only(small_db):
    # ground_truth's feature_values: the drift answers read nothing outside the windows.
    manager = PostgresIOManager(database=small_db)
    scenario = load_scenario(scale="small")
    w = scenario.monitoring
    wanted = {"columns": ["event_timestamp"], "rows": MONITORING_WINDOWS}
    with dg.build_input_context(
        asset_key=dg.AssetKey("feature_values"), definition_metadata=wanted
    ) as context:
        windows = manager.load_input(context)
    days = windows["event_timestamp"].dt.date()
    assert days.min() == min(w.baseline_start, w.current_start)
    assert days.max() == max(w.baseline_end, w.current_end) - timedelta(days=1)
    with small_db.connect() as conn:
        everything = count_rows(conn, "feature_values")
    assert 0 < windows.height < everything / 2
