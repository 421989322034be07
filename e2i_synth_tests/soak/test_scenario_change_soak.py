"""A scenario change killed after each stage's progress line and inside its swap: every table
keeps its previous version each time (the quick test in test_scenario_change.py kills at two
of these moments). Runs only with E2I_SOAK=1, e.g. `make soak`."""

from __future__ import annotations

import pytest

from e2i_synth.db.resource import Database
from e2i_synth_tests.db.test_scenario_change import (
    ENVIRONMENT,
    KILL_POINTS,
    _kill_at_each,
)
from e2i_synth_tests.pipeline import load_short_a

pytestmark = pytest.mark.soak


def test_a_scenario_change_killed_at_every_stage_leaves_the_previous_scenario(
    database: Database, monkeypatch, tmp_path
):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    load_short_a(database)
    _kill_at_each(database, tmp_path, KILL_POINTS)
