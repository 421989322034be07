"""Test helper: materialize assets with their checks through real Dagster, into a test database."""

from __future__ import annotations

import dagster as dg

from e2i_synth.db.resource import Database
from e2i_synth.definitions import build_resources


def run(
    database: Database,
    assets: list,
    checks: list = (),
    scenario_path: str | None = None,
    scale: str | None = "small",
    instance: dg.DagsterInstance | None = None,
    **kwargs,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*assets, *checks],
        resources=build_resources(database, scenario_path=scenario_path, scale=scale),
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kwargs,
    )


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        f"{e.asset_key.to_user_string()}:{e.check_name} {dict(e.metadata)}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
