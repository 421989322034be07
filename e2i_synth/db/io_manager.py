"""The Postgres IO manager: validated frames in with COPY, polars frames out.

handle_output validates against the table's model first (an invalid frame never reaches the
database), then replaces the asset, or exactly its partition's time window, in one transaction.
"""

from collections.abc import Iterator
from datetime import datetime

import dagster as dg
import polars as pl

from e2i_synth.core.frames import FrameStream, batched, frames_of
from e2i_synth.db.active_scenario import MONITORING_WINDOWS, recorded_monitoring_span
from e2i_synth.db.copy import read_table, replace_rows
from e2i_synth.db.metadata import markdown_table, output_metadata
from e2i_synth.db.resource import Database
from e2i_synth.tables import TABLES, FrameValidationError, TableSpec

# A streamed table's frames (a month, a block of patients) are validated this many rows at a
# time: pandera costs about 0.05 s a call whatever the rows, 60 calls for the monthly tables
# of a small run. Bounded, so a large scale holds no more than this many extra rows.
VALIDATE_ROWS = 100_000


def _spec(asset_key: dg.AssetKey) -> TableSpec:
    name = asset_key.path[-1]
    if name not in TABLES:
        raise KeyError(f"asset {asset_key.to_user_string()} has no table model in e2i_synth.tables")
    return TABLES[name]


def _window(
    context: dg.OutputContext | dg.InputContext, spec: TableSpec
) -> tuple[datetime, datetime] | None:
    if spec.partition_column is None or not context.has_asset_partitions:
        return None
    window = context.asset_partitions_time_window
    return window.start, window.end


def _partition_count(context: dg.OutputContext) -> int:
    return len(context.asset_partition_keys) if context.has_asset_partitions else 0


def _validate(spec: TableSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame checked against its model, or a Failure carrying the failure cases."""
    try:
        return spec.validate(frame)
    except FrameValidationError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={
                "table": spec.name,
                "failure_cases": dg.MetadataValue.md(markdown_table(exc.failure_cases)),
                "failure_case_count": exc.failure_cases.height,
            },
        ) from exc


class PostgresIOManager(dg.ConfigurableIOManager):
    database: dg.ResourceDependency[Database]

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | FrameStream) -> None:
        spec = _spec(context.asset_key)
        window = _window(context, spec)
        first: list[pl.DataFrame] = []
        heights: list[int] = []

        def noted() -> Iterator[pl.DataFrame]:
            for frame in frames_of(obj):
                if not heights:
                    heights.append(frame.height)
                yield frame

        def validated() -> Iterator[pl.DataFrame]:
            for batch in batched(noted(), VALIDATE_ROWS):
                checked = _validate(spec, batch)
                if not first:
                    first.append(checked)
                yield checked

        with self.database.connect() as conn:
            rows = replace_rows(conn, spec, validated(), window)
        # The preview and statistics describe the first frame, as when each was validated alone.
        sample = first[0].head(heights[0]) if first else pl.DataFrame(schema=spec.polars_schema)
        metadata = output_metadata(spec, sample, rows)
        if window is not None:  # what this load replaced: the row-count check re-counts it
            metadata["e2i/window_start"] = window[0].isoformat()
            metadata["e2i/window_end"] = window[1].isoformat()
        if _partition_count(context) > 1:
            # Dagster copies a range's metadata into every partition's materialization: the
            # column schema (the asset definition declares it too) would be serialised 1,066
            # times for a small run's feature_values, most of Dagster's work for the table.
            del metadata["dagster/column_schema"]
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        # `columns` in the input's metadata (dg.AssetIn(metadata=...)), as in Dagster's
        # DbIOManager: a consumer reads only what it uses, which bounds memory at scale.
        # `rows: monitoring_windows`: only the rows dated in the scenario's monitoring windows.
        spec = _spec(context.asset_key)
        metadata = context.definition_metadata or {}
        with self.database.connect() as conn:
            if metadata.get("rows") == MONITORING_WINDOWS:
                window = recorded_monitoring_span(conn)
            else:
                window = _window(context, spec)
            return read_table(conn, spec, window, metadata.get("columns"))


class DryRunIOManager(dg.ConfigurableIOManager):
    """Validates frames exactly as PostgresIOManager does, keeps them in memory, writes nothing."""

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | FrameStream) -> None:
        spec = _spec(context.asset_key)
        frame = pl.concat([_validate(spec, f) for f in frames_of(obj)])
        _DRY_RUN_FRAMES[spec.name] = frame
        context.add_output_metadata(output_metadata(spec, frame, frame.height))

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        frame = _DRY_RUN_FRAMES[_spec(context.asset_key).name]
        columns = (context.definition_metadata or {}).get("columns")
        return frame if columns is None else frame.select(columns)


# In-process only: a dry run's stages execute in this process (dg.materialize), one after the
# other, and later stages read what earlier ones produced.
_DRY_RUN_FRAMES: dict[str, pl.DataFrame] = {}


def clear_dry_run() -> None:
    _DRY_RUN_FRAMES.clear()
