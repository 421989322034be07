"""A real PostgreSQL for the whole test session (embedded pgserver), a fresh database per test.

A fresh database is a copy of a template (CREATE DATABASE ... TEMPLATE, a file copy on the
server): migrated once per session, and loaded once per session for each scenario that tests
share (`loaded_copy`), instead of migrating or re-running the pipeline for every test.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from e2i_synth.db.connection import with_database
from e2i_synth.db.migrate import migrate
from e2i_synth.db.resource import Database
from e2i_synth_tests.pipeline import LoadedRun, load_small, small_template_key

SOAK_ENV = "E2I_SOAK"
SOAK_FOLDER = Path(__file__).resolve().parent / "soak"


# `make test` runs on 2 xdist workers (`-n 2 --dist loadgroup`), each with its own embedded
# server and templates: a group is what one worker runs, so that tests sharing a template or a
# module fixture load it once. Groups run longest first (in this order, then in collection
# order: --no-loadscope-reorder), so the full-scale loads start at once, on both workers.
LONGEST_GROUPS = (
    "full_default_strong",  # full-scale default, then strong loaded over it (~7 min serial)
    "full_null",
    "small_default",  # small_db's template (load_small) and test_coherence
    "short_a",  # the SHORT_A template (load_short_a)
    "tables/feature_store/test_feature_store.py",
    "test_cli.py",
    "tables/answer_key/test_answer_key_seeds.py",
    "test_webserver.py",
    "test_dg_project.py",
    "db/test_secrets.py",
    "small_frames",  # db/conftest's frames and their template
)
TESTS = Path(__file__).resolve().parent
GROUPS_FILE = "e2i_xdist_groups"  # workerinput key: where workers write each test's group


def _group(item: pytest.Item) -> str:
    """The xdist group of a test: the template or session data it shares, else its module."""
    module = item.path.relative_to(TESTS).as_posix() if TESTS in item.path.parents else item.nodeid
    if module == "tables/answer_key/test_answer_key.py":
        if item.name.endswith("[null]"):
            return "full_null"
        if "copy_of" in item.fixturenames:  # full_default, and full_strong made from it
            return "full_default_strong"
    if module == "test_coherence.py" or "small_db" in item.fixturenames:
        return "small_default"
    if module in ("db/test_scenario_change.py", "pipeline/test_concurrent_runs.py"):
        return "short_a"
    if module.startswith("db/") and "frames" in item.fixturenames:
        return "small_frames"
    return module


@pytest.hookimpl(tryfirst=True)  # before `-m soak` selects by the marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests (marked soak, and all of soak/) run only with E2I_SOAK=1 (`make soak`).
    On an xdist worker, the longest groups come first, and each test's group goes to the
    controller's scheduler (_GroupScheduling)."""
    for item in items:
        if SOAK_FOLDER in item.path.parents:
            item.add_marker(pytest.mark.soak)
    if GROUPS_FILE in getattr(config, "workerinput", {}):
        rank = {name: i for i, name in enumerate(LONGEST_GROUPS)}
        items.sort(key=lambda item: rank.get(_group(item), len(rank)))
        groups = {item.nodeid: _group(item) for item in items}
        path = Path(f"{config.workerinput[GROUPS_FILE]}.{config.workerinput['workerid']}")
        path.write_text(json.dumps(groups))
    if os.environ.get(SOAK_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"soak test: set {SOAK_ENV}=1 or run `make soak`")
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """On an xdist worker under `make` (DAGSTER_HOME = the project's dagster.yaml): run storage
    in a database of its own, as the serial suite had one instance to itself (a check reads its
    asset's latest materialization: the other worker's run of another scenario is not it)."""
    home = os.environ.get("DAGSTER_HOME")
    if not hasattr(config, "workerinput") or not home or not Path(home, "dagster.yaml").exists():
        return
    import yaml

    settings = yaml.safe_load(Path(home, "dagster.yaml").read_text())
    settings["storage"]["custom"]["config"]["database"] += f"_{config.workerinput['workerid']}"
    folder = Path(tempfile.mkdtemp(prefix="e2i-dagster-home-"))
    (folder / "dagster.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    os.environ["DAGSTER_HOME"] = str(folder)
    config.stash[_WORKER_HOME] = str(folder)


_WORKER_HOME = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _WORKER_HOME in config.stash:
        shutil.rmtree(config.stash[_WORKER_HOME], ignore_errors=True)


# xdist's loadgroup reads xdist_group marks by renaming item.nodeid, which pytest 9.2 no longer
# allows (the groups were silently lost): the workers' groups reach the scheduler as a file.
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    if node.config.getoption("dist") == "loadgroup":
        if _GROUPS_FOLDER not in node.config.stash:
            node.config.stash[_GROUPS_FOLDER] = tempfile.mkdtemp(prefix="e2i-xd-")
        node.workerinput[GROUPS_FILE] = str(Path(node.config.stash[_GROUPS_FOLDER]) / "groups")


_GROUPS_FOLDER = pytest.StashKey[str]()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class GroupScheduling(LoadGroupScheduling):
        """loadgroup with each test's group as the worker that collected it wrote it."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                folder = Path(config.stash[_GROUPS_FOLDER])
                self.groups = json.loads(next(folder.glob("groups.*")).read_text())
                shutil.rmtree(folder, ignore_errors=True)  # read once, when scheduling
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)


def _url_for(server_url: str, dbname: str) -> str:
    return with_database(server_url, dbname)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE `name` (a copy of `template` if given); its URL."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(query)
    return _url_for(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _new_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a PostgreSQL server: $E2I_TEST_DATABASE_URL, else an embedded one for this session."""
    if os.environ.get("E2I_TEST_DATABASE_URL"):
        yield os.environ["E2I_TEST_DATABASE_URL"]
        return
    import pgserver

    # The embedded server runs as the `pgserver` user when we are root: the folder must be open.
    folder = Path(tempfile.mkdtemp(prefix="e2i-test-pg-"))
    folder.chmod(0o755)
    server = pgserver.get_server(str(folder / "pgdata"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A new, empty database on the session server, dropped afterwards."""
    name = _new_name()
    url = create_database(server_url, name)
    yield url
    drop_database(server_url, name)


class Templates:
    """Template databases made once per session: migrated, or migrated and loaded by a
    function; each test gets a copy of one (a file copy: no migration, no pipeline run)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.made: dict[str, Any] = {}  # template name -> what its load returned
        self.session = uuid.uuid4().hex[:6]  # another session's leftovers never collide

    def template(
        self, key: str, load: Callable[[Database], Any] | None = None, base: str = "migrated"
    ) -> str:
        """Name of the template `key`, made on first use: migrated, then `load`ed; or a copy
        of the template `base` (made before), then `load`ed."""
        name = self._name(key)
        if name not in self.made:
            if load is None:
                base = None
            elif base == "migrated":
                base = self.template("migrated")
            else:
                assert self._name(base) in self.made, f"template {base} is not made yet"
                base = self._name(base)
            url = create_database(self.server_url, name, template=base)
            try:
                if base is None:
                    migrate(url)
                self.made[name] = None if load is None else load(Database(url=url))
            except BaseException:
                drop_database(self.server_url, name)
                raise
        return name

    def result(self, key: str) -> Any:
        return self.made[self._name(key)]

    def _name(self, key: str) -> str:
        return f"e2i_tpl_{self.session}_{key}"

    def drop_all(self) -> None:
        for name in self.made:
            drop_database(self.server_url, name)


@pytest.fixture(scope="session")
def templates(server_url: str) -> Iterator[Templates]:
    made = Templates(server_url)
    yield made
    made.drop_all()


@pytest.fixture
def copy_of(server_url: str, templates: Templates) -> Iterator[Callable[..., str]]:
    """copy_of(key, load=None, base="migrated"): URL of a new database copied from the
    template `key` (see Templates.template); every copy is dropped after the test."""
    names: list[str] = []

    def copy(key: str, load: Callable[[Database], Any] | None = None, base="migrated") -> str:
        template = templates.template(key, load, base)
        names.append(_new_name())
        return create_database(server_url, names[-1], template=template)

    yield copy
    for name in names:
        drop_database(server_url, name)


@pytest.fixture
def db_url(copy_of) -> str:
    """A new database with every migration applied (a copy of the migrated template)."""
    return copy_of("migrated")


@pytest.fixture
def database(db_url: str) -> Database:
    return Database(url=db_url)


@pytest.fixture
def small_db(copy_of) -> Database:
    """A new database holding the default scenario at scale small, every table and check
    (loaded once per session by pipeline.load_small, copied for each test)."""
    return Database(url=copy_of(small_template_key(), load_small))


@pytest.fixture
def small_run(small_db: Database, templates: Templates) -> LoadedRun:
    """What loading small_db's template did: its run summary and job names."""
    return templates.result(small_template_key())
