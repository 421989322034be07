"""A backfill range's materializations: everything but the column schema, which the asset
definition declares and Dagster would otherwise copy into every partition's event."""

from datetime import UTC, datetime

import dagster as dg

from e2i_synth.db.copy import count_rows
from e2i_synth.db.io_manager import PostgresIOManager
from e2i_synth.pipeline.partitions import MONTHLY
from e2i_synth_tests.db.test_concurrent_loads import MARCH, _in_window

MARCH_AND_APRIL = (MARCH[0], datetime(2025, 5, 1, tzinfo=UTC))


def _load(database, frame, **partitions) -> dict:
    manager = PostgresIOManager(database=database)
    context_args = {"asset_key": dg.AssetKey("triggers"), "asset_partitions_def": MONTHLY}
    with dg.build_output_context(**context_args, **partitions) as context:
        manager.handle_output(context, frame)
        return context.get_logged_metadata()


def test_a_range_load_leaves_the_column_schema_to_the_definition(loaded, frames):
    rows = _in_window(frames["triggers"], MARCH_AND_APRIL)
    metadata = _load(
        loaded,
        rows,
        asset_partition_key_range=dg.PartitionKeyRange("2025-03-01", "2025-04-01"),
    )
    assert "dagster/column_schema" not in metadata
    assert metadata["dagster/row_count"].value == rows.height
    assert {"preview", "summary_statistics", "e2i/window_start"} <= metadata.keys()
    with loaded.connect() as conn:
        assert count_rows(conn, "triggers", MARCH_AND_APRIL, "created_at") == rows.height


def test_a_single_partition_load_keeps_the_column_schema(loaded, frames):
    metadata = _load(loaded, _in_window(frames["triggers"], MARCH), partition_key="2025-03-01")
    assert [c.name for c in metadata["dagster/column_schema"].schema.columns][0] == "trigger_id"
