"""Data where analysts want it, on one database materialized at scale small: `e2i-synth
export` round-trips every table (rows, types, the scenario hash in the metadata) in Parquet and
CSV, and examples/reference_agents.py answers with each reference consumer and scores itself."""

import json

import polars as pl
import psycopg
import pyarrow.parquet as pq
import pytest

from e2i_synth.cli import main
from e2i_synth.db.copy import count_rows, read_table
from e2i_synth.tables import TABLES


@pytest.fixture
def materialized_url(small_db) -> str:
    """A database with the default scenario materialized at scale small."""
    return small_db.url


def _active_hash(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT scenario_hash FROM e2i_active_scenario").fetchone()[0]


def test_export_round_trips_every_table(materialized_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("E2I_DATABASE_URL", materialized_url)
    scenario_hash = _active_hash(materialized_url)
    with psycopg.connect(materialized_url) as conn:
        counts = {t: count_rows(conn, t) for t in TABLES}
        originals = {t: read_table(conn, spec) for t, spec in TABLES.items()}

    out = tmp_path / "parquet"
    assert main(["export", str(out)]) == 0
    assert "answer_key/" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenario_hash"] == scenario_hash and manifest["format"] == "parquet"
    assert {f["table"]: f["rows"] for f in manifest["files"]} == counts
    assert (out / "answer_key" / "ground_truth.parquet").exists()
    assert not (out / "data" / "ground_truth.parquet").exists()
    for table, spec in TABLES.items():
        folder = "answer_key" if table == "ground_truth" else "data"
        path = out / folder / f"{table}.parquet"
        metadata = pq.read_schema(path).metadata
        assert metadata[b"e2i.scenario_hash"].decode() == scenario_hash
        assert metadata[b"e2i.table"].decode() == table
        frame = pl.read_parquet(path)
        assert frame.schema == pl.Schema(spec.polars_schema), table
        assert frame.equals(originals[table]), table

    # A non-empty folder is refused unless --force; the files are rewritten then.
    assert main(["export", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(out), "--force"]) == 0
    # Overwritten in the other format, the folder holds that format only, as its manifest says.
    assert main(["export", str(out), "--force", "--format", "csv"]) == 0
    listed = {f["path"] for f in json.loads((out / "manifest.json").read_text())["files"]}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.*") if p.name != "manifest.json"}
    assert on_disk == listed and all(p.endswith(".csv") for p in on_disk)

    # CSV: the manifest carries what Parquet's metadata would (hash, rows, column types);
    # small pages exercise the streaming path (a header once, every page appended).
    csv_out = tmp_path / "csv"
    from e2i_synth.export import export

    with psycopg.connect(materialized_url) as conn:
        manifest = export(conn, csv_out, "csv", page_rows=97)
    assert manifest["scenario_hash"] == scenario_hash
    for item in manifest["files"]:
        spec = TABLES[item["table"]]
        assert item["columns"] == {c: str(t) for c, t in spec.polars_schema.items()}
        frame = pl.read_csv(csv_out / item["path"], infer_schema=False)
        assert frame.height == item["rows"] == counts[item["table"]]
        assert frame.columns == list(spec.polars_schema)
        ids = frame[spec.primary_key[0]] if len(spec.primary_key) == 1 else None
        if ids is not None:
            expected = originals[item["table"]][spec.primary_key[0]].cast(pl.String)
            assert ids.to_list() == expected.to_list()


def test_the_example_agents_answer_and_are_scored(materialized_url, monkeypatch, tmp_path, capsys):
    """examples/reference_agents.py: each reference consumer answers, the answers validate and
    are scored against the active scenario; the causal agent is the reference estimator, so its
    interval score equals the reference's."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "reference_agents.py"
    module_spec = importlib.util.spec_from_file_location("reference_agents", path)
    example = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(example)
    monkeypatch.setenv("E2I_DATABASE_URL", materialized_url)
    out = tmp_path / "answers.json"
    assert example.main(["--out", str(out), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    answers = json.loads(out.read_text())
    assert answers["scenario_hash"] == _active_hash(materialized_url)
    assert {"gaps", "drift", "effects"} <= set(answers)
    families = card["families"]
    assert all(families[f]["scored"] for f in ("gaps", "drift", "effects"))
    assert families["drift"]["vs_reference"] == "same"  # the reference rule, on the same data
    assert families["effects"]["vs_reference"] == "same"
    assert 0 <= families["gaps"]["agent"]["f1"] <= 1
    assert example.main(["--out", str(out)]) == 0
    assert "vs reference" in capsys.readouterr().out
