"""What to run, in which order: stages of assets and the Dagster runs of each stage.

Dagster runs one PartitionsDefinition per run, so the pipeline runs in stages: the tables with
no time axis, then each partitioned family (every asset sharing one partitions definition) as
one backfill run over the scenario's window (or several, `chunk_days` at a time, to bound
memory), then what depends on them (the answer key). Pure: no database, no execution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from e2i_synth.core.scenario import Scenario
from e2i_synth.pipeline.partitions import (
    DAY_FORMAT,
    cadence,
    days_per_partition,
    live_until,
    partition_range,
)


@dataclass
class Stage:
    name: str
    assets: list[dg.AssetsDefinition]
    partitions: dg.PartitionsDefinition | None = None

    @property
    def keys(self) -> list[dg.AssetKey]:
        return [key for a in self.assets for key in a.keys]


@dataclass(frozen=True)
class PlannedRun:
    """One Dagster run: the assets it materializes (`keys`, none for a checks-only run), the
    partition range it backfills (None: an unpartitioned run), and the assets whose checks it
    runs (`checked`: its own, or a partitioned family's loaded by earlier runs)."""

    stage: int  # 1-based position of its stage in the plan
    stages: int  # how many stages the plan has
    stage_name: str
    keys: tuple[dg.AssetKey, ...]
    span: tuple[str, str] | None = None
    checked: tuple[dg.AssetKey, ...] = ()
    partitions: dg.PartitionsDefinition | None = None

    @property
    def label(self) -> str:
        number = f"[{self.stage}/{self.stages}]"
        earlier = [k for k in self.checked if k not in self.keys]
        checks = f"checks of {', '.join(k.path[-1] for k in earlier)}" if earlier else ""
        if not self.keys:
            # Not the stage's name: a progress reader counts the stage's backfill runs by it.
            return f"{number} {checks}"
        span = f" {self.span[0]}..{self.span[1]}" if self.span else ""
        names = ", ".join(k.path[-1] for k in self.keys)
        return f"{number} {self.stage_name}{span}: {names}" + (f"; {checks}" if checks else "")


def stages(assets: Sequence[dg.AssetsDefinition]) -> list[Stage]:
    """Unpartitioned assets first, then one stage per partitions definition (keyed by the
    definition itself and named by its cadence, so a new cadence needs no change here), then
    the unpartitioned assets that read partitioned ones."""
    by_key = {key: a for a in assets for key in a.keys}
    partitioned = {k for k, a in by_key.items() if a.partitions_def is not None}
    upstream = {k: set(a.asset_deps.get(k, ())) for k, a in by_key.items()}

    def reads_partitioned(key: dg.AssetKey, seen: frozenset = frozenset()) -> bool:
        return any(
            dep in partitioned or (dep in by_key and reads_partitioned(dep, seen | {key}))
            for dep in upstream[key] - seen
        )

    ordered = _upstream_first(assets, upstream)
    first = [a for a in ordered if a.partitions_def is None and not reads_partitioned(a.key)]
    last = [a for a in ordered if a.partitions_def is None and reads_partitioned(a.key)]
    result = [Stage("tables without a time axis", first)]
    families: dict[dg.PartitionsDefinition, Stage] = {}
    for a in assets:
        if a.partitions_def is not None:
            name = f"{cadence(a.partitions_def)} partitions"
            families.setdefault(a.partitions_def, Stage(name, [], a.partitions_def)).assets.append(
                a
            )
    result += list(families.values())
    if last:
        result.append(Stage("tables reading partitioned ones", last))
    return [s for s in result if s.assets]


def _upstream_first(
    assets: Sequence[dg.AssetsDefinition], upstream: dict[dg.AssetKey, set[dg.AssetKey]]
) -> list[dg.AssetsDefinition]:
    """`assets` with every asset after those it reads (otherwise in the given order): one run
    per table must load patient_journeys before treatment_events reads it."""
    done: set[dg.AssetKey] = set()
    ordered: list[dg.AssetsDefinition] = []
    own = {key for a in assets for key in a.keys}
    pending = list(assets)
    while pending:
        ready = next(
            (
                a
                for a in pending
                if all(d in done or d not in own for k in a.keys for d in upstream[k])
            ),
            pending[0],  # a cycle (Dagster refuses those anyway): keep the given order
        )
        pending.remove(ready)
        ordered.append(ready)
        done.update(ready.keys)
    return ordered


def chunks(
    partitions: dg.PartitionsDefinition, first: str, last: str, chunk_days: int | None
) -> list[tuple[str, str]]:
    """[first, last] as runs of about chunk_days days each, or one run."""
    if not chunk_days:
        return [(first, last)]
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    size = max(1, chunk_days // days_per_partition(partitions))
    return [(keys[i], keys[min(i + size, len(keys)) - 1]) for i in range(0, len(keys), size)]


def default_chunk_days(scenario: Scenario) -> int | None:
    """Above scale 20, backfill 90 days per run: the rows of a run stay in the low millions."""
    return 90 if scenario.scale > 20 else None


def plan_runs(
    plan: list[Stage],
    scenario: Scenario,
    chunk_days: int | None = None,
    live_days: int | None = None,
    separate_checks: bool = True,
    with_checks: bool = True,
    table_by_table: bool = False,
) -> list[PlannedRun]:
    """The runs of every stage, in order.

    Tables without a time axis run together (one run: Dagster's fixed cost per run is paid
    once), or one run per table with `table_by_table` (each run in a fresh process above scale
    100, so a process holds one table's memory at a time). A partitioned family runs one
    backfill run per chunk. Its checks run once, over whole tables, after its last chunk
    (checking after every chunk would re-read what is already checked): with
    `separate_checks`, in the next unpartitioned run (the answer key's, which they block),
    because Dagster records a partitioned run's checks once per partition and check, thousands
    of rows for the daily family; otherwise with the last chunk."""
    runs: list[PlannedRun] = []
    pending: list[dg.AssetKey] = []  # partitioned families whose checks have not run yet
    total = len(plan)
    for number, stage in enumerate(plan, 1):
        common = {"stage": number, "stages": total, "stage_name": stage.name}
        if stage.partitions is None:
            groups = [[k] for k in stage.keys] if table_by_table else [stage.keys]
            for keys in groups:
                checked = (*pending, *keys) if with_checks else ()
                runs.append(PlannedRun(keys=tuple(keys), checked=tuple(checked), **common))
                pending = []
            continue
        first, last = partition_range(stage.partitions, scenario)
        if _is_daily(stage):
            last = live_until(scenario, live_days).strftime(DAY_FORMAT)  # the live days
        spans = chunks(stage.partitions, first, last, chunk_days)
        for index, span in enumerate(spans):
            checks_here = with_checks and not separate_checks and index == len(spans) - 1
            runs.append(
                PlannedRun(
                    keys=tuple(stage.keys),
                    span=span,
                    checked=tuple(stage.keys) if checks_here else (),
                    partitions=stage.partitions,
                    **common,
                )
            )
        if with_checks and separate_checks:
            pending += stage.keys
    if pending:  # no unpartitioned stage after the last family: a run of their checks alone
        last_stage = {"stage": total, "stages": total, "stage_name": plan[-1].name}
        runs.append(PlannedRun(keys=(), checked=tuple(pending), **last_stage))
    return runs


def _is_daily(stage: Stage) -> bool:
    """Daily partitions run past end_date up to yesterday: the feature store's live days."""
    return stage.partitions is not None and days_per_partition(stage.partitions) == 1
