# Two set-up commands on a fresh machine: `make demo` and `make test`.
# `make test` is the whole suite (CI's); `make check` is the edit loop: lint and every test
# not marked ca, browser or postgres (see pyproject.toml), on CHECK_WORKERS processes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECK_WORKERS ?= 2

.PHONY: demo test check typecheck lint format bench screenshots clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# setuptools' build-time notices (an editable install of a package-dir layout) are noise
# for someone who typed `make demo`: silenced; errors still show.
$(STAMP): pyproject.toml | $(BIN)/python
	PYTHONWARNINGS=ignore $(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mupnc demo $(ARGS)

test: $(STAMP) typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -m "not ca and not browser and not postgres and not pseudo_runs" -n $(CHECK_WORKERS) --dist loadfile

# mypy on the pure core (docs/architecture.md).  The folders install as mupnc.*, so mypy
# reads them through a tree of links with that layout.
TYPED := -p mupnc.daq -p mupnc.sim -p mupnc.monitor.analysis -p mupnc.monitor.decoding -m mupnc.monitor.feedback.loop \
	-m mupnc.monitor.alarms.logic -m mupnc.monitor.alarms.rules -m mupnc.monitor.alarms.inputs -m mupnc.monitor.alarms.budget \
	-m mupnc.monitor.ingest_counters -m mupnc.ioc.limits -m mupnc.dashboards.records \
	-m mupnc.dashboards.display -m mupnc.dashboards.columns -m mupnc.dashboards.projection \
	-m mupnc.planner

typecheck: $(STAMP)
	rm -rf build/typecheck && mkdir -p build/typecheck/mupnc
	for f in mupnc/*.py; do ln -s ../../../$$f build/typecheck/mupnc/; done
	for d in daq sim ioc monitor db dashboards; do ln -s ../../../$$d build/typecheck/mupnc/$$d; done
	cd build/typecheck && ../../$(BIN)/mypy --ignore-missing-imports $(TYPED)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# docs/img/*.png from a running demo and headless Chromium (docs/make_screenshots.py, ~7 min)
screenshots: $(STAMP)
	$(BIN)/python docs/make_screenshots.py

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
