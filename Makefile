# Churn warning and retention pipeline: the task surface. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONF ?=
SET ?=
MONTH ?= 2024-06
DEMO_MONTHS ?= 2024-01..2024-12
DEMO_SUBSCRIBERS ?= 2500
# run months of the backtest table: the first trainable month of the demo's year to the last whose labels matured
BACKTEST_MONTHS ?= 2024-05..2024-10
DAY ?= 2024-12-10
DEMO_DAYS ?= 2024-12-09..2024-12-11
ENGINE ?= duckdb
MLFLOW_PORT ?= 5000
SIZE ?= M
JOB_ARGS = $(foreach c,$(CONF),--conf $(c)) $(foreach s,$(SET),--set $(s))
DEMO_ARGS = --conf conf/demo.yml $(JOB_ARGS)

.DEFAULT_GOAL := help
.PHONY: help install java test test-e2e test-fast test-thorough lint typecheck format demo sql package mlflow-ui bench bench-scaling clean loop-study backtest-table \
        generate_sample_data ingest build_features train monthly housekeeping demo_summary daily_warnings

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): setup.py
	@command -v $(PYTHON) >/dev/null || { echo "ERROR: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# uv installs the stack in under a minute where pip takes about three; pip when uv cannot be had.
	@# Bytecode compiled at install (pip does it, uv only when asked): where PYTHONDONTWRITEBYTECODE is
	@# set, every process (each job, each Spark Python worker) would otherwise compile what it imports
	$(PY) -m pip install -q uv && $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -e '.[dev]' \
		|| $(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) java ## Create .venv and install the package with dev tools (when missing or stale)

java: ## Check for Java 17/21 (installs openjdk-17-jre-headless with apt when root)
	@bash scripts/ensure_java.sh

test: install ## Run the test suite (real local Spark, Delta tables and MLflow in temp folders)
	$(PY) -m pytest -q --durations=20 -m "not thorough and not e2e" tests

test-e2e: install ## Run the end-to-end loop over months, the whole-job subprocess tests and the standalone-cluster test (CI runs them too)
	$(PY) -m pytest -q -m e2e tests

test-fast: install ## Run the tests not marked slow (no multi-month lakes, no job subprocesses)
	$(PY) -m pytest -q -m "not slow and not thorough and not e2e" tests

test-thorough: install ## Run the long property runs (hundreds of generated deliveries)
	$(PY) -m pytest -q -m thorough tests

lint: $(STAMP) ## Lint with ruff
	$(VENV)/bin/ruff check pipelines features models jobs tests bench
	$(VENV)/bin/ruff format --check pipelines features models jobs tests bench

typecheck: $(STAMP) ## Type-check the pure layers (features/, models/) with mypy
	$(VENV)/bin/mypy

format: $(STAMP) ## Format and fix with ruff
	$(VENV)/bin/ruff format pipelines features models jobs tests bench
	$(VENV)/bin/ruff check --fix pipelines features models jobs tests bench

demo: install ## A year of the closed loop on fresh sample data (simulated operator, monthly pipeline, its offers carried out), then a summary
	$(PY) jobs/closed_loop.py --months $(DEMO_MONTHS) --subscribers $(DEMO_SUBSCRIBERS) --seed 7 --bad-rows 0.002 --format mixed --fresh $(DEMO_ARGS)
	$(PY) jobs/generate_sample_data.py --months $(lastword $(subst .., ,$(DEMO_MONTHS))) --daily-only $(DEMO_ARGS)
	$(PY) jobs/daily_warnings.py --day $(DEMO_DAYS) $(DEMO_ARGS)
	$(PY) jobs/demo_summary.py $(DEMO_ARGS)

# Q reaches the job through the environment, never the shell's command line: a quote in it stays a quote
sql: export CHURN_SQL_QUERY = $(value Q)
sql: install ## One read-only SQL query over the lake tables (views named as the tables): make sql Q="SELECT ..." [ENGINE=spark]
	@test -n "$$CHURN_SQL_QUERY" || { echo 'usage: make sql Q="SELECT risk_band, count(*) FROM warning_list GROUP BY 1"'; exit 2; }
	@$(PY) jobs/sql.py --query-env CHURN_SQL_QUERY --engine $(ENGINE) $(JOB_ARGS)

package: install ## Zip the Python packages for spark-submit --py-files (dist/churnlake.zip)
	@mkdir -p dist && rm -f dist/churnlake.zip
	$(PY) -c "import pathlib, zipfile; z = zipfile.ZipFile('dist/churnlake.zip', 'w'); [z.write(p) for d in ('pipelines', 'features', 'models', 'jobs') for p in sorted(pathlib.Path(d).rglob('*.py'))]; z.close()"
	@echo "dist/churnlake.zip: spark-submit --py-files dist/churnlake.zip jobs/monthly.py --month YYYY-MM ..."

mlflow-ui: install ## Open the MLflow tracking UI on the lake's store (MLFLOW_PORT=5000)
	$(VENV)/bin/mlflow ui --port $(MLFLOW_PORT) --backend-store-uri "$$($(PY) -c 'import sys; from pipelines.core.config import load_config; print(load_config(sys.argv[1:]).mlflow_tracking_uri)' $(CONF))"

bench: install ## Benchmarks of every stage against references in the same run (SIZE=S|M|L, default M)
	$(PY) -m bench.run_all --size $(SIZE)
	$(PY) -m bench.daily_bench --subscribers 100000

bench-scaling: install ## The monthly run over six months at 25k, 50k, 100k and 200k subscribers, and a plot of each stage against size
	$(PY) -m bench.run_all --scaling

generate_sample_data: install ## Job: write landing extracts (DEMO_MONTHS, DEMO_SUBSCRIBERS)
	$(PY) jobs/generate_sample_data.py --months $(DEMO_MONTHS) --subscribers $(DEMO_SUBSCRIBERS) --seed 7 $(JOB_ARGS)

ingest: install ## Job: ingest one month of landing extracts (MONTH=YYYY-MM)
	$(PY) jobs/ingest.py --month $(MONTH) $(JOB_ARGS)

build_features: install ## Job: build features_monthly and labels_monthly for one month (MONTH=YYYY-MM)
	$(PY) jobs/build_features.py --month $(MONTH) $(JOB_ARGS)

train: install ## Job: train the cohort family as of MONTH (MLflow, registry, promotion gates)
	$(PY) jobs/train.py --month $(MONTH) $(JOB_ARGS)

backtest-table: install ## The docs' backtest table and figure on the lake make demo left (BACKTEST_MONTHS=FROM..TO)
	$(PY) jobs/train.py --backtest $(BACKTEST_MONTHS) --markdown bench/results/backtest.md --figure docs/backtest.png $(DEMO_ARGS)

monthly: install ## Job: all stages of one month in order (MONTH=YYYY-MM)
	$(PY) jobs/monthly.py --month $(MONTH) $(JOB_ARGS)

housekeeping: install ## Job: vacuum, compaction, log checkpoints and retention now (MONTH=YYYY-MM, the run month)
	$(PY) jobs/housekeeping.py --month $(MONTH) $(JOB_ARGS)

clean: ## Remove the local lake, landing zone and caches (keeps .venv)
	rm -rf data dist .pytest_cache .ruff_cache spark-warehouse

daily_warnings: install ## Job: ingest one day's daily deliveries and write its warnings (DAY=YYYY-MM-DD, or A..B)
	$(PY) jobs/daily_warnings.py --day $(DAY) $(JOB_ARGS)

demo_summary: install ## Job: print where the outputs are and what they hold
	$(PY) jobs/demo_summary.py $(JOB_ARGS)

loop-study: install ## The targeting study: 14 months of the demo loop, uplift vs rule vs random vs oracle valued by the simulator's truth (docs/loop-study.md)
	$(PY) -m bench.loop_study --months 2024-01..2025-02 --subscribers $(DEMO_SUBSCRIBERS) --seed 7 --out bench/results/
