"""Screenshot of the Dagster UI's global asset lineage graph, for docs/asset-graph.png.

Run by `make screenshot` (DAGSTER_HOME = the project folder, so the UI reads the project's run
history): materializes the pipeline unless every asset already has a materialization, starts
`dagster-webserver` on 127.0.0.1, waits until it serves every asset, takes a headless Chromium
screenshot of the graph page, and stops the webserver (and its code server) again.

    .venv/bin/python tools/screenshot.py [--port 3333] [--out docs/asset-graph.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The global asset lineage graph of Dagster 1.13 ("Lineage" in the UI's navigation).
GRAPH_PATH = "/asset-groups"
# The UI shows a newsletter dialog when its origin starts with http://127.0.0.1 or
# http://localhost, so Chromium reaches the loopback-only webserver under this name instead.
UI_HOST = "dagster-ui.localhost"
# The page fits the graph to the width of its pane and shows full asset cards (status, checks,
# partitions) from zoom 0.75 up: a 2000 px wide window does that for this graph, and 2200 px of
# height hold all of it. Rendered at 0.8 px per CSS px, the PNG is 1600 x 1760.
WINDOW_SIZE = "2000,2200"
SCALE_FACTOR = 0.8
ASSET_KEYS = "query { assetNodes { assetKey { path } } }"


def log(message: str) -> None:
    print(f"screenshot: {message}", flush=True)


def asset_names() -> set[str]:
    from e2i_synth.definitions import ASSETS

    return {key.to_user_string() for a in ASSETS for key in a.keys}


def expanded_groups_query() -> str:
    """?expanded=...: every asset group open, so the graph shows the assets, not just groups
    (the UI's group ids are global@global:<group> in Dagster 1.13)."""
    from e2i_synth.definitions import ASSETS

    groups = sorted({g for a in ASSETS for g in a.group_names_by_key.values()})
    ids = ",".join(f"global@global:{g}" for g in groups)
    return "?" + urllib.parse.urlencode({"expanded": ids}, safe="@:,")


def unmaterialized(names: set[str]) -> set[str]:
    """The assets without any materialization in the Dagster instance of $DAGSTER_HOME."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return {
            name
            for name in names
            if instance.get_latest_materialization_event(dg.AssetKey.from_user_string(name)) is None
        }


def ensure_materialized(mode: str, scale: str) -> None:
    if mode == "never":
        return
    if mode == "auto":
        missing = unmaterialized(asset_names())
        if not missing:
            log("every asset is already materialized")
            return
        log(f"not materialized yet: {', '.join(sorted(missing))}")
    log(f"e2i-synth materialize --scale {scale}")
    subprocess.run([str(BIN / "e2i-synth"), "materialize", "--scale", scale], check=True)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait_until_serving(
    url: str, process: subprocess.Popen, names: set[str], timeout: float, log_file: Path
) -> None:
    """Until the webserver answers GraphQL with every asset (its code location is loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"dagster-webserver exited with {process.returncode}:\n{log_file.read_text()}"
            )
        try:
            nodes = graphql(url, ASSET_KEYS).get("data", {}).get("assetNodes") or []
            if {"/".join(n["assetKey"]["path"]) for n in nodes} >= names:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        time.sleep(1)
    raise SystemExit(
        f"dagster-webserver not serving after {timeout:.0f} s:\n{log_file.read_text()}"
    )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the webserver's own process group, SIGKILL if it does not exit in time."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("chromium not found (Debian: apt-get install -y chromium)")


def take_screenshot(url: str, out: Path, size: str, scale: float, budget_ms: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="e2i-chromium-") as profile:
        cmd = [
            find_chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--host-resolver-rules=MAP {UI_HOST} 127.0.0.1",
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            f"--force-device-scale-factor={scale}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out.resolve()}",
            url,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if result.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise SystemExit(f"chromium failed ({result.returncode}):\n{result.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3333)
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "asset-graph.png")
    parser.add_argument("--path", help=f"UI page to capture (default: {GRAPH_PATH}, all open)")
    parser.add_argument("--size", default=WINDOW_SIZE, help="window WIDTH,HEIGHT in CSS pixels")
    parser.add_argument(
        "--scale-factor", type=float, default=SCALE_FACTOR, help="PNG px per CSS px"
    )
    parser.add_argument("--budget-ms", type=int, default=15000, help="Chromium virtual time")
    parser.add_argument("--materialize", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--timeout", type=float, default=120, help="webserver startup, seconds")
    args = parser.parse_args(argv)

    os.environ.setdefault("DAGSTER_HOME", str(PROJECT))
    ensure_materialized(args.materialize, args.scale)
    if port_in_use(args.port):
        raise SystemExit(f"127.0.0.1:{args.port} is already in use; pass --port")

    url = f"http://127.0.0.1:{args.port}"
    with tempfile.NamedTemporaryFile(prefix="e2i-webserver-", suffix=".log") as log_file:
        log(f"starting dagster-webserver on {url} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-m", "e2i_synth.definitions"]
            + ["-h", "127.0.0.1", "-p", str(args.port)],
            cwd=PROJECT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends the code server too
        )
        try:
            wait_until_serving(url, process, asset_names(), args.timeout, Path(log_file.name))
            page = (
                f"http://{UI_HOST}:{args.port}{args.path or GRAPH_PATH + expanded_groups_query()}"
            )
            log(f"capturing {page}")
            take_screenshot(page, args.out, args.size, args.scale_factor, args.budget_ms)
        finally:
            stop(process)
    log(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
