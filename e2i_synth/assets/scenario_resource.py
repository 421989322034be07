"""Which scenario a Dagster run materializes."""

import os

import dagster as dg

from e2i_synth.db.active_scenario import get_active_yaml
from e2i_synth.db.resource import Database
from e2i_synth.scenario import Scenario, load_scenario, parse_scenario

SCENARIO_ENV = "E2I_SCENARIO"
SCALE_ENV = "E2I_SCALE"


class ScenarioResource(dg.ConfigurableResource):
    """Scenario YAML given inline (`yaml_text`, as the CLI does), else the file `path` (or
    $E2I_SCENARIO); without either, the scenario the database was last materialized with (so
    one asset can be rebuilt consistently with the others), else the packaged default.
    `scale` (or $E2I_SCALE) overrides the scale."""

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
        if path:
            return load_scenario(path, scale_value)
        with self.database.connect() as conn:
            active = get_active_yaml(conn)
        if active is not None:
            return parse_scenario(active, "active scenario (e2i_active_scenario)", scale_value)
        return load_scenario(None, scale_value)


def _parse_scale(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # a preset name; the scenario validates it
