"""Seconds each asset check takes on the loaded database, and their total per table.

    .venv/bin/python tools/time_checks.py [--repeat 3] [--table NAME]

Each check is invoked directly (no Dagster run around it) against the database the CLI uses
(embedded, or $E2I_DATABASE_URL), with the active scenario; the minimum of --repeat runs is
printed (the machine's other load only adds to a run). Load a scenario first (`e2i-synth
materialize --scale small`). The checks that read the last materialization's metadata
(row_count) get an ephemeral instance: they count the table.
"""

import argparse
import inspect
import time
from collections import defaultdict

import dagster as dg

from e2i_synth.definitions import CHECKS, database_from_env
from e2i_synth.pipeline.resources import ScenarioResource


def _invoke(check: dg.AssetChecksDefinition, resources: dict, instance) -> list[bool]:
    params = inspect.signature(check.op.compute_fn.decorated_fn).parameters
    kwargs = {k: v for k, v in resources.items() if k in params}
    if "context" in params:
        kwargs["context"] = dg.build_asset_check_context(instance=instance)
    out = check(**kwargs)
    results = list(out) if inspect.isgenerator(out) else [out]
    return [r.passed for r in results]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--table", default=None)
    args = parser.parse_args()
    database = database_from_env()
    resources = {"database": database, "scenario": ScenarioResource(database=database)}
    instance = dg.DagsterInstance.ephemeral()
    per_table: dict[str, float] = defaultdict(float)
    for check in CHECKS:
        keys = list(check.check_keys)
        table = keys[0].asset_key.to_user_string()
        if args.table and table != args.table:
            continue
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            passed = _invoke(check, resources, instance)
            times.append(time.perf_counter() - start)
        seconds = min(times)
        per_table[table] += seconds
        names = ",".join(k.name for k in keys)
        print(f"{table:<18} {names:<60} {seconds:8.3f} s  passed={all(passed)}", flush=True)
    print()
    for table, seconds in per_table.items():
        print(f"{table:<18} {seconds:8.3f} s")
    print(f"{'total':<18} {sum(per_table.values()):8.3f} s")


if __name__ == "__main__":
    main()
