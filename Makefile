# Set-up and test entry points. `make test` is what .ci/run calls.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps web up test lint typecheck unit integration bench clean
# Playwright drives Debian's Chromium (/usr/bin/chromium); it never downloads browsers.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
LINTED := runtime playground tests bench scripts manage.py

$(PY):
	$(PYTHON) -m venv $(VENV)

deps: $(PY)
	bash scripts/install-system-deps.sh
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# Bytecode ahead of time: every CLI call imports the runtime, and an environment with
	@# PYTHONDONTWRITEBYTECODE would otherwise compile it from source each time.
	$(PY) -m compileall -q runtime playground

# The terminal's front end: xterm.js from npm, copied into static/vendor/ (no CDN).
web: deps
	npm ci --no-audit --no-fund --loglevel=error
	$(PY) scripts/vendor_static.py

# The whole site on http://127.0.0.1:8000 (Redis, engine, Celery, daphne); Ctrl+C stops it.
up: web
	$(PY) scripts/up.py

lint: deps
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: deps
	$(VENV)/bin/mypy

unit: deps
	$(PY) -m pytest tests/unit

integration: deps
	$(PY) -m pytest tests/integration

test: deps web
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(PY) -m pytest tests

bench: deps
	$(PY) bench/oci_run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
