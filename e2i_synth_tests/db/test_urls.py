"""postgres:// and postgresql:// URLs both work everywhere: data, migrations, Dagster's storage."""

from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from e2i_synth.cli import main
from e2i_synth.db.connection import URL_ENV, sqlalchemy_url, with_database
from e2i_synth.db.dagster_storage import DAGSTER_URL_ENV
from e2i_synth.db.migrate import migrate
from e2i_synth.db.resource import Database

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres:@/postgres?host=/tmp/pg",
            "postgresql://postgres:@/other?host=/tmp/pg",
        ),
        (
            "postgres://u:p%40ss@db.example:5432/app?sslmode=require",
            "postgres://u:p%40ss@db.example:5432/other?sslmode=require",
        ),
        ("postgres://db.example", "postgres://db.example/other"),
        (
            "postgresql://u@h/app?dbname=app&sslmode=require",
            "postgresql://u@h/other?sslmode=require",
        ),
        ("postgresql://h1:5432,h2:5433/app", "postgresql://h1:5432,h2:5433/other"),
        ("host=/tmp/pg dbname=app user=u", "user=u dbname=other host=/tmp/pg"),
    ],
)
def test_with_database_points_the_same_server_at_another_database(url, expected):
    assert with_database(url, "other") == expected


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "POSTGRES"])
def test_sqlalchemy_url_takes_both_schemes(scheme):
    assert sqlalchemy_url(f"{scheme}://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"


def _postgres_scheme(url: str) -> str:
    assert url.startswith("postgresql://")
    return "postgres://" + url.removeprefix("postgresql://")


def test_postgres_scheme_migrates_connects_and_reports_status(empty_db_url, monkeypatch, capsys):
    url = _postgres_scheme(empty_db_url)
    assert len(migrate(url)) >= 6
    with Database(url=url).connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] in empty_db_url
    monkeypatch.setenv(URL_ENV, url)
    assert main(["db", "status"]) == 0
    assert "pending" not in capsys.readouterr().out


def test_postgres_scheme_with_dagster_home_runs_on_postgres_storage(db_url, monkeypatch, tmp_path):
    """As `make` runs it: DAGSTER_HOME with the project's dagster.yaml, E2I_DATABASE_URL a
    postgres:// URL. Dagster's storage (a database of its own on the same server) must open."""
    url = _postgres_scheme(db_url)
    storage_database = f"{psycopg.conninfo.conninfo_to_dict(db_url)['dbname']}_dagster"
    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    config["storage"]["custom"]["config"]["database"] = storage_database
    config["local_artifact_storage"]["config"]["base_dir"] = str(tmp_path / "artifacts")
    config["compute_logs"]["config"]["base_dir"] = str(tmp_path / "compute_logs")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv(URL_ENV, url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("E2I_HOME", str(tmp_path))
    monkeypatch.delenv(DAGSTER_URL_ENV, raising=False)
    try:
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"

            @dg.asset
            def one() -> int:
                return 1

            assert dg.materialize([one], instance=instance).success
            assert len(instance.get_runs()) == 1
        with psycopg.connect(with_database(db_url, storage_database)) as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{storage_database}" WITH (FORCE)')
