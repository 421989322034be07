# e2i-synth: every target creates or updates .venv first, so a fresh clone needs only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= small
# Dagster reads ./dagster.yaml: run history in the project's PostgreSQL, artifacts in .e2i/.
export DAGSTER_HOME := $(CURDIR)

.PHONY: install run test lint format db-up db-down dev bench schema docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: embedded PostgreSQL (unless E2I_DATABASE_URL), migrations, every asset and check.
run: $(STAMP)
	$(BIN)/e2i-synth db migrate
	$(BIN)/e2i-synth materialize --scale $(SCALE)

# The whole suite against a real PostgreSQL (embedded, started by the tests).
test: $(STAMP)
	$(BIN)/ruff check e2i_synth e2i_synth_tests bench
	$(BIN)/ruff format --check e2i_synth e2i_synth_tests bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check e2i_synth e2i_synth_tests bench

format: $(STAMP)
	$(BIN)/ruff format e2i_synth e2i_synth_tests bench
	$(BIN)/ruff check --fix e2i_synth e2i_synth_tests bench

# The UI at http://127.0.0.1:3000 with the daemon (schedules), on the same database.
dev: $(STAMP)
	$(BIN)/e2i-synth db up
	$(BIN)/dagster dev -m e2i_synth.definitions -h 127.0.0.1 -p 3000

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
