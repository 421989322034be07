"""Which scenario a Dagster run materializes."""

import os

import dagster as dg

from e2i_synth.core.scenario import Scenario, load_scenario, parse_scenario
from e2i_synth.db.active_scenario import get_active_hash, get_active_yaml
from e2i_synth.db.resource import Database

SCENARIO_ENV = "E2I_SCENARIO"
SCALE_ENV = "E2I_SCALE"


class ScenarioResource(dg.ConfigurableResource):
    """Scenario YAML given inline (`yaml_text`, as the CLI does), else the file `path` (or
    $E2I_SCENARIO); without either, the scenario the database was last materialized with (so
    one asset can be rebuilt consistently with the others), else the packaged default.
    `scale` (or $E2I_SCALE) overrides the scale.

    A run outside the CLI (the UI, `dagster asset materialize`, a schedule) whose scenario
    differs from the one the database holds is refused before anything is generated: changing
    the scenario rewrites every table, which only `e2i-synth materialize` does atomically (it
    loads into staging and swaps; db/active_scenario.py). Loading one table of another scenario
    here would mix two scenarios in the database."""

    database: Database
    path: str | None = None
    scale: str | None = None
    yaml_text: str | None = None

    def load(self) -> Scenario:
        path = self.path or os.environ.get(SCENARIO_ENV)
        scale = self.scale or os.environ.get(SCALE_ENV)
        scale_value = _parse_scale(scale) if scale else None
        if self.yaml_text:
            return parse_scenario(self.yaml_text, "scenario", scale_value)
        with self.database.connect() as conn:
            active, active_hash = get_active_yaml(conn), get_active_hash(conn)
        if path:
            scenario = load_scenario(path, scale_value)
        elif active is not None:
            where = "active scenario (e2i_active_scenario)"
            scenario = parse_scenario(active, where, scale_value)
        else:
            scenario = load_scenario(None, scale_value)
        overridden = path or scale_value is not None  # else it is the database's own scenario
        if overridden and active_hash is not None and scenario.content_hash() != active_hash:
            raise dg.Failure(
                description=(
                    f"refused: this run's scenario ({_source(path, scale)}) differs from the one "
                    "the database holds, and a scenario change replaces every table. Run "
                    "`e2i-synth materialize --scenario FILE [--scale S]`, which loads it aside "
                    "and swaps it in atomically; or unset E2I_SCENARIO / E2I_SCALE to rebuild "
                    "with the database's scenario."
                )
            )
        return scenario


def _source(path: str | None, scale: str | None) -> str:
    parts = ([f"file {path}"] if path else []) + ([f"scale {scale}"] if scale else [])
    return ", ".join(parts)


def _parse_scale(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # a preset name; the scenario validates it
