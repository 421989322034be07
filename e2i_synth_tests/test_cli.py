"""The e2i-synth command line, run against a test database through E2I_DATABASE_URL."""

import hashlib
import shutil

import psycopg
import pytest

from e2i_synth.cli import main
from e2i_synth.core.scenario import parse_scenario
from e2i_synth.db import migrate
from e2i_synth.db.active_scenario import get_active_hash
from e2i_synth.db.copy import count_rows
from e2i_synth.tables import TABLES
from e2i_synth_tests.pipeline import SHORT_SCENARIO


@pytest.fixture
def cli_env(monkeypatch, empty_db_url):
    monkeypatch.setenv("E2I_DATABASE_URL", empty_db_url)
    return empty_db_url


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        present = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
        return {t: count_rows(conn, t) for t in TABLES if t in present}


def test_db_migrate_then_status(cli_env, capsys):
    assert main(["db", "status"]) == 0
    assert "pending" in capsys.readouterr().out
    assert main(["db", "migrate"]) == 0
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert "001_core.sql" in out and "pending" not in out


def test_db_status_flags_an_edited_migration_with_both_checksums(
    cli_env, capsys, monkeypatch, tmp_path
):
    sql = tmp_path / "sql"
    shutil.copytree(migrate.sql_dir() / "migrations", sql / "migrations")
    monkeypatch.setattr(migrate, "sql_dir", lambda: sql)
    assert main(["db", "migrate"]) == 0
    edited = sorted((sql / "migrations").glob("*.sql"))[1]
    before = hashlib.sha256(edited.read_bytes()).hexdigest()
    edited.write_text(edited.read_text() + "\n-- edited after it was applied\n")
    after = hashlib.sha256(edited.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(["db", "status"]) == 1
    out, err = capsys.readouterr()
    flagged = [line for line in out.splitlines() if line.startswith("edited")]
    assert len(flagged) == 1
    assert edited.name in flagged[0] and before in flagged[0] and after in flagged[0]
    assert edited.name in err
    assert sum(line.startswith("applied") for line in out.splitlines()) >= 5


def test_db_url_masks_the_password(monkeypatch, capsys):
    monkeypatch.setenv("E2I_DATABASE_URL", "postgresql://agent:s3cret@db.example:5432/e2i")
    assert main(["db", "url"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "agent:***@db.example" in out


def test_bad_scenario_fails_before_anything_is_written(cli_env, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nbrands: [Remibrutinib, Tylenol]\n")
    assert main(["materialize", "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "brands" in err and "Tylenol" in err and str(bad) in err
    assert _counts(cli_env) == {}  # not even migrated


def test_dry_run_validates_everything_and_writes_nothing(cli_env, capsys):
    assert main(["materialize", "--scale", "small", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "validated" in out and "FAILED" not in out
    assert _counts(cli_env) == {}


def test_materialize_loads_every_table_and_passes_every_check(
    small_db, monkeypatch, capsys, tmp_path
):
    # small_db holds the default scenario at scale small, loaded as the CLI loads it (an empty
    # database through the CLI: test_concurrent_runs.py, db/test_secrets.py).
    cli_env = small_db.url
    monkeypatch.setenv("E2I_DATABASE_URL", cli_env)
    counts = _counts(cli_env)
    assert set(counts) == set(TABLES) and all(counts.values())
    # A second run of the same scenario replaces rows: same counts, no duplicates.
    assert main(["materialize", "--scale", "small"]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and "succeeded" in out
    assert "NOT detectable" not in out  # reported when the scenario was loaded, not on reruns
    assert _counts(cli_env) == counts
    # A different scenario (three months: a short run) says so and, with nobody to answer,
    # writes nothing without --force;
    short = tmp_path / "short.yaml"
    short.write_text(SHORT_SCENARIO)
    assert main(["materialize", "--scenario", str(short)]) == 2
    captured = capsys.readouterr()
    assert "notice: the database holds scenario default (scale 0.1" in captured.out
    changed = next(line for line in captured.out.splitlines() if "settings that differ" in line)
    assert {"name", "start_date", "monitoring"} <= set(changed.split(": ")[1].split(", "))
    assert "use --force" in captured.err
    assert _counts(cli_env) == counts
    # with it, the data is replaced wholesale: 3 months of the 30 months' series.
    assert main(["materialize", "--scenario", str(short), "--force"]) == 0
    assert "causal.true_ate (0.04 per point, 250 patients): NOT" in capsys.readouterr().out
    assert _counts(cli_env)["business_metrics"] == counts["business_metrics"] // 10
    with psycopg.connect(cli_env) as conn:
        hashes = {row[0] for row in conn.execute("SELECT scenario_hash FROM ground_truth")}
        assert hashes == {get_active_hash(conn)} == {parse_scenario(SHORT_SCENARIO).content_hash()}
