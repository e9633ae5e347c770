# The two commands users run: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo needs hfrl and its runtime dependencies only; tests, lint and benchmarks add the dev
# extras and Spark (the Spark backend's tests).
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint system-deps bench clean
OBD ?= ../shared/data/obd

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $(STAMP)

# The torch extra pins torch==2.13.0: on this machine kind pip takes its CPU build from the local
# wheel directory (pip's find-links); the neural learners' tests need it (tests/test_system_deps.py).
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,spark,torch]"
	@touch $(DEV_STAMP)

# Chromium (report test), a JDK (Spark tests) and PostgreSQL (decision log replicas; the tests run a
# throwaway cluster with its initdb/pg_ctl), installed only when absent.
system-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing chromium"; (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null); }
	@command -v java >/dev/null 2>&1 || \
	  { echo "installing a JDK"; (apt-get update -qq && apt-get install -y -qq default-jdk-headless >/dev/null) || \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq default-jdk-headless >/dev/null); }
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "installing postgresql"; (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) || \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq postgresql >/dev/null); }

demo: $(STAMP)
	$(BIN)/hfrl demo --out demo-out --seed 0

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports

test: $(DEV_STAMP) system-deps lint
	HFRL_REQUIRE_SYSTEM_DEPS=1 $(BIN)/python -m pytest src tests

# Every benchmark in turn; each prints one JSON line (figures go to bench/RESULTS.md by hand).
# bench_scale generates 100M rows of Parquet under bench/data/ on first use (about 2 GB of disk).
bench: $(DEV_STAMP)
	$(BIN)/python bench/bench_frequencies.py
	$(BIN)/python bench/bench_learners.py
	$(BIN)/python bench/bench_ope.py
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_loop.py
	$(BIN)/python bench/bench_cli.py
	@if [ -d "$(OBD)" ]; then $(BIN)/python bench/bench_obd.py --data $(OBD); \
	  else echo "skipping bench_obd: no data at $(OBD) (hfrl datasets obd --out DIR; make bench OBD=DIR)"; fi
	$(BIN)/python bench/bench_scale.py
	$(BIN)/python bench/bench_intervals.py
	$(BIN)/python bench/bench_sim_to_real.py
	$(BIN)/python bench/bench_contexts.py
	$(BIN)/python bench/bench_rankings.py
	$(BIN)/python bench/bench_embedded.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
