# e2i-synth: every target creates or updates .venv first, so a fresh clone needs only Python
# 3.11 or 3.12. PYTHON: the first of python3.11, python3.12, python3 that runs and is 3.11 or
# 3.12 (a pyenv shim of a version not selected does not run, and is skipped); `make test
# PYTHON=python3.12 VENV=.venv312` tests another interpreter in its own venv.
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))
PYTHON ?= $(firstword $(foreach p,python3.11 python3.12 python3,$(shell $(p) -c '$(SUPPORTED)' >/dev/null 2>&1 && echo $(p))))
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= small
PORT ?= 3000
# Dagster reads ./dagster.yaml: run history in the project's PostgreSQL, artifacts in .e2i/.
export DAGSTER_HOME := $(CURDIR)

.PHONY: install install-distributed run test soak lint format db-up db-down dev bench bench-scale schema docs clean screenshot

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || test -n "$(PYTHON)" || \
		{ echo "e2i-synth needs Python 3.11 or 3.12 (python3.11, python3.12 or python3)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The `distributed` extra (dagster-celery, redis client) on top: e2i_synth.pipeline.distributed
# and its
# soak test.
DISTRIBUTED := $(VENV)/.installed-distributed
$(DISTRIBUTED): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,distributed]'
	touch $(DISTRIBUTED)

install-distributed: $(DISTRIBUTED)

# The main job: embedded PostgreSQL (unless E2I_DATABASE_URL), migrations, every asset and check,
# in one process (materialize applies pending migrations itself, and prints them).
run: $(STAMP)
	$(BIN)/e2i-synth materialize --scale $(SCALE)

# The suite against a real PostgreSQL (embedded, started by the tests), minutes; the slow tests
# (marked soak) are skipped here and run by `make soak`. PYTEST_ARGS: extra pytest arguments.
# XDIST: two pytest-xdist workers, each with its own embedded server; tests are grouped by the
# template they share and the longest groups go first (e2i_synth_tests/conftest.py).
# `make test XDIST=` runs the suite in one process.
XDIST ?= -n 2 --dist loadgroup --no-loadscope-reorder
test: $(STAMP)
	$(BIN)/ruff check e2i_synth e2i_synth_tests bench tools examples
	$(BIN)/ruff format --check e2i_synth e2i_synth_tests bench tools examples
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

# The slow tests (every test marked soak, and all of e2i_synth_tests/soak): SIGKILL during a
# 1M-row COPY, a server crash mid-load, outages, kills of a scenario change, the blocking checks
# on hundreds of seeds, runs in a process per run or per step (--parallel), the celery backfill
# with a worker killed (needs redis-server: apt-get install -y redis-server). `make test` and
# `make soak` together run the whole suite (.ci/run does).
# Serial (no xdist): these kill processes and servers, and time what they measure.
soak: $(DISTRIBUTED)
	E2I_SOAK=1 $(BIN)/pytest -q -m soak -p no:xdist $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check e2i_synth e2i_synth_tests bench tools examples

format: $(STAMP)
	$(BIN)/ruff format e2i_synth e2i_synth_tests bench tools examples
	$(BIN)/ruff check --fix e2i_synth e2i_synth_tests bench tools examples

# The UI at http://127.0.0.1:$(PORT) (make dev PORT=3417) with the daemon (schedules), on the
# same database.
dev: $(STAMP)
	$(BIN)/e2i-synth db up
	$(BIN)/dg dev -h 127.0.0.1 -p $(PORT)

# Whole-pipeline benchmark: `materialize` at BENCH_SCALE (every table and check) against a
# server-side COPY of the same rows, per table and per stage (bench/README.md).
BENCH_SCALE ?= 100
bench: $(STAMP)
	$(BIN)/python -m bench.run --scale $(BENCH_SCALE) $(BENCH_ARGS)

# Scale benchmark: the whole CLI at each of SCALES, time per row against the first, peak memory.
SCALES ?= 10 1000
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(SCALES)

db-up: $(STAMP)
	$(BIN)/e2i-synth db up

db-down: $(STAMP)
	$(BIN)/e2i-synth db down

# sql/schema.sql: the fresh-install schema, dumped from a database migrated from empty.
schema: $(STAMP)
	$(BIN)/python -m e2i_synth.db.dump_schema > sql/schema.sql

clean:
	-$(BIN)/e2i-synth db down
	rm -rf .e2i .tmp_dagster_home_* .pytest_cache

# README's table reference, from the pandera models.
docs: $(STAMP)
	$(BIN)/python -m e2i_synth.docs

# docs/asset-graph.png: the UI's asset lineage graph, by headless Chromium (installed if missing),
# from a webserver on 127.0.0.1:3333 over this project's instance (materialized first if needed).
screenshot: $(STAMP)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python tools/screenshot.py --port 3333 --scale $(SCALE) --out docs/asset-graph.png
