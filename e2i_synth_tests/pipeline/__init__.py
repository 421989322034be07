"""Test helper: materialize assets with their checks through real Dagster, into a test database.

Like the CLI, it runs one stage per partitions definition (tables without a time axis, then each
partitioned family over the scenario's whole window, then what reads them). Also a short
scenario (a whole run in seconds), the environment for the CLI in a subprocess, and per-table
fingerprints to compare two runs' tables row for row.
"""

import os
from dataclasses import dataclass

import dagster as dg
import psycopg

from e2i_synth.core.scenario import load_scenario, parse_scenario
from e2i_synth.db.resource import Database
from e2i_synth.definitions import build_resources
from e2i_synth.pipeline.partitions import live_until, partition_range, range_tags
from e2i_synth.pipeline.runner import RunSummary, materialize, stages
from e2i_synth.tables import TABLES


@dataclass
class StagedResult:
    results: list[dg.ExecuteInProcessResult]

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    def get_asset_check_evaluations(self) -> list:
        return [e for r in self.results for e in r.get_asset_check_evaluations()]

    def get_asset_materialization_events(self) -> list:
        return [e for r in self.results for e in r.get_asset_materialization_events()]


def run(
    database: Database,
    assets: list,
    checks: list = (),
    scenario_path: str | None = None,
    scale: str | None = "small",
    instance: dg.DagsterInstance | None = None,
) -> StagedResult:
    resources = build_resources(database, scenario_path=scenario_path, scale=scale)
    scenario = resources["scenario"].load()
    instance = instance or dg.DagsterInstance.ephemeral()
    results = []
    for stage in stages(assets):
        tags = range_tags(*partition_range(stage.partitions, scenario)) if stage.partitions else {}
        result = dg.materialize(
            [*assets, *checks],
            selection=stage.keys,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            tags=tags,
        )
        results.append(result)
        if not result.success:
            break
    return StagedResult(results)


def failed_checks(result: StagedResult) -> list[str]:
    return [
        f"{e.asset_key.to_user_string()}:{e.check_name} {dict(e.metadata)}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]


SHORT_SCENARIO = """\
name: short
scale: 0.1
start_date: 2026-04-01
end_date: 2026-06-30
monitoring: {baseline_start: 2026-04-01, baseline_end: 2026-05-01,
             current_start: 2026-05-01, current_end: 2026-07-01}
"""  # three months: a whole materialization in seconds, every check passing
SHORT_A = SHORT_SCENARIO + "seed: 1\n"  # a seed of its own (tests change it to another one)
SHORT_A_KEY = "short_a"  # its template (conftest Templates), loaded once per session
# Variables that would override the runs' scenario or instance.
RUN_ENVIRONMENT = ("DAGSTER_HOME", "E2I_SCENARIO", "E2I_SCALE")


def fingerprints(url: str) -> dict[str, tuple[int, str]]:
    """Per data table: row count and a hash of its rows in key order."""
    found = {}
    with psycopg.connect(url) as conn:
        for name, spec in TABLES.items():
            query = psycopg.sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY {pk}), '')) "
                "FROM {table} t"
            ).format(
                pk=psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, spec.primary_key)),
                table=psycopg.sql.Identifier(name),
            )
            found[name] = conn.execute(query).fetchone()
    return found


def cli_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "E2I_SCENARIO")}
    return {**env, "E2I_DATABASE_URL": url}


@dataclass
class LoadedRun:
    """What one materialization of a test database did: its summary and its runs' job names."""

    summary: RunSummary
    job_names: set[str]


def small_template_key() -> str:
    """Template key of the small default scenario: with the day it is caught up to (feature
    values are loaded up to yesterday), so a session running past midnight loads it again."""
    return f"small_{live_until(load_scenario(scale='small')):%Y%m%d}"


def load_small(database: Database) -> LoadedRun:
    """The default scenario at scale small into the database, as `e2i-synth materialize` runs
    it (this process, every table and check); asserts that it succeeded."""
    with dg.DagsterInstance.ephemeral() as instance:
        summary = materialize(load_scenario(scale="small"), database, run_instance=instance)
        assert summary.success, summary.render()
        names = {instance.get_run_by_id(run_id).job_name for run_id in summary.run_ids}
    return LoadedRun(summary, names)


def load_short_a(database: Database) -> None:
    """SHORT_A into the database as `e2i-synth materialize` runs it (this process, every table
    and check, an ephemeral instance); asserts that it succeeded."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        for name in RUN_ENVIRONMENT:
            patch.delenv(name, raising=False)
        summary = materialize(parse_scenario(SHORT_A), database)
        assert summary.success, summary.render()
