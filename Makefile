# Churn warning and retention pipeline: the task surface. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONF ?=
SET ?=
MONTH ?= 2024-06
DEMO_MONTHS ?= 2024-01..2024-06
DEMO_SUBSCRIBERS ?= 5000
JOB_ARGS = $(foreach c,$(CONF),--conf $(c)) $(foreach s,$(SET),--set $(s))

.DEFAULT_GOAL := help
.PHONY: help install java test test-fast test-thorough lint format demo bench clean \
        generate_sample_data ingest build_features train monthly demo_summary

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): setup.py
	@command -v $(PYTHON) >/dev/null || { echo "ERROR: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) java ## Create .venv and install the package with dev tools (when missing or stale)

java: ## Check for Java 17/21 (installs openjdk-17-jre-headless with apt when root)
	@bash scripts/ensure_java.sh

test: install ## Run the test suite (real local Spark, Delta tables and MLflow in temp folders)
	$(PY) -m pytest -q -m "not thorough" tests

test-fast: install ## Run the tests not marked slow (no multi-month lakes, no job subprocesses)
	$(PY) -m pytest -q -m "not slow and not thorough" tests

test-thorough: install ## Run the long property runs (hundreds of generated deliveries)
	$(PY) -m pytest -q -m thorough tests

lint: $(STAMP) ## Lint with ruff
	$(VENV)/bin/ruff check pipelines features models jobs tests bench
	$(VENV)/bin/ruff format --check pipelines features models jobs tests bench

format: $(STAMP) ## Format and fix with ruff
	$(VENV)/bin/ruff format pipelines features models jobs tests bench
	$(VENV)/bin/ruff check --fix pipelines features models jobs tests bench

demo: install ## Generate sample data (CSV, gzip CSV and Parquet mixed) and run the monthly pipeline end to end
	$(PY) jobs/generate_sample_data.py --months $(DEMO_MONTHS) --subscribers $(DEMO_SUBSCRIBERS) --seed 7 --bad-rows 0.002 --format mixed $(JOB_ARGS)
	$(PY) jobs/monthly.py --months $(DEMO_MONTHS) $(JOB_ARGS)
	$(PY) jobs/demo_summary.py $(JOB_ARGS)

bench: install ## Benchmarks: ratios against reference runs in the same process tree
	$(PY) -m bench.run_all $(JOB_ARGS)

generate_sample_data: install ## Job: write landing extracts (DEMO_MONTHS, DEMO_SUBSCRIBERS)
	$(PY) jobs/generate_sample_data.py --months $(DEMO_MONTHS) --subscribers $(DEMO_SUBSCRIBERS) --seed 7 $(JOB_ARGS)

ingest: install ## Job: ingest one month of landing extracts (MONTH=YYYY-MM)
	$(PY) jobs/ingest.py --month $(MONTH) $(JOB_ARGS)

build_features: install ## Job: build features_monthly and labels_monthly for one month (MONTH=YYYY-MM)
	$(PY) jobs/build_features.py --month $(MONTH) $(JOB_ARGS)

train: install ## Job: train the cohort family as of MONTH (MLflow, registry, promotion gates)
	$(PY) jobs/train.py --month $(MONTH) $(JOB_ARGS)

monthly: install ## Job: all stages of one month in order (MONTH=YYYY-MM)
	$(PY) jobs/monthly.py --month $(MONTH) $(JOB_ARGS)

clean: ## Remove the local lake, landing zone and caches (keeps .venv)
	rm -rf data .pytest_cache .ruff_cache spark-warehouse

demo_summary: install ## Job: print where the outputs are and what they hold
	$(PY) jobs/demo_summary.py $(JOB_ARGS)
