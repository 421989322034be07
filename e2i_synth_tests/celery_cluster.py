"""A celery cluster on this machine, for the soak test and bench/scale_out.py: Debian's
redis-server on a free loopback port (no persistence, deleted after), `dagster-celery worker`
processes in sessions of their own (so a test can SIGKILL a whole worker, as a lost machine).
Per-table digests are e2i_synth_tests.pipeline.fingerprints.

Each worker's PostgreSQL sessions carry application_name `e2i-<worker name>` (libpq reads
PGAPPNAME), so a test can see in pg_stat_activity which worker is writing what.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
PARTITIONED = ("ml_predictions", "triggers", "business_metrics", "feature_values")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server on 127.0.0.1 for the duration; its URL (database 0)."""
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=open(folder / "redis.log", "w"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Worker:
    """`dagster-celery worker start` with one pool process, in a session of its own."""

    def __init__(self, name: str, config_yaml: Path, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd / f"worker-{name}.log"
        self.proc = subprocess.Popen(
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(config_yaml),
                "-n",
                name,
                "-l",
                "WARNING",
                "--",
                "--concurrency=1",
            ],
            env={**env, "PGAPPNAME": f"e2i-{name}", "PATH": f"{BIN}:{env.get('PATH', '')}"},
            cwd=cwd,
            stdout=open(self.log, "w"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def signal(self, sig: int) -> None:
        """Send `sig` to the worker and its pool process (SIGSTOP freezes both mid-step)."""
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the worker and its pool process at once (a machine lost)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()


def wait_for_workers(config: dict, names: list[str], timeout: float = 120) -> None:
    """Until every named worker answers a ping through the broker."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    app = make_app(CeleryExecutor.for_cli(**config).app_args())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1) or []
        seen = {name.split("@")[0] for reply in replies for name in reply}
        if set(names) <= seen:
            return
        time.sleep(0.5)
    raise TimeoutError(f"celery workers {names} did not answer within {timeout}s")


@contextmanager
def workers(
    names: list[str], config_yaml: Path, config: dict, env: dict[str, str], cwd: Path
) -> Iterator[dict[str, Worker]]:
    started = {name: Worker(name, config_yaml, env, cwd) for name in names}
    try:
        wait_for_workers(config, names)
        yield started
    finally:
        for w in started.values():
            w.stop()
