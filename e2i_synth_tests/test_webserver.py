"""The real Dagster webserver on a materialized database: what the UI shows, through its GraphQL.

The pipeline is materialized into a fresh test database with its run history in a Dagster
instance whose storage is a database of its own on the test server (a copy of the project's
dagster.yaml naming it); then `dagster-webserver` is started on that instance and asked over
GraphQL for every asset, every check, both schedules and the outcome of the latest runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from e2i_synth.core.scenario import load_scenario
from e2i_synth.db.connection import URL_ENV
from e2i_synth.db.dagster_storage import DAGSTER_URL_ENV
from e2i_synth.db.resource import Database
from e2i_synth.definitions import ASSETS, CHECKS
from e2i_synth.pipeline.runner import RunSummary, materialize

PROJECT = Path(__file__).resolve().parents[1]
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
STARTUP_TIMEOUT = 90.0
REQUEST_TIMEOUT = 60.0


@dataclass
class Webserver:
    url: str
    summary: RunSummary

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            payload = json.load(response)
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dagster_home(folder: Path, storage_database: str) -> Path:
    """A copy of the project's dagster.yaml with run storage in `storage_database` and the
    artifacts and compute logs under `folder`."""
    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    config["storage"]["custom"]["config"]["database"] = storage_database
    config["local_artifact_storage"]["config"]["base_dir"] = str(folder / "artifacts")
    config["compute_logs"]["config"]["base_dir"] = str(folder / "compute_logs")
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not up after {STARTUP_TIMEOUT:.0f} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the webserver's process group (it and its code server), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def webserver(db_url: str, monkeypatch, tmp_path: Path) -> Iterator[Webserver]:
    storage_database = f"{db_url.partition('?')[0].rsplit('/', 1)[1]}_dagster"
    home = _dagster_home(tmp_path, storage_database)
    env = {URL_ENV: db_url, "DAGSTER_HOME": str(home), "E2I_HOME": str(home)}
    monkeypatch.delenv(DAGSTER_URL_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    process = None
    try:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / "webserver.log"
        child_env = {k: v for k, v in os.environ.items() if k != DAGSTER_URL_ENV} | env
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # The webserver starts (seconds of imports in its processes) while the pipeline
            # runs here; the instance, made first, has created its storage's tables, so the two
            # processes do not race to create them.
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(WEBSERVER), "-m", "e2i_synth.definitions"]
                    + ["-h", "127.0.0.1", "-p", str(port)],
                    cwd=home,
                    env=child_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group, so the finalizer ends it all
                )
            summary = materialize(
                load_scenario(scale="small"), Database(url=db_url), run_instance=instance
            )
        assert summary.success, summary.render()
        _wait_until_up(url, process, log)
        yield Webserver(url=url, summary=summary)
    finally:
        if process is not None:
            _stop(process)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{storage_database}" WITH (FORCE)')


ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    assetMaterializations(limit: 1) { runId }
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks {
          name
          executionForLatestMaterialization { runId status evaluation { severity } }
        }
      }
    }
  }
}
"""

SCHEDULES = """
query Schedules {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name schedules { name pipelineName } }
    }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status }
  }
}
"""


def test_webserver_shows_every_asset_check_schedule_and_successful_runs(webserver: Webserver):
    nodes = {
        "/".join(node["assetKey"]["path"]): node
        for node in webserver.graphql(ASSET_NODES)["assetNodes"]
    }
    expected_assets = {key.to_user_string() for a in ASSETS for key in a.keys}
    assert set(nodes) == expected_assets

    # Every check, under its asset, and its execution for the latest materialization passed,
    # or (the answer key's recovery checks, at this small scale) failed as a warning only.
    shown_checks: dict[tuple[str, str], dict | None] = {}
    for asset, node in nodes.items():
        assert node["assetChecksOrError"]["__typename"] == "AssetChecks", node
        for check in node["assetChecksOrError"]["checks"]:
            shown_checks[(asset, check["name"])] = check["executionForLatestMaterialization"]
    expected_checks = {
        (key.asset_key.to_user_string(), key.name) for c in CHECKS for key in c.check_keys
    }
    assert set(shown_checks) == expected_checks
    not_passed = {
        f"{asset}:{name}": execution
        for (asset, name), execution in shown_checks.items()
        if not execution
        or (
            execution["status"] != "SUCCEEDED"
            and (execution["evaluation"] or {}).get("severity") != "WARN"
        )
    }
    assert not not_passed, not_passed

    # The latest materialization of every asset comes from one of our runs, which succeeded.
    run_ids = {}
    for asset, node in nodes.items():
        assert node["assetMaterializations"], f"{asset} never materialized"
        run_ids[asset] = node["assetMaterializations"][0]["runId"]
        assert run_ids[asset] in webserver.summary.run_ids, asset
    for run_id in set(run_ids.values()):
        run = webserver.graphql(RUN, {"runId": run_id})["runOrError"]
        assert run == {"__typename": "Run", "runId": run_id, "status": "SUCCESS"}

    # Both schedules, on the jobs they launch.
    repositories = webserver.graphql(SCHEDULES)["repositoriesOrError"]
    assert repositories["__typename"] == "RepositoryConnection", repositories
    schedules = {
        s["name"]: s["pipelineName"] for r in repositories["nodes"] for s in r["schedules"]
    }
    assert schedules == {
        "nightly_refresh": "daily_refresh",
        "monthly_close_schedule": "monthly_close",
    }
