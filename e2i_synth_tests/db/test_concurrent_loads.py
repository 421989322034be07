"""Concurrency: loads of the same table or window in two processes leave one complete copy."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg
import pytest

from e2i_synth.db.copy import count_rows, replace_rows
from e2i_synth.tables import TABLES
from e2i_synth_tests.bounded import HANG_LIMIT

TRIGGERS = TABLES["triggers"]


# A loader process: connect, say "ready", wait for "go" on stdin, then replace the table (or the
# window) with the parquet file's rows, in three pieces with a pause after each so the two
# loads' transactions overlap. argv: url, table, parquet, window start, window end ("" = whole).
LOADER = """
import sys, time
from datetime import datetime
import polars as pl
from e2i_synth.db.connection import connect
from e2i_synth.db.copy import replace_rows
from e2i_synth.tables import TABLES

url, table, path, start, end = sys.argv[1:6]
frame = pl.read_parquet(path)
window = (datetime.fromisoformat(start), datetime.fromisoformat(end)) if start else None

def slowly():
    for piece in frame.iter_slices(max(1, -(-frame.height // 3))):
        yield piece
        time.sleep(0.5)

with connect(url) as conn:
    print("ready", flush=True)
    sys.stdin.readline()
    rows = replace_rows(conn, TABLES[table], slowly(), window)
print("loaded", rows, flush=True)
"""

MARCH = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
WAITING = "SELECT count(*) FROM pg_locks WHERE NOT granted"


def _in_window(frame: pl.DataFrame, window: tuple[datetime, datetime]) -> pl.DataFrame:
    column = pl.col(TRIGGERS.partition_column)
    return frame.filter((column >= window[0]) & (column < window[1]))


def _race(
    url: str, tmp_path: Path, loads: list[tuple[pl.DataFrame, tuple[datetime, datetime] | None]]
) -> bool:
    """Run the loads of triggers in concurrent processes, released together; True if one of
    them was seen waiting for a lock the other held."""
    procs = []
    for i, (frame, window) in enumerate(loads):
        path = tmp_path / f"load{i}.parquet"
        frame.write_parquet(path)
        bounds = [w.isoformat() for w in window] if window else ["", ""]
        argv = [sys.executable, "-c", LOADER, url, "triggers", str(path), *bounds]
        procs.append(
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        waited = False
        with psycopg.connect(url, autocommit=True) as mon:
            while any(p.poll() is None for p in procs):
                waited = waited or mon.execute(WAITING).fetchone()[0] > 0
                time.sleep(0.01)
        for proc in procs:
            out, _ = proc.communicate(timeout=HANG_LIMIT)
            assert proc.returncode == 0, f"a concurrent load failed (exit {proc.returncode})"
            assert "loaded" in out
        return waited
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _reasons(url: str, window: tuple[datetime, datetime] | None = None) -> dict[str, int]:
    where = " WHERE created_at >= %s AND created_at < %s" if window else ""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT reason, count(*) FROM triggers" + where + " GROUP BY reason", window or ()
        ).fetchall()
    return dict(rows)


def _version(frame: pl.DataFrame, label: str) -> pl.DataFrame:
    """The same rows, told apart by their reason text."""
    return frame.with_columns(reason=pl.lit(label))


def test_two_processes_loading_the_same_partition_window_leave_one_copy(loaded, frames, tmp_path):
    url = loaded.url
    march = _in_window(frames["triggers"], MARCH)
    assert march.height > 0
    waited = _race(
        url, tmp_path, [(_version(march, "load A"), MARCH), (_version(march, "load B"), MARCH)]
    )
    assert waited, "the two loads did not overlap: the test proves nothing"
    # Exactly one copy of the window, all of it from one of the two loads; the rest untouched.
    in_march = _reasons(url, MARCH)
    assert len(in_march) == 1 and next(iter(in_march.values())) == march.height
    with loaded.connect() as conn:
        assert count_rows(conn, "triggers") == frames["triggers"].height
        assert count_rows(conn, "triggers", MARCH, "created_at") == march.height


def test_two_processes_loading_the_whole_table_leave_one_copy(loaded, frames, tmp_path):
    url = loaded.url
    everything = frames["triggers"]
    waited = _race(
        url,
        tmp_path,
        [(_version(everything, "load A"), None), (_version(everything, "load B"), None)],
    )
    assert waited, "the two loads did not overlap: the test proves nothing"
    reasons = _reasons(url)
    assert len(reasons) == 1 and next(iter(reasons.values())) == everything.height


def test_a_whole_table_load_racing_a_window_load_leaves_one_copy(loaded, frames, tmp_path):
    url = loaded.url
    everything = frames["triggers"]
    march = _in_window(everything, MARCH)
    waited = _race(
        url, tmp_path, [(_version(everything, "whole"), None), (_version(march, "window"), MARCH)]
    )
    assert waited, "the two loads did not overlap: the test proves nothing"
    with loaded.connect() as conn:
        assert count_rows(conn, "triggers") == everything.height
    # Outside March only the whole-table load's rows; inside, one load's complete window.
    in_march = _reasons(url, MARCH)
    assert len(in_march) == 1 and next(iter(in_march.values())) == march.height
    outside = {k: v - in_march.get(k, 0) for k, v in _reasons(url).items()}
    assert {k: v for k, v in outside.items() if v} == {"whole": everything.height - march.height}


def test_a_backfill_and_a_day_inside_it_loaded_at_once_both_succeed(loaded, frames, tmp_path):
    """A backfill of a range (March) and a run of one day inside it (the nightly refresh)
    overlap: both commit, one after the other (one lock per table, not per window), and the
    day holds one complete copy, of whichever load committed last."""
    url = loaded.url
    march = _in_window(frames["triggers"], MARCH)
    busiest = march.group_by(pl.col("created_at").dt.date()).len().sort("len").row(-1)[0]
    start = datetime(busiest.year, busiest.month, busiest.day, tzinfo=UTC)
    one_day = (start, start + timedelta(days=1))
    day = _in_window(march, one_day)
    assert 0 < day.height < march.height
    waited = _race(
        url, tmp_path, [(_version(march, "backfill"), MARCH), (_version(day, "day"), one_day)]
    )
    assert waited, "the two loads did not overlap: the test proves nothing"
    with loaded.connect() as conn:
        assert count_rows(conn, "triggers") == frames["triggers"].height
    in_day = _reasons(url, one_day)
    assert len(in_day) == 1 and next(iter(in_day.values())) == day.height
    rest = {k: v - in_day.get(k, 0) for k, v in _reasons(url, MARCH).items()}
    assert {k: v for k, v in rest.items() if v} == {"backfill": march.height - day.height}


def _until_waiting(url: str, waiters: int) -> None:
    """Until `waiters` lock requests are queued."""
    deadline = time.monotonic() + HANG_LIMIT
    with psycopg.connect(url, autocommit=True) as mon:
        while mon.execute(WAITING).fetchone()[0] < waiters:
            assert time.monotonic() < deadline, "the loads never queued for their locks"
            time.sleep(0.01)


@pytest.mark.parametrize("window", [MARCH, None], ids=["window", "whole"])
def test_a_load_and_a_whole_load_of_its_parent_do_not_deadlock(loaded, frames, window):
    """A load of triggers (a window, or all of it) and a whole-table load of patient_journeys
    (which triggers reference) interleaved at their lock steps, both queued behind a writer of
    hcp_profiles: each checks its keys set-based under SHARE locks on the other tables, so loads
    that took their locks in different orders would deadlock here (PostgreSQL aborts one)."""
    url = loaded.url
    triggers = _in_window(frames["triggers"], MARCH) if window else frames["triggers"]
    patients = frames["patient_journeys"]
    results: dict[str, object] = {}

    def load(name: str, table: str, frame: pl.DataFrame, window) -> None:
        try:
            with psycopg.connect(url) as conn:
                results[name] = replace_rows(conn, TABLES[table], [frame], window)
        except Exception as exc:  # reported by the assertion below
            results[name] = exc

    child = threading.Thread(target=load, args=("triggers", "triggers", triggers, window))
    parent = threading.Thread(target=load, args=("patients", "patient_journeys", patients, None))
    with psycopg.connect(url) as writer:
        writer.execute("LOCK TABLE hcp_profiles IN ROW EXCLUSIVE MODE")
        child.start()
        _until_waiting(url, 1)
        parent.start()
        _until_waiting(url, 2)
        writer.rollback()
    child.join(HANG_LIMIT)
    parent.join(HANG_LIMIT)
    assert results == {"triggers": triggers.height, "patients": patients.height}
    with loaded.connect() as conn:
        assert count_rows(conn, "triggers") == frames["triggers"].height
