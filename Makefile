# Set-up and test entry points. `make test` is what .ci/run calls.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps test lint typecheck unit integration bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

deps: $(PY)
	bash scripts/install-system-deps.sh
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'

lint: deps
	$(VENV)/bin/ruff check runtime tests bench
	$(VENV)/bin/ruff format --check runtime tests bench

typecheck: deps
	$(VENV)/bin/mypy

unit: deps
	$(PY) -m pytest tests/unit

integration: deps
	$(PY) -m pytest tests/integration

test: deps
	$(VENV)/bin/ruff check runtime tests bench
	$(VENV)/bin/ruff format --check runtime tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest tests

bench: deps
	$(PY) bench/oci_run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
