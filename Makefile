# The two commands users run: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint system-deps bench clean
OBD ?= ../shared/data/obd

# The torch extra pins torch==2.13.0: on this machine kind pip takes its CPU build from the local
# wheel directory (pip's find-links); the neural learners' tests need it (tests/test_system_deps.py).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,spark,torch]"
	@touch $(STAMP)

# Chromium (report test) and a JDK (Spark tests), installed only when absent.
system-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing chromium"; (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null); }
	@command -v java >/dev/null 2>&1 || \
	  { echo "installing a JDK"; (apt-get update -qq && apt-get install -y -qq default-jdk-headless >/dev/null) || \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq default-jdk-headless >/dev/null); }

demo: $(STAMP)
	$(BIN)/hfrl demo --out demo-out --seed 0

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports

test: $(STAMP) system-deps lint
	HFRL_REQUIRE_SYSTEM_DEPS=1 $(BIN)/python -m pytest src tests

# Every benchmark in turn; each prints one JSON line (figures go to bench/RESULTS.md by hand).
# bench_scale generates 100M rows of Parquet under bench/data/ on first use (about 2 GB of disk).
bench: $(STAMP)
	$(BIN)/python bench/bench_frequencies.py
	$(BIN)/python bench/bench_learners.py
	$(BIN)/python bench/bench_ope.py
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_cli.py
	@if [ -d "$(OBD)" ]; then $(BIN)/python bench/bench_obd.py --data $(OBD); \
	  else echo "skipping bench_obd: no data at $(OBD) (hfrl datasets obd --out DIR; make bench OBD=DIR)"; fi
	$(BIN)/python bench/bench_scale.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
