"""Dagster metadata for a loaded table, derived from its model: schema, counts, preview, stats."""

from __future__ import annotations

import dagster as dg
import polars as pl

from e2i_synth.schemas import TableSpec

PREVIEW_ROWS = 5


def markdown_table(frame: pl.DataFrame, max_rows: int = 20) -> str:
    with pl.Config(
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=max_rows,
        tbl_cols=-1,
        fmt_str_lengths=60,
    ):
        return str(frame.head(max_rows))


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=spec.pg_type(name),
                description=spec.descriptions[name],
                constraints=dg.TableColumnConstraints(nullable=spec.nullable[name]),
            )
            for name in spec.columns
        ]
    )


def summary_statistics(frame: pl.DataFrame) -> pl.DataFrame:
    numeric = [c for c, t in frame.schema.items() if t.is_numeric()]
    if not numeric or frame.is_empty():
        return pl.DataFrame()
    return (
        frame.select(numeric)
        .describe()
        .filter(pl.col("statistic").is_in(["null_count", "mean", "std", "min", "max"]))
    )


def output_metadata(spec: TableSpec, frame: pl.DataFrame, rows: int) -> dict[str, object]:
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/table_name": f"public.{spec.name}",
        "dagster/column_schema": column_schema(spec),
        "preview": dg.MetadataValue.md(markdown_table(frame, PREVIEW_ROWS)),
        "summary_statistics": dg.MetadataValue.md(markdown_table(summary_statistics(frame))),
    }
