# The two commands that work on a fresh machine with only Python 3.11: `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FLASK_APP := app

.PHONY: run test lint migrate demo worker scheduler bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

migrate: $(STAMP)
	$(BIN)/flask db upgrade heads

demo: migrate
	$(BIN)/flask demo-data

run: demo
	$(BIN)/python serve.py

# pytest-xdist: one worker per core by default, each with its own database and Redis database
# (tests/conftest.py); `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

worker: $(STAMP)
	$(BIN)/flask worker

scheduler: $(STAMP)
	$(BIN)/flask scheduler

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
