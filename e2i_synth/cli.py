"""e2i-synth: the command line. `db ...` manages the database, `materialize` runs the pipeline."""

import argparse
import os
import sys
import time

from e2i_synth.core.scenario import ScenarioError, check_window, load_scenario, parse_scenario
from e2i_synth.db import embedded
from e2i_synth.db.connection import URL_ENV, DatabaseUnavailable
from e2i_synth.db.migrate import MigrationError, status


class UsageError(ValueError):
    """Arguments or environment that cannot work together; refused before anything runs."""


def _database():
    """For `db` commands: no Dagster (nor scipy, statsmodels) import, so they answer at once."""
    from e2i_synth.db.connection import DatabaseTarget

    return DatabaseTarget()


def _resource():
    """The Dagster resource for a run: imports Dagster, only once a run is about to start."""
    from e2i_synth.definitions import database_from_env

    return database_from_env()


def cmd_db(args: argparse.Namespace) -> int:
    db = _database()
    if args.action == "up":
        if os.environ.get(URL_ENV):
            print(f"using {db.masked_url()} ({URL_ENV}); no embedded server to start")
        else:
            print(f"embedded PostgreSQL running: {db.masked_url()}")
        return 0
    if args.action == "down":
        stopped = embedded.stop_embedded(embedded.data_dir())
        print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
        return 0
    if args.action == "url":
        print(db.url_in_use() if args.show_password else db.masked_url())
        return 0
    if args.action == "migrate":
        applied = db.migrate()
        for m in applied:
            print(f"applied {m.path.name}")
        print(f"{len(applied)} migration(s) applied; database is up to date")
        return 0
    if args.action == "status":
        with db.connect() as conn:
            rows = status(conn)
        for row in rows:
            print(row.describe())
        edited = [row.migration.path.name for row in rows if row.state == "edited"]
        if edited:
            print(f"error: edited after they were applied: {', '.join(edited)}", file=sys.stderr)
            return 1
        return 0
    if args.action == "reset":
        return _reset(args, db)
    raise AssertionError(args.action)


def _reset(args: argparse.Namespace, db) -> int:
    from e2i_synth.db import reset

    started = time.perf_counter()
    if os.environ.get(URL_ENV):
        if not args.yes:
            raise UsageError(
                f"db reset on {db.masked_url()} ({URL_ENV}) drops e2i-synth's tables there: "
                "run it again with --yes to do so"
            )
        report = reset.reset_url(db.url_in_use())
    else:
        pgdata = embedded.data_dir()
        if not args.yes and not _confirm(
            f"db reset deletes {pgdata} (every table, the answer key and Dagster's run "
            "history) and starts an empty embedded PostgreSQL. Type yes to go on: "
        ):
            print("db reset: nothing done", file=sys.stderr)
            return 2
        report = reset.reset_embedded()
    for item in report.dropped:
        print(f"dropped {item}")
    elapsed = time.perf_counter() - started
    print(
        f"reset {report.target}: {len(report.dropped)} {report.unit} dropped, "
        f"{report.applied} migration(s) applied in {elapsed:.1f}s; "
        "`e2i-synth materialize` loads the data again"
    )
    return 0


def _confirm(prompt: str, flag: str = "--yes", what: str = "db reset") -> bool:
    """True when the user types yes; refuses (UsageError) when nobody can answer."""
    if not sys.stdin.isatty():
        raise UsageError(f"{what} asks for confirmation, but stdin is not a terminal: use {flag}")
    return input(prompt).strip().lower() == "yes"


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of days >= 0, got {text!r}")
    return value


def cmd_materialize(args: argparse.Namespace) -> int:
    _check_materialize_args(args)
    scenario = load_scenario(args.scenario, args.scale)  # fails here, before anything runs
    # Its days must exist as Dagster partitions today.
    check_window(scenario, source=args.scenario or "default scenario")
    from e2i_synth.pipeline import runner  # Dagster, scipy, statsmodels: seconds, after the checks

    db = _resource()
    target = "dry run: nothing is written" if args.dry_run else db.masked_url()
    print(f"scenario {scenario.name} (scale {scenario.scale:g}, seed {scenario.seed}) -> {target}")
    active = None if args.dry_run else _recorded_yaml(db)
    held = _parsed(active)
    rerun = held is not None and held.content_hash() == scenario.content_hash()
    if active is not None and not rerun:
        if not _confirm_scenario_change(active, held, scenario, args.force):
            print("nothing was written")
            return 2
    if not rerun:  # a rerun in place: its plants were reported when it was loaded
        _report_weak_plants(scenario)
    started = time.perf_counter()
    summary = runner.materialize(
        scenario,
        db,
        dry_run=args.dry_run,
        verbose=args.verbose,
        chunk_days=args.chunk_days,
        parallel=args.parallel,
        isolate=args.isolate,
        live_days=args.live_days,
        progress=lambda line: print(line, flush=True),
    )
    print(summary.render())
    elapsed = time.perf_counter() - started
    verdict = "succeeded" if summary.success else "FAILED"
    runs, processes = len(summary.run_ids), len(summary.processes)
    where = "this process" if processes == 1 else f"{processes} processes"
    print(f"{verdict} in {elapsed:.1f}s ({runs} Dagster runs in {where})")
    return 0 if summary.success else 1


def _recorded_yaml(db) -> str | None:
    """The scenario the database holds, as recorded (None before a first load)."""
    from e2i_synth.db.active_scenario import get_active_yaml

    with db.connect() as conn:
        return get_active_yaml(conn)


def _parsed(recorded: str | None):
    """The recorded scenario, or None (nothing recorded, or recorded by another version)."""
    if recorded is None:
        return None
    try:
        return parse_scenario(recorded, "recorded scenario")
    except ScenarioError:
        return None


def _confirm_scenario_change(active: str, old, scenario, force: bool) -> bool:
    """A run that would replace another scenario's data (`active`, as recorded; `old`, parsed
    when this version can) says so first, and goes on only with --force or a typed yes. (The
    replacement itself is atomic: one swap at the end.)"""
    import yaml

    held = yaml.safe_load(active) or {}
    print(
        f"notice: the database holds scenario {held.get('name')!s:.40} (scale "
        f"{held.get('scale')}, seed {held.get('seed')}); this run replaces every table with "
        f"{scenario.name} (scale {scenario.scale:g}, seed {scenario.seed}). The old data stays "
        "until the new one has passed its checks, then both swap in one transaction."
    )
    if old is not None:  # same name, scale and seed is still a change: say which settings
        before, now = old.hash_payload(), scenario.hash_payload()
        changed = [k for k in dict.fromkeys([*before, *now]) if before.get(k) != now.get(k)]
        print(f"settings that differ: {', '.join(changed)}")
    if force:
        return True
    return _confirm("replace it? type yes: ", flag="--force", what="a scenario change")


def _report_weak_plants(scenario) -> None:
    """Plants the scenario's size cannot carry are run anyway, and said so up front."""
    from e2i_synth.tables.answer_key.detectability import detectability

    for plant in detectability(scenario):
        if not plant.detectable:
            print(f"note: {plant.describe()}; ground_truth records detectable: false")


def cmd_score(args: argparse.Namespace) -> int:
    """Score an answers file against the active scenario: 0 scored, 2 bad input or refused."""
    import json

    from e2i_synth.tables.answer_key.answers import AnswersError, load_answers
    from e2i_synth.tables.answer_key.scorecard import render, score_active
    from e2i_synth.tables.answer_key.scoring import ScoreRefused

    try:
        answers = load_answers(args.answers)
        with _database().connect() as conn:
            card = score_active(conn, answers)
    except (AnswersError, ScoreRefused) as exc:
        if args.json:
            print(json.dumps({"scored": False, "exit_code": 2, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(card, indent=2, sort_keys=True) if args.json else render(card))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Every table of the active scenario to files: data/, answer_key/ and manifest.json."""
    from pathlib import Path

    from e2i_synth.export import ExportError, export

    started = time.perf_counter()
    try:
        with _database().connect() as conn:
            manifest = export(
                conn,
                Path(args.dir),
                args.format,
                force=args.force,
                progress=lambda line: print(line, flush=True),
            )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = sum(f["rows"] for f in manifest["files"])
    print(
        f"exported {len(manifest['files'])} tables ({rows} rows) of scenario "
        f"{manifest['scenario']} ({manifest['scenario_hash'][:12]}) to {args.dir} in "
        f"{time.perf_counter() - started:.1f}s; the answer key is in answer_key/, "
        "apart from data/"
    )
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List the bundled scenarios (the difficulty ladder) with what each tests."""
    import textwrap

    from e2i_synth.scenarios import bundled

    for item in bundled():
        if args.hash:
            scenario = load_scenario(item.path, args.scale)
            print(f"{item.name:<15} {scenario.content_hash()}  {item.path}")
            continue
        print(f"{item.name}  ({item.path})")
        print(textwrap.indent(textwrap.fill(item.description, 92), "    "))
    return 0


def _check_materialize_args(args: argparse.Namespace) -> None:
    home = os.environ.get("DAGSTER_HOME")
    if args.parallel and args.dry_run:
        raise UsageError("--parallel and --dry-run do not go together (a dry run writes nothing)")
    if args.parallel and not home:
        raise UsageError(
            "--parallel needs DAGSTER_HOME (a persistent Dagster instance whose run storage the "
            "step processes share): run it through make, or export DAGSTER_HOME=$PWD"
        )
    if home and not (os.path.isabs(home) and os.path.isdir(home)):
        raise UsageError(f"DAGSTER_HOME={home[:200]!r} must be an absolute path to a folder")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:50]!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of days")
    return value


def _scale(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


DB_ACTIONS = (
    (
        "up",
        "start the embedded server (a no-op with $E2I_DATABASE_URL)",
        "Start the embedded PostgreSQL (data in .e2i/pgdata) and print its URL; it keeps "
        "running for later commands until `db down`. With $E2I_DATABASE_URL: nothing to start.",
    ),
    (
        "down",
        "stop the embedded server",
        "Stop the embedded PostgreSQL; its data stays in .e2i/pgdata.",
    ),
    (
        "url",
        "print the URL in use (password masked)",
        "Print the database URL every command uses: $E2I_DATABASE_URL, else the embedded "
        "server's (started if needed). The password is masked unless --show-password.",
    ),
    (
        "migrate",
        "apply pending migrations (sql/migrations)",
        "Apply the migrations of sql/migrations not yet applied, each in its own transaction, "
        "under an advisory lock; applied ones are never re-run (an edited one is refused).",
    ),
    (
        "status",
        "list applied, pending and edited migrations",
        "List each migration as applied, pending or edited (changed after it was applied; "
        "exit code 1).",
    ),
    (
        "reset",
        "drop the project's data and start again from empty, migrated tables",
        "Back to an empty, migrated project database. Embedded server: stop it and delete "
        ".e2i/pgdata (the data and Dagster's run history) and .e2i/dagster, then start and "
        "migrate; asks for confirmation unless --yes. $E2I_DATABASE_URL: refused unless --yes; "
        "then drops only the tables and functions the migrations create (in one transaction, "
        "no CASCADE: an object of yours depending on them makes it drop nothing) and migrates "
        "again. Other tables and databases (Dagster's e2i_dagster) and the roles e2i_reader / "
        "e2i_scorer are kept. Run `e2i-synth materialize` afterwards to load data.",
    ),
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("e2i-synth")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2i-synth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"e2i-synth {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser(
        "db",
        help="manage the database (embedded unless $E2I_DATABASE_URL)",
        description="Manage the project database: the embedded PostgreSQL (data in "
        ".e2i/pgdata, started on first use) unless $E2I_DATABASE_URL names one. "
        "`e2i-synth db ACTION --help` says more about each action.",
    )
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text, description in DB_ACTIONS:
        action = actions.add_parser(name, help=help_text, description=description)
        action.set_defaults(func=cmd_db)
        if name == "url":
            action.add_argument("--show-password", action="store_true", help="do not mask it")
        if name == "reset":
            action.add_argument(
                "--yes",
                "-y",
                action="store_true",
                help="do not ask: needed with $E2I_DATABASE_URL and when stdin is not a terminal",
            )

    mat = sub.add_parser("materialize", help="generate, validate, load and check every table")
    mat.add_argument("--scenario", help="scenario YAML file (default: the packaged scenario)")
    mat.add_argument("--scale", type=_scale, help="small, full or a factor (overrides the file)")
    mat.add_argument("--dry-run", action="store_true", help="generate and validate, write nothing")
    mat.add_argument(
        "--force",
        action="store_true",
        help="replace the data of another scenario without asking (a scenario change)",
    )
    mat.add_argument("--verbose", action="store_true", help="show Dagster's event log")
    mat.add_argument(
        "--parallel",
        action="store_true",
        help="run each chunk's tables in parallel processes (Dagster's multiprocess executor; "
        "needs DAGSTER_HOME, which make sets)",
    )
    mat.add_argument(
        "--chunk-days",
        type=_positive_int,
        help="load daily partitions this many days per run (bounds memory at large scale)",
    )
    mat.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        help="run each Dagster run in a fresh process, so memory does not build up from run "
        "to run (default: on above scale 100)",
    )
    mat.add_argument(
        "--live-days",
        type=_days,
        help="load feature_values at most this many days past the scenario's end_date "
        "(default: up to yesterday, so the last days always have rows; 0: none)",
    )
    mat.set_defaults(func=cmd_materialize)

    score = sub.add_parser(
        "score",
        help="score an agent's answers (JSON) against the active scenario's answer key",
    )
    score.add_argument("answers", help="answers file (e2i_synth/tables/answer_key/schemas/)")
    score.add_argument("--json", action="store_true", help="the scorecard as JSON, for CI")
    score.set_defaults(func=cmd_score)

    exp = sub.add_parser(
        "export",
        help="write every table and the answer key to Parquet or CSV files",
        description="Write every table of the database's active scenario to DIR: "
        "data/<table>.parquet|csv (what an agent may read), answer_key/ground_truth.parquet|csv "
        "(apart) and manifest.json (scenario hash, rows and column types per file). Parquet "
        "files carry the scenario hash in their metadata (e2i.scenario_hash). One consistent "
        "snapshot, read a page at a time.",
    )
    exp.add_argument("dir", help="folder to write (new or empty, unless --force)")
    exp.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    exp.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder, replacing the export's own files there",
    )
    exp.set_defaults(func=cmd_export)

    scen = sub.add_parser("scenarios", help="list the bundled scenarios: the difficulty ladder")
    scen.add_argument(
        "--hash", action="store_true", help="print each one's scenario_hash (at --scale)"
    )
    scen.add_argument("--scale", type=_scale, help="with --hash: the scale it will run at")
    scen.set_defaults(func=cmd_scenarios)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ScenarioError, UsageError, MigrationError, DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
