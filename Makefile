# The two commands of the quick start, and a few more. Each target creates .venv itself when needed.
#   make run    set up, then the whole story on the embedded default: DAYS=120 simulated nights with a drift
#   make test   set up, then ruff (lint and format) and the whole test suite
#   make serve  the prediction service on 127.0.0.1:8000 (settings.serving), once a night has run
# The supported Pythons, newest first (pyproject.toml's requires-python); make PYTHON=... picks another one.
SUPPORTED := python3.13 python3.12 python3.11
# python3.x of the interpreter $(1), empty when it does not run (a pyenv shim of a version not selected).
python_version = $(if $(1),$(shell $(1) -c 'import sys; print("python%d.%d" % sys.version_info[:2])' 2>/dev/null))
is_supported = $(filter $(SUPPORTED),$(call python_version,$(1)))
PYTHON ?= $(firstword $(foreach python,$(SUPPORTED),$(call is_supported,$(python))))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DAYS ?= 120
# Two workers, one per core: a test waits on dbt, Spark's JVM or a server as often as it computes. The tests of
# the deployed platform stay together on one worker (tests/conftest.py), so its server starts once.
# The scale-out tests start a Spark cluster and a Connect server of their own (minutes on 2 cores): they have
# their own target and CI step, so the suite stays within its 20 minutes.
PYTEST_ARGS ?= -n 2 --dist loadgroup -m "not scale_out"

.PHONY: setup manifest jars run test test-scale-out lint ui serve clean-data java

setup: $(STAMP)

java:
	@java -version >/dev/null 2>&1 || { \
	  echo "Java 17 or newer is required by Spark and was not found on PATH."; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"; \
	  echo "  macOS:         brew install openjdk@17"; \
	  echo "  or any JDK 17+ (for example Temurin), with JAVA_HOME set."; \
	  exit 1; }

# A .venv whose Python is not a supported one (made by hand, or its interpreter removed by an upgrade) is made anew.
ifeq ($(call is_supported,$(BIN)/python),)
.PHONY: $(STAMP)
VENV_CLEAR := --clear
endif

$(STAMP): pyproject.toml
	@test -n "$(call is_supported,$(PYTHON))" || { \
	  echo "$(if $(PYTHON),PYTHON=$(PYTHON) is not,No Python on PATH is) a supported one: $(SUPPORTED)."; \
	  echo "  Debian 12+, Ubuntu 24.04+: sudo apt-get install -y python3 python3-venv"; \
	  echo "  macOS:                     brew install python@3.13"; \
	  echo "  or any of them, with PYTHON=/path/to/python3.x"; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV_CLEAR) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# The dbt manifest the feature assets are defined from: generated, never committed, prepared ahead here (the
# definitions would otherwise parse the dbt project when they load).
manifest: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m dagster_project.cli manifest

# The Delta jars and the s3a connector (for object storage), fetched once from Maven Central into PLATFORM_JARS_CACHE;
# later Spark sessions start offline.
jars: setup
	$(BIN)/python -m dagster_project.cli jars

run: java setup manifest jars
	$(BIN)/python -m dagster_project.cli run --days $(DAYS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: java setup lint manifest jars
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-scale-out: java setup manifest jars
	$(BIN)/python -m pytest -m scale_out

ui: setup manifest
	$(BIN)/python -m dagster_project.cli ui

# The champion from the registry, the features from the online store (serving/online_store); hot-reloads the model.
serve: setup manifest
	$(BIN)/python -m dagster_project.service

clean-data: setup
	$(BIN)/python -c "import shutil; from dagster_project.settings import get_settings; shutil.rmtree(get_settings().data_root, ignore_errors=True)"
