# Two commands for a fresh machine (both create .venv and install everything on first use):
#   make quickstart   run the whole pipeline on the bundled sample data
#   make test         run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: quickstart test test-slow test-ui lint benchmarks ui-mlflow ui-prefect clean-venv stack stack-down test-stack

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "EntroAD-Pipeline needs Python >= 3.11 (Prefect 3); set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# torch first and pinned: these wheels are the tested pair (see STACK notes in README)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

quickstart: $(STAMP)
	$(PY) -m flows quickstart

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not ui"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Browser tests of the review page: Debian's chromium + chromium-driver
# (apt-get install -y chromium chromium-driver). Without them they skip, unless
# ENTROAD_UI_TESTS=1 (CI), where a missing browser fails.
test-ui: $(STAMP)
	$(PY) -m pytest -q -m ui

lint: $(STAMP)
	$(VENV)/bin/ruff check entroad flows tests benchmarks

benchmarks: $(STAMP)
	$(PY) benchmarks/inference_overhead.py
	$(PY) benchmarks/ingest_rate.py
	$(PY) benchmarks/eval_throughput.py
	$(PY) benchmarks/scaling.py

ui-mlflow: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow/mlflow.db --default-artifact-root $(CURDIR)/mlflow/artifacts --port 5000

ui-prefect: $(STAMP)
	$(VENV)/bin/prefect server start

# The team stack (README "From one checkout to a team"): PostgreSQL, S3 API (moto), MLflow server
# with basic-auth, Prefect server + process pool + worker, on free ports, state under $(STACK_DIR).
STACK_DIR   ?= .stack
STACK_STAMP := $(VENV)/.installed-stack

$(STACK_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,stack]'
	@touch $(STACK_STAMP)

stack: $(STACK_STAMP)
	$(PY) -m entroad.stack up --state $(STACK_DIR)

stack-down:
	$(PY) -m entroad.stack down --state $(STACK_DIR)

# every server is started by the tests and stopped by them, also when a test fails
test-stack: $(STACK_STAMP)
	ENTROAD_STACK_TESTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/stack

clean-venv:
	rm -rf $(VENV)
