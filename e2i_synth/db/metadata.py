"""Dagster metadata for a loaded table, derived from its model: schema, counts, preview, stats."""

from __future__ import annotations

import dagster as dg
import polars as pl

from e2i_synth.tables import TableSpec

PREVIEW_ROWS = 5
CELL_CHARS = 60  # longer cell texts are cut, with an ellipsis


def markdown_text(text: str) -> str:
    """Text safe inside Dagster's markdown (and a table cell): `<...>` would be read as an HTML
    tag and vanish ("key PRD-<YYYYMMDD>-<n>" showed as "key PRD--"), `|` would end the cell."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def _cell(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):  # 6 decimals, or 6 significant digits when tiny or huge
        fixed = 1e-3 <= abs(value) < 1e12 or value == 0
        text = f"{value:.6f}".rstrip("0").rstrip(".") if fixed else f"{value:.6g}"
    else:
        text = str(value)
    if len(text) > CELL_CHARS:
        text = text[: CELL_CHARS - 1] + "…"
    return markdown_text(text)


def markdown_table(frame: pl.DataFrame, max_rows: int = 20) -> str:
    """A GitHub-flavoured markdown table: a header, a separator and one line per row, however
    wide the frame (polars' own ASCII_MARKDOWN wraps at its table width, which breaks the
    table in the UI), with a last line saying how many rows were left out."""
    if not frame.columns:
        return "(no columns)"
    lines = [
        "| " + " | ".join(markdown_text(c) for c in frame.columns) + " |",
        "|" + "---|" * frame.width,
    ]
    for row in frame.head(max_rows).iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if frame.height > max_rows:
        lines.append(f"\n{frame.height - max_rows:,} more row(s) not shown")
    return "\n".join(lines)


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=spec.pg_type(name),
                description=markdown_text(spec.descriptions[name]),
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
