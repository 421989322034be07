"""Scale benchmark: `e2i-synth materialize --scale S` end to end, time per row and peak memory.

    python -m bench.scale 10 1000        # the issue's comparison (scale 1000 takes ~40 min)
    python -m bench.scale 1 3            # smoke run

For each scale, in one run, on a fresh embedded PostgreSQL (a temporary folder, stopped
afterwards) or, with $E2I_DATABASE_URL, on that database: runs the CLI exactly as a user would
(every table and every check), and samples every 0.5 s the resident memory of the CLI process
and of all its descendant processes (the isolated runs above scale 100) from /proc. PostgreSQL's
own processes are not counted: they belong to the server, which is the same at any scale.

Reports rows (the CLI's total), wall time, microseconds per row and its ratio to the first
scale given, the largest single process and the peak of the process tree's sum. Targets
(issue: speed and scale): per-row time within 1.5 x of the first scale, peak tree memory under
2 GiB. Written to bench/out/scale.json. Linux only (reads /proc). Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "scale.json"
CLI = Path(sys.executable).with_name("e2i-synth")
MEMORY_LIMIT_MB = 2048
PER_ROW_LIMIT = 1.5


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Field 4 of /proc/PID/stat is the parent pid (after the "(comm)" field).
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


class MemorySampler(threading.Thread):
    """Peak RSS of the largest process and of the sum over the process tree under `pid`."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.largest_mb = self.tree_mb = 0.0
        self.stopped = threading.Event()
        self.stage = ""  # the CLI's latest progress line (set by the reader of its output)
        self.largest_during = self.tree_during = ""  # the stage at each peak

    def run(self) -> None:
        while not self.stopped.is_set():
            # Not the server: pgserver's postgres processes are not the CLI's children
            # (it daemonizes), and an external server is on another machine.
            sizes = [_rss_mb(pid) for pid in _descendants(self.pid)]
            if max(sizes, default=0.0) > self.largest_mb:
                self.largest_mb, self.largest_during = max(sizes), self.stage
            if sum(sizes) > self.tree_mb:
                self.tree_mb, self.tree_during = sum(sizes), self.stage
            self.stopped.wait(self.interval)


def run_scale(scale: str, workdir: Path) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("DAGSTER_HOME", None)  # as `e2i-synth materialize` run by hand: ephemeral instance
    home = workdir / f"scale-{scale}"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)  # pgserver runs the server as another user when we are root
    env["E2I_HOME"] = str(home)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLI), "materialize", "--scale", scale],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampler = MemorySampler(proc.pid)
    sampler.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        sampler.stage = line.strip()
        print(f"  [{time.perf_counter() - started:7.1f}s] {line}", end="", flush=True)
    code = proc.wait()
    seconds = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    if not os.environ.get("E2I_DATABASE_URL"):
        subprocess.run([str(CLI), "db", "down"], cwd=home, env=env, check=False)
    total = next((ln for ln in reversed(lines) if ln.startswith("total")), "")
    rows = int(re.sub(r"\D", "", total) or 0)
    return {
        "scale": float(scale),
        "succeeded": code == 0,
        "rows": rows,
        "seconds": round(seconds, 1),
        "us_per_row": round(seconds / rows * 1e6, 2) if rows else None,
        "peak_largest_process_mb": round(sampler.largest_mb),
        "peak_process_tree_mb": round(sampler.tree_mb),
        # The last progress line before each peak: the stage then running.
        "largest_process_peak_after": sampler.largest_during,
        "process_tree_peak_after": sampler.tree_during,
        "runs": (lines[-1].strip() if lines else ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scales", nargs="+", help="scales to run, the first one the reference")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="e2i-scale-") as tmp:
        Path(tmp).chmod(0o755)
        for scale in args.scales:
            print(f"scale {scale}:", flush=True)
            results.append(run_scale(scale, Path(tmp)))
    reference = results[0]["us_per_row"]
    print(
        f"\n{'scale':>7} {'rows':>12} {'seconds':>9} {'us/row':>7} {'ratio':>6} "
        f"{'largest MB':>10} {'tree MB':>8}  result"
    )
    for r in results:
        ratio = r["us_per_row"] / reference if r["us_per_row"] and reference else None
        r["per_row_ratio"] = round(ratio, 2) if ratio else None
        ok = (
            r["succeeded"]
            and ratio is not None
            and ratio <= PER_ROW_LIMIT
            and r["peak_process_tree_mb"] < MEMORY_LIMIT_MB
        )
        r["verdict"] = "PASS" if ok else "MISS"
        print(
            f"{r['scale']:>7g} {r['rows']:>12,} {r['seconds']:>9.1f} {r['us_per_row'] or 0:>7.1f} "
            f"{r['per_row_ratio'] or 0:>6.2f} {r['peak_largest_process_mb']:>10,} "
            f"{r['peak_process_tree_mb']:>8,}  {r['verdict'] if r is not results[0] else 'ref'}"
        )
    print(
        f"targets: per-row time <= {PER_ROW_LIMIT} x scale {args.scales[0]}; "
        f"peak tree memory < {MEMORY_LIMIT_MB} MB"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {OUT.relative_to(ROOT)}")
    return 0 if all(r["succeeded"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
