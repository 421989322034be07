"""Metadata that renders in Dagster's UI: markdown tables with one line per row however wide
the frame, and descriptions whose `<...>` survive (the UI reads them as HTML tags)."""

import re
from datetime import date

import polars as pl

from e2i_synth.db.metadata import column_schema, markdown_table, output_metadata
from e2i_synth.tables import TABLES

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _parse(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a markdown table; fails unless every line is a whole table row."""
    lines = markdown.split("\n")
    cells = []
    for line in lines:
        assert line.startswith("| ") or line.startswith("|---"), line
        assert line.endswith("|"), line
        cells.append([c.strip() for c in UNESCAPED_PIPE.split(line)[1:-1]])
    header, separator, *rows = cells
    assert all(c == "---" for c in separator) and len(separator) == len(header)
    assert all(len(row) == len(header) for row in rows)
    return header, rows


def test_a_wide_frame_renders_one_markdown_line_per_row():
    wide = pl.DataFrame(
        {
            **{f"a_rather_long_column_name_{i}": [f"value {i} " * 5, None] for i in range(12)},
            "pipe_and_tag": ["a|b <brand>", "x\ny"],
            "number": [0.123456789, 1234567.0],
            "day": [date(2026, 6, 30), date(2026, 7, 1)],
        }
    )
    markdown = markdown_table(wide)
    assert max(map(len, markdown.split("\n"))) > 400  # wider than any terminal table
    header, rows = _parse(markdown)
    assert header == wide.columns
    assert len(rows) == wide.height
    assert rows[0][12] == "a\\|b &lt;brand&gt;" and rows[1][12] == "x y"
    assert rows[0][13:] == ["0.123457", "2026-06-30"]
    assert rows[1][0] == "null" and rows[1][13] == "1234567"


def test_long_frames_say_how_many_rows_are_left_out():
    markdown = markdown_table(pl.DataFrame({"n": range(30)}), max_rows=5)
    table, note = markdown.split("\n\n")
    assert len(_parse(table)[1]) == 5 and note == "25 more row(s) not shown"


def test_preview_summary_and_column_descriptions_render():
    spec = TABLES["ml_predictions"]
    frame = pl.DataFrame({c: pl.Series([], dtype=t) for c, t in spec.polars_schema.items()})
    metadata = output_metadata(spec, frame, 0)
    header, _ = _parse(metadata["preview"].value)
    assert header == spec.columns
    descriptions = {c.name: c.description for c in column_schema(spec).columns}
    assert "<" not in "".join(descriptions.values())
    assert descriptions["prediction_id"].startswith("key PRD-&lt;YYYYMMDD&gt;-&lt;n&gt;")
