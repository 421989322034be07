"""Bad input: corrupted generator output is refused by the loader, naming table and field, and
nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from e2i_synth.db.copy import LoadError, read_table
from e2i_synth.db.io_manager import PostgresIOManager
from e2i_synth.pipeline.partitions import MONTHLY
from e2i_synth.tables import TABLES
from e2i_synth_tests.db.test_concurrent_loads import MARCH, _in_window

PATIENTS = TABLES["patient_journeys"]
TRIGGERS = TABLES["triggers"]


FIRST = pl.int_range(pl.len()) == 0


def _first_row(column: str, value: object) -> pl.Expr:
    return pl.when(FIRST).then(value).otherwise(pl.col(column)).alias(column)


# name -> (table, corruption, words the error names besides the table)
CORRUPTIONS: dict[str, tuple[str, Callable[[pl.DataFrame], pl.DataFrame], tuple[str, ...]]] = {
    "null key": (
        "patient_journeys",
        lambda f: f.with_columns(_first_row("patient_id", None)),
        ("patient_id", "not_nullable"),
    ),
    "duplicate key": (
        "patient_journeys",
        lambda f: f.with_columns(_first_row("patient_id", pl.lit(f["patient_id"][1]))),
        ("patient_id", "field_uniqueness"),
    ),
    "out-of-range value": (
        "patient_journeys",
        lambda f: f.with_columns(_first_row("age_at_diagnosis", 200).cast(pl.Int16)),
        ("age_at_diagnosis", "less_than_or_equal_to(95)"),
    ),
    "NaN in a bounded float": (
        "patient_journeys",
        lambda f: f.with_columns(_first_row("disease_severity", float("nan"))),
        ("disease_severity",),
    ),
    "null in a required column": (
        "patient_journeys",
        lambda f: f.with_columns(_first_row("brand", None)),
        ("brand", "not_nullable"),
    ),
    "unknown category": (
        "patient_journeys",
        lambda f: f.with_columns(_first_row("gender", pl.lit("unknown"))),
        ("gender", "isin"),
    ),
    "wrong dtype (wider int)": (
        "patient_journeys",
        lambda f: f.with_columns(pl.col("age_at_diagnosis").cast(pl.Int64)),
        ("age_at_diagnosis", "Int16"),
    ),
    "wrong dtype (number as text)": (
        "patient_journeys",
        lambda f: f.with_columns(pl.col("engagement_score").cast(pl.String)),
        ("engagement_score", "Float64"),
    ),
    "missing column": (
        "patient_journeys",
        lambda f: f.drop("data_split"),
        ("data_split", "column_in_dataframe"),
    ),
    "extra column": (
        "patient_journeys",
        lambda f: f.with_columns(ssn=pl.lit("123-45-6789")),
        ("ssn", "column_in_schema"),
    ),
    "rule across columns": (
        "patient_journeys",
        lambda f: f.with_columns(
            _first_row("journey_end_date", pl.col("journey_start_date") - timedelta(days=1))
        ),
        ("end_after_start",),
    ),
    "infinite change in a nullable float": (
        "business_metrics",
        lambda f: f.with_columns(_first_row("yoy_change", float("inf"))),
        ("yoy_change",),
    ),
    "NaN change in a nullable float": (
        "business_metrics",
        lambda f: f.with_columns(_first_row("mom_change", float("nan"))),
        ("mom_change",),
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_frame_is_refused_naming_table_and_field(loaded, frames, case):
    table, corrupt, words = CORRUPTIONS[case]
    spec = TABLES[table]
    manager = PostgresIOManager(database=loaded)
    with loaded.connect() as conn:
        before = read_table(conn, spec)
    with (
        dg.build_output_context(asset_key=dg.AssetKey(table)) as context,
        pytest.raises(dg.Failure) as failure,
    ):
        manager.handle_output(context, corrupt(frames[table]))
    message = failure.value.description
    assert f"table {table}" in message and "nothing was written" in message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    with loaded.connect() as conn:
        assert read_table(conn, spec).equals(before)


def test_orphan_foreign_key_is_refused_at_commit_naming_table_and_field(loaded, frames):
    manager = PostgresIOManager(database=loaded)
    orphans = frames["patient_journeys"].with_columns(_first_row("hcp_id", pl.lit("HCP999999")))
    with loaded.connect() as conn:
        before = read_table(conn, PATIENTS)
    with (
        dg.build_output_context(asset_key=dg.AssetKey("patient_journeys")) as context,
        pytest.raises(LoadError) as error,
    ):
        manager.handle_output(context, orphans)  # valid frame: only the deferred FK check sees it
    message = str(error.value)
    assert "patient_journeys" in message and "hcp_id" in message and "HCP999999" in message
    assert "rolled back" in message
    with loaded.connect() as conn:
        assert read_table(conn, PATIENTS).equals(before)


def _refused_march_of_triggers(loaded, frame: pl.DataFrame) -> str:
    """The error of loading `frame` as the March 2025 partition of triggers, which must be
    refused with the table as it was."""
    manager = PostgresIOManager(database=loaded)
    with loaded.connect() as conn:
        before = read_table(conn, TRIGGERS)
    with (
        dg.build_output_context(
            asset_key=dg.AssetKey("triggers"),
            partition_key="2025-03-01",
            asset_partitions_def=MONTHLY,
        ) as context,
        pytest.raises(LoadError) as error,
    ):
        manager.handle_output(context, frame)
    with loaded.connect() as conn:
        assert read_table(conn, TRIGGERS).equals(before)
    return str(error.value)


def test_orphan_foreign_key_in_a_partition_window_is_refused_naming_table_and_field(loaded, frames):
    # A window load checks its keys set-based over the window's rows (db/copy.py).
    march = _in_window(frames["triggers"], MARCH).with_columns(
        _first_row("hcp_id", pl.lit("HCP999999"))
    )
    message = _refused_march_of_triggers(loaded, march)
    assert "triggers" in message and "hcp_id" in message and "HCP999999" in message
    assert "rolled back" in message


def test_row_outside_its_partition_window_is_refused(loaded, frames):
    march = _in_window(frames["triggers"], MARCH)
    april = _in_window(frames["triggers"], (MARCH[1], datetime(2025, 5, 1, tzinfo=UTC)))
    # March's load with one April row (new key, so only the window count can object).
    stray = pl.concat([march, april.head(1).with_columns(trigger_id=pl.lit("TRG-20250402-999999"))])
    message = _refused_march_of_triggers(loaded, stray)
    assert "triggers" in message and "partition window" in message
    assert f"copied {stray.height} rows" in message
