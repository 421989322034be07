"""Backfills of the partitioned tables on Dagster's celery executor (the `distributed` extra).

Every step (an asset's window load, a check) becomes a celery task that any worker on any
machine may run; the run's orchestration stays in the process that calls `backfill`. Workers
need the same code, `E2I_DATABASE_URL` and the broker; Dagster's run history is shared through
the instance the run hands them (dagster.yaml: PostgreSQL), and the data through PostgreSQL.

The same seeds and windows whatever the executor: a step's rows depend only on the scenario
recorded in the database and its partition window (seeds derive from the scenario seed and the
partition key), never on the process or machine that runs it; e2i_synth_tests/soak/
test_celery.py checks per-table digests against an in-process run.

    python -m e2i_synth.pipeline.distributed config --broker redis://HOST:6379/0 > celery.yaml
    dagster-celery worker start -A dagster_celery.app -y celery.yaml   # on every worker machine
    python -m e2i_synth.pipeline.distributed backfill -y celery.yaml            # on one machine

`backfill` needs the scenario already loaded (`e2i-synth materialize`): it re-runs the
partitioned families (daily feature_values; monthly ml_predictions, triggers, business_metrics)
over the scenario's window, in chunks that run concurrently, each window replaced in one
transaction. The tables without a time axis and the answer key stay with `e2i-synth materialize`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context

import dagster as dg
import yaml

try:
    from celery.exceptions import DuplicateTaskNameWarning
    from dagster_celery import celery_executor
except ImportError:  # the base install: say what to install, not a traceback
    print(
        "e2i_synth.pipeline.distributed needs the `distributed` extra (dagster-celery, redis): "
        "make install-distributed, or pip install -e '.[distributed]'",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

from e2i_synth.definitions import ASSETS, build_resources, defs
from e2i_synth.pipeline.jobs import RETRY
from e2i_synth.pipeline.partitions import (
    DAY_FORMAT,
    cadence,
    live_until,
    partition_range,
    range_tags,
)
from e2i_synth.pipeline.runner.execute import QUIET
from e2i_synth.pipeline.runner.plan import chunks, stages

# Settings for the broker and every worker (`config`: the workers' YAML holds the same ones).
# Acknowledge a task when it ends, not when a worker takes it: a worker killed mid-step (a
# machine lost) leaves its task unacknowledged, and the broker hands it to another worker after
# `visibility_timeout` seconds (redis), which must exceed the longest step or a slow step would
# be run twice meanwhile (harmless, as each window load replaces its window under a lock, but
# wasted). A pool process that dies under a live worker requeues its task at once
# (task_reject_on_worker_lost; the soak test kills whole workers, not this case).
DEFAULT_VISIBILITY_TIMEOUT = 3600

# dagster-celery registers its one task again for every step it submits, and celery warns each
# time (ten lines per step): the same callable, so nothing to act on.
warnings.filterwarnings(
    "ignore", message="Task name 'execute_plan' is already", category=DuplicateTaskNameWarning
)


def celery_settings(visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT) -> dict:
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # a worker takes one step at a time
        # dagster-celery's defaults for these (dict replaced as a whole) plus the timeout.
        "broker_transport_options": {
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
            "visibility_timeout": visibility_timeout,
        },
    }


def executor_config(
    broker: str, backend: str | None = None, visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
) -> dict:
    """The celery executor's config (`execution: config:`), also the workers' `-y` YAML."""
    return {
        "broker": broker,
        # Results in the broker's redis by default: rpc:// would tie them to one client.
        "backend": backend or broker,
        "config_source": celery_settings(visibility_timeout),
    }


PARTITIONED = [s for s in stages(ASSETS) if s.partitions is not None]


def _jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """Per partitioned family, a celery job with its checks and one without (concurrent chunks
    load without checks; the last chunk checks whole tables once the others are in)."""
    jobs = []
    for stage in PARTITIONED:
        selection = dg.AssetSelection.assets(*stage.keys)
        for name, sel in (
            (f"{cadence(stage.partitions)}_backfill_celery", selection),
            (f"{cadence(stage.partitions)}_load_celery", selection.without_checks()),
        ):
            jobs.append(
                dg.define_asset_job(
                    name,
                    selection=sel,
                    executor_def=celery_executor,
                    op_retry_policy=RETRY,
                    description=f"{stage.name} on celery workers (e2i_synth.pipeline.distributed).",
                )
            )
    return jobs


# A code location of its own
# (`dagster-webserver -m e2i_synth.pipeline.distributed -a distributed_defs`):
# the project's definitions plus the celery jobs, so the base install never imports celery.
distributed_defs = dg.Definitions.merge(defs, dg.Definitions(jobs=_jobs()))


def celery_job(name: str) -> dg.JobDefinition:
    """Rebuilt by name in each worker (build_reconstructable_job)."""
    return distributed_defs.resolve_job_def(name)


def _reconstructable(name: str):
    return dg.build_reconstructable_job("e2i_synth.pipeline.distributed", "celery_job", (name,))


@dataclass
class RunReport:
    job: str
    span: tuple[str, str]
    run_id: str
    success: bool
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)  # step key -> duration
    errors: list[str] = field(default_factory=list)


def _run(
    job: str,
    span: tuple[str, str],
    config: dict,
    instance: dg.DagsterInstance,
    scenario_name: str,
    verbose: bool,
) -> RunReport:
    run_config: dict = {"execution": {"config": config}}
    if not verbose:
        run_config.update(QUIET)
    tags = {"e2i/scenario": scenario_name, "e2i/executor": "celery", **range_tags(*span)}
    started = time.perf_counter()
    with dg.execute_job(
        _reconstructable(job), instance=instance, run_config=run_config, tags=tags
    ) as result:
        return RunReport(
            job=job,
            span=span,
            run_id=result.run_id,
            success=result.success,
            seconds=time.perf_counter() - started,
            step_seconds={
                e.step_key: e.event_specific_data.duration_ms / 1000
                for e in result.get_step_success_events()
            },
            errors=[
                f"{e.step_key}: {e.event_specific_data.error.message.strip().splitlines()[0]}"
                for e in result.get_step_failure_events()
            ],
        )


def _run_in_child(
    job: str, span: tuple[str, str], config: dict, scenario_name: str, verbose: bool
) -> RunReport:
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME's, as the parent's
        return _run(job, span, config, instance, scenario_name, verbose)


def backfill(
    config: dict,
    instance: dg.DagsterInstance | None = None,
    live_days: int | None = None,
    chunk_days: int | None = None,
    concurrent_runs: int = 2,
    verbose: bool = False,
    progress=lambda line: None,
) -> list[RunReport]:
    """Every partitioned family over the active scenario's window, on the celery workers.

    Each family's window is cut into chunks of `chunk_days` (one chunk if None); all chunks but
    the last run `concurrent_runs` at a time without checks (each orchestrated by a spawned
    process, with DAGSTER_HOME's instance, when more than one), then the last one with the
    family's checks over whole tables. Stops after a family with a failed run."""
    instance = instance or dg.DagsterInstance.get()
    scenario = build_resources()["scenario"].load()  # the scenario recorded in the database
    reports: list[RunReport] = []
    for stage in PARTITIONED:
        first, last = partition_range(stage.partitions, scenario)
        if isinstance(stage.partitions, dg.DailyPartitionsDefinition):
            last = live_until(scenario, live_days).strftime(DAY_FORMAT)  # as materialize does
        spans = chunks(stage.partitions, first, last, chunk_days)
        family = cadence(stage.partitions)
        progress(f"{stage.name} {first}..{last}: {len(spans)} run(s) on celery")
        load, done = f"{family}_load_celery", []
        if concurrent_runs > 1 and len(spans) > 2:
            # Each run orchestrated in a process of its own: Dagster's run set-up reconfigures
            # Python logging, and two runs in threads of one process deadlocked on its locks.
            with ProcessPoolExecutor(concurrent_runs, mp_context=get_context("spawn")) as pool:
                loads = [
                    pool.submit(_run_in_child, load, s, config, scenario.name, verbose)
                    for s in spans[:-1]
                ]
                done += [f.result() for f in loads]
        else:
            for s in spans[:-1]:
                done.append(_run(load, s, config, instance, scenario.name, verbose))
                if not done[-1].success:
                    break
        if all(r.success for r in done):
            done.append(
                _run(
                    f"{family}_backfill_celery",
                    spans[-1],
                    config,
                    instance,
                    scenario.name,
                    verbose,
                )
            )
        reports += done
        for r in done:
            progress(
                f"    {r.job} {r.span[0]}..{r.span[1]}: "
                f"{'success' if r.success else 'FAILED'} in {r.seconds:.1f}s ({r.run_id})"
            )
        if not all(r.success for r in reports):
            break
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2i_synth.pipeline.distributed", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cfg = sub.add_parser("config", help="print the YAML for the workers and for `backfill -y`")
    cfg.add_argument("--broker", required=True, help="e.g. redis://HOST:6379/0")
    cfg.add_argument("--backend", help="result backend (default: the broker)")
    cfg.add_argument(
        "--visibility-timeout",
        type=int,
        default=DEFAULT_VISIBILITY_TIMEOUT,
        help="seconds before a lost worker's step goes to another (above the longest step)",
    )
    run = sub.add_parser("backfill", help="the partitioned tables on the celery workers")
    run.add_argument("-y", "--config-yaml", required=True, help="the YAML of `config`")
    run.add_argument("--live-days", type=int, help="as `e2i-synth materialize --live-days`")
    run.add_argument("--chunk-days", type=int, help="days per run (default: one run per family)")
    run.add_argument("--concurrent-runs", type=int, default=2, help="chunks in flight at once")
    run.add_argument("--report", help="write every run's figures (steps' seconds) as JSON here")
    run.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "config":
        config = executor_config(args.broker, args.backend, args.visibility_timeout)
        print(yaml.safe_dump({"execution": {"config": config}}, sort_keys=False), end="")
        return 0
    if not os.environ.get("DAGSTER_HOME"):
        parser.error(
            "set DAGSTER_HOME (a folder with the project's dagster.yaml, shared by the workers)"
        )
    with open(args.config_yaml, encoding="utf8") as f:
        config = yaml.safe_load(f)["execution"]["config"]
    started = time.perf_counter()
    reports = backfill(
        config,
        live_days=args.live_days,
        chunk_days=args.chunk_days,
        concurrent_runs=args.concurrent_runs,
        verbose=args.verbose,
        progress=lambda line: print(line, flush=True),
    )
    ok = bool(reports) and all(r.success for r in reports)
    if args.report:
        with open(args.report, "w", encoding="utf8") as f:
            json.dump([asdict(r) for r in reports], f, indent=1)
    for r in reports:
        for error in r.errors:
            print(f"error: {r.run_id} {error}", file=sys.stderr)
    print(f"backfill {'succeeded' if ok else 'FAILED'} in {time.perf_counter() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
