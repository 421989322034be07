"""The CLI answers at once: `db url`, `--help` and bad input never import Dagster, scipy or
statsmodels (seconds of imports); only a run that is about to start does."""

import json
import subprocess
import sys

import pytest

HEAVY = ("dagster", "scipy", "statsmodels", "pandera")

# Runs the CLI in a fresh interpreter and prints which heavy modules it imported.
PROBE = """
import contextlib, io, json, sys
import e2i_synth.cli
argv = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = e2i_synth.cli.main(argv)
    except SystemExit as exc:
        code = exc.code
heavy = json.loads(sys.argv[2])
print(json.dumps({"code": code, "imported": [m for m in heavy if m in sys.modules]}))
"""


def _probe(argv: list[str], env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv, code",
    [
        (["db", "url"], 0),
        (["--help"], 0),
        (["db", "--help"], 0),
        (["materialize", "--help"], 0),
        (["db", "nonsense"], 2),
        (["materialize", "--chunk-days", "many"], 2),
        (["materialize", "--scale", "-1"], 2),  # a scenario error, found before any run
        (["materialize", "--scenario", "/nonexistent.yaml"], 2),
    ],
)
def test_cli_answers_without_importing_dagster_scipy_or_statsmodels(argv, code):
    # db url with an explicit URL: no embedded server to start either.
    env = {"PATH": "/usr/bin:/bin", "E2I_DATABASE_URL": "postgresql://u:secret@db.invalid/x"}
    found = _probe(argv, env)
    assert found == {"code": code, "imported": []}
