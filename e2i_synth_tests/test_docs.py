"""The README's table reference is the one generated from the models."""

from e2i_synth.docs import readme_path, render_readme, tables_markdown
from e2i_synth.tables import TABLES


def test_readme_tables_match_the_models():
    text = readme_path().read_text()
    assert render_readme(text) == text, "README.md is stale: run make docs"


def test_every_column_is_documented():
    block = tables_markdown()
    for spec in TABLES.values():
        assert f"### {spec.name}" in block
        for column in spec.columns:
            assert spec.descriptions[column], f"{spec.name}.{column} has no description"
