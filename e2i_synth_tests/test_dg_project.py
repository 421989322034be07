"""The project is a `dg` project: `dg check defs` and `dg list defs` load e2i_synth.definitions
from the [tool.dg] section of pyproject.toml, without warnings about the layout."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"


def _dg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DG), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_dg_checks_and_lists_the_definitions():
    checked = _dg("check", "defs")
    assert checked.returncode == 0, checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = _dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr
    # stdout is JSON; warnings (there should be none about the venv) go to stderr
    assert "virtual environment" not in listed.stderr
    found = json.loads(listed.stdout)
    text = json.dumps(found)
    for name in ("feature_values", "daily_refresh", "nightly_refresh", "monthly_close_schedule"):
        assert name in text, name
