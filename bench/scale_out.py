"""Scale-out benchmark: the whole pipeline in one process, and its partitioned tables on the
celery executor with 1 and 2 workers, with where the time goes.

    python -m bench.scale_out                      # scale small, workers 1 and 2
    python -m bench.scale_out --scale 5 --chunk-days 30 --workers 1 2

On a fresh embedded PostgreSQL (temporary folder, deleted after) and a redis-server on a
loopback port (Debian's `redis-server`; needs the `distributed` extra), in one session:

1. `e2i-synth materialize --dry-run`: generation and validation only (nothing written);
2. `e2i-synth materialize`: every table and check in one process (the reference digests);
3. per worker count W: the four partitioned tables emptied, then `python -m
   e2i_synth.pipeline.distributed backfill` through W `dagster-celery` workers (one pool
   process each),
   digests compared with step 2's.

Time per Dagster step comes from the run history (STEP_SUCCESS durations in the instance's
PostgreSQL): asset steps (generate + validate + load) and check steps; a run's wall time minus
its steps' time (per worker) is bookkeeping (run start, events, celery dispatch, the executor's
1 s polling). Load (COPY) = an asset step's time minus the same step's time in the dry run.
Whole-pipeline time with W workers = step 2 - its partitioned runs + step 3's backfill: the
tables without a time axis and the answer key stay in one process (e2i_synth.pipeline.distributed).

Written to bench/out/scale_out.json. Not a test: nothing asserts on speed; digests must match.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "scale_out.json"
CLI = Path(sys.executable).with_name("e2i-synth")


LOADS: list[tuple[str, float, float]] = []  # (command, 1-min load average before, after)


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    # The machine is shared: the load average says how much else ran meanwhile.
    before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    LOADS.append((" ".join(Path(a).name for a in argv[:4]), before, os.getloadavg()[0]))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def _steps(env: dict[str, str], run_ids: set[str] | None = None) -> list[dict]:
    """Per run of the instance: job, wall seconds and each successful step's seconds."""
    code = """
import json, sys
import dagster as dg
from dagster._core.events import DagsterEventType
out = []
with dg.DagsterInstance.get() as inst:
    for run in inst.get_runs():
        stats = inst.get_run_stats(run.run_id)
        steps = {}
        for rec in inst.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS):
            ev = rec.dagster_event
            steps[ev.step_key] = ev.event_specific_data.duration_ms / 1000
        out.append({"run_id": run.run_id, "job": run.job_name, "tags": dict(run.tags),
                    "wall": (stats.end_time or 0) - (stats.start_time or 0), "steps": steps})
json.dump(out, sys.stdout)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    runs = json.loads(done.stdout)
    return [r for r in runs if run_ids is None or r["run_id"] in run_ids]


def _split(runs: list[dict], tables: set[str]) -> dict[str, float]:
    """Seconds in asset steps and in check steps, over the given runs."""
    assets = sum(s for r in runs for k, s in r["steps"].items() if k in tables)
    checks = sum(s for r in runs for k, s in r["steps"].items() if k not in tables)
    return {"asset_steps": round(assets, 2), "check_steps": round(checks, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-days", type=int, default=90, help="days per celery run")
    parser.add_argument("--concurrent-runs", type=int, default=2)
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server: apt-get install -y redis-server")
    sys.path.insert(0, str(ROOT))
    import psycopg
    import yaml

    from e2i_synth.db.embedded import start_embedded, stop_embedded
    from e2i_synth.tables import TABLES
    from e2i_synth_tests.celery_cluster import PARTITIONED, redis_server, workers
    from e2i_synth_tests.pipeline import fingerprints as digests

    tables = set(TABLES)
    result: dict = {"scale": args.scale, "cpus": os.cpu_count(), "chunk_days": args.chunk_days}
    with tempfile.TemporaryDirectory(prefix="e2i-scale-out-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # pgserver runs the server as another user when we are root
        pgdata = work / "pgdata"
        url = start_embedded(pgdata)
        try:
            home = work / "home"
            home.mkdir()
            shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
            env = {**os.environ, "E2I_DATABASE_URL": url, "DAGSTER_HOME": str(home)}
            for name in ("E2I_SCENARIO", "E2I_SCALE", "E2I_DAGSTER_DATABASE_URL"):
                env.pop(name, None)
            common = ["--scale", args.scale, "--live-days", "0"]

            seconds, _ = _run([str(CLI), "materialize", "--dry-run", *common], env, home)
            dry = _steps(env)
            result["dry_run"] = {"wall": round(seconds, 1), **_split(dry, tables)}
            print(f"dry run (generate + validate): {seconds:.1f}s", flush=True)

            seconds, out = _run([str(CLI), "materialize", *common], env, home)
            real = [r for r in _steps(env) if r["run_id"] not in {d["run_id"] for d in dry}]
            rows = int(
                "".join(
                    c
                    for c in next(ln for ln in out.splitlines() if ln.startswith("total"))
                    if c.isdigit()
                )
            )
            part = [r for r in real if "dagster/asset_partition_range_start" in r["tags"]]
            reference = digests(url)
            dry_assets = {k: s for r in dry for k, s in r["steps"].items() if k in tables}
            real_assets = {k: s for r in real for k, s in r["steps"].items() if k in tables}
            result["in_process"] = {
                "rows": rows,
                "wall": round(seconds, 1),
                **_split(real, tables),
                "run_walls": round(sum(r["wall"] for r in real), 2),
                "partitioned_runs_wall": round(sum(r["wall"] for r in part), 2),
                "partitioned": _split(part, tables),
                "load_estimate": round(
                    sum(s - dry_assets.get(k, 0.0) for k, s in real_assets.items()), 2
                ),
                "partitioned_rows": {t: reference[t][0] for t in PARTITIONED},
            }
            print(f"in process: {rows:,} rows in {seconds:.1f}s", flush=True)

            with redis_server(work) as broker:
                config_yaml = home / "celery.yaml"
                _, text = _run(
                    [
                        sys.executable,
                        "-m",
                        "e2i_synth.pipeline.distributed",
                        "config",
                        "--broker",
                        broker,
                    ],
                    env,
                    home,
                )
                config_yaml.write_text(text)
                config = yaml.safe_load(text)["execution"]["config"]
                result["celery"] = []
                for count in args.workers:
                    with psycopg.connect(url) as conn:
                        conn.execute(f"TRUNCATE {', '.join(PARTITIONED)}")
                    names = [f"w{i + 1}" for i in range(count)]
                    with workers(names, config_yaml, config, env, home):
                        report = home / f"report-{count}.json"
                        seconds, _ = _run(
                            [sys.executable, "-m", "e2i_synth.pipeline.distributed", "backfill"]
                            + ["-y", str(config_yaml), "--live-days", "0"]
                            + ["--chunk-days", str(args.chunk_days)]
                            + ["--concurrent-runs", str(args.concurrent_runs)]
                            + ["--report", str(report)],
                            env,
                            home,
                        )
                    runs = json.loads(report.read_text())
                    ids = {r["run_id"] for r in runs}
                    walls = _steps(env, ids)
                    steps = [{"steps": r["step_seconds"]} for r in runs]
                    busy = sum(s for r in runs for s in r["step_seconds"].values())
                    same = digests(url) == reference
                    whole = seconds + result["in_process"]["wall"] - sum(r["wall"] for r in part)
                    entry = {
                        "workers": count,
                        "runs": len(runs),
                        "backfill_wall": round(seconds, 1),
                        "run_walls": round(sum(r["wall"] for r in walls), 2),
                        **_split(steps, tables),
                        "idle_or_bookkeeping": round(seconds * count - busy, 1),
                        "digests_identical": same,
                        "whole_pipeline_wall": round(whole, 1),
                        "whole_rows_per_s": round(rows / whole),
                    }
                    result["celery"].append(entry)
                    print(json.dumps(entry), flush=True)
                    if not same:
                        raise SystemExit("digests differ from the in-process run")
        finally:
            stop_embedded(pgdata)
    result["load_average"] = LOADS
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
